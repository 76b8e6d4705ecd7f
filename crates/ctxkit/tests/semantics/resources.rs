//! API S22: a context, and everything it holds, is freed once nothing can use or cancel it
//! any more; `CancelGuard`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use ctxkit::{CancelHandle, Context, Error, ManualClock};

use crate::common::{drop_flag, HOUR, PAYLOAD};

// API S22
#[test]
fn dropping_a_child_without_cancel_frees_it_and_the_parent_lets_go() {
    let (parent, hp) = Context::background().with_cancel();
    // Cancellable, deadline (real and manual), merge and value-then-cancel children.
    let clock = ManualClock::new();
    type Maker = Box<dyn Fn(&Context) -> (Context, CancelHandle)>;
    let makers: Vec<Maker> = vec![
        Box::new(|p| p.with_cancel()),
        Box::new(|p| p.with_timeout(HOUR)),
        Box::new(|p| p.with_deadline(Instant::now() + HOUR)),
        Box::new(move |p| p.with_clock(&clock).with_timeout(HOUR)),
        Box::new(|p| p.merge(&Context::todo())),
        Box::new(|p| Context::background().merge(p)),
    ];
    for (i, make) in makers.iter().enumerate() {
        let (flag, dropped) = drop_flag();
        let (child, h) = make(&parent.with_value(&PAYLOAD, flag));
        let (grandchild, hg) = child.with_cancel();
        let clone = grandchild.clone();
        drop((child, h, grandchild, hg));
        assert!(
            !dropped.load(Ordering::SeqCst),
            "#{i}: a clone is still alive"
        );
        drop(clone);
        assert!(dropped.load(Ordering::SeqCst), "#{i}: child kept alive");
    }
    // The parent still works after its children left.
    hp.cancel();
    assert!(parent.is_done());
}

// API S22, S30. A chain whose levels are held only by the level below: dropping the leaf
// frees every level at once (each level the last holder of the one above), and the live
// parent it hangs from lists none of them after. Both kinds of chain: cancellable levels
// alone (each node the only holder of the one above), and values between them (each node
// held by the node and the value layer above it).
#[test]
fn dropping_the_leaf_of_a_chain_frees_every_level_and_its_parent_lets_go() {
    let (root, hr) = Context::background().with_cancel();
    for with_values in [false, true] {
        let (bottom_flag, bottom_dropped) = drop_flag();
        let mut flags = vec![bottom_dropped];
        let mut leaf = root.with_value(&PAYLOAD, bottom_flag);
        for _ in 0..50 {
            if with_values {
                let (flag, dropped) = drop_flag();
                flags.push(dropped);
                leaf = leaf.with_value(&PAYLOAD, flag);
            }
            leaf = leaf.with_cancel().0;
        }
        let entries = ctxkit::inspect::Snapshot::of(&root).entries().len();
        assert_eq!(entries, 51, "with values: {with_values}");
        assert!(
            flags.iter().all(|f| !f.load(Ordering::SeqCst)),
            "held by the leaf"
        );
        drop(leaf);
        assert!(
            flags.iter().all(|f| f.load(Ordering::SeqCst)),
            "every level freed"
        );
        assert_eq!(ctxkit::inspect::Snapshot::of(&root).entries().len(), 1);
    }
    // The root still takes children and cancels them.
    let (child, _hc) = root.with_cancel();
    hr.cancel();
    assert!(child.is_done());
}

// API S22, S19: a root whose handles and contexts are dropped before its last child is
// freed with that child, the values above it with it, and a callback still pending on it
// dropped unrun (no cancellable ancestor is left to fire it).
#[test]
fn a_root_dropped_before_its_last_child_is_freed_with_it() {
    for (values, cancelled) in [(false, false), (true, false), (false, true), (true, true)] {
        let (value_flag, value_dropped) = drop_flag();
        let top = if values {
            Context::background().with_value(&PAYLOAD, value_flag)
        } else {
            drop(value_flag);
            Context::background()
        };
        let (root, handle) = top.with_cancel();
        drop(top);
        let (callback_flag, callback_dropped) = drop_flag();
        let ran = Arc::new(AtomicBool::new(false));
        let ran_in = Arc::clone(&ran);
        let registration = root.on_cancel(move || {
            let _keep = callback_flag;
            ran_in.store(true, Ordering::SeqCst);
        });
        let (leaf_flag, leaf_values_dropped) = drop_flag();
        let leaf = root.with_value(&PAYLOAD, leaf_flag).with_cancel().0;
        if cancelled {
            handle.cancel();
        }
        drop((root, handle));
        assert!(
            !leaf_values_dropped.load(Ordering::SeqCst),
            "held by the leaf"
        );
        assert!(leaf.value(&PAYLOAD).is_some());
        drop(leaf);
        assert!(
            leaf_values_dropped.load(Ordering::SeqCst),
            "the leaf's values freed"
        );
        assert!(
            value_dropped.load(Ordering::SeqCst),
            "the root's values freed"
        );
        assert_eq!(
            ran.load(Ordering::SeqCst),
            cancelled,
            "run only by the cancel"
        );
        drop(registration);
        assert!(
            callback_dropped.load(Ordering::SeqCst),
            "the callback freed"
        );
    }
}

