//! Scale figures for ctxkit beside Go's context (`tools/bench/go/` prints the same lines for
//! Go): fan-out wake-ups, a wide and a deep tree of a million contexts, a million live timers,
//! how late 10,000 timers fire, and how late a deadline fires behind a storm of 100,000
//! deadlines with callbacks (and how many threads the process has then), and what a chain of
//! 10,000 distinct value keys costs.
//!
//! ```text
//! cargo bench -p ctxkit --bench scale                           # full sizes (under a minute)
//! cargo bench -p ctxkit --bench scale -- --size small           # sizes / 100
//! cargo bench -p ctxkit --bench scale -- --only wide,timers     # some parts only
//! cargo bench -p ctxkit --bench scale -- --only wide --every-run # each run of `steady` too
//! cargo test -p ctxkit --bench scale -- --size small            # unoptimised, a quick check (CI)
//! ```
//!
//! Each figure is one line: `name value unit`. Lines starting `tokio_util/` are the same
//! shape on tokio-util's `CancellationToken`, lines starting `floor/` the least any context
//! could do in that shape. In the wide, deep and timers parts, and for the fan-outs of
//! 100,000 tasks, each of them runs five times in a row and prints the median time
//! (`steady`). Bytes are counted by a global allocator in this
//! benchmark (net bytes still allocated after the step, over the number of contexts); the
//! library itself declares none. Run by `cargo test` (without `--bench`), it defaults to
//! `--size small`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{CancelHandle, Context};
use tokio_util::sync::CancellationToken;

// The test suite's counting allocator: allocations and net bytes over every thread.
#[path = "../tests/common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{live_bytes, total_allocs as allocs, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------

fn line(name: &str, value: f64, unit: &str) {
    let taken = TAKEN.with(|t| match t.borrow_mut().as_mut() {
        Some(lines) => {
            lines.push((name.to_string(), value, unit.to_string()));
            true
        }
        None => false,
    });
    if taken {
        return;
    }
    if unit == "ms" {
        println!("{name} {value:.3} {unit}");
    } else {
        println!("{name} {value:.1} {unit}");
    }
}

/// How many times in a row [`steady`] runs a part.
const RUNS: usize = 5;

thread_local! {
    /// While [`steady`] runs a part: the lines it printed, in order.
    static TAKEN: std::cell::RefCell<Option<Vec<(String, f64, String)>>> =
        const { std::cell::RefCell::new(None) };
}

/// Set by `--every-run`: [`steady`] prints each run's lines too, as `NAME/run=K`.
static EVERY_RUN: AtomicBool = AtomicBool::new(false);

