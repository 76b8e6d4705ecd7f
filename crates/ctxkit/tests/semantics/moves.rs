//! S33: deadlines that move.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{Context, Error, ManualClock, OriginKind};

use crate::common::{oops, within, Oops, HOUR, LONG};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// API S33
#[test]
fn earlier_later_and_into_the_past_on_a_manual_clock() {
    let clock = ManualClock::new();
    let base = Context::background().with_clock(&clock);
    let (ctx, handle) = base.with_timeout(secs(10));
    let (child, _c) = ctx.with_cancel();
    // Later: never fires at the old time.
    assert!(handle.set_timeout(secs(20)));
    assert_eq!(ctx.deadline(), Some(clock.now() + secs(20)));
    assert_eq!(
        child.deadline(),
        ctx.deadline(),
        "descendants follow at once"
    );
    clock.advance(secs(10));
    assert!(!ctx.is_done() && !child.is_done());
    // Earlier: fires at the new time.
    assert!(handle.set_timeout(secs(5)));
    clock.advance(secs(4));
    assert!(!ctx.is_done());
    clock.advance(secs(1));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
    assert!(
        !handle.set_timeout(secs(60)),
        "a done context does not move"
    );
    // Into the past: at once.
    let (ctx, handle) = base.with_timeout(HOUR);
    let from = line!();
    assert!(handle.set_deadline(clock.now() - secs(1)));
    let to = line!();
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    let origin = ctx.origin().unwrap();
    assert_eq!(origin.kind(), OriginKind::Deadline);
    let line = origin.location().unwrap().line();
    assert!(
        from < line && line < to,
        "charged to set_deadline: {origin}"
    );
}

// API S33
#[test]
fn a_with_cancel_context_gains_a_deadline() {
    let clock = ManualClock::new();
    let (parent, _p) = Context::background()
        .with_clock(&clock)
        .with_timeout(secs(100));
    let (ctx, handle) = parent.with_cancel();
    assert_eq!(ctx.deadline(), parent.deadline());
    assert!(handle.set_timeout(secs(10)));
    assert_eq!(ctx.deadline(), Some(clock.now() + secs(10)));
    assert_eq!(
        parent.deadline(),
        Some(clock.now() + secs(100)),
        "the parent does not move"
    );
    // Still the earliest of the ancestors' (S10).
    assert!(handle.set_timeout(secs(1000)));
    assert_eq!(ctx.deadline(), parent.deadline());
    clock.advance(secs(100));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

// API S33
#[test]
fn descendants_made_before_and_after_a_move_follow_it() {
    let clock = ManualClock::new();
    let (root, handle) = Context::background()
        .with_clock(&clock)
        .with_timeout(secs(50));
    let (before, _b) = root.with_cancel();
    let (deep, _d) = before.with_value(&crate::common::USER, "u").with_cancel();
    let (own, _o) = before.with_timeout(secs(40)); // own deadline, earlier than the root's
    assert!(handle.set_timeout(secs(30)));
    let (after, _a) = deep.with_cancel();
    for ctx in [&before, &deep, &after] {
        assert_eq!(ctx.deadline(), Some(clock.now() + secs(30)), "{ctx}");
    }
    assert_eq!(
        own.deadline(),
        Some(clock.now() + secs(30)),
        "min with the moved parent"
    );
    assert!(handle.set_timeout(secs(60)));
    assert_eq!(
        own.deadline(),
        Some(clock.now() + secs(40)),
        "its own again"
    );
    assert_eq!(after.deadline(), Some(clock.now() + secs(60)));
    clock.advance(secs(40));
    assert_eq!(own.err(), Some(Error::DeadlineExceeded));
    assert!(!after.is_done());
}

// API S33 (S12)
#[test]
fn a_deadline_dropped_under_s12_is_not_revived_when_the_parent_moves_later() {
    let clock = ManualClock::new();
    let (parent, handle) = Context::background()
        .with_clock(&clock)
        .with_timeout(secs(10));
    let (child, _c) = parent.with_timeout(secs(20)); // later than the parent's: none of its own
    assert!(handle.set_timeout(secs(60)));
    assert_eq!(
        child.deadline(),
        Some(clock.now() + secs(60)),
        "it follows the parent"
    );
    clock.advance(secs(20));
    assert!(!child.is_done());
}

// API S33
#[test]
fn a_cause_context_keeps_its_cause_when_moved() {
    let clock = ManualClock::new();
    let base = Context::background().with_clock(&clock);
    let (ctx, handle) = base.with_timeout_cause(secs(1), Oops("idle"));
    assert!(handle.set_timeout(secs(5)));
    clock.advance(secs(5));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&ctx.cause().unwrap()), Some("idle"));
    let (ctx, handle) = base.with_timeout_cause(HOUR, Oops("past"));
    handle.set_deadline(clock.now() - secs(1));
    assert_eq!(oops(&ctx.cause().unwrap()), Some("past"));
}

