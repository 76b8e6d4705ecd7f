//! Stress and soak tests, bounded in time.
//!
//! ```text
//! cargo test -p ctxkit --release --features diagnostics --test stress
//! ```
//!
//! - `tree_stress`: `CTXKIT_STRESS_THREADS` threads (default 4) at random derive (every
//!   kind), cancel, drop, wait and register and stop callbacks on one shared tree for
//!   `CTXKIT_STRESS_SECS` seconds (default 10), checking invariants throughout; at the end
//!   every callback ran exactly once or was stopped, and every node is freed.
//! - `timer_soak`: `CTXKIT_SOAK_TIMERS` real-time timers (default 1,000,000) created and
//!   cancelled or dropped at random while `CTXKIT_SOAK_FIRING` of them (default 10,000) fire;
//!   none fires early, none is lost, every node is freed.
//! - `timer_thread_wakes_for_earlier_deadlines_from_racing_threads`: 4 threads at once make
//!   short deadlines while the timer thread sleeps until a far one (`CTXKIT_WAKE_ROUNDS`
//!   rounds, default 300); each fires, none early.
//!
//! Both count live nodes with `ctxkit::diagnostics::live_nodes()`, which any other test in
//! this binary would disturb: they take one lock so that they never overlap.
#![cfg(feature = "diagnostics")]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::diagnostics::{contexts_with_lanes, live_nodes};
use ctxkit::inspect::Snapshot;
use ctxkit::{AfterFunc, CancelHandle, Context, Error, Key};

mod common;
use common::{env_or, Rng};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn seed() -> u64 {
    env_or(
        "CTXKIT_STRESS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()),
    )
}

/// Waits until the live node count is back to `baseline` (the timer thread may briefly hold
/// a node it is firing), failing after `settle`.
fn assert_back_to(baseline: usize, settle: Duration) {
    let start = Instant::now();
    while live_nodes() != baseline && start.elapsed() < settle {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(live_nodes(), baseline, "nodes leaked");
}

fn code(err: Option<Error>) -> u8 {
    match err {
        None => 0,
        Some(Error::Canceled) => 1,
        Some(Error::DeadlineExceeded) => 2,
    }
}

// ---------------------------------------------------------------------------------------
// Tree stress
// ---------------------------------------------------------------------------------------

static VALUE: Key<u64> = Key::new("value");

/// One context of the shared tree, as the threads see it.
#[derive(Clone)]
struct Item {
    id: u64,
    ctx: Context,
    handle: Option<CancelHandle>,
    /// Ids of the items whose cancellation reaches this one (itself included).
    ancestors: Arc<Vec<u64>>,
    /// The first err anyone saw on it (`code`); it must never change.
    first_err: Arc<AtomicU8>,
    /// Its value: `VALUE` must read this forever.
    value: u64,
}

impl Item {
    /// Checks S3 (err never changes once set) and S15 (values stay readable).
    fn observe(&self) {
        // What another observer saw is read first: a read of the context that began before
        // the context was done, and ends after another thread saw it done, is no change.
        let seen = self.first_err.load(Ordering::SeqCst);
        let now = code(self.ctx.err());
        if seen != 0 {
            assert_eq!(now, seen, "err changed on item {}", self.id);
        }
        if now != 0 {
            if let Err(first) =
                self.first_err
                    .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst)
            {
                assert_eq!(now, first, "two errs seen on item {}", self.id);
            }
        }
        assert_eq!(self.ctx.value(&VALUE), Some(&self.value));
        if now != 0 {
            assert!(self.ctx.cause().is_some(), "done without a cause");
        }
    }
}

/// One callback registration and what became of it.
struct Registration {
    reg: AfterFunc,
    runs: Arc<AtomicUsize>,
    stopped: bool,
}

struct Shared {
    slots: Vec<Mutex<Option<Item>>>,
    next_id: AtomicU64,
    stop: AtomicBool,
    /// Counts of what the threads did, for the report.
    ops: [AtomicU64; 8],
}

const SLOTS: usize = 256;
const MAX_DEPTH: usize = 48;

impl Shared {
    fn get(&self, i: usize) -> Option<Item> {
        self.slots[i].lock().unwrap().clone()
    }

    fn put(&self, i: usize, item: Item) -> Option<Item> {
        self.slots[i].lock().unwrap().replace(item)
    }

