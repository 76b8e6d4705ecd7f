//! API S23: depth and breadth: million-level chains and fans of every kind are built,
//! cancelled, displayed and dropped without recursion (no stack overflow), and callbacks,
//! merges and manual deadlines work the same at that size.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ctxkit::{Context, Error, ManualClock};

use crate::common::{env_or, run_alone_in_child_process, REQUEST};

const MILLION: usize = 1_000_000;

const DEEP_ENV: &str = "CTXKIT_SEMANTICS_DEEP_CHILD";

/// Runs `f` on a new thread with the default stack size (no `stack_size` set).
fn on_default_stack_thread(f: impl FnOnce() + Send + 'static) {
    thread::spawn(f).join().expect("thread failed");
}

/// Runs `f` on a thread with the default stack size (no `stack_size` set). The test runs
/// in a child process (this test binary, filtered to `test_name`), so that a stack overflow,
/// which aborts the process, fails this test alone instead of the whole binary.
fn on_default_stack(test_name: &str, f: fn()) {
    if std::env::var_os(DEEP_ENV).is_some() {
        on_default_stack_thread(f);
        return;
    }
    run_alone_in_child_process(module_path!(), test_name, DEEP_ENV);
}

/// The size of the big trees: `CTXKIT_TEST_SCALE`, 1,000,000 by default.
fn scale() -> usize {
    env_or("CTXKIT_TEST_SCALE", 1_000_000) as usize
}

// ---------------------------------------------------------------------------------------
// A million levels or children: each test alone in a child process
// ---------------------------------------------------------------------------------------

// API S23
#[test]
fn million_level_cancel_chain_is_built_cancelled_and_dropped() {
    on_default_stack(
        "million_level_cancel_chain_is_built_cancelled_and_dropped",
        || {
            let (root, h) = Context::background().with_cancel();
            let mut ctx = root.clone();
            let mut handles = Vec::with_capacity(MILLION);
            for _ in 0..MILLION {
                let (c, hc) = ctx.with_cancel();
                ctx = c;
                handles.push(hc);
            }
            h.cancel();
            assert_eq!(ctx.err(), Some(Error::Canceled));
            drop(handles);
            drop(root);
            drop(ctx); // the last reference to the whole chain
        },
    );
}

// API S23, S22
#[test]
fn million_level_chain_is_dropped_without_cancel() {
    on_default_stack("million_level_chain_is_dropped_without_cancel", || {
        let mut ctx = Context::background();
        for _ in 0..MILLION {
            let (c, _h) = ctx.with_cancel(); // handles dropped at once
            ctx = c;
        }
        drop(ctx);
    });
}

// API S23
#[test]
fn million_level_mixed_chain_is_built_cancelled_and_dropped() {
    on_default_stack(
        "million_level_mixed_chain_is_built_cancelled_and_dropped",
        || {
            let clock = ManualClock::new();
            let (root, h) = Context::background().with_clock(&clock).with_cancel();
            let mut ctx = root.clone();
            let mut handles = Vec::new();
            for i in 0..MILLION {
                ctx = match i % 6 {
                    0 => ctx.with_value(&REQUEST, i as u64),
                    1 => ctx.with(i as u32),
                    2 => {
                        let (c, hc) = ctx.with_timeout(Duration::from_secs(3600 + i as u64));
                        handles.push(hc);
                        c
                    }
                    3 => ctx.merge(&Context::background()).0,
                    4 => ctx.with_cancel().0,
                    _ => {
                        let (c, hc) = ctx.with_cancel();
                        handles.push(hc);
                        c
                    }
                };
            }
            let last = (0..MILLION).rev().find(|i| i % 6 == 0).unwrap() as u64;
            assert_eq!(ctx.value(&REQUEST), Some(&last));
            let detached = ctx.without_cancel();
            h.cancel();
            assert_eq!(ctx.err(), Some(Error::Canceled));
            assert!(!detached.is_done());
            drop(handles);
            drop(root);
            drop(ctx);
            drop(detached);
        },
    );
}

// API S23
#[test]
fn million_level_value_and_without_cancel_chains_are_dropped() {
    on_default_stack(
        "million_level_value_and_without_cancel_chains_are_dropped",
        || {
            let mut ctx = Context::background();
            for i in 0..MILLION {
                ctx = ctx.with_value(&REQUEST, i as u64);
            }
            assert_eq!(ctx.value(&REQUEST), Some(&(MILLION as u64 - 1)));
            drop(ctx);
            let mut ctx = Context::background();
            for _ in 0..MILLION {
                ctx = ctx.without_cancel();
            }
            drop(ctx);
        },
    );
}

// API S23, S22: each level's values or name held by the node below alone, as a call's are,
// so that dropping the leaf drops each layer where its node lets go of it.
#[test]
fn million_level_chain_of_nodes_holding_the_only_reference_to_their_values_is_dropped() {
    on_default_stack(
        "million_level_chain_of_nodes_holding_the_only_reference_to_their_values_is_dropped",
        || {
            let (root, h) = Context::background().with_cancel();
            let mut ctx = root.clone();
            for i in 0..MILLION {
                ctx = match i % 3 {
                    0 => ctx.with_value(&REQUEST, i as u64).with_cancel().0,
                    1 => ctx.named_child("call"),
                    _ => ctx.with_name("step").without_cancel(),
                };
            }
            assert_eq!(ctx.name(), Some("step"));
            assert_eq!(
                ctx.value(&REQUEST),
                Some(&(MILLION as u64 - 1 - (MILLION as u64 - 1) % 3))
            );
            drop(ctx);
            h.cancel();
            assert_eq!(ctxkit::inspect::Snapshot::of(&root).entries().len(), 1);
        },
    );
}

