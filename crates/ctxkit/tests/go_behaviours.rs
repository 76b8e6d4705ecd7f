//! The behaviours Go's own context tests check, written anew against ctxkit's API: the cause
//! table, simultaneous and interlocked cancels, random layer stacks, children of cancelled
//! parents and after-func run/stop races.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{CancelHandle, Cause, Context, Error, Key, ManualClock};

mod common;
use common::{eventually, Named, Rng, HOUR, LONG};

/// A cause that records which node of a tree was cancelled with it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tag(usize);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tag {}", self.0)
    }
}

impl std::error::Error for Tag {}

/// What a context's cause is expected to be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    NoCause,
    Sentinel(Error),
    Custom(&'static str),
}

fn describe(cause: Option<Cause>) -> Want {
    match cause {
        None => Want::NoCause,
        Some(c) => {
            if let Some(e) = c.downcast_ref::<Error>() {
                Want::Sentinel(*e)
            } else if let Some(n) = c.downcast_ref::<Named>() {
                Want::Custom(n.0)
            } else {
                panic!("unexpected cause {c:?}")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The cause table: first cause wins in every order
// ---------------------------------------------------------------------------------------

// API S7, S8, S9, S13
#[test]
fn cause_table_first_cause_wins_in_every_order() {
    use Want::*;
    const CAUSE: &str = "cause";
    const PARENT: &str = "parent cause";
    const EARLY: &str = "finished early";
    type Row = (&'static str, fn() -> Context, Option<Error>, Want);
    let rows: [Row; 20] = [
        ("background", Context::background, None, NoCause),
        ("todo", Context::todo, None, NoCause),
        (
            "with_cancel, cancel",
            || {
                let (c, h) = Context::background().with_cancel();
                h.cancel();
                c
            },
            Some(Error::Canceled),
            Sentinel(Error::Canceled),
        ),
        (
            "with_cancel, cancel_with_cause",
            || {
                let (c, h) = Context::background().with_cancel();
                h.cancel_with_cause(Named(CAUSE));
                c
            },
            Some(Error::Canceled),
            Custom(CAUSE),
        ),
        (
            "with_cancel, cancel_with_cause(Canceled)",
            || {
                let (c, h) = Context::background().with_cancel();
                h.cancel_with_cause(Error::Canceled);
                c
            },
            Some(Error::Canceled),
            Sentinel(Error::Canceled),
        ),
        (
            "parent cause before child cause",
            || {
                let (p, hp) = Context::background().with_cancel();
                let (c, hc) = p.with_cancel();
                hp.cancel_with_cause(Named(PARENT));
                hc.cancel_with_cause(Named(CAUSE));
                c
            },
            Some(Error::Canceled),
            Custom(PARENT),
        ),
        (
            "parent cause after child cause",
            || {
                let (p, hp) = Context::background().with_cancel();
                let (c, hc) = p.with_cancel();
                hc.cancel_with_cause(Named(CAUSE));
                hp.cancel_with_cause(Named(PARENT));
                c
            },
            Some(Error::Canceled),
            Custom(CAUSE),
        ),
        (
            "parent cause before plain child cancel",
            || {
                let (p, hp) = Context::background().with_cancel();
                let (c, hc) = p.with_cancel();
                hp.cancel_with_cause(Named(PARENT));
                hc.cancel();
                c
            },
            Some(Error::Canceled),
            Custom(PARENT),
        ),
        (
            "parent cause after plain child cancel",
            || {
                let (p, hp) = Context::background().with_cancel();
                let (c, hc) = p.with_cancel();
                hc.cancel();
                hp.cancel_with_cause(Named(PARENT));
                c
            },
            Some(Error::Canceled),
            Sentinel(Error::Canceled),
        ),
        (
            "child cause after plain parent cancel",
            || {
                let (p, hp) = Context::background().with_cancel();
                let (c, hc) = p.with_cancel();
                hp.cancel();
                hc.cancel_with_cause(Named(CAUSE));
                c
            },
            Some(Error::Canceled),
            Sentinel(Error::Canceled),
        ),
        (
            "child cause before plain parent cancel",
            || {
                let (p, hp) = Context::background().with_cancel();
                let (c, hc) = p.with_cancel();
                hc.cancel_with_cause(Named(CAUSE));
                hp.cancel();
                c
            },
            Some(Error::Canceled),
            Custom(CAUSE),
        ),
        (
            "zero timeout, then cancel",
            || {
                let (c, h) = Context::background().with_timeout(Duration::ZERO);
                h.cancel();
                c
            },
            Some(Error::DeadlineExceeded),
            Sentinel(Error::DeadlineExceeded),
        ),
        (
            "long timeout, cancel",
            || {
                let (c, h) = Context::background().with_timeout(HOUR);
                h.cancel();
                c
            },
            Some(Error::Canceled),
            Sentinel(Error::Canceled),
        ),
        (
            "zero timeout with cause, then cancel",
            || {
                let (c, h) = Context::background().with_timeout_cause(Duration::ZERO, Named(CAUSE));
                h.cancel();
                c
            },
            Some(Error::DeadlineExceeded),
            Custom(CAUSE),
        ),
        (
            "long timeout with cause, cancel",
            || {
                let (c, h) = Context::background().with_timeout_cause(HOUR, Named(CAUSE));
                h.cancel();
                c
            },
            Some(Error::Canceled),
            Sentinel(Error::Canceled),
        ),
        (
            "zero timeout with cause under a parent cancelled later",
            || {
                let (p, hp) = Context::background().with_cancel();
                let (c, _h) = p.with_timeout_cause(Duration::ZERO, Named(CAUSE));
                hp.cancel_with_cause(Named(EARLY));
                c
            },
            Some(Error::DeadlineExceeded),
            Custom(CAUSE),
        ),
        (
            "zero timeout with cause under a parent cancelled first",
            || {
                let (p, hp) = Context::background().with_cancel();
                hp.cancel_with_cause(Named(EARLY));
                let (c, _h) = p.with_timeout_cause(Duration::ZERO, Named(CAUSE));
                c
            },
            Some(Error::Canceled),
            Custom(EARLY),
        ),
        (
            "without_cancel of background",
            || Context::background().without_cancel(),
            None,
            NoCause,
        ),
        (
            "without_cancel of a cancelled context",
            || {
                let (p, hp) = Context::background().with_cancel();
                hp.cancel_with_cause(Named(CAUSE));
                p.without_cancel()
            },
            None,
            NoCause,
        ),
        (
            "without_cancel of an expired context",
            || {
                let (p, _h) =
                    Context::background().with_timeout_cause(Duration::ZERO, Named(CAUSE));
                p.without_cancel()
            },
            None,
            NoCause,
        ),
    ];
    for (name, make, err, cause) in rows {
        let ctx = make();
        assert_eq!(ctx.err(), err, "{name}: err");
        assert_eq!(describe(ctx.cause()), cause, "{name}: cause");
        assert_eq!(ctx.is_done(), err.is_some(), "{name}: is_done");
    }
}

// API S7, S8
#[test]
fn cause_reaches_a_deep_child_with_a_deadline_cause_of_its_own() {
    let clock = ManualClock::new();
    let (p, hp) = Context::background().with_clock(&clock).with_cancel();
    let (mid, _hm) = p.with_timeout_cause(Duration::from_secs(5), Named("mid"));
    let (leaf, _hl) = mid.with_timeout_cause(Duration::from_secs(1), Named("leaf"));
    clock.advance(Duration::from_secs(1));
    hp.cancel_with_cause(Named("parent"));
    assert_eq!(describe(leaf.cause()), Want::Custom("leaf"));
    assert_eq!(leaf.err(), Some(Error::DeadlineExceeded));
    assert_eq!(describe(mid.cause()), Want::Custom("parent"));
    assert_eq!(mid.err(), Some(Error::Canceled));
}

// ---------------------------------------------------------------------------------------
// Parent and child finishing
// ---------------------------------------------------------------------------------------

// API S4, S22
#[test]
fn parent_finishes_child_and_child_finishing_first_leaves_parent() {
    let (parent, hp) = Context::background().with_cancel();
    let (c1, h1) = parent.with_cancel();
    let (c2, _h2) = parent.with_timeout(HOUR);
    let c3 = parent.with_value(&K[0], 1);
    let (c4, _h4) = c3.with_cancel();
    // Child first: the parent is untouched.
    h1.cancel();
    assert!(c1.is_done() && !parent.is_done());
    // Parent: every remaining child follows, and waits on them return.
    let w = {
        let c4 = c4.clone();
        thread::spawn(move || c4.wait())
    };
    hp.cancel();
    for c in [&c1, &c2, &c3, &c4] {
        assert!(c.is_done());
    }
    assert_eq!(c1.err(), Some(Error::Canceled));
    assert_eq!(w.join().unwrap(), Error::Canceled);
}

// ---------------------------------------------------------------------------------------
// Simultaneous cancels on a ~100-node tree
// ---------------------------------------------------------------------------------------

struct TreeNode {
    ctx: Context,
    handle: CancelHandle,
    /// This node and every node it was derived from (through both parents of a merge).
    ancestors: BTreeSet<usize>,
}

fn random_tree(rng: &mut Rng, size: usize) -> Vec<TreeNode> {
    let (ctx, handle) = Context::background().with_cancel();
    let mut nodes = vec![TreeNode {
        ctx,
        handle,
        ancestors: BTreeSet::from([0]),
    }];
    for i in 1..size {
        let p = rng.below(i as u64) as usize;
        let (ctx, handle, mut ancestors) = match rng.below(4) {
            0 | 1 => {
                let (c, h) = nodes[p].ctx.with_cancel();
                (c, h, nodes[p].ancestors.clone())
            }
            2 => {
                let (c, h) = nodes[p].ctx.with_value(&K[0], i as u64).with_timeout(HOUR);
                (c, h, nodes[p].ancestors.clone())
            }
            _ => {
                let q = rng.below(i as u64) as usize;
                let (c, h) = nodes[p].ctx.merge(&nodes[q].ctx);
                let mut a = nodes[p].ancestors.clone();
                a.extend(nodes[q].ancestors.iter().copied());
                (c, h, a)
            }
        };
        ancestors.insert(i);
        nodes.push(TreeNode {
            ctx,
            handle,
            ancestors,
        });
    }
    nodes
}

// API S3, S4, S8
#[test]
fn simultaneous_cancels_from_many_threads_leave_every_node_done_and_consistent() {
    for seed in 1..=10u64 {
        let mut rng = Rng::new(seed);
        let nodes = Arc::new(random_tree(&mut rng, 100));
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads + 4));
        let mut joins = Vec::new();
        for t in 0..threads {
            let nodes = Arc::clone(&nodes);
            let barrier = Arc::clone(&barrier);
            let mut order: Vec<usize> = (0..nodes.len()).collect();
            Rng::new(seed * 100 + t as u64).shuffle(&mut order);
            joins.push(thread::spawn(move || {
                barrier.wait();
                for i in order {
                    nodes[i].handle.cancel_with_cause(Tag(i));
                }
            }));
        }
        // Waiters on random nodes, blocked before the cancels start.
        let mut waiters = Vec::new();
        for _ in 0..4 {
            let ctx = nodes[rng.below(nodes.len() as u64) as usize].ctx.clone();
            let barrier = Arc::clone(&barrier);
            waiters.push(thread::spawn(move || {
                barrier.wait();
                ctx.wait_timeout(LONG)
            }));
        }
        for j in joins {
            j.join().unwrap();
        }
        for w in waiters {
            assert_eq!(w.join().unwrap(), Some(Error::Canceled), "seed {seed}");
        }
        for (i, n) in nodes.iter().enumerate() {
            assert_eq!(n.ctx.err(), Some(Error::Canceled), "seed {seed} node {i}");
            let cause = n.ctx.cause().expect("done without a cause");
            let Tag(from) = *cause.downcast_ref::<Tag>().expect("a Tag cause");
            assert!(
                n.ancestors.contains(&from),
                "seed {seed} node {i}: cause from node {from}, not an ancestor"
            );
            // The node the cause came from was cancelled with that cause itself.
            let origin = nodes[from].ctx.cause().unwrap();
            assert_eq!(
                origin.downcast_ref::<Tag>(),
                Some(&Tag(from)),
                "seed {seed}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// A cancel issued from inside a waiter of the parent
// ---------------------------------------------------------------------------------------

// API S4, S17
#[test]
fn a_waiter_of_the_parent_cancels_the_child() {
    for _ in 0..20 {
        let (parent, hp) = Context::background().with_cancel();
        let (child, hc) = parent.with_cancel();
        let (other, ho) = Context::background().with_cancel();
        let p2 = parent.clone();
        let waiter = thread::spawn(move || {
            p2.wait();
            hc.cancel_with_cause(Named("from waiter"));
            ho.cancel();
        });
        hp.cancel();
        assert_eq!(child.wait_timeout(LONG), Some(Error::Canceled));
        assert_eq!(other.wait_timeout(LONG), Some(Error::Canceled));
        waiter.join().unwrap();
        // The parent's cancel reached the child first; the waiter's cause came too late.
        assert_eq!(describe(child.cause()), Want::Sentinel(Error::Canceled));
    }
}

// API S4, S17
#[test]
fn an_async_waiter_of_the_parent_cancels_another_context() {
    let (parent, hp) = Context::background().with_cancel();
    let (other, ho) = Context::background().with_cancel();
    let p2 = parent.clone();
    let waiter = thread::spawn(move || {
        futures::executor::block_on(async {
            p2.done().await;
            ho.cancel();
        })
    });
    thread::sleep(Duration::from_millis(5));
    hp.cancel();
    assert_eq!(other.wait_timeout(LONG), Some(Error::Canceled));
    waiter.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// Random stacks of layers
// ---------------------------------------------------------------------------------------

static K: [Key<u64>; 3] = [Key::new("k0"), Key::new("k1"), Key::new("k2")];

struct Layer {
    ctx: Context,
    handle: Option<CancelHandle>,
    values: [Option<u64>; 3],
    deadline: Option<Instant>,
}

/// A random stack of at least 30 cancel, timeout and value layers over `root`, checking
/// values, deadline and err at each layer as it is built. Timeouts come from `timeout`.
fn build_layers(
    rng: &mut Rng,
    root: &Context,
    timeout: &mut dyn FnMut(&mut Rng) -> Duration,
) -> Vec<Layer> {
    let depth = 30 + rng.below(31) as usize;
    let mut layers: Vec<Layer> = Vec::with_capacity(depth);
    let mut cur = root.clone();
    let mut values = [None; 3];
    let mut deadline: Option<Instant> = None;
    for _ in 0..depth {
        let (ctx, handle) = match rng.below(3) {
            0 => {
                let k = rng.below(3) as usize;
                let v = rng.next();
                values[k] = Some(v);
                (cur.with_value(&K[k], v), None)
            }
            1 => {
                let (c, h) = cur.with_cancel();
                (c, Some(h))
            }
            _ => {
                let d = timeout(rng);
                let (c, h) = cur.with_timeout(d);
                let own = c.deadline().expect("a timeout layer has a deadline");
                // The layer's deadline is the earlier of its own and the inherited one.
                if let Some(inherited) = deadline {
                    assert!(own <= inherited);
                    if own < inherited {
                        deadline = Some(own);
                    }
                } else {
                    deadline = Some(own);
                }
                (c, Some(h))
            }
        };
        for (k, want) in values.iter().enumerate() {
            assert_eq!(ctx.value(&K[k]).copied(), *want);
        }
        assert_eq!(ctx.deadline(), deadline);
        layers.push(Layer {
            ctx: ctx.clone(),
            handle,
            values,
            deadline,
        });
        cur = ctx;
    }
    layers
}

fn check_values(layers: &[Layer]) {
    for l in layers {
        for (k, want) in l.values.iter().enumerate() {
            assert_eq!(l.ctx.value(&K[k]).copied(), *want);
        }
    }
}

// API S4, S10, S15
#[test]
fn random_layer_stacks_cancel_from_the_cancelled_layer_down() {
    for seed in 1..=40u64 {
        let mut rng = Rng::new(seed);
        let layers = build_layers(&mut rng, &Context::background(), &mut |rng| {
            HOUR + Duration::from_secs(rng.below(3600))
        });
        for l in &layers {
            assert_eq!(l.ctx.err(), None);
        }
        let cancellable: Vec<usize> = (0..layers.len())
            .filter(|&i| layers[i].handle.is_some())
            .collect();
        if cancellable.is_empty() {
            continue;
        }
        let at = cancellable[rng.below(cancellable.len() as u64) as usize];
        layers[at].handle.as_ref().unwrap().cancel();
        // Every layer from the cancelled one down is its descendant; none above is.
        for (i, l) in layers.iter().enumerate() {
            let expect = if i >= at { Some(Error::Canceled) } else { None };
            assert_eq!(
                l.ctx.err(),
                expect,
                "seed {seed}, layer {i}, cancelled {at}"
            );
        }
        check_values(&layers);
    }
}

// API S10, S11, S25
#[test]
fn random_layer_stacks_expire_from_the_earliest_deadline_down() {
    for seed in 1..=40u64 {
        let mut rng = Rng::new(seed);
        let clock = ManualClock::new();
        let root = Context::background().with_clock(&clock);
        let layers = build_layers(&mut rng, &root, &mut |rng| {
            Duration::from_millis(1 + rng.below(100_000))
        });
        let Some(earliest) = layers.last().unwrap().deadline else {
            continue;
        };
        let step = earliest - clock.now() - Duration::from_millis(1);
        clock.advance(step);
        assert!(
            layers.iter().all(|l| l.ctx.err().is_none()),
            "seed {seed}: early"
        );
        clock.advance(Duration::from_millis(1));
        for (i, l) in layers.iter().enumerate() {
            let expect = (l.deadline == Some(earliest)).then_some(Error::DeadlineExceeded);
            assert_eq!(l.ctx.err(), expect, "seed {seed}, layer {i}");
        }
        check_values(&layers);
    }
}

// API S11
#[test]
fn random_layer_stacks_on_real_timers_never_expire_early() {
    for seed in 1..=5u64 {
        let mut rng = Rng::new(seed);
        let layers = build_layers(&mut rng, &Context::background(), &mut |rng| {
            Duration::from_millis(5 + rng.below(40))
        });
        let deepest = &layers.last().unwrap().ctx;
        if deepest.deadline().is_none() {
            continue;
        }
        assert_eq!(deepest.wait_timeout(LONG), Some(Error::DeadlineExceeded));
        let now = Instant::now();
        for (i, l) in layers.iter().enumerate() {
            match (l.ctx.err(), l.deadline) {
                (None, _) => {}
                (Some(Error::DeadlineExceeded), Some(d)) => {
                    assert!(now >= d, "seed {seed}, layer {i}: done before its deadline")
                }
                other => panic!("seed {seed}, layer {i}: unexpected {other:?}"),
            }
        }
        check_values(&layers);
    }
}

// ---------------------------------------------------------------------------------------
// Children of already-cancelled parents
// ---------------------------------------------------------------------------------------

// API S5, S19, S20
#[test]
fn children_of_an_already_cancelled_parent_are_done_at_once() {
    let (parent, hp) = Context::background().with_cancel();
    hp.cancel_with_cause(Named("gone"));
    let (c, _h) = parent.with_cancel();
    assert_eq!(
        futures::executor::block_on(c.done()),
        Error::Canceled,
        "done() completes at once"
    );
    assert_eq!(c.wait_timeout(Duration::ZERO), Some(Error::Canceled));
    assert_eq!(describe(c.cause()), Want::Custom("gone"));
    let (t, _ht) = parent.with_timeout(HOUR);
    assert_eq!(t.err(), Some(Error::Canceled));
    assert_eq!(describe(t.cause()), Want::Custom("gone"));
    let v = parent.with_value(&K[1], 5);
    assert_eq!(v.err(), Some(Error::Canceled));
    assert_eq!(v.value(&K[1]), Some(&5));
    let (tx, rx) = mpsc::channel();
    let _r = c.after_func(move || tx.send(()).unwrap());
    rx.recv_timeout(LONG).expect("after_func on a done child");
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = Arc::clone(&ran);
    let reg = t.on_cancel(move || r2.store(true, Ordering::SeqCst));
    assert!(ran.load(Ordering::SeqCst));
    assert!(!reg.stop());
    // Grandchildren too.
    let (g, _hg) = c.with_cancel();
    assert_eq!(describe(g.cause()), Want::Custom("gone"));
}

// ---------------------------------------------------------------------------------------
// after_func run / stop races
// ---------------------------------------------------------------------------------------

// API S19, S21
#[test]
fn after_func_run_and_stop_races_resolve_to_exactly_one() {
    const N: usize = 400;
    let mut ran = Vec::with_capacity(N);
    let mut stopped = Vec::with_capacity(N);
    let mut may_run = Vec::with_capacity(N);
    for i in 0..N {
        let clock = ManualClock::new();
        let (parent, hp) = Context::background().with_clock(&clock).with_cancel();
        let (ctx, h) = parent.with_timeout(Duration::from_secs(1));
        let flag = Arc::new(AtomicUsize::new(0));
        let f2 = Arc::clone(&flag);
        let f = move || {
            f2.fetch_add(1, Ordering::SeqCst);
        };
        let inline = i % 2 == 1;
        let reg = if inline {
            ctx.on_cancel(f)
        } else {
            ctx.after_func(f)
        };
        let barrier = Barrier::new(2);
        let mode = (i / 2) % 4;
        let ctx_slot = std::sync::Mutex::new(Some((ctx, h)));
        let was_stopped = thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                match mode {
                    0 => ctx_slot.lock().unwrap().as_ref().unwrap().1.cancel(),
                    1 => hp.cancel(),
                    2 => clock.advance(Duration::from_secs(1)),
                    // Dropping the only handle and clones: nothing can cancel it any more
                    // (the parent's handle is dropped too), so f must never run.
                    _ => {
                        drop(ctx_slot.lock().unwrap().take());
                    }
                }
            });
            barrier.wait();
            reg.stop()
        });
        if mode == 3 {
            drop((parent, hp));
        }
        ran.push(flag);
        stopped.push(was_stopped);
        may_run.push(mode != 3);
        drop(ctx_slot);
    }
    for i in 0..N {
        if !stopped[i] {
            assert!(
                eventually(|| ran[i].load(Ordering::SeqCst) == 1),
                "#{i}: stop() returned false but f never ran"
            );
        }
    }
    thread::sleep(Duration::from_millis(30));
    for i in 0..N {
        let runs = ran[i].load(Ordering::SeqCst);
        assert!(runs <= 1, "#{i}: f ran {runs} times");
        assert!(
            (runs == 1) != stopped[i],
            "#{i}: ran={runs}, stop returned {}",
            stopped[i]
        );
        if !may_run[i] {
            assert_eq!(runs, 0, "#{i}: f ran although nothing could cancel");
        }
    }
}

// API S21
#[test]
fn concurrent_stops_only_one_returns_true() {
    for _ in 0..200 {
        let (ctx, h) = Context::background().with_cancel();
        let reg = ctx.after_func(|| {});
        let barrier = Barrier::new(3);
        let wins = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    barrier.wait();
                    if reg.stop() {
                        wins.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            barrier.wait();
            h.cancel();
        });
        assert!(wins.load(Ordering::SeqCst) <= 1);
    }
}