    fn take(&self, i: usize) -> Option<Item> {
        self.slots[i].lock().unwrap().take()
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

fn derive(shared: &Shared, rng: &mut Rng, root: &Item, long: Duration) -> Item {
    let parent = shared
        .get(rng.below(SLOTS as u64) as usize)
        .filter(|p| p.ancestors.len() < MAX_DEPTH)
        .unwrap_or_else(|| root.clone());
    let parent_was_done = parent.ctx.is_done();
    let kind = rng.below(7);
    let id = shared.id();
    let mut ancestors = Vec::with_capacity(parent.ancestors.len() + 1);
    let mut value = parent.value;
    let (ctx, handle) = match kind {
        0 | 1 => {
            ancestors.extend(parent.ancestors.iter());
            let (c, h) = parent.ctx.with_cancel();
            (c, Some(h))
        }
        2 => {
            ancestors.extend(parent.ancestors.iter());
            let (c, h) = parent
                .ctx
                .with_timeout(Duration::from_micros(rng.below(20_000)));
            (c, Some(h))
        }
        3 => {
            ancestors.extend(parent.ancestors.iter());
            let (c, h) = parent.ctx.with_timeout(long);
            (c, Some(h))
        }
        4 => {
            ancestors.extend(parent.ancestors.iter());
            value = id;
            (parent.ctx.with_value(&VALUE, id), None)
        }
        5 => (parent.ctx.without_cancel(), None),
        _ => {
            let other = shared
                .get(rng.below(SLOTS as u64) as usize)
                .filter(|o| o.ancestors.len() < MAX_DEPTH)
                .unwrap_or_else(|| root.clone());
            ancestors.extend(parent.ancestors.iter());
            ancestors.extend(other.ancestors.iter());
            let (c, h) = parent.ctx.merge(&other.ctx);
            (c, Some(h))
        }
    };
    if handle.is_some() {
        ancestors.push(id);
    }
    let item = Item {
        id,
        ctx,
        handle,
        ancestors: Arc::new(ancestors),
        first_err: Arc::new(AtomicU8::new(0)),
        value,
    };
    // S5: a child of a done parent is done at creation (without_cancel aside).
    if parent_was_done && kind != 5 {
        assert!(
            item.ctx.is_done(),
            "child of a done parent is not done (S5)"
        );
    }
    item
}

fn worker(shared: Arc<Shared>, root: Item, seed: u64, long: Duration) -> Vec<Registration> {
    let mut rng = Rng::new(seed);
    let mut regs: Vec<Registration> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let slot = rng.below(SLOTS as u64) as usize;
        let op = rng.below(100);
        shared.ops[(op / 13) as usize % 8].fetch_add(1, Ordering::Relaxed);
        match op {
            // Derive into a slot (dropping what was there).
            0..=34 => {
                let item = derive(&shared, &mut rng, &root, long);
                item.observe();
                drop(shared.put(slot, item));
            }
            // Cancel, then check S4: every item below it is done when cancel returns.
            35..=46 => {
                let Some(item) = shared.get(slot) else {
                    continue;
                };
                let Some(h) = &item.handle else { continue };
                if rng.below(3) == 0 {
                    // Move its deadline (S33), racing the timer, cancels and other moves:
                    // into the past, a little ahead, or past the end of the run.
                    let ahead = [Duration::ZERO, Duration::from_millis(1), long];
                    let pick = rng.below(3) as usize;
                    let moved = h.set_timeout(ahead[pick]);
                    assert!(
                        moved || item.ctx.is_done(),
                        "only a done context refuses a move"
                    );
                    if pick == 0 {
                        assert!(
                            item.ctx.is_done(),
                            "a deadline moved to now cancels at once"
                        );
                    }
                    item.observe();
                    continue;
                }
                if rng.below(2) == 0 {
                    h.cancel();
                } else {
                    h.cancel_with_cause(std::io::Error::other(format!("c{}", item.id)));
                }
                assert!(item.ctx.is_done());
                item.observe();
                for i in 0..SLOTS {
                    if let Some(other) = shared.get(i) {
                        if other.ancestors.contains(&item.id) && !other.ctx.is_done() {
                            // What a person needs to find out why: both chains, the live
                            // tree under the cancelled one, and whether it came later.
                            let tree = Snapshot::of(&item.ctx).to_string();
                            thread::sleep(Duration::from_millis(100));
                            panic!(
                                "S4: item {} is below cancelled item {} but not done\n\
                                 below:     {}\ncancelled: {}\n\
                                 done 100 ms later: {:?}, origin {:?}\n\
                                 the tree under the cancelled item:\n{tree}",
                                other.id,
                                item.id,
                                other.ctx,
                                item.ctx,
                                other.ctx.err(),
                                other.ctx.origin(),
                            );
                        }
                    }
                }
            }
            // Drop a slot's item.
            47..=56 => drop(shared.take(slot)),
            // Wait briefly: S17, after a wait returns an error, err() is that error.
            57..=66 => {
                let Some(item) = shared.get(slot) else {
                    continue;
                };
                let limit = Duration::from_micros(rng.below(2000));
                if let Some(err) = item.ctx.wait_timeout(limit) {
                    assert_eq!(item.ctx.err(), Some(err));
                }
                item.observe();
            }
            // Register a callback.
            67..=80 => {
                let Some(item) = shared.get(slot) else {
                    continue;
                };
                let runs = Arc::new(AtomicUsize::new(0));
                let r2 = Arc::clone(&runs);
                let reg = if rng.below(2) == 0 {
                    // S20: when f runs, its context reports done. (f holds a clone of its
                    // context until it runs or is stopped.)
                    let me = item.ctx.clone();
                    item.ctx.on_cancel(move || {
                        assert!(me.is_done(), "on_cancel ran before its context was done");
                        r2.fetch_add(1, Ordering::SeqCst);
                    })
                } else {
                    item.ctx.after_func(move || {
                        r2.fetch_add(1, Ordering::SeqCst);
                    })
                };
                regs.push(Registration {
                    reg,
                    runs,
                    stopped: false,
                });
            }
            // Stop a registration made earlier.
            81..=87 => {
                if regs.is_empty() {
                    continue;
                }
                let i = rng.below(regs.len() as u64) as usize;
                let r = &mut regs[i];
                let before = r.runs.load(Ordering::SeqCst);
                if r.reg.stop() {
                    assert!(!r.stopped, "stop returned true twice");
                    assert_eq!(before, 0, "stop returned true after f ran");
                    r.stopped = true;
                }
            }
            // Observe: downward closure, eventually. A reader that sees a parent done
            // while its cancel is still walking may see a child not yet done, but the
            // child must be done soon after.
            _ => {
                let Some(item) = shared.get(slot) else {
                    continue;
                };
                item.observe();
                let Some(&parent) = item.ancestors.iter().rev().nth(1) else {
                    continue;
                };
                let parent_done = (0..SLOTS).any(|i| {
                    shared
                        .get(i)
                        .is_some_and(|p| p.id == parent && p.ctx.is_done())
                });
                if parent_done {
                    assert!(
                        item.ctx.wait_timeout(Duration::from_secs(5)).is_some(),
                        "item {} not done 5 s after its parent {parent} was seen done",
                        item.id
                    );
                }
            }
        }
    }
    regs
}

/// The tree stress, with "long" deadlines that outlast the run by a second: they never fire
/// while the threads work, and have all fired a second after the run, while the leak check
/// waits for the count to return to its baseline.
#[test]
fn tree_stress() {
    let secs = env_or("CTXKIT_STRESS_SECS", 10);
    let long = Duration::from_secs(secs + 1);
    run_tree_stress(secs, long, long + Duration::from_secs(10));
}

/// The same with hour-long deadlines, and a leak check that does not wait for them: every
/// context must be freed because nothing holds it any more (API S22), not because its
/// deadline passed.
#[test]
fn tree_stress_with_hour_long_deadlines() {
    let secs = env_or("CTXKIT_STRESS_SECS", 10);
    run_tree_stress(secs, Duration::from_secs(3600), Duration::from_secs(10));
}

/// S30-S31 on a tree that changes under the snapshot: depth first (each entry at most one
/// level below the one before it), and every done entry carries an origin that agrees with
/// its err, every live one none.
fn check_snapshot(snapshot: &Snapshot) {
    let entries = snapshot.entries();
    assert_eq!(entries[0].depth(), 0);
    for pair in entries.windows(2) {
        assert!(
            (1..=pair[0].depth() + 1).contains(&pair[1].depth()),
            "{snapshot}"
        );
    }
    for e in entries {
        match (e.err(), e.origin()) {
            (None, None) => {}
            (Some(err), Some(origin)) => assert_eq!(origin.err(), err),
            (err, origin) => panic!("err {err:?} with origin {origin:?}"),
        }
    }
}

fn run_tree_stress(secs: u64, long: Duration, settle: Duration) {
    let _serial = serial();
    let threads = env_or("CTXKIT_STRESS_THREADS", 4);
    let seed = seed();
    println!("tree_stress: {secs} s, {threads} threads, CTXKIT_STRESS_SEED={seed}");
    let baseline = live_nodes();
    let lanes_before = contexts_with_lanes();
    {
        let (root_ctx, root_handle) = Context::background().with_value(&VALUE, 0).with_cancel();
        let root = Item {
            id: 0,
            ctx: root_ctx,
            handle: Some(root_handle.clone()),
            ancestors: Arc::new(vec![0]),
            first_err: Arc::new(AtomicU8::new(0)),
            value: 0,
        };
        let shared = Arc::new(Shared {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            next_id: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            ops: Default::default(),
        });
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (shared, root) = (Arc::clone(&shared), root.clone());
                let seed = seed.wrapping_add(t.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                thread::Builder::new()
                    .name(format!("stress-{t}"))
                    .spawn(move || worker(shared, root, seed, long))
                    .unwrap()
            })
            .collect();
        // Snapshots of the tree while it is cancelled, derived and dropped (S30-S31).
        let snapshots = {
            let (shared, root) = (Arc::clone(&shared), root.ctx.clone());
            thread::spawn(move || {
                let mut taken = 0u64;
                while !shared.stop.load(Ordering::Relaxed) {
                    check_snapshot(&Snapshot::of(&root));
                    taken += 1;
                    thread::sleep(Duration::from_millis(2));
                }
                taken
            })
        };
        thread::sleep(Duration::from_secs(secs));
        shared.stop.store(true, Ordering::SeqCst);
        let snapshots = snapshots.join().expect("the snapshot thread failed");
        let regs: Vec<Registration> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("a stress thread failed"))
            .collect();

