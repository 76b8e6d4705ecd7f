//! API S7–S9: causes: the cause a done context reports (S7), the first cause winning (S8),
//! and the sentinels as causes (S9).

use std::time::{Duration, Instant};

use ctxkit::{Context, Error, ManualClock};

use crate::common::{oops, sentinel, Oops, HOUR};

// API S7
#[test]
fn cause_is_none_while_not_done() {
    let (a, _ha) = Context::background().with_cancel();
    let (b, _hb) = a.with_timeout_cause(HOUR, Oops("t"));
    assert!(a.cause().is_none());
    assert!(b.cause().is_none());
}

// API S7
#[test]
fn cancel_with_cause_gives_that_cause() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel_with_cause(Oops("backend down"));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().unwrap();
    assert!(cause.is::<Oops>());
    assert!(!cause.is::<Error>());
    assert_eq!(cause.downcast_ref::<Oops>(), Some(&Oops("backend down")));
    assert_eq!(cause.to_string(), "oops: backend down");

    let (ctx, h) = Context::background().with_cancel();
    h.cancel_with_cause("plain text");
    assert_eq!(ctx.cause().unwrap().to_string(), "plain text");
}

// API S7, S9
#[test]
fn plain_cancel_gives_the_canceled_sentinel_as_cause() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    let cause = ctx.cause().unwrap();
    assert!(cause.is::<Error>());
    assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::Canceled));
    assert_eq!(cause.to_string(), "context canceled");
}

// API S7, S9
#[test]
fn deadline_gives_deadline_cause_else_the_sentinel() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (plain, _a) = root.with_timeout(Duration::from_secs(1));
    let (caused, _b) = root.with_timeout_cause(Duration::from_secs(1), Oops("too slow"));
    let (dl_caused, _c) =
        root.with_deadline_cause(clock.now() + Duration::from_secs(1), Oops("dl"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(plain.err(), Some(Error::DeadlineExceeded));
    let cause = plain.cause().unwrap();
    assert!(cause.is::<Error>());
    assert_eq!(sentinel(&cause), Some(Error::DeadlineExceeded));
    assert_eq!(caused.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&caused.cause().unwrap()), Some("too slow"));
    assert_eq!(dl_caused.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&dl_caused.cause().unwrap()), Some("dl"));
}

// API S7, S14
#[test]
fn handle_cancel_of_deadline_with_cause_gives_canceled_not_the_deadline_cause() {
    let (ctx, h) = Context::background().with_timeout_cause(HOUR, Oops("deadline"));
    h.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(sentinel(&ctx.cause().unwrap()), Some(Error::Canceled));

    let (ctx, h) = Context::background().with_deadline_cause(Instant::now() + HOUR, Oops("dl"));
    h.cancel_with_cause(Oops("mine"));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(oops(&ctx.cause().unwrap()), Some("mine"));
}

// API S8
#[test]
fn first_cause_wins_on_repeated_cancels() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel_with_cause(Oops("first"));
    h.cancel_with_cause(Oops("second"));
    h.cancel();
    assert_eq!(oops(&ctx.cause().unwrap()), Some("first"));

    let (ctx, h) = Context::background().with_cancel();
    h.cancel();
    h.cancel_with_cause(Oops("late"));
    assert_eq!(sentinel(&ctx.cause().unwrap()), Some(Error::Canceled));
}

// API S8
#[test]
fn descendants_take_ancestor_cause_unless_already_done() {
    let (root, h) = Context::background().with_cancel();
    let (early, he) = root.with_cancel();
    let (early_kid, _k) = early.with_cancel();
    let (late, _hl) = root.with_cancel();
    let (late_kid, _lk) = late.with_timeout_cause(HOUR, Oops("own deadline"));
    he.cancel_with_cause(Oops("early"));
    h.cancel_with_cause(Oops("root"));
    assert_eq!(oops(&early.cause().unwrap()), Some("early"));
    assert_eq!(oops(&early_kid.cause().unwrap()), Some("early"));
    assert_eq!(oops(&root.cause().unwrap()), Some("root"));
    assert_eq!(oops(&late.cause().unwrap()), Some("root"));
    assert_eq!(late_kid.err(), Some(Error::Canceled));
    assert_eq!(oops(&late_kid.cause().unwrap()), Some("root"));
}

// API S8
#[test]
fn cancel_with_cause_after_deadline_changes_nothing() {
    let (ctx, h) = Context::background().with_timeout(Duration::ZERO);
    h.cancel_with_cause(Oops("late"));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(
        sentinel(&ctx.cause().unwrap()),
        Some(Error::DeadlineExceeded)
    );
}

// API S9
#[test]
fn without_cancel_cause_is_none() {
    let (parent, h) = Context::background().with_cancel();
    let detached = parent.without_cancel();
    assert!(detached.cause().is_none());
    h.cancel_with_cause(Oops("x"));
    assert!(detached.cause().is_none());
    assert!(parent.without_cancel().cause().is_none());
}

// API S9
#[test]
fn sentinel_given_as_cause_stays_an_error() {
    let (ctx, h) = Context::background().with_cancel();
    h.cancel_with_cause(Error::DeadlineExceeded);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let cause = ctx.cause().unwrap();
    assert!(cause.is::<Error>());
    assert_eq!(sentinel(&cause), Some(Error::DeadlineExceeded));
}
