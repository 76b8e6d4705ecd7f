//! `ctxkit::tokio::with_tokio_clock`: deadlines measured on tokio's clock, so that paused
//! time, `tokio::time::advance` and auto-advance drive them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ctxkit::tokio::with_tokio_clock;
use ctxkit::{Context, Error};

mod common;
use common::DropFlag;

#[tokio::test(start_paused = true)]
async fn a_30s_deadline_beats_a_60s_sleep_under_paused_time_without_real_waiting() {
    let root = with_tokio_clock(&Context::background());
    let (ctx, _cancel) = root.with_timeout(Duration::from_secs(30));
    let real = std::time::Instant::now();
    let started = tokio::time::Instant::now();
    let winner = tokio::select! {
        err = ctx.done() => Some(err),
        _ = tokio::time::sleep(Duration::from_secs(60)) => None,
    };
    assert_eq!(winner, Some(Error::DeadlineExceeded));
    let on_tokio = started.elapsed();
    assert!(
        on_tokio >= Duration::from_secs(30) && on_tokio < Duration::from_secs(31),
        "{on_tokio:?}"
    );
    // Paused time: 30 s of tokio's time, and far less of the wall clock (a few
    // milliseconds; the bound leaves room for slow runs, under valgrind for instance).
    assert!(
        real.elapsed() < Duration::from_secs(30),
        "{:?}",
        real.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn advance_fires_a_deadline_once_it_is_due_and_not_before() {
    let root = with_tokio_clock(&Context::background());
    let (ctx, _cancel) = root.with_timeout(Duration::from_millis(300));
    tokio::time::advance(Duration::from_millis(298)).await;
    tokio::task::yield_now().await;
    assert_eq!(ctx.err(), None);
    assert!(ctx.remaining().unwrap() <= Duration::from_millis(3));
    tokio::time::advance(Duration::from_millis(3)).await;
    tokio::task::yield_now().await;
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_made_after_tokio_time_moved_is_measured_from_the_new_time() {
    let root = with_tokio_clock(&Context::background());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (ctx, _cancel) = root.with_timeout(Duration::from_secs(5));
    assert_eq!(ctx.err(), None);
    let started = tokio::time::Instant::now();
    ctx.done().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(4_999) && waited < Duration::from_millis(5_010),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_group_under_a_tokio_clock_deadline_cancels_its_tasks_on_tokio_time() {
    let root = with_tokio_clock(&Context::background());
    let (request, _cancel) = root.with_timeout(Duration::from_secs(2));
    let (group, ctx) = ctxkit::tokio::Group::<Error>::new(&request);
    for _ in 0..3 {
        let ctx = ctx.clone();
        group.spawn(async move {
            ctx.run(tokio::time::sleep(Duration::from_secs(3600)))
                .await?;
            Ok(())
        });
    }
    assert_eq!(group.wait().await, Err(Error::DeadlineExceeded));
}

#[tokio::test(start_paused = true)]
async fn descendants_keep_the_clock_and_dropping_them_stops_its_task() {
    let freed = Arc::new(AtomicBool::new(false));
    let root = with_tokio_clock(&Context::background().with(DropFlag(freed.clone())));
    let (child, cancel) = root.with_cancel();
    drop(root);
    let (grandchild, _c) = child.with_timeout(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(1_001)).await;
    tokio::task::yield_now().await;
    assert_eq!(grandchild.err(), Some(Error::DeadlineExceeded));
    drop((child, cancel, grandchild, _c));
    // The clock's task is aborted with the last context; nothing holds the parent's value.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        freed.load(Ordering::SeqCst),
        "the contexts or the clock's task leaked"
    );
}
