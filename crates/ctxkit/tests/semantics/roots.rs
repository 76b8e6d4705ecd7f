//! API S1: the roots, `background()` and `todo()`, are never done, have no deadline and
//! cannot be cancelled.

use std::time::{Duration, Instant};

use ctxkit::Context;

use crate::common::poll_once;

// API S1
#[test]
fn background_and_todo_are_never_done() {
    for root in [Context::background(), Context::todo()] {
        assert_eq!(root.err(), None);
        assert!(root.cause().is_none());
        assert_eq!(root.deadline(), None);
        assert_eq!(root.remaining(), None);
        assert!(!root.is_done());
    }
}

// API S1
#[test]
fn root_done_future_never_completes() {
    for root in [Context::background(), Context::todo()] {
        let mut done = root.done();
        for _ in 0..3 {
            assert!(poll_once(&mut done).is_pending());
        }
    }
}

// API S1
#[test]
fn root_wait_timeout_returns_none_after_the_timeout() {
    for root in [Context::background(), Context::todo()] {
        let d = Duration::from_millis(30);
        let start = Instant::now();
        assert_eq!(root.wait_timeout(d), None);
        assert!(
            start.elapsed() >= d,
            "returned early: {:?}",
            start.elapsed()
        );
    }
}

// API S1
#[test]
fn roots_cannot_be_cancelled_by_their_children() {
    let (_c, h) = Context::background().with_cancel();
    let (_t, ht) = Context::todo().with_cancel();
    h.cancel();
    ht.cancel();
    assert!(!Context::background().is_done());
    assert!(!Context::todo().is_done());
}
