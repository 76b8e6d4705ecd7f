//! Model-based randomized tests: random sequences of operations are applied both to ctxkit and
//! to a small sequential model of a context tree written here; after every step, every live
//! context's err, cause, deadline, remaining time, values and `done()` agree with the model.
//!
//! The model never frees anything: dropping a context only removes it from the set of
//! contexts that are looked at, so a bug that frees or unlinks too much shows up as a context
//! that misses a later cancellation.
//!
//! All contexts live under one `ManualClock`, so deadlines fire only in `Advance` steps.
//! Deadlines are built so that no two coincide (a whole number of milliseconds plus a
//! per-context number of nanoseconds below a millisecond, while the clock moves in whole
//! milliseconds): which of two equal deadlines fires first is not specified, so a model
//! would have to guess.
//!
//! Shrunk failures are kept as explicit tests at the end of this file (the reliable record:
//! `Op`s written out) and in `model.proptest-regressions` next to this file (proptest's seeds,
//! replayed first on every run; a seed stands for its case only while `op()` is unchanged).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskCx, Poll};
use std::time::{Duration, Instant};

use ctxkit::{CancelHandle, Context, Error, Key, ManualClock};
use proptest::prelude::*;

static KA: Key<u32> = Key::new("a");
// Same name and type as KA, but a different key (API S15).
static KB: Key<u32> = Key::new("a");

const MS: i64 = 1_000_000;

/// A cause given by a test, compared by its text.
#[derive(Debug)]
struct Named(String);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Named {}

/// Picks one of the live contexts: a fraction of the way through the list (as proptest's
/// `sample::Index`, but constructible in the explicit tests below).
#[derive(Clone, Copy, Debug)]
struct Index(u64);

impl Index {
    fn index(&self, len: usize) -> usize {
        ((len as u128 * self.0 as u128) >> 64) as usize
    }
}

const FIRST: Index = Index(0);
const LAST: Index = Index(u64::MAX);

/// One step of a test case. Indexes pick among the live contexts.
#[derive(Clone, Debug)]
enum Op {
    WithCancel(Index),
    /// `with_timeout(ms + unique ns)`, with a cause if the flag is set.
    WithTimeout(Index, u8, bool),
    /// `with_deadline(clock.now() + ms + unique ns)`.
    WithDeadline(Index, u8),
    WithTimeoutZero(Index),
    WithTimeoutMax(Index),
    /// Key 0: `KA`, 1: `KB`, 2: `with::<u32>`.
    WithValue(Index, u8, u32),
    WithoutCancel(Index),
    Merge(Index, Index),
    Cancel(Index),
    CancelWithCause(Index),
    Drop(Index),
    /// Moves the clock by this many milliseconds.
    Advance(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let i = || any::<u64>().prop_map(Index);
    prop_oneof![
        3 => i().prop_map(Op::WithCancel),
        3 => (i(), 0..40u8, any::<bool>()).prop_map(|(a, ms, c)| Op::WithTimeout(a, ms, c)),
        1 => (i(), 0..40u8).prop_map(|(a, ms)| Op::WithDeadline(a, ms)),
        1 => i().prop_map(Op::WithTimeoutZero),
        1 => i().prop_map(Op::WithTimeoutMax),
        3 => (i(), 0..3u8, 0..4u32).prop_map(|(a, k, v)| Op::WithValue(a, k, v)),
        1 => i().prop_map(Op::WithoutCancel),
        2 => (i(), i()).prop_map(|(a, b)| Op::Merge(a, b)),
        2 => i().prop_map(Op::Cancel),
        2 => i().prop_map(Op::CancelWithCause),
        2 => i().prop_map(Op::Drop),
        2 => (0..30u8).prop_map(Op::Advance),
    ]
}

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

/// A node of the model tree: what a context with its own cancellation state knows.
#[derive(Debug, Clone)]
struct MNode {
    /// Nodes whose cancellation reaches this one.
    children: Vec<usize>,
    done: Option<(Error, String)>,
    /// Earliest deadline of this node and its ancestors, in ns since the clock's start.
    deadline: Option<i64>,
    /// This node's own timer: when, and the cause it gives.
    timer: Option<(i64, String)>,
}

/// One live context: the real thing, and where the model keeps its state.
struct Entry {
    ctx: Context,
    handle: Option<CancelHandle>,
    node: usize,
    values: BTreeMap<u8, u32>,
}

struct World {
    clock: ManualClock,
    start: Instant,
    /// The clock's reading in the model, ns since `start`.
    now: i64,
    nodes: Vec<MNode>,
    live: Vec<Entry>,
    /// Counts derivations: the unique nanoseconds of each new deadline.
    made: i64,
}

fn canceled() -> (Error, String) {
    (Error::Canceled, Error::Canceled.to_string())
}

impl World {
    fn new() -> World {
        // Sets ctxkit's time origin before the clock is made: the first manual clock of a
        // process otherwise reads a few nanoseconds before it, a case of its own (see
        // faults.rs, `duration_max_timeout_on_the_first_manual_clock_of_a_process`).
        drop(Context::background().with_deadline(Instant::now()));
        let clock = ManualClock::new();
        let start = clock.now();
        let root = Context::background().with_clock(&clock);
        World {
            start,
            now: 0,
            nodes: vec![MNode {
                children: Vec::new(),
                done: None,
                deadline: None,
                timer: None,
            }],
            live: vec![Entry {
                ctx: root,
                handle: None,
                node: 0,
                values: BTreeMap::new(),
            }],
            clock,
            made: 0,
        }
    }

