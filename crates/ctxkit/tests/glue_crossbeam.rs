//! `ctxkit::crossbeam`: a receiver that is ready once a context is done, for `select!`.
#![cfg(feature = "crossbeam-channel")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, never, select, select_biased, unbounded, RecvError};
use ctxkit::crossbeam::done_receiver;
use ctxkit::{Context, Error};

mod common;
use common::{DropFlag, LONG};

#[test]
fn the_receiver_is_not_ready_until_the_context_is_done() {
    let (ctx, handle) = Context::background().with_cancel();
    let done = done_receiver(&ctx);
    assert!(!done.is_ready());
    assert_eq!(
        done.recv_timeout(Duration::from_millis(10)),
        Err(crossbeam_channel::RecvTimeoutError::Timeout)
    );
    handle.cancel();
    assert!(done.is_ready(), "ready before cancel() returned");
    assert_eq!(done.recv(), Err(RecvError));
}

#[test]
fn the_receiver_of_a_done_context_is_ready_at_once() {
    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    assert!(done_receiver(&ctx).is_ready());
}

#[test]
fn a_context_that_can_never_be_done_never_makes_the_receiver_ready() {
    let done = done_receiver(&Context::background());
    assert!(!done.is_ready());
    // A cancellable context whose every handle is gone can no longer be done either: its
    // callback is dropped unrun, and that must not look like a cancel.
    let (ctx, handle) = Context::background().with_cancel();
    let done = done_receiver(&ctx);
    drop(handle);
    assert!(!done.is_ready());
    assert!(done.recv_timeout(Duration::from_millis(10)).is_err());
    assert!(!done.is_ready());
}

#[test]
fn select_picks_the_context_among_other_ready_channels() {
    let (ctx, handle) = Context::background().with_cancel();
    let done = done_receiver(&ctx);
    let (tx, busy) = unbounded::<u32>();
    for i in 0..10_000 {
        tx.send(i).unwrap();
    }
    let (_tx2, idle) = bounded::<u32>(1);
    handle.cancel();
    // Both `busy` and `done` are ready; select chooses at random, so the context is picked
    // within a few rounds.
    let mut rounds = 0;
    loop {
        rounds += 1;
        select! {
            recv(busy) -> msg => { msg.unwrap(); }
            recv(idle) -> _ => unreachable!(),
            recv(done) -> msg => { assert!(msg.is_err()); break; }
        }
        assert!(rounds < 1_000, "select never picked the context");
    }
    // With priority to the context, it is picked first.
    select_biased! {
        recv(done) -> _ => {}
        recv(busy) -> _ => panic!("the context is listed first and ready"),
    }
}

#[test]
fn select_wakes_on_cancel_from_another_thread() {
    let (ctx, handle) = Context::background().with_cancel();
    let done = done_receiver(&ctx);
    let idle = never::<()>();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        handle.cancel();
    });
    let start = Instant::now();
    select! {
        recv(idle) -> _ => unreachable!(),
        recv(done) -> _ => {}
        default(LONG) => panic!("not woken"),
    }
    assert!(start.elapsed() >= Duration::from_millis(15));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    canceller.join().unwrap();
}

#[test]
fn select_wakes_on_a_deadline() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(20));
    let done = done_receiver(&ctx);
    let (_jobs_tx, jobs) = unbounded::<u32>();
    select! {
        recv(jobs) -> _ => unreachable!(),
        recv(done) -> _ => assert_eq!(ctx.err(), Some(Error::DeadlineExceeded)),
        default(LONG) => panic!("not woken"),
    }
}

#[test]
fn clones_are_ready_together_even_after_the_original_is_dropped() {
    let (ctx, handle) = Context::background().with_cancel();
    let done = done_receiver(&ctx);
    let clone = done.clone();
    drop(done);
    assert!(!clone.is_ready());
    handle.cancel();
    assert!(clone.is_ready());
}

#[test]
fn dropping_the_receiver_unregisters_its_callback() {
    // Many receivers on one long-lived context: each drop frees its registration, so a
    // late cancel finds none of them (and nothing breaks).
    let (ctx, handle) = Context::background().with_cancel();
    for _ in 0..10_000 {
        let done = done_receiver(&ctx);
        assert!(!done.is_ready());
    }
    handle.cancel();
}

#[test]
fn the_receiver_does_not_keep_the_context_alive() {
    let freed = Arc::new(AtomicBool::new(false));
    let (ctx, handle) = Context::background()
        .with(DropFlag(freed.clone()))
        .with_cancel();
    let done = done_receiver(&ctx);
    drop((ctx, handle));
    assert!(freed.load(Ordering::SeqCst));
    assert!(!done.is_ready());
}

#[test]
fn worker_threads_stop_on_one_cancel() {
    let (ctx, handle) = Context::background().with_cancel();
    let (jobs_tx, jobs) = unbounded::<u32>();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let done = done_receiver(&ctx);
            let jobs = jobs.clone();
            thread::spawn(move || {
                let mut handled = 0;
                loop {
                    select! {
                        recv(jobs) -> job => { if job.is_ok() { handled += 1 } }
                        recv(done) -> _ => return handled,
                    }
                }
            })
        })
        .collect();
    for i in 0..100 {
        jobs_tx.send(i).unwrap();
    }
    while !jobs.is_empty() {
        thread::sleep(Duration::from_millis(1));
    }
    handle.cancel();
    let handled: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(handled, 100);
}

#[test]
fn the_receiver_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ctxkit::crossbeam::DoneReceiver>();
}