// API S23
#[test]
fn million_child_fan_is_built_cancelled_and_dropped() {
    on_default_stack("million_child_fan_is_built_cancelled_and_dropped", || {
        let (root, h) = Context::background().with_cancel();
        let kids: Vec<_> = (0..MILLION).map(|_| root.with_cancel()).collect();
        h.cancel();
        assert!(kids.iter().all(|(k, _)| k.err() == Some(Error::Canceled)));
        drop(kids);
        drop(root);
    });
}

// API S23, S22
#[test]
fn million_child_fan_is_dropped_without_cancel_in_any_order() {
    on_default_stack(
        "million_child_fan_is_dropped_without_cancel_in_any_order",
        || {
            let (root, h) = Context::background().with_cancel();
            let mut kids: Vec<_> = (0..MILLION).map(|_| root.with_cancel()).collect();
            // Drop half, the parent, then the rest.
            kids.truncate(MILLION / 2);
            drop((root, h));
            drop(kids);
        },
    );
}

// API S2, S23
#[test]
fn display_of_merges_nested_through_second_parents_does_not_recurse() {
    on_default_stack(
        "display_of_merges_nested_through_second_parents_does_not_recurse",
        || {
            const N: usize = 200_000;
            let mut ctx = Context::background();
            for _ in 0..N {
                ctx = Context::todo().merge(&ctx).0;
            }
            let text = ctx.to_string();
            assert!(text.starts_with("context.TODO.Merge(context.TODO.Merge("));
            assert!(text.ends_with(&format!("context.Background{}", ")".repeat(N))));
            assert_eq!(text.matches(".Merge(").count(), N);
            assert_eq!(text.matches(')').count(), N);
        },
    );
}

// API S23, S24
#[test]
fn million_level_chain_through_second_parents_of_merges_is_cancelled_and_dropped() {
    on_default_stack(
        "million_level_chain_through_second_parents_of_merges_is_cancelled_and_dropped",
        || {
            let (root, h) = Context::background().with_cancel();
            let mut ctx = root.clone();
            for _ in 0..MILLION {
                ctx = Context::background().merge(&ctx).0;
            }
            h.cancel();
            assert_eq!(ctx.err(), Some(Error::Canceled));
            drop(root);
            drop(ctx);
            let mut ctx = Context::background();
            for _ in 0..MILLION {
                ctx = Context::todo().merge(&ctx).0;
            }
            drop(ctx); // never cancelled
        },
    );
}

// ---------------------------------------------------------------------------------------
// A callback on every level, chains of merges, a fan of manual deadlines: at
// `CTXKIT_TEST_SCALE` (1,000,000 unless set; smaller under valgrind), in this process
// ---------------------------------------------------------------------------------------

// API S20, S23
#[test]
fn deep_chain_with_a_callback_on_every_level_runs_every_callback() {
    let n = scale();
    on_default_stack_thread(move || {
        let (root, h) = Context::background().with_cancel();
        let ran = Arc::new(AtomicUsize::new(0));
        let mut ctx = root.clone();
        for _ in 0..n {
            let (c, _h) = ctx.with_cancel();
            let r = Arc::clone(&ran);
            drop(c.on_cancel(move || {
                r.fetch_add(1, Ordering::Relaxed);
            }));
            ctx = c;
        }
        h.cancel();
        assert_eq!(ran.load(Ordering::SeqCst), n);
        assert!(ctx.is_done());
        drop(root);
        drop(ctx);
    });
}

// API S23, S24
#[test]
fn deep_chain_of_merges_is_cancelled_by_the_parent_they_share() {
    let n = scale();
    on_default_stack_thread(move || {
        let (side, hs) = Context::background().with_cancel();
        let (root, _h) = Context::background().with_cancel();
        let mut ctx = root.clone();
        for i in 0..n {
            let (c, _h) = if i % 2 == 0 {
                ctx.merge(&side)
            } else {
                side.merge(&ctx)
            };
            ctx = c;
        }
        hs.cancel_with_cause(std::io::Error::other("side"));
        assert_eq!(ctx.cause().unwrap().to_string(), "side");
        assert!(!root.is_done());
        let _ = ctx.deadline();
        drop(ctx);
        drop(side);
    });
}

// API S23, S25
#[test]
fn wide_fan_of_manual_deadlines_fired_by_one_advance() {
    let n = scale();
    on_default_stack_thread(move || {
        let clock = ManualClock::new();
        let root = Context::background().with_clock(&clock);
        let fired = Arc::new(AtomicUsize::new(0));
        let kids: Vec<_> = (0..n)
            .map(|i| {
                let (c, h) = root.with_timeout(Duration::from_nanos(1 + (i as u64 * 7919) % 1000));
                if i % 100 == 0 {
                    let f = Arc::clone(&fired);
                    drop(c.on_cancel(move || {
                        f.fetch_add(1, Ordering::Relaxed);
                    }));
                }
                (c, h)
            })
            .collect();
        clock.advance(Duration::from_micros(1));
        assert!(kids
            .iter()
            .all(|(c, _)| c.err() == Some(Error::DeadlineExceeded)));
        assert_eq!(fired.load(Ordering::SeqCst), n.div_ceil(100));
        drop(kids);
    });
}
