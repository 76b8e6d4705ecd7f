//! API S15–S16: request-scoped values by key and by type (S15), and `without_cancel` (S16).

use std::time::Duration;

use ctxkit::{Context, Key, ManualClock};

use crate::common::{poll_once, Tenant, HOUR, REQUEST, USER};

// Two keys with the same name and type: still two different keys (S15).
static ID_A: Key<u32> = Key::new("id");
static ID_B: Key<u32> = Key::new("id");

// API S15
#[test]
fn value_finds_the_nearest_with_value_above() {
    let bg = Context::background();
    assert_eq!(bg.value(&USER), None);
    let a = bg.with_value(&USER, "a");
    let b = a.with_value(&REQUEST, 1);
    let c = b.with_value(&USER, "c");
    assert_eq!(a.value(&USER), Some(&"a"));
    assert_eq!(b.value(&USER), Some(&"a"));
    assert_eq!(c.value(&USER), Some(&"c"));
    assert_eq!(c.value(&REQUEST), Some(&1));
    assert_eq!(a.value(&REQUEST), None);
}

// API S15
#[test]
fn two_keys_with_the_same_name_are_different_keys() {
    assert_eq!(ID_A.name(), ID_B.name());
    let ctx = Context::background().with_value(&ID_A, 1);
    assert_eq!(ctx.value(&ID_A), Some(&1));
    assert_eq!(ctx.value(&ID_B), None);
    let ctx = ctx.with_value(&ID_B, 2);
    assert_eq!(ctx.value(&ID_A), Some(&1));
    assert_eq!(ctx.value(&ID_B), Some(&2));
}

// API S15
#[test]
fn get_finds_the_nearest_with_of_that_type() {
    let ctx = Context::background()
        .with(Tenant(1))
        .with(5u8)
        .with(Tenant(2));
    assert_eq!(ctx.get::<Tenant>(), Some(&Tenant(2)));
    assert_eq!(ctx.get::<u8>(), Some(&5));
    assert_eq!(ctx.get::<u16>(), None);
    assert_eq!(Context::background().get::<Tenant>(), None);
}

// API S15
#[test]
fn key_and_type_namespaces_are_separate() {
    let ctx = Context::background().with_value(&REQUEST, 1);
    assert_eq!(ctx.get::<u64>(), None);
    let ctx = Context::background().with(2u64);
    assert_eq!(ctx.value(&REQUEST), None);
    let both = Context::background().with_value(&REQUEST, 1).with(2u64);
    assert_eq!(both.value(&REQUEST), Some(&1));
    assert_eq!(both.get::<u64>(), Some(&2));
}

// API S15, S16
#[test]
fn values_stay_readable_after_cancel_and_through_every_derivation() {
    let clock = ManualClock::new();
    let base = Context::background().with_value(&USER, "u").with(Tenant(9));
    let (c, h) = base.with_cancel();
    let (t, _ht) = c.with_timeout(HOUR);
    let (m, _hm) = t.merge(&Context::background());
    let k = m.with_clock(&clock);
    let w = k.without_cancel();
    let (after_w, _ha) = w.with_cancel();
    h.cancel();
    for ctx in [&c, &t, &m, &k, &w, &after_w] {
        assert_eq!(ctx.value(&USER), Some(&"u"), "{ctx}");
        assert_eq!(ctx.get::<Tenant>(), Some(&Tenant(9)), "{ctx}");
    }
    assert!(c.is_done() && m.is_done() && k.is_done());
    assert!(!w.is_done() && !after_w.is_done());
}

// API S15
#[test]
fn values_with_many_keys_shadow_independently() {
    static K: [Key<usize>; 8] = [
        Key::new("k0"),
        Key::new("k1"),
        Key::new("k2"),
        Key::new("k3"),
        Key::new("k4"),
        Key::new("k5"),
        Key::new("k6"),
        Key::new("k7"),
    ];
    let mut model = [None; 8];
    let mut ctx = Context::background();
    let mut seed = 12345u64;
    for step in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = (seed % 8) as usize;
        ctx = ctx.with_value(&K[i], step);
        model[i] = Some(step);
        if step % 3 == 0 {
            ctx = ctx.with_cancel().0;
        }
        for j in 0..8 {
            assert_eq!(ctx.value(&K[j]).copied(), model[j]);
        }
    }
}

// API S16
#[test]
fn without_cancel_keeps_values_but_is_never_done() {
    let (parent, h) = Context::background()
        .with_value(&USER, "kept")
        .with_timeout(Duration::from_millis(5));
    let detached = parent.without_cancel();
    h.cancel();
    assert!(parent.is_done());
    assert_eq!(detached.err(), None);
    assert!(!detached.is_done());
    assert_eq!(detached.deadline(), None);
    assert_eq!(detached.value(&USER), Some(&"kept"));
    assert!(poll_once(&mut detached.done()).is_pending());
    assert_eq!(detached.wait_timeout(Duration::from_millis(20)), None);
}