/// Runs `part` [`RUNS`] times in a row and prints each of its lines once: a time as the
/// median of the runs, and a count of bytes or allocations as the first run counted it
/// (the run that grew whatever the part keeps, such as the timer queue's array).
///
/// A part that allocates a million contexts runs much slower in its first run than on
/// memory it freed itself: fresh memory, a first growth of what it keeps. Run once each,
/// the contenders of a part were measured each on whatever the one before it had left, and
/// the first paid those costs for the others (`--every-run` shows a contender's first run
/// against its later ones: BENCHMARKS.md, "Each contender on its own memory"). Run this
/// way, each contender's median is a run on memory it freed itself, whatever its place in
/// the process: the steady state of a program that makes and drops contexts all day.
fn steady(mut part: impl FnMut()) {
    let mut runs: Vec<Vec<(String, f64, String)>> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        TAKEN.with(|t| *t.borrow_mut() = Some(Vec::new()));
        part();
        runs.push(TAKEN.with(|t| t.borrow_mut().take()).unwrap_or_default());
    }
    for (i, (name, first, unit)) in runs[0].iter().enumerate() {
        let value = if unit.starts_with('B') || unit.starts_with("allocs") {
            *first
        } else {
            let mut values: Vec<f64> = runs.iter().map(|run| run[i].1).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        line(name, value, unit);
        if EVERY_RUN.load(Ordering::Relaxed) {
            for (k, run) in runs.iter().enumerate() {
                line(&format!("{name}/run={}", k + 1), run[i].1, unit);
            }
        }
    }
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Set by the last of `n` waiters; the main thread sleeps on it (never spins: the machine
/// has two cores and both belong to the waiters' runtime).
struct Countdown {
    left: AtomicUsize,
    ready: AtomicUsize,
    done: Mutex<bool>,
    cv: Condvar,
}

impl Countdown {
    fn new(n: usize) -> Arc<Countdown> {
        Arc::new(Countdown {
            left: AtomicUsize::new(n),
            ready: AtomicUsize::new(0),
            done: Mutex::new(false),
            cv: Condvar::new(),
        })
    }
    fn arrive(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.done.lock().unwrap() = true;
            self.cv.notify_all();
        }
    }
    fn wait_ready(&self, n: usize) {
        while self.ready.load(Ordering::Acquire) < n {
            std::thread::sleep(Duration::from_millis(1));
        }
        // As Go's program: give every waiter time to block.
        std::thread::sleep(Duration::from_millis(100));
    }
    fn wait_all(&self) {
        let mut done = self.done.lock().unwrap();
        while !*done {
            done = self.cv.wait(done).unwrap();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Spawns `n` tasks on `rt` that each await `wait()` and then arrive, and returns once all
/// of them are pending: the waiters of a fan-out wake.
fn spawn_waiters<F>(rt: &tokio::runtime::Runtime, n: usize, wait: impl Fn() -> F) -> Arc<Countdown>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let cd = Countdown::new(n);
    for _ in 0..n {
        let (wait, cd) = (wait(), Arc::clone(&cd));
        rt.spawn(async move {
            cd.ready.fetch_add(1, Ordering::Release);
            wait.await;
            cd.arrive();
        });
    }
    cd.wait_ready(n);
    cd
}

// ---------------------------------------------------------------------------------------
// 1) fan-out: n waiters on one context; time from cancel() to all woken
// ---------------------------------------------------------------------------------------

fn fanout_tasks(n: usize) {
    fanout_tasks_from(n, false);
    fanout_tasks_from(n, true);
}

/// `from_task`: cancel() is called from a task on the runtime, as Go's main goroutine runs
/// on a P; otherwise from the main thread, outside the runtime.
fn fanout_tasks_from(n: usize, from_task: bool) {
    let rt = runtime();
    let (ctx, handle) = Context::background().with_cancel();
    let cd = spawn_waiters(&rt, n, || {
        let ctx = ctx.clone();
        async move {
            ctx.done().await;
        }
    });
    if !from_task {
        timed_wake(&format!("fanout_wake/tasks={n}"), n, &cd, || {
            handle.cancel()
        });
        return drop(rt);
    }
    let canceller = rt.spawn(async move {
        let t = Instant::now();
        handle.cancel();
        (t, t.elapsed())
    });
    cd.wait_all();
    let (t, returned) = rt.block_on(canceller).expect("the cancelling task");
    let total = t.elapsed();
    let name = format!("fanout_wake/tasks={n}/from_task");
    // How long cancel() itself took (collecting and waking the wakers), then the total.
    line(
        &format!("{name}/cancel_returned"),
        per(returned, n),
        "ns/waiter",
    );
    line(&name, per(total, n), "ns/waiter");
    drop(rt);
}

/// ctxkit's own share of a fan-out wake: n pending `Done` futures whose waker only counts,
/// so cancel() is the core's work (collecting and calling the wakers) with no scheduler.
fn fanout_counting_wakers(n: usize) {
    struct Count(AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = std::task::Waker::from(Arc::clone(&count));
    let mut cx = std::task::Context::from_waker(&waker);
    let (ctx, handle) = Context::background().with_cancel();
    let mut futures: Vec<ctxkit::Done> = (0..n).map(|_| ctx.done()).collect();
    for f in &mut futures {
        assert!(std::pin::Pin::new(f).poll(&mut cx).is_pending());
    }
    let t = Instant::now();
    handle.cancel();
    let took = t.elapsed();
    assert_eq!(count.0.load(Ordering::Relaxed), n);
    line(
        &format!("fanout_wake/counting_wakers={n}"),
        per(took, n),
        "ns/waiter",
    );
}

/// The floor of a fan-out wake on this runtime and machine: n tasks pending on one plain
/// list of wakers (a `Mutex<Vec<Waker>>`, the least any cancellation can keep), all woken
/// from the main thread as `fanout_wake/tasks` is. No context, no token: what is left is the
/// runtime's own work of scheduling, polling and completing each woken task.
fn fanout_tasks_floor(n: usize) {
    plain_fanout(n, Some(&format!("floor/fanout_wake/tasks={n}")));
}

/// The same fan-out, untimed, run before the first measured one: the first fan-out of the
/// process otherwise pays alone for the memory its tasks are the first to touch, whichever
/// contender runs first, ctxkit's or tokio-util's (BENCHMARKS.md, 3 Dec 2026).
fn fanout_warm_up(n: usize) {
    plain_fanout(n, None);
}

/// n tasks pending on one plain list of wakers, all woken from the main thread; timed and
/// printed under `name` if there is one.
fn plain_fanout(n: usize, name: Option<&str>) {
    struct Wakers {
        fired: AtomicBool,
        list: Mutex<Vec<std::task::Waker>>,
    }
    /// Pending until `fired`; registers its waker once per poll, as `Done` does.
    struct Wait(Arc<Wakers>);
    impl std::future::Future for Wait {
        type Output = ();
        fn poll(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            if self.0.fired.load(Ordering::Acquire) {
                return std::task::Poll::Ready(());
            }
            let mut list = self.0.list.lock().unwrap();
            if self.0.fired.load(Ordering::Acquire) {
                return std::task::Poll::Ready(());
            }
            list.push(cx.waker().clone());
            std::task::Poll::Pending
        }
    }
    let rt = runtime();
    let wakers = Arc::new(Wakers {
        fired: AtomicBool::new(false),
        list: Mutex::new(Vec::with_capacity(n)),
    });
    let cd = spawn_waiters(&rt, n, || Wait(Arc::clone(&wakers)));
    let wake = || {
        let list = {
            let mut list = wakers.list.lock().unwrap();
            wakers.fired.store(true, Ordering::Release);
            std::mem::take(&mut *list)
        };
        for waker in list {
            waker.wake();
        }
    };
    match name {
        Some(name) => timed_wake(name, n, &cd, wake),
        None => {
            wake();
            cd.wait_all();
        }
    }
    drop(rt);
}

/// Times `wake` (waking `n` waiters, each of which arrives at `cd`), then until the last
/// one arrived, and prints both per waiter: `NAME/cancel_returned` and `NAME`.
fn timed_wake(name: &str, n: usize, cd: &Countdown, wake: impl FnOnce()) {
    let t = Instant::now();
    wake();
    let returned = t.elapsed();
    cd.wait_all();
    let total = t.elapsed();
    line(
        &format!("{name}/cancel_returned"),
        per(returned, n),
        "ns/waiter",
    );
    line(name, per(total, n), "ns/waiter");
}

fn fanout_tasks_tokio_util(n: usize) {
    let rt = runtime();
    let token = CancellationToken::new();
    let cd = spawn_waiters(&rt, n, || token.clone().cancelled_owned());
    timed_wake(&format!("tokio_util/fanout_wake/tasks={n}"), n, &cd, || {
        token.cancel()
    });
    drop(rt);
}

fn fanout_threads(n: usize) {
    let (ctx, handle) = Context::background().with_cancel();
    let cd = Countdown::new(n);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (ctx, cd) = (ctx.clone(), Arc::clone(&cd));
            std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    cd.ready.fetch_add(1, Ordering::Release);
                    ctx.wait();
                    cd.arrive();
                })
                .expect("a thread")
        })
        .collect();
    cd.wait_ready(n);
    let t = Instant::now();
    handle.cancel();
    cd.wait_all();
    let total = t.elapsed();
    line(
        &format!("fanout_wake/threads={n}"),
        per(total, n),
        "ns/waiter",
    );
    for t in threads {
        t.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// 2) wide: n children of one parent; create, then cancel the parent
// ---------------------------------------------------------------------------------------

fn wide(n: usize) {
    let (root, handle) = Context::background().with_cancel();
    let (m0, a0) = (live_bytes(), allocs());
    let t = Instant::now();
    let mut kids: Vec<Context> = Vec::with_capacity(n);
    for _ in 0..n {
        kids.push(root.with_cancel().0);
    }
    let create = t.elapsed();
    let (bytes, count) = (live_bytes() - m0, allocs() - a0);
    let t = Instant::now();
    handle.cancel();
    let cancel = t.elapsed();
    assert!(kids.iter().all(Context::is_done));
    let t = Instant::now();
    drop(kids);
    let dropped = t.elapsed();
    line(&format!("wide/n={n}/create"), per(create, n), "ns/child");
    line(
        &format!("wide/n={n}/bytes"),
        bytes as f64 / n as f64,
        "B/child",
    );
    line(
        &format!("wide/n={n}/allocs"),
        count as f64 / n as f64,
        "allocs/child",
    );
    line(&format!("wide/n={n}/cancel"), per(cancel, n), "ns/child");
    line(&format!("wide/n={n}/drop"), per(dropped, n), "ns/child");
}

fn wide_tokio_util(n: usize) {
    let root = CancellationToken::new();
    let m0 = live_bytes();
    let t = Instant::now();
    let mut kids: Vec<CancellationToken> = Vec::with_capacity(n);
    for _ in 0..n {
        kids.push(root.child_token());
    }
    let create = t.elapsed();
    let bytes = live_bytes() - m0;
    let t = Instant::now();
    root.cancel();
    let cancel = t.elapsed();
    assert!(kids.iter().all(CancellationToken::is_cancelled));
    let t = Instant::now();
    drop(kids);
    let dropped = t.elapsed();
    let name = format!("tokio_util/wide/n={n}");
    line(&format!("{name}/create"), per(create, n), "ns/child");
    line(&format!("{name}/bytes"), bytes as f64 / n as f64, "B/child");
    line(&format!("{name}/cancel"), per(cancel, n), "ns/child");
    line(&format!("{name}/drop"), per(dropped, n), "ns/child");
}

/// A parent of the floor of `wide/create`: its children, weakly, under its lock.
struct FloorParent<const PAD: usize> {
    children: Mutex<Vec<Weak<FloorChild<PAD>>>>,
}

/// A child of the floor of `wide/create`: a reference to its parent, and `PAD` words that
/// nothing reads.
struct FloorChild<const PAD: usize> {
    _parent: Arc<FloorParent<PAD>>,
    _pad: [u64; PAD],
}

/// The floor of `wide/create` with Go's API, with no context at all. Per child: one
/// allocation holding a strong reference to the parent (a child keeps its ancestors) and
/// `PAD` words more; a weak reference to it pushed onto the parent's list under the parent's
/// lock (a cancellation reaches it, and it goes when its last owner does); and the second
/// owner `with_cancel` hands back (Go's cancel function), dropped at once as `wide` drops
/// it. Run with no words more (a child of 8 bytes, under `NAME` `create`), and with 9 (80
/// bytes, the size of ctxkit's node), which tells what the bytes of a context cost its
/// creation.
fn wide_floor<const PAD: usize>(n: usize, name: &str) {
    let parent = Arc::new(FloorParent::<PAD> {
        children: Mutex::new(Vec::new()),
    });
    let t = Instant::now();
    let mut kids: Vec<Arc<FloorChild<PAD>>> = Vec::with_capacity(n);
    for _ in 0..n {
        let child = Arc::new(FloorChild {
            _parent: Arc::clone(&parent),
            _pad: [0; PAD],
        });
        let weak = Arc::downgrade(&child);
        parent.children.lock().unwrap().push(weak);
        drop(std::hint::black_box(Arc::clone(&child)));
        kids.push(child);
    }
    let create = t.elapsed();
    std::hint::black_box(&kids);
    drop(kids);
    line(
        &format!("floor/wide/n={n}/{name}"),
        per(create, n),
        "ns/child",
    );
}

// ---------------------------------------------------------------------------------------
// 3) deep: a chain of n contexts; create, then cancel the root
// ---------------------------------------------------------------------------------------

fn deep(n: usize) {
    let (root, handle) = Context::background().with_cancel();
    let (m0, a0) = (live_bytes(), allocs());
    let t = Instant::now();
    let mut c = root.clone();
    for _ in 0..n {
        c = c.with_cancel().0;
    }
    let create = t.elapsed();
    let (bytes, count) = (live_bytes() - m0, allocs() - a0);
    let t = Instant::now();
    handle.cancel();
    assert!(c.is_done());
    let cancel = t.elapsed();
    let t = Instant::now();
    drop(c);
    let dropped = t.elapsed();
    line(&format!("deep/n={n}/create"), per(create, n), "ns/level");
    line(
        &format!("deep/n={n}/bytes"),
        bytes as f64 / n as f64,
        "B/level",
    );
    line(
        &format!("deep/n={n}/allocs"),
        count as f64 / n as f64,
        "allocs/level",
    );
    line(&format!("deep/n={n}/cancel"), per(cancel, n), "ns/level");
    line(&format!("deep/n={n}/drop"), per(dropped, n), "ns/level");
}

/// A level of the floor of `deep/create`: its parent, and its one child held weakly under a
/// lock.
struct FloorLevel {
    parent: Option<Arc<FloorLevel>>,
    child: Mutex<Option<Weak<FloorLevel>>>,
}

/// The floor of `deep/create` with Go's API, with no context at all. Per level: one
/// allocation holding a strong reference to the level above (a level keeps its ancestors);
/// a weak reference to it put into the level above under that level's lock (a cancellation
/// reaches it, and it goes when its last owner does); the second owner `with_cancel` hands
/// back (Go's cancel function), dropped at once as `deep` drops it; and the reference to the
/// level above, dropped as `deep` drops the context it derived from.
fn deep_floor(n: usize) {
    let level = |parent| FloorLevel {
        parent,
        child: Mutex::new(None),
    };
    let root = Arc::new(level(None));
    let t = Instant::now();
    let mut c = Arc::clone(&root);
    for _ in 0..n {
        let next = Arc::new(level(Some(Arc::clone(&c))));
        *c.child.lock().unwrap() = Some(Arc::downgrade(&next));
        drop(std::hint::black_box(Arc::clone(&next)));
        c = next;
    }
    let create = t.elapsed();
    drop(root);
    // One level at a time from the bottom: a recursive drop of a million levels would
    // overflow the stack.
    let mut bottom = Some(c);
    while let Some(Ok(level)) = bottom.map(Arc::try_unwrap) {
        bottom = level.parent;
    }
    line(
        &format!("floor/deep/n={n}/create"),
        per(create, n),
        "ns/level",
    );
}

// ---------------------------------------------------------------------------------------
// 4) n live with_timeout(1h); create, then cancel each, then drop each
// ---------------------------------------------------------------------------------------

fn timers(n: usize) {
    let root = Context::background();
    let (m0, a0) = (live_bytes(), allocs());
    let t = Instant::now();
    let cs: Vec<CancelHandle> = (0..n)
        .map(|_| root.with_timeout(Duration::from_secs(3600)).1)
        .collect();
    let create = t.elapsed();
    let (bytes, count) = (live_bytes() - m0, allocs() - a0);
    let t = Instant::now();
    for f in &cs {
        f.cancel();
    }
    let cancel = t.elapsed();
    // Each handle holds the last reference to its context: the drop frees it and counts its
    // entry dead in the timer queue, which a cancel leaves in place.
    let t = Instant::now();
    drop(cs);
    let dropped = t.elapsed();
    line(&format!("timers/n={n}/create"), per(create, n), "ns");
    line(&format!("timers/n={n}/bytes"), bytes as f64 / n as f64, "B");
    line(
        &format!("timers/n={n}/allocs"),
        count as f64 / n as f64,
        "allocs",
    );
    line(&format!("timers/n={n}/cancel"), per(cancel, n), "ns");
    line(&format!("timers/n={n}/drop"), per(dropped, n), "ns");
}

/// The floor of `timers/create`: what any `with_timeout` has to do, with no context at all.
/// Per timer: one clock read for the deadline, one allocation of 32 bytes for the context (a
/// deadline, a state and two links: less than a context of ctxkit, Go or tokio-util), and the
/// deadline pushed onto the end of an array, as onto a heap that deadlines reach in order.
fn timers_floor(n: usize) {
    let epoch = Instant::now();
    let t = Instant::now();
    let mut queue: Vec<(u64, u32)> = Vec::new();
    let contexts: Vec<Box<[u64; 4]>> = (0..n)
        .map(|i| {
            let at = (Instant::now() - epoch + Duration::from_secs(3600)).as_nanos() as u64;
            queue.push((at, i as u32));
            Box::new([at, 0, 0, 0])
        })
        .collect();
    let create = t.elapsed();
    std::hint::black_box((&contexts, &queue));
    drop((contexts, queue));
    line(&format!("floor/timers/n={n}/create"), per(create, n), "ns");
}

/// The floor of `timers/create` with Go's API, with no context at all: `timers_floor`'s work
/// plus the references any context of the API needs, as in `wide_floor` and `deep_floor`.
/// Per timer: one clock read; one allocation of `8 * WORDS` bytes; a weak reference to it
/// pushed with its deadline onto the queue's array under the queue's lock (the queue must
/// not keep a dropped context alive until its deadline); and the second owner
/// `with_timeout` hands back (Go's cancel function), kept, while the first is dropped, as
/// `timers` does. Run with 4 words (32 bytes, as
/// `timers_floor`), and with 10 (80 bytes, the size of ctxkit's node, whose fields of
/// provenance, names and the live tree take 24 of them), which tells what the bytes of a
/// context cost its creation.
fn timers_floor_api<const WORDS: usize>(n: usize, name: &str) {
    let epoch = Instant::now();
    let queue: Mutex<Vec<(u64, Weak<[u64; WORDS]>)>> = Mutex::new(Vec::new());
    let t = Instant::now();
    let handles: Vec<Arc<[u64; WORDS]>> = (0..n)
        .map(|_| {
            let at = (Instant::now() - epoch + Duration::from_secs(3600)).as_nanos() as u64;
            let mut words = [0; WORDS];
            words[0] = at;
            let context = Arc::new(words);
            queue.lock().unwrap().push((at, Arc::downgrade(&context)));
            let handle = Arc::clone(&context);
            drop(std::hint::black_box(context));
            handle
        })
        .collect();
    let create = t.elapsed();
    std::hint::black_box((&handles, &queue));
    drop((handles, queue));
    line(&format!("floor/timers/n={n}/{name}"), per(create, n), "ns");
}

// ---------------------------------------------------------------------------------------
// 5) timer lateness: n contexts with a 50 ms timeout, each awaited by a task
// ---------------------------------------------------------------------------------------

fn timer_lateness(n: usize) {
    // The floor first: one deadline at a time, waited for by a blocked thread, so nothing
    // queues behind it (the timer thread's wake-up plus the waiter's).
    let mut alone: Vec<Duration> = (0..20)
        .map(|_| {
            let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(20));
            ctx.wait();
            Instant::now().saturating_duration_since(ctx.deadline().expect("a deadline"))
        })
        .collect();
    alone.sort();
    line("timer_lateness/alone/p50", ms(alone[10]), "ms");

    let rt = runtime();
    let mut waiters = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (ctx, h) = Context::background().with_timeout(Duration::from_millis(50));
        handles.push(h);
        waiters.push(rt.spawn(async move {
            ctx.done().await;
            // Lateness against this context's own deadline.
            Instant::now().saturating_duration_since(ctx.deadline().expect("a deadline"))
        }));
    }
    let late = sorted_lateness(&rt, waiters);
    let pick = |q: f64| late[((late.len() - 1) as f64 * q).round() as usize];
    // The spread shows whether firing keeps up: a late start lifts every quantile alike; a
    // backlog makes lateness grow from the first context fired to the last.
    for (name, q) in [("min", 0.0), ("p10", 0.1), ("p90", 0.9)] {
        line(&format!("timer_lateness/n={n}/{name}"), ms(pick(q)), "ms");
    }
    line(&format!("timer_lateness/n={n}/p50"), ms(pick(0.5)), "ms");
    line(&format!("timer_lateness/n={n}/p99"), ms(pick(0.99)), "ms");
    line(
        &format!("timer_lateness/n={n}/max"),
        ms(*late.last().unwrap()),
        "ms",
    );
}

