//! API S10–S14: deadlines: the earliest one inherited (S10), firing by themselves and never
//! early (S11), a later deadline under an earlier one (S12), zero and past deadlines (S13),
//! and a deadline's own handle (S14). `Duration::MAX` and instants at the ends of their range
//! are in `tests/faults.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{Context, Error, ManualClock};

use crate::common::{drop_flag, eventually, oops, sentinel, Oops, HOUR, LONG, PAYLOAD, USER};

// API S10
#[test]
fn deadline_is_the_earliest_of_the_context_and_its_ancestors() {
    let now = Instant::now();
    let early = now + Duration::from_secs(100);
    let late = now + Duration::from_secs(200);
    let (p, _hp) = Context::background().with_deadline(early);
    assert_eq!(p.deadline(), Some(early));
    let (c, _hc) = p.with_deadline(late);
    assert_eq!(c.deadline(), Some(early));
    let v = c.with_value(&USER, "v");
    assert_eq!(v.deadline(), Some(early));
    let (c2, _h2) = v.with_cancel();
    assert_eq!(c2.deadline(), Some(early));
    let earlier = now + Duration::from_secs(50);
    let (c3, _h3) = c2.with_deadline(earlier);
    assert_eq!(c3.deadline(), Some(earlier));
    assert_eq!(
        c2.deadline(),
        Some(early),
        "a child does not change its parent"
    );
}

// API S10, S16
#[test]
fn without_cancel_has_no_deadline_and_resets_inheritance() {
    let (p, _hp) = Context::background().with_timeout(Duration::from_secs(100));
    let detached = p.without_cancel();
    assert_eq!(detached.deadline(), None);
    assert_eq!(detached.remaining(), None);
    let (c, _hc) = detached.with_cancel();
    assert_eq!(c.deadline(), None);
    let at = Instant::now() + Duration::from_secs(500);
    let (t, _ht) = detached.with_deadline(at);
    assert_eq!(t.deadline(), Some(at));
}

// API S10
#[test]
fn with_timeout_deadline_is_now_plus_timeout() {
    let d = Duration::from_secs(100);
    let before = Instant::now();
    let (ctx, _h) = Context::background().with_timeout(d);
    let after = Instant::now();
    let dl = ctx.deadline().unwrap();
    assert!(dl >= before + d && dl <= after + d);
    let rem = ctx.remaining().unwrap();
    assert!(rem <= d && rem > d - Duration::from_secs(30));
}

// API S10, S25
#[test]
fn remaining_is_deadline_minus_now_saturating_at_zero() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (ctx, _h) = root.with_timeout(Duration::from_secs(30));
    assert_eq!(ctx.remaining(), Some(Duration::from_secs(30)));
    clock.advance(Duration::from_secs(10));
    assert_eq!(ctx.remaining(), Some(Duration::from_secs(20)));
    clock.advance(Duration::from_secs(100));
    assert_eq!(ctx.remaining(), Some(Duration::ZERO));

    // Real clock: a past deadline under a parent cancelled first still saturates.
    let (p, hp) = Context::background().with_cancel();
    hp.cancel();
    let past = Instant::now().checked_sub(Duration::from_secs(5)).unwrap();
    let (c, _hc) = p.with_deadline(past);
    assert_eq!(c.remaining(), Some(Duration::ZERO));
}

// API S11
#[test]
fn deadline_fires_by_itself_and_never_early() {
    let mut ctxs = Vec::new();
    for i in 0..40u64 {
        let (ctx, h) = Context::background().with_timeout(Duration::from_millis(1 + i % 20));
        let fired_at = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&fired_at);
        let reg = ctx.on_cancel(move || *slot.lock().unwrap() = Some(Instant::now()));
        ctxs.push((ctx, h, fired_at, reg));
    }
    // Nobody polls the contexts: only the timer can cancel them.
    for (ctx, _h, fired_at, _reg) in &ctxs {
        assert!(eventually(|| fired_at.lock().unwrap().is_some()), "{ctx}");
        let at = fired_at.lock().unwrap().unwrap();
        assert!(at >= ctx.deadline().unwrap(), "fired before its deadline");
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    }
}