        // The end: cancel everything that can be cancelled. Every live item below the root
        // is then done (S4); items under a without_cancel with a handle are cancelled by it.
        root_handle.cancel();
        let items: Vec<Item> = (0..SLOTS).filter_map(|i| shared.take(i)).collect();
        for item in &items {
            if item.ancestors.contains(&0) {
                assert!(
                    item.ctx.is_done(),
                    "item {} under the root not done",
                    item.id
                );
            }
            if let Some(h) = &item.handle {
                h.cancel();
            }
            item.observe();
        }
        // Every callback ran exactly once or was stopped (S19-S21). A registration not
        // stopped yet either has started (stop is false, and it runs once) or can be
        // stopped now (its context can no longer be done, or never could).
        let (mut ran, mut stopped) = (0, 0);
        for r in &regs {
            if r.stopped || r.reg.stop() {
                stopped += 1;
                assert_eq!(r.runs.load(Ordering::SeqCst), 0, "stopped callback ran");
            } else {
                ran += 1;
                let start = Instant::now();
                while r.runs.load(Ordering::SeqCst) == 0
                    && start.elapsed() < Duration::from_secs(10)
                {
                    thread::sleep(Duration::from_millis(1));
                }
                assert_eq!(
                    r.runs.load(Ordering::SeqCst),
                    1,
                    "started callback ran {} times",
                    r.runs.load(Ordering::SeqCst)
                );
            }
        }
        let ops: Vec<u64> = shared
            .ops
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .collect();
        let lanes = contexts_with_lanes() - lanes_before;
        println!(
            "tree_stress: {} contexts made ({lanes} with lanes), ops by group {ops:?}, callbacks: {ran} ran, {stopped} stopped, {snapshots} snapshots",
            shared.next_id.load(Ordering::Relaxed)
        );
        drop((items, regs, root, root_handle, shared));
    }
    assert_back_to(baseline, settle);
}