// API S22
#[test]
fn dropping_a_cancelled_child_frees_it() {
    let (parent, _hp) = Context::background().with_timeout(HOUR);
    let (flag, dropped) = drop_flag();
    let (child, h) = parent.with_value(&PAYLOAD, flag).with_cancel();
    h.cancel();
    drop((child, h));
    assert!(dropped.load(Ordering::SeqCst));
}

// API S22
#[test]
fn many_children_created_and_dropped_under_a_long_lived_parent_are_all_freed() {
    let (parent, hp) = Context::background().with_timeout(HOUR);
    let flags: Vec<_> = (0..2000)
        .map(|i| {
            let (flag, dropped) = drop_flag();
            let (c, h) = if i % 2 == 0 {
                parent.with_value(&PAYLOAD, flag).with_cancel()
            } else {
                parent.with_value(&PAYLOAD, flag).with_timeout(HOUR)
            };
            drop((c, h));
            dropped
        })
        .collect();
    assert!(flags.iter().all(|f| f.load(Ordering::SeqCst)));
    hp.cancel();
}

// API S22
#[test]
fn stopped_after_func_does_not_keep_a_dropped_timeout_context_alive() {
    for inline in [false, true] {
        let (flag, dropped) = drop_flag();
        let (ctx, h) = Context::background()
            .with_value(&PAYLOAD, flag)
            .with_timeout(HOUR);
        let reg = if inline {
            ctx.on_cancel(|| {})
        } else {
            ctx.after_func(|| {})
        };
        assert!(reg.stop());
        drop((reg, ctx, h));
        assert!(
            dropped.load(Ordering::SeqCst),
            "inline={inline}: context kept alive until its deadline after its only callback was stopped"
        );
    }
}

// API S22
#[test]
fn cancel_guard_cancels_when_dropped_and_disarm_gives_the_handle_back() {
    let (ctx, h) = Context::background().with_cancel();
    {
        let _g = h.drop_guard();
        assert!(!ctx.is_done());
    }
    assert_eq!(ctx.err(), Some(Error::Canceled));

    let (ctx, h) = Context::background().with_timeout(HOUR);
    let guard = h.drop_guard();
    let h = guard.disarm();
    assert!(!ctx.is_done());
    h.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));

    // A guard moved to another thread cancels there.
    let (ctx, h) = Context::background().with_cancel();
    let g = h.drop_guard();
    thread::spawn(move || drop(g)).join().unwrap();
    assert!(ctx.is_done());

    // A guard dropped during a panic still cancels.
    let (ctx, h) = Context::background().with_cancel();
    let g = h.drop_guard();
    let _ = catch_unwind(AssertUnwindSafe(move || {
        let _g = g;
        panic!("deliberate panic with a guard alive");
    }));
    assert!(ctx.is_done());
}

// ---------------------------------------------------------------------------------------
// Leaks found by tests/stress.rs, reduced (API S19, S22)
// ---------------------------------------------------------------------------------------

// API S19, S22
/// A callback of a dropped child is handed to its parent; once that callback is stopped,
/// nothing is pending on the parent any more, and dropping the parent's last clone and
/// handle must free it (as `stopped_after_func_does_not_keep_a_dropped_timeout_context_alive`
/// above checks for a callback registered on the parent itself).
#[test]
fn stopped_handed_down_callback_does_not_keep_a_timeout_parent_alive() {
    for inline in [false, true] {
        let (flag, freed) = drop_flag();
        let (parent, hp) = Context::background()
            .with_value(&PAYLOAD, flag)
            .with_timeout(HOUR);
        let (child, hc) = parent.with_cancel();
        let reg = if inline {
            child.on_cancel(|| {})
        } else {
            child.after_func(|| {})
        };
        drop((child, hc)); // the registration moves to the parent (S19)
        assert!(reg.stop());
        drop((parent, hp));
        assert!(
            freed.load(Ordering::SeqCst),
            "inline={inline}: the parent stays alive until its deadline (an hour) though nothing is pending on it"
        );
    }
}

// API S19, S22
/// A merge's callback is handed down to both parents when the merge is dropped; it fires
/// through the first parent's cancel. Nothing is pending on the second parent (a deadline)
/// any more, so dropping its last clone and handle must free it. Found by tests/stress.rs
/// (`tree_stress_with_hour_long_deadlines`), reduced.
#[test]
fn fired_handed_down_callback_does_not_keep_the_other_parent_alive() {
    for inline in [false, true] {
        let (flag, freed) = drop_flag();
        let (r, hr) = Context::background().with_cancel();
        let (d, hd) = Context::background()
            .with_value(&PAYLOAD, flag)
            .with_timeout(HOUR);
        let (m, hm) = r.merge(&d);
        let reg = if inline {
            m.on_cancel(|| {})
        } else {
            m.after_func(|| {})
        };
        drop((m, hm)); // handed down to r and to d (S19)
        hr.cancel(); // runs it (an after_func has started when cancel returns)
        assert!(!reg.stop(), "it ran");
        drop((d, hd, r));
        assert!(
            freed.load(Ordering::SeqCst),
            "inline={inline}: the deadline parent stays alive until its deadline (an hour)"
        );
    }
}