    /// A new model node under `parents` (none: never done), done at birth with the first
    /// done parent's err and cause (API S5, S24).
    fn add_node(&mut self, parents: &[usize], deadline: Option<i64>) -> usize {
        let id = self.nodes.len();
        let done = parents.iter().find_map(|&p| self.nodes[p].done.clone());
        for &p in parents {
            self.nodes[p].children.push(id);
        }
        self.nodes.push(MNode {
            children: Vec::new(),
            done,
            deadline,
            timer: None,
        });
        id
    }

    /// Cancels `node` and every descendant not yet done (API S4, S8).
    fn cancel(&mut self, node: usize, why: (Error, String)) {
        let mut work = vec![node];
        while let Some(n) = work.pop() {
            if self.nodes[n].done.is_some() {
                continue;
            }
            self.nodes[n].done = Some(why.clone());
            work.extend(self.nodes[n].children.iter().copied());
        }
    }

    fn pick(&self, i: &Index) -> usize {
        i.index(self.live.len())
    }

    /// A deadline `ms` milliseconds from now that no other deadline shares.
    fn unique_offset(&mut self, ms: u8) -> i64 {
        self.made += 1;
        assert!(self.made < MS);
        i64::from(ms) * MS + self.made
    }

    fn min_deadline(a: Option<i64>, b: Option<i64>) -> Option<i64> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `with_timeout`/`with_deadline` at `at` (ns since start) in the model (API S12, S13).
    fn deadline_child(
        &mut self,
        parent: &Entry,
        at: i64,
        cause: Option<String>,
    ) -> (usize, BTreeMap<u8, u32>) {
        let inherited = self.nodes[parent.node].deadline;
        let node = match inherited {
            Some(inh) if inh < at => self.add_node(&[parent.node], inherited),
            _ => {
                let n = self.add_node(&[parent.node], Some(at));
                if self.nodes[n].done.is_none() {
                    let cause = cause.unwrap_or_else(|| Error::DeadlineExceeded.to_string());
                    if at <= self.now {
                        self.nodes[n].done = Some((Error::DeadlineExceeded, cause));
                    } else {
                        self.nodes[n].timer = Some((at, cause));
                    }
                }
                n
            }
        };
        (node, parent.values.clone())
    }

