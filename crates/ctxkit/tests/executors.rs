//! `done()` and `run()` on several executors: tokio (current-thread and multi-thread), smol
//! and `futures::executor::block_on`, plus `tokio::select!` (API S17, S18). No executor's
//! timer is needed for a context's deadline to fire.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{CancelHandle, Context, Error};

mod common;
use common::{DropFlag, LONG};

fn cancel_later(h: CancelHandle, after: Duration) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        thread::sleep(after);
        h.cancel();
    })
}

fn current_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn multi_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A runtime without tokio's timer or I/O drivers: deadlines must fire anyway.
fn bare_current_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// done()
// ---------------------------------------------------------------------------------------

// API S17
#[test]
fn done_on_tokio_current_thread() {
    let rt = current_thread_rt();
    let (ctx, h) = Context::background().with_cancel();
    let t = cancel_later(h, Duration::from_millis(10));
    assert_eq!(rt.block_on(ctx.done()), Error::Canceled);
    t.join().unwrap();

    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(rt.block_on(ctx.done()), Error::DeadlineExceeded);
    assert!(Instant::now() >= ctx.deadline().unwrap());

    let rt = bare_current_thread_rt();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(rt.block_on(ctx.done()), Error::DeadlineExceeded);
}

// API S17
#[test]
fn done_on_tokio_multi_thread_from_spawned_tasks() {
    let rt = multi_thread_rt();
    let (ctx, h) = Context::background().with_cancel();
    let (child, _hc) = ctx.with_timeout(Duration::from_secs(3600));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let c = if i % 2 == 0 {
                ctx.clone()
            } else {
                child.clone()
            };
            rt.spawn(async move { c.done().await })
        })
        .collect();
    // Cancelled from inside a task on the runtime.
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        h.cancel();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Error::Canceled);
        }
    });

    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let c2 = ctx.clone();
    let err = rt.block_on(async move { rt_spawned(c2).await });
    assert_eq!(err, Error::DeadlineExceeded);
}

async fn rt_spawned(ctx: Context) -> Error {
    tokio::spawn(async move { ctx.done().await }).await.unwrap()
}

// API S17
#[test]
fn done_on_smol() {
    let (ctx, h) = Context::background().with_cancel();
    let t = cancel_later(h, Duration::from_millis(10));
    assert_eq!(smol::block_on(ctx.done()), Error::Canceled);
    t.join().unwrap();

    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let c2 = ctx.clone();
    let task = smol::spawn(async move { c2.done().await });
    assert_eq!(smol::block_on(task), Error::DeadlineExceeded);
}

// API S17
#[test]
fn done_on_futures_block_on_and_local_pool() {
    let (ctx, h) = Context::background().with_cancel();
    let t = cancel_later(h, Duration::from_millis(10));
    assert_eq!(futures::executor::block_on(ctx.done()), Error::Canceled);
    t.join().unwrap();

    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let mut pool = futures::executor::LocalPool::new();
    assert_eq!(pool.run_until(ctx.done()), Error::DeadlineExceeded);
}

// API S17
#[test]
fn done_moves_between_tasks_and_executors() {
    // Polled first on one executor, then finished on another: the new waker is used.
    let (ctx, h) = Context::background().with_cancel();
    let mut done = ctx.done();
    let rt = current_thread_rt();
    rt.block_on(async {
        let r = tokio::time::timeout(Duration::from_millis(5), &mut done).await;
        assert!(r.is_err(), "not done yet");
    });
    let t = cancel_later(h, Duration::from_millis(10));
    assert_eq!(smol::block_on(done), Error::Canceled);
    t.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// run()
// ---------------------------------------------------------------------------------------

// API S18
#[test]
fn run_on_tokio_current_thread_and_multi_thread() {
    for rt in [current_thread_rt(), multi_thread_rt()] {
        let (ctx, h) = Context::background().with_cancel();
        let out = rt.block_on(ctx.run(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            5
        }));
        assert_eq!(out, Ok(5));

        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(Arc::clone(&dropped));
        let t = cancel_later(h, Duration::from_millis(10));
        let out = rt.block_on(ctx.run(async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }));
        assert_eq!(out, Err(Error::Canceled));
        assert!(dropped.load(Ordering::SeqCst));
        t.join().unwrap();

        let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
        let out = rt.block_on(ctx.run(std::future::pending::<()>()));
        assert_eq!(out, Err(Error::DeadlineExceeded));
    }
}

// API S18
#[test]
fn run_on_smol() {
    let (ctx, h) = Context::background().with_cancel();
    let out = smol::block_on(ctx.run(async {
        smol::Timer::after(Duration::from_millis(1)).await;
        "ok"
    }));
    assert_eq!(out, Ok("ok"));
    let t = cancel_later(h, Duration::from_millis(10));
    let out = smol::block_on(ctx.run(smol::Timer::after(Duration::from_secs(3600))));
    assert_eq!(out, Err(Error::Canceled));
    t.join().unwrap();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let out = smol::block_on(ctx.run(std::future::pending::<()>()));
    assert_eq!(out, Err(Error::DeadlineExceeded));
}

// API S18
#[test]
fn run_on_futures_block_on() {
    let (ctx, h) = Context::background().with_cancel();
    assert_eq!(futures::executor::block_on(ctx.run(async { 1 + 1 })), Ok(2));
    let (tx, rx) = futures::channel::oneshot::channel::<u8>();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        tx.send(9).unwrap();
    });
    assert_eq!(futures::executor::block_on(ctx.run(rx)), Ok(Ok(9)));
    t.join().unwrap();
    let t = cancel_later(h, Duration::from_millis(10));
    let out = futures::executor::block_on(ctx.run(std::future::pending::<()>()));
    assert_eq!(out, Err(Error::Canceled));
    t.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// tokio::select!
// ---------------------------------------------------------------------------------------

// API S17
#[test]
fn select_with_done_takes_the_cancel_branch() {
    let rt = current_thread_rt();
    rt.block_on(async {
        let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
        let start = Instant::now();
        tokio::select! {
            err = ctx.done() => assert_eq!(err, Error::DeadlineExceeded),
            _ = tokio::time::sleep(LONG) => panic!("deadline did not fire"),
        }
        assert!(start.elapsed() < LONG);
    });
}

// API S17
#[test]
fn select_with_done_lets_other_branches_win_and_can_be_reused() {
    let rt = multi_thread_rt();
    rt.block_on(async {
        let (ctx, h) = Context::background().with_cancel();
        let mut done = ctx.done();
        let mut ticks = 0;
        loop {
            tokio::select! {
                err = &mut done => {
                    assert_eq!(err, Error::Canceled);
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(1)) => {
                    ticks += 1;
                    if ticks == 5 {
                        let h = h.clone();
                        tokio::spawn(async move { h.cancel() });
                    }
                    assert!(ticks < 10_000, "cancel never observed");
                }
            }
        }
        assert!(ticks >= 5);
        assert!(ctx.is_done());
    });
}

// API S17
#[test]
fn select_on_a_never_done_context_never_fires() {
    let rt = current_thread_rt();
    rt.block_on(async {
        let ctx = Context::background().without_cancel();
        tokio::select! {
            _ = ctx.done() => panic!("a context that cannot be done completed"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    });
}
