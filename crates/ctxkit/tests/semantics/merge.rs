//! API S24: `merge`: done when either parent is, err and cause of whichever finished
//! first, the earlier deadline, values looked up in `a` then `b`.

use std::time::{Duration, Instant};

use ctxkit::{Context, Error, ManualClock};

use crate::common::{oops, Oops, Tenant, REQUEST, USER};

// API S24
#[test]
fn merge_is_done_when_either_parent_or_its_own_handle_is() {
    for which in 0..3 {
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = Context::background().with_cancel();
        let (m, hm) = a.merge(&b);
        assert!(!m.is_done());
        match which {
            0 => ha.cancel_with_cause(Oops("a")),
            1 => hb.cancel_with_cause(Oops("b")),
            _ => hm.cancel_with_cause(Oops("m")),
        }
        assert_eq!(m.err(), Some(Error::Canceled));
        assert_eq!(
            oops(&m.cause().unwrap()),
            Some(["a", "b", "m"][which]),
            "case {which}"
        );
        if which == 2 {
            assert!(!a.is_done() && !b.is_done(), "own handle reaches no parent");
        }
    }
}

// API S24
#[test]
fn merge_takes_err_and_cause_from_whichever_finished_first() {
    let clock = ManualClock::new();
    let (a, ha) = Context::background().with_clock(&clock).with_cancel();
    let (b, _hb) = Context::background()
        .with_clock(&clock)
        .with_timeout_cause(Duration::from_secs(1), Oops("b slow"));
    let (m, _hm) = a.merge(&b);
    clock.advance(Duration::from_secs(1));
    ha.cancel_with_cause(Oops("a"));
    assert_eq!(m.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&m.cause().unwrap()), Some("b slow"));
}

// API S24
#[test]
fn merge_of_two_done_contexts_takes_a() {
    let (a, ha) = Context::background().with_timeout_cause(Duration::ZERO, Oops("a"));
    let (b, hb) = Context::background().with_cancel();
    hb.cancel_with_cause(Oops("b"));
    let (m, _hm) = a.merge(&b);
    assert_eq!(m.err(), Some(Error::DeadlineExceeded));
    assert_eq!(oops(&m.cause().unwrap()), Some("a"));
    let (m2, _h2) = b.merge(&a);
    assert_eq!(m2.err(), Some(Error::Canceled));
    assert_eq!(oops(&m2.cause().unwrap()), Some("b"));
    drop(ha);
    // Only b done: b's.
    let (a, _ha) = Context::background().with_cancel();
    let (m3, _h3) = a.merge(&b);
    assert_eq!(oops(&m3.cause().unwrap()), Some("b"));
}

// API S24, S10
#[test]
fn merge_deadline_is_the_earlier_of_the_two() {
    let now = Instant::now();
    let (a, _ha) = Context::background().with_deadline(now + Duration::from_secs(200));
    let (b, _hb) = Context::background().with_deadline(now + Duration::from_secs(100));
    assert_eq!(a.merge(&b).0.deadline(), b.deadline());
    assert_eq!(b.merge(&a).0.deadline(), b.deadline());
    let (c, _hc) = Context::background().with_cancel();
    assert_eq!(c.merge(&a).0.deadline(), a.deadline());
    assert_eq!(c.merge(&Context::background()).0.deadline(), None);
}

// API S24
#[test]
fn merge_fires_when_the_second_parents_deadline_passes() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (a, _ha) = root.with_cancel();
    let (b, _hb) = root.with_timeout(Duration::from_secs(5));
    let (m, _hm) = a.merge(&b);
    assert_eq!(m.remaining(), Some(Duration::from_secs(5)));
    clock.advance(Duration::from_secs(5));
    assert_eq!(m.err(), Some(Error::DeadlineExceeded));
    assert!(!a.is_done());
}

// API S24
#[test]
fn merge_values_are_looked_up_in_a_then_b() {
    let a = Context::background().with_value(&USER, "a").with(Tenant(1));
    let b = Context::background()
        .with_value(&USER, "b")
        .with_value(&REQUEST, 7)
        .with(5u8);
    let (m, _h) = a.merge(&b);
    assert_eq!(m.value(&USER), Some(&"a"));
    assert_eq!(m.value(&REQUEST), Some(&7));
    assert_eq!(m.get::<Tenant>(), Some(&Tenant(1)));
    assert_eq!(m.get::<u8>(), Some(&5));
    let (m, _h) = Context::background().merge(&b);
    assert_eq!(m.value(&USER), Some(&"b"));
    let (m, _h) = a.merge(&Context::background());
    assert_eq!(m.value(&USER), Some(&"a"));
    assert_eq!(m.value(&REQUEST), None);
}

// API S24
#[test]
fn merge_with_itself_or_its_own_descendant_follows_its_parent_and_its_own_handle() {
    let (a, ha) = Context::background().with_cancel();
    let (m, hm) = a.merge(&a);
    let (c, _hc) = a.with_cancel();
    let (m2, _h2) = a.merge(&c);
    assert!(!m.is_done());
    drop((m, hm));
    ha.cancel();
    assert!(m2.is_done());
    let (a, _ha) = Context::background().with_cancel();
    let (m, hm) = a.merge(&a);
    hm.cancel();
    assert!(m.is_done() && !a.is_done());
}