    fn apply(&mut self, op: &Op, step: usize) {
        match op {
            Op::WithCancel(i) => {
                let p = &self.live[self.pick(i)];
                let (ctx, h) = p.ctx.with_cancel();
                let (pn, values) = (p.node, p.values.clone());
                let node = self.add_node(&[pn], self.nodes[pn].deadline);
                self.push(ctx, Some(h), node, values);
            }
            Op::WithTimeout(i, ms, with_cause) => {
                let off = self.unique_offset(*ms);
                let p = self.pick(i);
                let timeout = Duration::from_nanos(off as u64);
                let name = format!("deadline cause {step}");
                let (ctx, h) = if *with_cause {
                    self.live[p]
                        .ctx
                        .with_timeout_cause(timeout, Named(name.clone()))
                } else {
                    self.live[p].ctx.with_timeout(timeout)
                };
                let parent = self.live.swap_remove(p);
                let at = self.now + off;
                let (node, values) = self.deadline_child(&parent, at, with_cause.then_some(name));
                self.restore(p, parent);
                self.push(ctx, Some(h), node, values);
            }
            Op::WithDeadline(i, ms) => {
                let off = self.unique_offset(*ms);
                let p = self.pick(i);
                let when = self.clock.now() + Duration::from_nanos(off as u64);
                let (ctx, h) = self.live[p].ctx.with_deadline(when);
                let parent = self.live.swap_remove(p);
                let (node, values) = self.deadline_child(&parent, self.now + off, None);
                self.restore(p, parent);
                self.push(ctx, Some(h), node, values);
            }
            Op::WithTimeoutZero(i) => {
                let p = self.pick(i);
                let (ctx, h) = self.live[p].ctx.with_timeout(Duration::ZERO);
                let parent = self.live.swap_remove(p);
                let (node, values) = self.deadline_child(&parent, self.now, None);
                self.restore(p, parent);
                self.push(ctx, Some(h), node, values);
            }
            Op::WithTimeoutMax(i) => {
                let p = &self.live[self.pick(i)];
                let (ctx, h) = p.ctx.with_timeout(Duration::MAX);
                let (pn, values) = (p.node, p.values.clone());
                let node = self.add_node(&[pn], self.nodes[pn].deadline);
                self.push(ctx, Some(h), node, values);
            }
            Op::WithValue(i, key, v) => {
                let p = &self.live[self.pick(i)];
                let ctx = match key {
                    0 => p.ctx.with_value(&KA, *v),
                    1 => p.ctx.with_value(&KB, *v),
                    _ => p.ctx.with(*v),
                };
                let mut values = p.values.clone();
                values.insert(*key, *v);
                let node = p.node;
                self.push(ctx, None, node, values);
            }
            Op::WithoutCancel(i) => {
                let p = &self.live[self.pick(i)];
                let ctx = p.ctx.without_cancel();
                let values = p.values.clone();
                let node = self.add_node(&[], None);
                self.push(ctx, None, node, values);
            }
            Op::Merge(a, b) => {
                let (a, b) = (&self.live[self.pick(a)], &self.live[self.pick(b)]);
                let (ctx, h) = a.ctx.merge(&b.ctx);
                let (an, bn) = (a.node, b.node);
                let mut values = b.values.clone();
                values.extend(a.values.iter().map(|(k, v)| (*k, *v)));
                let deadline = Self::min_deadline(self.nodes[an].deadline, self.nodes[bn].deadline);
                let node = self.add_node(&[an, bn], deadline);
                self.push(ctx, Some(h), node, values);
            }
            Op::Cancel(i) => {
                let e = &self.live[self.pick(i)];
                if let Some(h) = &e.handle {
                    h.cancel();
                    let node = e.node;
                    self.cancel(node, canceled());
                }
            }
            Op::CancelWithCause(i) => {
                let e = &self.live[self.pick(i)];
                if let Some(h) = &e.handle {
                    let name = format!("cause {step}");
                    h.cancel_with_cause(Named(name.clone()));
                    let node = e.node;
                    self.cancel(node, (Error::Canceled, name));
                }
            }
            Op::Drop(i) => {
                // The root stays: every case needs something to derive from.
                if self.live.len() > 1 {
                    let p = self.pick(i).max(1);
                    drop(self.live.remove(p));
                }
            }
            Op::Advance(ms) => {
                let by = i64::from(*ms) * MS;
                self.clock.advance(Duration::from_nanos(by as u64));
                self.now += by;
                let mut due: Vec<(i64, usize)> = self
                    .nodes
                    .iter()
                    .enumerate()
                    .filter_map(|(n, node)| match &node.timer {
                        Some((at, _)) if *at <= self.now && node.done.is_none() => Some((*at, n)),
                        _ => None,
                    })
                    .collect();
                due.sort();
                for (_, n) in due {
                    let cause = self.nodes[n].timer.take().expect("due").1;
                    self.cancel(n, (Error::DeadlineExceeded, cause));
                }
            }
        }
    }