// ---------------------------------------------------------------------------------------
// Timer soak
// ---------------------------------------------------------------------------------------

/// The real-time timer thread sleeping until a far deadline must wake for an earlier one
/// made by any thread, even while other threads make theirs at the same moment (timer/mod.rs,
/// T6): a lost wake-up would leave these 2 ms deadlines an hour behind.
#[test]
fn timer_thread_wakes_for_earlier_deadlines_from_racing_threads() {
    let _serial = serial();
    let rounds = env_or("CTXKIT_WAKE_ROUNDS", 300);
    let (_far, _hf) = Context::background().with_timeout(Duration::from_secs(3600));
    for round in 0..rounds {
        let start = Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    let micros = 500 + (round * 7 + t * 331) % 1500;
                    let (ctx, _h) =
                        Context::background().with_timeout(Duration::from_micros(micros));
                    let deadline = ctx.deadline().unwrap();
                    let err = ctx.wait_timeout(Duration::from_secs(10));
                    assert_eq!(err, Some(Error::DeadlineExceeded), "a wake-up was lost");
                    assert!(Instant::now() >= deadline, "fired early");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a racing thread failed");
        }
    }
}

#[test]
fn timer_soak() {
    let _serial = serial();
    let total = env_or("CTXKIT_SOAK_TIMERS", 1_000_000);
    let firing = env_or("CTXKIT_SOAK_FIRING", 10_000).min(total);
    let threads = 2u64;
    let seed = seed();
    println!("timer_soak: {total} timers, {firing} fire, CTXKIT_STRESS_SEED={seed}");
    let baseline = live_nodes();
    let started = Instant::now();
    let early = Arc::new(AtomicUsize::new(0));
    let fired = Arc::new(AtomicUsize::new(0));
    let per_thread = total / threads;
    let fire_every = (total / firing.max(1)).max(1);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (early, fired) = (Arc::clone(&early), Arc::clone(&fired));
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut window: Vec<(Context, CancelHandle)> = Vec::with_capacity(1024);
                let mut firing_ones = Vec::new();
                let (mut cancelled, mut dropped) = (0u64, 0u64);
                for i in 0..per_thread {
                    let n = t * per_thread + i;
                    if n.is_multiple_of(fire_every) && (firing_ones.len() as u64) < firing / threads
                    {
                        // One of the timers that fire: within 0-20 ms.
                        let (ctx, h) = Context::background()
                            .with_timeout(Duration::from_micros(rng.below(20_000)));
                        let deadline = ctx.deadline().expect("a deadline");
                        let (e2, f2, me) = (Arc::clone(&early), Arc::clone(&fired), ctx.clone());
                        drop(ctx.on_cancel(move || {
                            if Instant::now() < deadline {
                                e2.fetch_add(1, Ordering::SeqCst);
                            }
                            assert_eq!(me.err(), Some(Error::DeadlineExceeded));
                            f2.fetch_add(1, Ordering::SeqCst);
                        }));
                        firing_ones.push((ctx, h));
                        continue;
                    }
                    // The others: far deadlines, cancelled or dropped at random.
                    let timeout = Duration::from_secs(600 + rng.below(3600));
                    window.push(Context::background().with_timeout(timeout));
                    if window.len() >= 1024 {
                        let k = rng.below(window.len() as u64) as usize;
                        let (ctx, h) = window.swap_remove(k);
                        if rng.below(2) == 0 {
                            h.cancel();
                            assert_eq!(ctx.err(), Some(Error::Canceled));
                            cancelled += 1;
                        } else {
                            dropped += 1;
                        }
                    }
                }
                for (ctx, h) in window.drain(..) {
                    h.cancel();
                    assert_eq!(ctx.err(), Some(Error::Canceled));
                    cancelled += 1;
                }
                for (ctx, _h) in &firing_ones {
                    assert_eq!(
                        ctx.wait_timeout(Duration::from_secs(20)),
                        Some(Error::DeadlineExceeded),
                        "a timer was lost"
                    );
                }
                (firing_ones.len(), cancelled, dropped)
            })
        })
        .collect();
    let mut expected = 0;
    let (mut cancelled, mut dropped) = (0, 0);
    for w in workers {
        let (f, c, d) = w.join().expect("a soak thread failed");
        expected += f;
        cancelled += c;
        dropped += d;
    }
    println!(
        "timer_soak: {expected} fired, {cancelled} cancelled, {dropped} dropped in {:?}",
        started.elapsed()
    );
    // A deadline on the real clock runs its on_cancel on the callback pool, after the
    // context reports done: give the last callbacks a moment to finish.
    let until = Instant::now() + Duration::from_secs(10);
    while fired.load(Ordering::SeqCst) < expected && Instant::now() < until {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(fired.load(Ordering::SeqCst), expected, "a timer was lost");
    assert_eq!(early.load(Ordering::SeqCst), 0, "a timer fired early");
    assert_back_to(baseline, Duration::from_secs(10));
}