// API S33
#[test]
fn real_time_moves_later_and_earlier() {
    let (ctx, handle) = Context::background().with_timeout(Duration::from_millis(30));
    assert!(handle.set_timeout(LONG));
    thread::sleep(Duration::from_millis(80));
    assert!(!ctx.is_done(), "moved later: never at the old time");
    let start = Instant::now();
    assert!(handle.set_timeout(Duration::from_millis(20)));
    assert_eq!(
        within("the moved deadline fires", move || ctx.wait()),
        Error::DeadlineExceeded
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
}

// API S33
#[test]
fn an_idle_timeout_pushed_back_on_every_message_fires_once_idle() {
    let (conn, idle) = Context::background().with_cancel();
    for _ in 0..20 {
        assert!(idle.set_timeout(Duration::from_millis(50)));
        thread::sleep(Duration::from_millis(5));
    }
    assert!(!conn.is_done());
    assert_eq!(within("idle", move || conn.wait()), Error::DeadlineExceeded);
}

// API S33
#[test]
fn no_deadline_and_a_timeout_past_the_end_of_time() {
    let clock = ManualClock::new();
    let (ctx, handle) = Context::background()
        .with_clock(&clock)
        .with_timeout(secs(1));
    assert!(handle.set_timeout(Duration::MAX));
    assert_eq!(ctx.deadline(), None);
    clock.advance(HOUR);
    assert!(!ctx.is_done());
}

// API S33
#[test]
fn moves_racing_cancels_and_the_timer_leave_one_err() {
    for round in 0..200 {
        let (ctx, handle) = Context::background().with_timeout(Duration::from_micros(200));
        let (child, _c) = ctx.with_cancel();
        let handle = Arc::new(handle);
        let movers: Vec<_> = (0..2)
            .map(|i| {
                let handle = Arc::clone(&handle);
                thread::spawn(move || {
                    for k in 0..50u64 {
                        handle.set_timeout(Duration::from_micros(100 + (k * 37 + i) % 300));
                    }
                })
            })
            .collect();
        if round % 2 == 0 {
            handle.cancel();
        }
        for m in movers {
            m.join().unwrap();
        }
        let err = within("done", move || child.wait());
        assert_eq!(ctx.err(), Some(err));
        assert_eq!(ctx.origin().unwrap().err(), err);
    }
}

// API S33 (S27)
#[test]
fn an_expiry_is_charged_to_the_move_that_set_the_deadline_last() {
    let clock = ManualClock::new();
    let (ctx, handle) = Context::background().with_clock(&clock).with_cancel();
    let touch = |d| handle.set_timeout(d); // the same call site every time
    assert!(touch(secs(5)));
    assert!(touch(secs(6)));
    let from = line!();
    assert!(handle.set_timeout(secs(7)));
    let to = line!();
    clock.advance(secs(7));
    let origin = ctx.origin().unwrap();
    assert_eq!(origin.kind(), OriginKind::Deadline);
    let line = origin.location().unwrap().line();
    assert!(from < line && line < to, "{origin}");
}
