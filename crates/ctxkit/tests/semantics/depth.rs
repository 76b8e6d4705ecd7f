//! API S23: depth and breadth: million-level chains and fans of every kind are built,
//! cancelled, displayed and dropped without recursion (no stack overflow).

use std::thread;
use std::time::Duration;

use ctxkit::{Context, Error, ManualClock};

use crate::common::{run_alone_in_child_process, REQUEST};

const MILLION: usize = 1_000_000;

const DEEP_ENV: &str = "CTXKIT_SEMANTICS_DEEP_CHILD";

/// Runs `f` on a thread with the default stack size (no `stack_size` set). The test runs
/// in a child process (this test binary, filtered to `test_name`), so that a stack overflow,
/// which aborts the process, fails this test alone instead of the whole binary.
fn on_default_stack(test_name: &str, f: fn()) {
    if std::env::var_os(DEEP_ENV).is_some() {
        thread::spawn(f).join().expect("thread failed");
        return;
    }
    run_alone_in_child_process(module_path!(), test_name, DEEP_ENV);
}

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
fn million_level_chain_through_second_parents_of_merges() {
    on_default_stack(
        "million_level_chain_through_second_parents_of_merges",
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