/// Awaits every waiter on `rt`: their lateness, sorted.
fn sorted_lateness(
    rt: &tokio::runtime::Runtime,
    waiters: Vec<tokio::task::JoinHandle<Duration>>,
) -> Vec<Duration> {
    let mut late: Vec<Duration> = rt.block_on(async {
        let mut late = Vec::with_capacity(waiters.len());
        for w in waiters {
            late.push(w.await.expect("a waiter"));
        }
        late
    });
    late.sort();
    late
}

/// The floor of timer lateness on this runtime and machine: the same n tasks, each asleep
/// on the runtime's own timer (`tokio::time::sleep_until`) to a deadline 50 ms after it was
/// made, measured as `timer_lateness` is. No context: what is left is how late the runtime
/// itself wakes a task for a deadline while n of them come due.
fn timer_lateness_floor(n: usize) {
    let rt = runtime();
    let mut waiters = Vec::with_capacity(n);
    for _ in 0..n {
        let deadline = Instant::now() + Duration::from_millis(50);
        waiters.push(rt.spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            Instant::now().saturating_duration_since(deadline)
        }));
    }
    let late = sorted_lateness(&rt, waiters);
    let pick = |q: f64| late[((late.len() - 1) as f64 * q).round() as usize];
    for (name, q) in [("min", 0.0), ("p50", 0.5), ("p99", 0.99)] {
        line(
            &format!("floor/timer_lateness/n={n}/{name}"),
            ms(pick(q)),
            "ms",
        );
    }
}