    fn push(
        &mut self,
        ctx: Context,
        handle: Option<CancelHandle>,
        node: usize,
        values: BTreeMap<u8, u32>,
    ) {
        self.live.push(Entry {
            ctx,
            handle,
            node,
            values,
        });
    }

    /// Puts back an entry taken out with `swap_remove(at)`.
    fn restore(&mut self, at: usize, e: Entry) {
        self.live.push(e);
        let last = self.live.len() - 1;
        self.live.swap(at, last);
    }

    /// Every live context agrees with the model.
    fn check(&self, step: usize, op: &Op) {
        let waker = futures::task::noop_waker();
        for (i, e) in self.live.iter().enumerate() {
            let m = &self.nodes[e.node];
            let at = || format!("after step {step} ({op:?}), context #{i} ({})", e.ctx);
            assert_eq!(e.ctx.err(), m.done.as_ref().map(|d| d.0), "err {}", at());
            assert_eq!(e.ctx.is_done(), m.done.is_some(), "is_done {}", at());
            assert_eq!(
                e.ctx.cause().map(|c| c.to_string()),
                m.done.as_ref().map(|d| d.1.clone()),
                "cause {}",
                at()
            );
            let deadline = e
                .ctx
                .deadline()
                .map(|d| d.duration_since(self.start).as_nanos() as i64);
            assert_eq!(deadline, m.deadline, "deadline {}", at());
            let remaining = e.ctx.remaining().map(|r| r.as_nanos() as i64);
            assert_eq!(
                remaining,
                m.deadline.map(|d| (d - self.now).max(0)),
                "remaining {}",
                at()
            );
            assert_eq!(e.ctx.value(&KA), e.values.get(&0), "value(KA) {}", at());
            assert_eq!(e.ctx.value(&KB), e.values.get(&1), "value(KB) {}", at());
            assert_eq!(e.ctx.get::<u32>(), e.values.get(&2), "get::<u32> {}", at());
            assert_eq!(e.ctx.get::<u64>(), None, "get::<u64> {}", at());
            let mut done = e.ctx.done();
            let polled = Pin::new(&mut done).poll(&mut TaskCx::from_waker(&waker));
            let expected = match &m.done {
                Some((err, _)) => Poll::Ready(*err),
                None => Poll::Pending,
            };
            assert_eq!(polled, expected, "done() {}", at());
        }
    }
}

fn run(ops: &[Op]) {
    let mut world = World::new();
    world.check(0, &Op::Advance(0));
    for (step, op) in ops.iter().enumerate() {
        world.apply(op, step + 1);
        world.check(step + 1, op);
    }
    // Cancelling everything that is left reaches every descendant.
    for e in &world.live {
        if let Some(h) = &e.handle {
            h.cancel();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2048),
        ..ProptestConfig::default()
    })]

    #[test]
    fn ctxkit_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..64)) {
        run(&ops);
    }
}

// ---------------------------------------------------------------------------------------
// Shrunk failures, kept as explicit tests
// ---------------------------------------------------------------------------------------

/// Shrunk from a failure of `ctxkit_agrees_with_the_model` (a `with_timeout_cause` under a
/// cancelled merge): a child of a done parent is done at creation with the parent's err
/// *and cause* (API S5), not with the cause given for its own deadline.
#[test]
fn deadline_cause_child_of_a_cancelled_parent_takes_the_parents_cause() {
    run(&[
        Op::Merge(FIRST, FIRST),
        Op::Cancel(LAST),
        Op::WithTimeout(LAST, 0, true),
    ]);
    // The same, directly, with a plain cancellable parent.
    let (parent, h) = Context::background().with_cancel();
    h.cancel();
    let (child, _hc) = parent.with_timeout_cause(Duration::from_secs(3600), Named("own".into()));
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(
        child.cause().map(|c| c.to_string()),
        Some(Error::Canceled.to_string())
    );
}
