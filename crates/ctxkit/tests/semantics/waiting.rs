//! API S17–S18: waiting for a context: `done()`, `wait` and `wait_timeout` (S17), and
//! `run` (S18).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{Context, Error};

use crate::common::{drop_flag, poll_once, Oops, LONG};

// API S17
#[test]
fn done_completes_at_once_when_already_done() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let mut done = ctx.done();
    assert_eq!(poll_once(&mut done), Poll::Ready(Error::Canceled));
    assert_eq!(futures::executor::block_on(ctx.done()), Error::Canceled);
    assert_eq!(ctx.wait(), Error::Canceled);
    assert_eq!(ctx.done().wait(), Error::Canceled);
    assert_eq!(ctx.wait_timeout(Duration::ZERO), Some(Error::Canceled));
}

// API S17
#[test]
fn done_completes_after_cancel_from_another_thread() {
    let (ctx, h) = Context::background().with_cancel();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        h.cancel();
    });
    let err = futures::executor::block_on(ctx.done());
    assert_eq!(err, Error::Canceled);
    assert!(ctx.err().is_some());
    t.join().unwrap();
}

// API S17
#[test]
fn done_completes_when_the_deadline_passes_without_a_runtime() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
    let err = futures::executor::block_on(ctx.done());
    assert_eq!(err, Error::DeadlineExceeded);
    assert!(Instant::now() >= ctx.deadline().unwrap());
}

// API S17
#[test]
fn wait_and_done_wait_block_until_cancelled() {
    for use_done in [false, true] {
        let (ctx, h) = Context::background().with_cancel();
        let c2 = ctx.clone();
        let waiter = thread::spawn(move || {
            let err = if use_done {
                c2.done().wait()
            } else {
                c2.wait()
            };
            (err, c2.err())
        });
        thread::sleep(Duration::from_millis(10));
        h.cancel_with_cause(Oops("stop"));
        let (err, after) = waiter.join().unwrap();
        assert_eq!(err, Error::Canceled);
        assert_eq!(after, Some(Error::Canceled));
    }
}

// API S17
#[test]
fn wait_timeout_returns_the_error_when_done_first_and_none_after_timeout() {
    let (ctx, h) = Context::background().with_cancel();
    let start = Instant::now();
    assert_eq!(ctx.wait_timeout(Duration::from_millis(20)), None);
    assert!(start.elapsed() >= Duration::from_millis(20));
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        h.cancel();
    });
    assert_eq!(ctx.wait_timeout(LONG), Some(Error::Canceled));
    t.join().unwrap();
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(5));
    assert_eq!(ctx.wait_timeout(LONG), Some(Error::DeadlineExceeded));
}

// API S17
#[test]
fn many_waiters_are_all_woken() {
    let (ctx, h) = Context::background().with_cancel();
    let (child, _hc) = ctx.with_cancel();
    let mut waiters = Vec::new();
    for i in 0..16 {
        let c = if i % 2 == 0 {
            ctx.clone()
        } else {
            child.clone()
        };
        waiters.push(thread::spawn(move || c.wait()));
    }
    // Some futures that are dropped before completion must not disturb the rest.
    for _ in 0..10 {
        let mut d = ctx.done();
        assert!(poll_once(&mut d).is_pending());
    }
    thread::sleep(Duration::from_millis(10));
    h.cancel();
    for w in waiters {
        assert_eq!(w.join().unwrap(), Error::Canceled);
    }
}

// API S18
#[test]
fn run_returns_the_output_when_the_future_finishes_first() {
    let (ctx, _h) = Context::background().with_cancel();
    assert_eq!(futures::executor::block_on(ctx.run(async { 42 })), Ok(42));
    let bg = Context::background();
    assert_eq!(futures::executor::block_on(bg.run(async { "x" })), Ok("x"));
}

// API S18
#[test]
fn run_returns_the_error_and_drops_the_future_when_done_first() {
    let (ctx, h) = Context::background().with_cancel();
    let (flag, dropped) = drop_flag();
    let fut = async move {
        let _keep = flag;
        std::future::pending::<()>().await;
    };
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        h.cancel();
    });
    let res = futures::executor::block_on(ctx.run(fut));
    assert_eq!(res, Err(Error::Canceled));
    assert!(dropped.load(Ordering::SeqCst), "the future was dropped");
    t.join().unwrap();

    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(5));
    let res = futures::executor::block_on(ctx.run(std::future::pending::<u8>()));
    assert_eq!(res, Err(Error::DeadlineExceeded));
}

// API S18
#[test]
fn run_on_a_done_context_returns_the_error() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let polled = Arc::new(AtomicBool::new(false));
    let p2 = Arc::clone(&polled);
    let fut = std::future::poll_fn(move |_| {
        p2.store(true, Ordering::SeqCst);
        Poll::<u8>::Pending
    });
    assert_eq!(
        futures::executor::block_on(ctx.run(fut)),
        Err(Error::Canceled)
    );
}