// ---------------------------------------------------------------------------------------
// 6) a storm: n deadlines at one instant, each with an after_func, and a probe 100 ms later
// ---------------------------------------------------------------------------------------

/// The threads of this process, from `/proc` (Linux); 0 elsewhere.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn storm(n: usize) {
    let ran = Arc::new(AtomicUsize::new(0));
    let at = Instant::now() + Duration::from_millis(200);
    let storm: Vec<(Context, CancelHandle)> = (0..n)
        .map(|_| {
            let (ctx, h) = Context::background().with_deadline(at);
            let ran = Arc::clone(&ran);
            drop(ctx.after_func(move || {
                ran.fetch_add(1, Ordering::Relaxed);
            }));
            (ctx, h)
        })
        .collect();
    let (probe, _h) = Context::background().with_deadline(at + Duration::from_millis(100));
    probe.wait();
    let late = Instant::now().saturating_duration_since(probe.deadline().expect("a deadline"));
    let alive = threads();
    line(&format!("storm/n={n}/probe_late"), ms(late), "ms");
    line(&format!("storm/n={n}/threads"), alive as f64, "threads");
    let start = Instant::now();
    while ran.load(Ordering::Relaxed) < n && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(ran.load(Ordering::Relaxed), n, "every callback ran");
    drop(storm);
}

