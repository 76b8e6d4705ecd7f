//! S28: names, inherited like values, shown by Display.

use std::time::Duration;

use ctxkit::{Context, ManualClock};

use crate::common::{HOUR, USER};

// API S28
#[test]
fn roots_have_no_name() {
    assert_eq!(Context::background().name(), None);
    assert_eq!(Context::todo().name(), None);
    let (ctx, _h) = Context::background().with_cancel();
    assert_eq!(ctx.name(), None);
}

// API S28
#[test]
fn the_nearest_name_wins_and_is_inherited_by_every_derivation() {
    let (root, cancel) = Context::background().with_cancel();
    let server = root.with_name("server");
    let request = server.with_value(&USER, "gopher").with_name("GET /orders");
    let (call, _h) = request.with_timeout(HOUR);
    let detached = call.without_cancel();
    let clock = ManualClock::new();
    let (timed, _t) = detached
        .with_clock(&clock)
        .with_timeout(Duration::from_secs(1));
    for ctx in [&request, &call, &detached, &timed] {
        assert_eq!(ctx.name(), Some("GET /orders"));
    }
    assert_eq!(server.name(), Some("server"));
    assert_eq!(
        call.value(&USER),
        Some(&"gopher"),
        "values pass through a name"
    );
    // A name shares its parent's cancellation.
    cancel.cancel();
    assert!(server.is_done() && request.is_done() && call.is_done());
    assert!(!detached.is_done());
    assert_eq!(
        request.name(),
        Some("GET /orders"),
        "names stay after cancellation"
    );
}

// API S28, S24
#[test]
fn a_merge_takes_the_name_of_its_first_context_then_its_second() {
    let a = Context::background().with_name("a");
    let b = Context::background().with_name("b");
    assert_eq!(a.merge(&b).0.name(), Some("a"));
    assert_eq!(Context::background().merge(&b).0.name(), Some("b"));
}

// API S28, S2
#[test]
fn display_shows_names_escaped_on_one_line() {
    let (ctx, _h) = Context::background().with_cancel();
    let named = ctx.with_name("GET /orders");
    assert_eq!(
        named.to_string(),
        r#"context.Background.WithCancel.WithName("GET /orders")"#
    );
    let odd = Context::background().with_name("a \"quoted\"\nname <script>");
    assert_eq!(
        odd.to_string(),
        r#"context.Background.WithName("a \"quoted\"\nname <script>")"#
    );
}

// API S28
#[test]
fn names_of_any_length_and_characters() {
    let long: String = "ünïcødé ✓ ".repeat(100_000);
    let ctx = Context::background().with_name(long.clone());
    assert_eq!(ctx.name(), Some(long.as_str()));
    let empty = ctx.with_name("");
    assert_eq!(empty.name(), Some(""));
}

// API S28, S23
#[test]
fn a_long_chain_of_names_and_values_finds_each() {
    // Names copy no table; past the bound of hops a layer copies one again.
    let mut ctx = Context::background().with_value(&USER, "root");
    for i in 0..1_000 {
        ctx = ctx.with_name(format!("level {i}"));
    }
    assert_eq!(ctx.name(), Some("level 999"));
    assert_eq!(ctx.value(&USER), Some(&"root"));
}

/// `named_child(n)` is `with_name(n).with_cancel()` with the handle dropped: named, listed
/// under its parent in a snapshot, displayed the same way, done with its parent only, with
/// the parent's origin, values and deadline, and gone from the tree once dropped.
// API S28, S30
#[test]
fn a_named_child_is_a_named_cancel_child_without_a_handle() {
    use ctxkit::inspect::Snapshot;
    let (root, cancel) = Context::background().with_cancel();
    let request = root.with_value(&USER, "gopher");
    let (timed, _t) = request.with_timeout(HOUR);
    assert_eq!(
        request.named_child("GET /").to_string(),
        request.with_name("GET /").with_cancel().0.to_string()
    );
    let call = timed.named_child(String::from("GET /orders/7"));
    let same = timed.with_name("GET /orders/7").with_cancel().0;
    assert_eq!(call.name(), Some("GET /orders/7"));
    assert_eq!(call.value(&USER), Some(&"gopher"));
    assert_eq!(call.deadline(), timed.deadline());
    let snapshot = Snapshot::of(&timed);
    let names: Vec<_> = snapshot.entries().iter().map(|e| e.name()).collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == Some("GET /orders/7"))
            .count(),
        2
    );
    drop(same);
    assert_eq!(
        Snapshot::of(&timed).entries().len(),
        2,
        "timed and the call"
    );

    assert!(!call.is_done());
    cancel.cancel();
    assert_eq!(call.err(), Some(ctxkit::Error::Canceled));
    assert_eq!(call.origin(), root.origin());
    drop(call);
    assert_eq!(
        Snapshot::of(&timed).entries().len(),
        1,
        "a dropped child leaves the tree"
    );

    // Under a context that is already done, it is born done.
    let late = timed.named_child("late");
    assert!(late.is_done());
}
