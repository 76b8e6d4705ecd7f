//! Two-phase shutdown: drain, then cut off what is left, and say what was cut off.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{Context, Error, Shutdown, ShutdownCause};

#[path = "common/mod.rs"]
mod common;

use common::{within, LONG};

/// A unit of work that runs until `release` says so or the hard context is done; returns
/// whether it was cut off.
fn work(shutdown: &Shutdown, release: mpsc::Receiver<()>) -> thread::JoinHandle<bool> {
    let guard = shutdown.enter().expect("not draining");
    let hard = shutdown.hard().clone();
    thread::spawn(move || {
        let _guard = guard;
        loop {
            if hard.is_done() {
                return true;
            }
            if release.recv_timeout(Duration::from_millis(1)).is_ok() {
                return false;
            }
        }
    })
}

#[test]
fn work_that_finishes_within_the_grace_period_is_not_cut_off() {
    let shutdown = Shutdown::new(&Context::background());
    let (tx, rx) = mpsc::channel();
    let worker = work(&shutdown, rx);
    assert_eq!(shutdown.in_flight(), 1);
    shutdown.begin(LONG);
    assert!(shutdown.draining().is_done());
    let cause = shutdown.draining().cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<ShutdownCause>(),
        Some(&ShutdownCause::Draining)
    );
    assert!(
        shutdown.enter().is_none(),
        "new work is refused while draining"
    );
    assert!(!shutdown.hard().is_done());
    tx.send(()).unwrap();
    let start = Instant::now();
    let report = within("drained", {
        let s = shutdown.clone();
        move || s.wait()
    });
    assert!(
        start.elapsed() < LONG / 2,
        "returns as soon as the work finished"
    );
    assert!(report.drained());
    assert_eq!((report.finished(), report.cut_off()), (1, 0));
    assert!(!worker.join().unwrap());
    assert!(
        !shutdown.hard().is_done(),
        "a drained shutdown cuts nothing off"
    );
}

#[test]
fn work_that_outlives_the_grace_period_is_cut_off_and_counted() {
    let shutdown = Shutdown::new(&Context::background());
    let (quick_tx, quick_rx) = mpsc::channel();
    // Never told to finish: the senders stay alive until the end of the test.
    let (_slow_tx, slow_rx) = mpsc::channel::<()>();
    let (_slower_tx, slower_rx) = mpsc::channel::<()>();
    let quick = work(&shutdown, quick_rx);
    let slow = [work(&shutdown, slow_rx), work(&shutdown, slower_rx)];
    shutdown.begin(Duration::from_millis(50));
    quick_tx.send(()).unwrap();
    let report = within("grace ended", {
        let s = shutdown.clone();
        move || s.wait()
    });
    assert!(!report.drained());
    assert_eq!((report.finished(), report.cut_off()), (1, 2));
    assert_eq!(shutdown.hard().err(), Some(Error::Canceled));
    let cause = shutdown.hard().cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<ShutdownCause>(),
        Some(&ShutdownCause::GraceEnded)
    );
    assert!(!quick.join().unwrap());
    for s in slow {
        assert!(s.join().unwrap(), "cut off by the hard context");
    }
}

#[test]
fn a_second_begin_ends_the_grace_period_at_once() {
    let shutdown = Shutdown::new(&Context::background());
    let (_tx, rx) = mpsc::channel::<()>();
    let worker = work(&shutdown, rx);
    shutdown.begin(Duration::from_secs(3600));
    assert!(!shutdown.hard().is_done());
    shutdown.begin(Duration::from_secs(3600)); // a second SIGTERM
    assert!(shutdown.hard().is_done());
    let report = shutdown.wait();
    assert_eq!(report.cut_off(), 1);
    assert!(worker.join().unwrap());
}

#[test]
fn nothing_in_flight_drains_at_once_and_the_parent_cuts_everything() {
    let shutdown = Shutdown::new(&Context::background());
    shutdown.begin(Duration::from_secs(3600));
    let report = shutdown.wait();
    assert!(report.drained());
    assert_eq!((report.finished(), report.cut_off()), (0, 0));

    let (parent, cancel) = Context::background().with_cancel();
    let shutdown = Shutdown::new(&parent);
    let guard = shutdown.enter().unwrap();
    cancel.cancel();
    assert!(shutdown.draining().is_done() && shutdown.hard().is_done());
    let report = shutdown.wait();
    assert!(!report.drained());
    assert_eq!(report.cut_off(), 1);
    drop(guard);
}

#[test]
fn the_async_wait_works_on_any_executor() {
    let shutdown = Shutdown::new(&Context::background());
    let guard = shutdown.enter().unwrap();
    shutdown.begin(LONG);
    let waiter = {
        let s = shutdown.clone();
        thread::spawn(move || futures::executor::block_on(s.done()))
    };
    thread::sleep(Duration::from_millis(20));
    drop(guard);
    let report = waiter.join().unwrap();
    assert!(report.drained());
    assert_eq!(report.finished(), 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shutdown = Shutdown::new(&Context::background());
    let _guard = shutdown.enter().unwrap();
    shutdown.begin(Duration::from_millis(10));
    let report = rt.block_on(shutdown.done());
    assert_eq!(report.cut_off(), 1);
}

#[cfg(unix)]
#[test]
fn sigterm_begins_the_shutdown_and_a_second_one_cuts_off() {
    use signal_hook::consts::SIGTERM;
    let shutdown = Shutdown::new(&Context::background());
    shutdown.on_signals(Duration::from_secs(3600)).unwrap();
    let guard = shutdown.enter().unwrap();
    signal_hook::low_level::raise(SIGTERM).unwrap();
    assert!(common::eventually(|| shutdown.draining().is_done()));
    assert!(!shutdown.hard().is_done());
    signal_hook::low_level::raise(SIGTERM).unwrap();
    assert!(common::eventually(|| shutdown.hard().is_done()));
    assert_eq!(shutdown.wait().cut_off(), 1);
    drop(guard);
}
