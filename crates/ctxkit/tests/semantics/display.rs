//! API S2: a context displays as the chain of derivations that made it, as Go's `String()`
//! does.

use std::time::Duration;

use ctxkit::{Context, ManualClock};

use crate::common::{Tenant, HOUR, REQUEST, USER};

// API S2
#[test]
fn roots_display_as_go_does() {
    assert_eq!(Context::background().to_string(), "context.Background");
    assert_eq!(Context::todo().to_string(), "context.TODO");
}

// API S2
#[test]
fn display_is_the_chain_of_derivations() {
    let bg = Context::background();
    let (c, _h) = bg.with_cancel();
    assert_eq!(c.to_string(), "context.Background.WithCancel");
    let (t, _ht) = Context::todo().with_cancel();
    assert_eq!(t.to_string(), "context.TODO.WithCancel");

    let v = c.with_value(&USER, "gopher");
    let s = v.to_string();
    assert!(
        s.starts_with("context.Background.WithCancel.WithValue(user, "),
        "{s}"
    );
    assert!(s.ends_with(')'), "{s}");

    let w = v.without_cancel();
    let s = w.to_string();
    assert!(
        s.starts_with("context.Background.WithCancel.WithValue(user"),
        "{s}"
    );
    assert!(s.ends_with(").WithoutCancel"), "{s}");

    let (c2, _h2) = w.with_cancel();
    assert!(
        c2.to_string().ends_with(".WithoutCancel.WithCancel"),
        "{c2}"
    );

    // A node derived from a value context prints after the value.
    let (vc, _hv) = bg.with_value(&REQUEST, 7).with_cancel();
    let s = vc.to_string();
    assert!(
        s.starts_with("context.Background.WithValue(request, "),
        "{s}"
    );
    assert!(s.ends_with(").WithCancel"), "{s}");
}

// API S2
#[test]
fn with_displays_the_type_name() {
    let ctx = Context::background().with(Tenant(3));
    let s = ctx.to_string();
    assert!(s.starts_with("context.Background.WithValue("), "{s}");
    assert!(s.contains("Tenant"), "{s}");
}

// API S2
#[test]
fn values_display_their_key_and_type_without_module_paths() {
    let keyed = Context::background().with_value(&USER, "gopher");
    assert_eq!(
        keyed.to_string(),
        "context.Background.WithValue(user, &str)"
    );
    let typed = Context::background().with(Tenant(3));
    assert_eq!(typed.to_string(), "context.Background.WithValue(Tenant)");
    let nested = Context::background().with(vec![Some(Tenant(1))]);
    assert_eq!(
        nested.to_string(),
        "context.Background.WithValue(Vec<Option<Tenant>>)"
    );
}

// API S2
#[test]
fn a_manual_clock_displays_the_exact_time_left_and_past_deadlines_as_negative() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (ctx, _h) = root.with_timeout(Duration::from_secs(5));
    assert_eq!(
        ctx.to_string(),
        "context.Background.WithClock.WithDeadline([5s])"
    );
    clock.advance(Duration::from_millis(7500));
    assert_eq!(
        ctx.to_string(),
        "context.Background.WithClock.WithDeadline([-2.5s])"
    );
}

// API S2
#[test]
fn deadline_display_contains_the_time_left() {
    let clock = ManualClock::new();
    let root = Context::background().with_clock(&clock);
    let (ctx, _h) = root.with_timeout(Duration::from_secs(90));
    let s = ctx.to_string();
    assert!(s.starts_with("context.Background"), "{s}");
    assert!(s.contains(".WithDeadline("), "{s}");
    assert!(s.contains("90s"), "{s}");
    clock.advance(Duration::from_secs(30));
    let s = ctx.to_string();
    assert!(s.contains("60s"), "{s}");

    // Real time too: the text mentions some time left below one hour.
    let (real, _hr) = Context::background().with_timeout(HOUR);
    let s = real.to_string();
    assert!(s.starts_with("context.Background.WithDeadline("), "{s}");
    assert!(s.ends_with(')'), "{s}");
}

// API S2
#[test]
fn merge_display_contains_both_chains() {
    let (a, _ha) = Context::background().with_cancel();
    let (b, _hb) = Context::todo().with_cancel();
    let (m, _hm) = a.merge(&b);
    let s = m.to_string();
    assert!(s.starts_with("context.Background.WithCancel.Merge("), "{s}");
    assert!(s.contains("context.TODO.WithCancel"), "{s}");
    assert!(s.ends_with(')'), "{s}");
}

// API S2
#[test]
fn deep_chain_displays_every_link() {
    let mut ctx = Context::background();
    let mut handles = Vec::new();
    for _ in 0..1000 {
        let (c, h) = ctx.with_cancel();
        ctx = c;
        handles.push(h);
    }
    let s = ctx.to_string();
    assert_eq!(s.matches(".WithCancel").count(), 1000);
    assert!(s.starts_with("context.Background.WithCancel"));
}
