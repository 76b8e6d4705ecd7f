//! `ctxkit::tokio`: tasks that stop with their context, and `Group` for tokio tasks.
#![cfg(feature = "tokio")]

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctxkit::tokio::Group;
use ctxkit::{Context, Error, Panicked};
use futures::FutureExt;

mod common;
use common::{Concurrency, DropFlag, Failed, LONG};

#[tokio::test]
async fn spawn_drops_the_future_and_reports_the_error_when_the_context_is_done() {
    let (ctx, handle) = Context::background().with_cancel();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let task = ctxkit::tokio::spawn(&ctx, async move {
        let _flag = flag;
        std::future::pending::<()>().await;
    });
    tokio::task::yield_now().await;
    handle.cancel();
    assert_eq!(task.await.unwrap(), Err(Error::Canceled));
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn spawn_on_a_done_context_never_polls_the_future() {
    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    let polled = Arc::new(AtomicBool::new(false));
    let flag = polled.clone();
    let task = ctxkit::tokio::spawn(&ctx, async move { flag.store(true, Ordering::SeqCst) });
    assert_eq!(task.await.unwrap(), Err(Error::DeadlineExceeded));
    assert!(!polled.load(Ordering::SeqCst));
}

#[tokio::test]
async fn spawn_returns_the_output_when_the_future_finishes_first() {
    let (ctx, _h) = Context::background().with_timeout(LONG);
    let task = ctxkit::tokio::spawn(&ctx, async { "done" });
    assert_eq!(task.await.unwrap(), Ok("done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_stops_a_spawned_task_without_a_tokio_timer() {
    let start = Instant::now(); // before the context: its deadline is 20 ms after creation
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(20));
    let task = ctxkit::tokio::spawn(&ctx, std::future::pending::<()>());
    assert_eq!(task.await.unwrap(), Err(Error::DeadlineExceeded));
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[tokio::test]
async fn select_on_done_picks_the_context_among_other_branches() {
    let (ctx, handle) = Context::background().with_cancel();
    let (_tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
    handle.cancel();
    let picked = tokio::select! {
        biased;
        err = ctx.done() => Some(err),
        _ = rx.recv() => None,
    };
    assert_eq!(picked, Some(Error::Canceled));
}

#[tokio::test]
async fn wait_on_an_empty_group_completes_at_once_and_cancels_the_context() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    assert_eq!(group.wait().await, Ok(()));
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_error_wins_and_its_cause_is_visible_to_siblings() {
    let (group, ctx) = Group::with_cause(&Context::background(), Failed::clone);
    let seen = Arc::new(Mutex::new(None));
    {
        let (ctx, seen) = (ctx.clone(), seen.clone());
        group.spawn(async move {
            ctx.done().await;
            *seen.lock().unwrap() = ctx.cause().unwrap().downcast_ref::<Failed>().cloned();
            Ok(())
        });
    }
    group.spawn(async { Err(Failed(1)) });
    {
        let ctx = ctx.clone();
        group.spawn(async move {
            ctx.done().await;
            Err(Failed(2))
        });
    }
    assert_eq!(group.wait().await, Err(Failed(1)));
    assert_eq!(*seen.lock().unwrap(), Some(Failed(1)));
    assert_eq!(ctx.cause().unwrap().downcast_ref(), Some(&Failed(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_observe_cancellation_and_stop() {
    let (group, ctx) = Group::new(&Context::background());
    let stopped = Arc::new(AtomicUsize::new(0));
    for _ in 0..8 {
        let (ctx, stopped) = (ctx.clone(), stopped.clone());
        group.spawn(async move {
            tokio::select! {
                _ = ctx.done() => { stopped.fetch_add(1, Ordering::SeqCst); }
                _ = tokio::time::sleep(LONG) => {}
            }
            Ok(())
        });
    }
    group.spawn(async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Err(Failed(3))
    });
    let start = Instant::now();
    assert_eq!(group.wait().await, Err(Failed(3)));
    assert!(start.elapsed() < LONG / 2);
    assert_eq!(stopped.load(Ordering::SeqCst), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_is_never_exceeded_by_queued_spawns() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(3);
    let c = Arc::new(Concurrency::default());
    let finished = Arc::new(AtomicUsize::new(0));
    for _ in 0..30 {
        let (c, finished) = (c.clone(), finished.clone());
        group.spawn(async move {
            c.run_async(Duration::from_millis(2)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    }
    group.wait().await.unwrap();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        30,
        "wait waits for queued tasks too"
    );
    let max = c.max.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "max concurrency {max}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_wait_waits_for_a_slot_and_the_limit_is_never_exceeded() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(2);
    let c = Arc::new(Concurrency::default());
    for _ in 0..12 {
        let task = c.clone();
        group
            .spawn_wait(async move {
                task.run_async(Duration::from_millis(2)).await;
                Ok(())
            })
            .await;
        assert!(c.now.load(Ordering::SeqCst) <= 2);
    }
    group.wait().await.unwrap();
    assert!(c.max.load(Ordering::SeqCst) <= 2);
}

#[tokio::test]
async fn spawn_wait_does_not_complete_while_the_group_is_full() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(1);
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    group.spawn(async move {
        let _ = gate.await;
        Ok(())
    });
    let second = group.spawn_wait(async { Ok(()) });
    let timed_out = tokio::time::timeout(Duration::from_millis(30), second).await;
    assert!(
        timed_out.is_err(),
        "spawn_wait completed while the group was full"
    );
    release.send(()).unwrap();
    tokio::time::timeout(LONG, group.spawn_wait(async { Ok(()) }))
        .await
        .expect("a slot frees once the first task ends");
    group.wait().await.unwrap();
}

#[tokio::test]
async fn try_spawn_at_the_limit_returns_false() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(1);
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    assert!(group.try_spawn(async move {
        let _ = gate.await;
        Ok(())
    }));
    assert!(!group.try_spawn(async { Ok(()) }));
    release.send(()).unwrap();
    group.wait().await.unwrap();
}

#[tokio::test]
async fn raising_the_limit_lets_queued_tasks_run() {
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    group.set_limit(1);
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    group.spawn(async move {
        let _ = gate.await;
        Ok(())
    });
    let ran = Arc::new(AtomicBool::new(false));
    {
        let ran = ran.clone();
        group.spawn(async move {
            ran.store(true, Ordering::SeqCst);
            Ok(())
        });
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!ran.load(Ordering::SeqCst), "queued behind the limit");
    group.clear_limit();
    tokio::time::timeout(LONG, async {
        while !ran.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the queued task ran once the limit was lifted");
    release.send(()).unwrap();
    group.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_cancels_the_context_and_propagates_through_wait() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    let seen = Arc::new(Mutex::new(None));
    {
        let (ctx, seen) = (ctx.clone(), seen.clone());
        group.spawn(async move {
            ctx.done().await;
            *seen.lock().unwrap() = ctx.cause().unwrap().downcast_ref::<Panicked>().cloned();
            Ok(())
        });
    }
    group.spawn(async { panic!("task boom") });
    let payload = AssertUnwindSafe(group.wait())
        .catch_unwind()
        .await
        .unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"task boom"));
    assert_eq!(
        seen.lock().unwrap().as_ref().unwrap().message(),
        "task boom"
    );
    assert!(ctx.is_done());
}

#[tokio::test]
async fn dropping_the_group_cancels_its_context() {
    let (group, ctx) = Group::<Failed>::new(&Context::background());
    let task_ctx = ctx.clone();
    group.spawn(async move {
        task_ctx.done().await;
        Ok(())
    });
    drop(group);
    assert_eq!(
        tokio::time::timeout(LONG, ctx.done()).await,
        Ok(Error::Canceled)
    );
}

#[tokio::test]
async fn a_parent_cancel_reaches_the_group_and_wait_returns_ok() {
    let (parent, handle) = Context::background().with_cancel();
    let (group, ctx) = Group::<Failed>::new(&parent);
    group.spawn(async move {
        ctx.done().await;
        Ok(())
    });
    handle.cancel();
    assert_eq!(group.wait().await, Ok(()));
}

#[test]
fn wait_completes_when_the_runtime_drops_unfinished_tasks() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    rt.block_on(async {
        group.spawn(std::future::pending());
    });
    drop(rt); // drops the pending task
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = rt.block_on(async { tokio::time::timeout(LONG, group.wait()).await });
    assert_eq!(result, Ok(Ok(())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_and_its_context_are_freed_after_wait() {
    let freed = Arc::new(AtomicBool::new(false));
    let parent = Context::background().with(DropFlag(freed.clone()));
    let (group, ctx) = Group::new(&parent);
    drop(parent);
    group.set_limit(2);
    for i in 0..6 {
        let ctx = ctx.clone();
        group.spawn(async move {
            tokio::select! {
                _ = ctx.done() => {}
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
            if i == 3 {
                Err(Failed(i))
            } else {
                Ok(())
            }
        });
    }
    drop(ctx);
    assert_eq!(group.wait().await, Err(Failed(3)));
    drop(group);
    // The last task may still be letting go of its share of the group: give it a moment.
    tokio::time::timeout(LONG, async {
        while !freed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the group's context leaked");
}

#[test]
fn the_group_and_its_futures_are_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Group<Failed>>();
    let (group, _ctx) = Group::<Failed>::new(&Context::background());
    send(&group.spawn_wait(async { Ok(()) }));
    send(&group.wait());
}