// ---------------------------------------------------------------------------------------
// 7) many distinct keys in one chain of values
// ---------------------------------------------------------------------------------------

/// Distinct keys: each element of a `static` array is a key of its own.
static KEYS: [ctxkit::Key<usize>; 10_000] = [const { ctxkit::Key::new("many") }; 10_000];

fn keys(n: usize) {
    let before = live_bytes();
    let start = Instant::now();
    let ctx = KEYS[..n]
        .iter()
        .enumerate()
        .fold(Context::background(), |ctx, (i, key)| {
            ctx.with_value(key, i)
        });
    let took = start.elapsed();
    let bytes = live_bytes() - before;
    assert_eq!(ctx.value(&KEYS[0]), Some(&0));
    line(&format!("keys/n={n}/with_value"), per(took, n), "ns");
    line(
        &format!("keys/n={n}/bytes"),
        bytes as f64 / n as f64,
        "B/key",
    );
}

// ---------------------------------------------------------------------------------------
// snapshot: the live tree of n contexts, read while other threads cancel and derive
// ---------------------------------------------------------------------------------------

/// `n` live contexts under one root (requests of 1 to 4 calls each, as a server holds them),
/// then snapshots of the whole tree, alone and while two threads keep deriving and
/// cancelling contexts under the same root.
fn snapshot(n: usize) {
    use ctxkit::inspect::Snapshot;
    let (root, _root_handle) = Context::background().with_cancel();
    let mut held = Vec::with_capacity(n);
    let mut made = 0;
    while made < n {
        let request = root.with_name(format!("GET /orders/{made}"));
        let (req, h) = request.with_timeout(Duration::from_secs(3600));
        made += 1;
        for _ in 0..(made % 4).min(n - made) {
            held.push(req.with_cancel());
            made += 1;
        }
        held.push((req, h));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let take = |runs: usize| {
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let s = Snapshot::of(&root);
                let d = ms(t.elapsed());
                assert!(s.entries().len() > n, "{} entries", s.entries().len());
                d
            })
            .collect::<Vec<_>>()
    };
    line(&format!("snapshot/n={n}/alone"), median(take(11)), "ms");
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let (root, stop) = (root.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (req, h) = root.with_name("churn").with_cancel();
                    let (_call, _c) = req.with_timeout(Duration::from_secs(1));
                    h.cancel();
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    let busy = take(11);
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = churn.into_iter().map(|t| t.join().unwrap()).sum();
    line(
        &format!("snapshot/n={n}/while_churning"),
        median(busy),
        "ms",
    );
    line(&format!("snapshot/n={n}/churn_ops"), ops as f64, "ops");
    drop(held);
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test`), the sizes default to small.
    let mut div = if std::env::args().any(|a| a == "--bench") {
        1
    } else {
        100
    };
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--size" => match args.next().as_deref() {
                Some("small") => div = 100,
                Some("full") => div = 1,
                other => panic!("--size small|full, not {other:?}"),
            },
            "--only" => only = args.next(),
            "--every-run" => EVERY_RUN.store(true, Ordering::Relaxed),
            "-h" | "--help" => {
                println!("scale [--size small|full] [--only PART[,PART...]] [--every-run]  (parts: fanout, wide, deep, timers, lateness, storm, keys, snapshot)");
                return;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let run = |part: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p == part))
    };
    if run("fanout") {
        fanout_warm_up(100_000 / div);
        // The fan-outs of 100,000 tasks, ctxkit's and tokio-util's, are short enough to run
        // `steady` too: a median of five for each.
        steady(|| fanout_tasks(100_000 / div));
        fanout_tasks(1_000_000 / div);
        fanout_threads(10_000 / div);
        fanout_counting_wakers(1_000_000 / div);
        steady(|| fanout_tasks_tokio_util(100_000 / div));
        fanout_tasks_tokio_util(1_000_000 / div);
        fanout_tasks_floor(1_000_000 / div);
    }
    // Each contender of the parts that allocate a context a step, and each floor, runs
    // `steady`: the median of runs in a row.
    if run("wide") {
        steady(|| wide(1_000_000 / div));
        steady(|| wide_tokio_util(1_000_000 / div));
        steady(|| wide_floor::<0>(1_000_000 / div, "create"));
        steady(|| wide_floor::<9>(1_000_000 / div, "create_node_size"));
    }
    if run("deep") {
        steady(|| deep(1_000_000 / div));
        steady(|| deep_floor(1_000_000 / div));
    }
    if run("timers") {
        steady(|| timers(1_000_000 / div));
        steady(|| timers_floor(1_000_000 / div));
        steady(|| timers_floor_api::<4>(1_000_000 / div, "create_api"));
        steady(|| timers_floor_api::<10>(1_000_000 / div, "create_api_node_size"));
    }
    if run("lateness") {
        timer_lateness(10_000 / div);
        timer_lateness_floor(10_000 / div);
    }
    if run("storm") {
        storm(10_000 / div);
        storm(100_000 / div);
    }
    if run("keys") {
        keys(10_000 / div);
    }
    if run("snapshot") {
        snapshot(100_000 / div);
    }
}