// API S11
#[test]
fn an_earlier_deadline_wakes_a_timer_waiting_for_a_later_one() {
    let (_late, _hl) = Context::background().with_timeout(HOUR);
    thread::sleep(Duration::from_millis(5)); // the timer now sleeps towards the late one
    let (early, _he) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(early.wait_timeout(LONG), Some(Error::DeadlineExceeded));
    assert!(Instant::now() >= early.deadline().unwrap());
}

// API S11
#[test]
fn deadline_is_observed_done_no_earlier_than_the_deadline() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(30));
    let dl = ctx.deadline().unwrap();
    loop {
        let done = ctx.is_done();
        let now = Instant::now();
        if done {
            assert!(now >= dl);
            break;
        }
        assert!(now < dl + LONG, "deadline did not fire");
        thread::yield_now();
    }
    assert_eq!(ctx.wait(), Error::DeadlineExceeded);
}

// API S12
#[test]
fn later_deadline_under_earlier_parent_makes_a_plain_cancellable_child() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (parent, _hp) = root.with_timeout(Duration::from_secs(10));
    let (child, hc) = parent.with_deadline_cause(clock.now() + HOUR, Oops("unused"));
    assert_eq!(child.deadline(), parent.deadline());
    let s = child.to_string();
    assert!(s.ends_with(".WithCancel"), "{s}");
    let (child2, _h2) = parent.with_timeout_cause(HOUR, Oops("unused"));
    assert_eq!(child2.deadline(), parent.deadline());
    clock.advance(Duration::from_secs(10));
    for c in [&child, &child2] {
        assert_eq!(c.err(), Some(Error::DeadlineExceeded));
        assert_eq!(sentinel(&c.cause().unwrap()), Some(Error::DeadlineExceeded));
    }
    drop(hc);
    // Its handle still cancels it (and only it).
    let (parent, _hp) = root.with_timeout(Duration::from_secs(10));
    let (child, hc) = parent.with_timeout(HOUR);
    hc.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert!(!parent.is_done());
}

// API S13
#[test]
fn zero_timeout_is_done_at_creation() {
    let (ctx, _h) = Context::background().with_timeout(Duration::ZERO);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(
        sentinel(&ctx.cause().unwrap()),
        Some(Error::DeadlineExceeded)
    );
    let (ctx, _h) = Context::background().with_timeout_cause(Duration::ZERO, Oops("z"));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&ctx.cause().unwrap()), Some("z"));
    let clock = ManualClock::new();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::ZERO);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

// API S13
#[test]
fn past_deadline_is_done_at_creation() {
    let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
    let (ctx, _h) = Context::background().with_deadline(past);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    let (ctx, _h) = Context::background().with_deadline_cause(past, Oops("past"));
    assert_eq!(oops(&ctx.cause().unwrap()), Some("past"));
    let (ctx, _h) = Context::background().with_deadline(Instant::now());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    // As far in the past as the platform allows.
    let mut far = Instant::now();
    for secs in [1u64 << 40, 1 << 30, 1 << 20, 1 << 10, 1] {
        while let Some(t) = far.checked_sub(Duration::from_secs(secs)) {
            far = t;
        }
    }
    let (ctx, _h) = Context::background().with_deadline(far);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    let clock = ManualClock::new();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_deadline(clock.now() - Duration::from_millis(1));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

// API S14
#[test]
fn deadline_handle_cancels_with_canceled_and_stops_its_timer() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (ctx, h) = root.with_timeout(Duration::from_secs(1));
    let fired = Arc::new(AtomicUsize::new(0));
    let f2 = Arc::clone(&fired);
    let _r = ctx.on_cancel(move || {
        f2.fetch_add(1, Ordering::SeqCst);
    });
    h.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    clock.advance(Duration::from_secs(5));
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(fired.load(Ordering::SeqCst), 1);

    let (parent, _hp) = Context::background().with_cancel();
    let (flag, dropped) = drop_flag();
    let (child, hc) = parent.with_value(&PAYLOAD, flag).with_timeout(HOUR);
    hc.cancel();
    drop((child, hc));
    assert!(
        dropped.load(Ordering::SeqCst),
        "a cancelled deadline child is released"
    );
}
