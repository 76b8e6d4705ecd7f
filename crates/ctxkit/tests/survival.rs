//! Survival on the paths production hits: contexts dropped during thread-local teardown, user
//! code that misbehaves on ctxkit's own threads, storms of deadlines, cancels that overlap.
//! Each test is a scenario that once broke the core; a test that could leave the process's
//! timer thread broken runs alone in a child process.

mod common;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::task::{Context as TaskCx, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{env_or, eventually, run_alone_in_child_process, within, HOUR, LONG};
use ctxkit::{Context, Error};

/// The size of the big scenarios: `CTXKIT_TEST_SCALE`, 100,000 unless set (smaller under
/// valgrind).
fn scale() -> usize {
    env_or("CTXKIT_TEST_SCALE", 100_000) as usize
}

/// Whether this process is the child that [`run_alone_in_child_process`] started.
fn in_child(env: &str) -> bool {
    std::env::var_os(env).is_some()
}

/// A fresh 10 ms deadline fires: the process's timer thread is alive and not stuck.
fn assert_deadlines_still_fire() {
    let (probe, _h) = Context::background().with_timeout(Duration::from_millis(10));
    assert_eq!(
        probe.wait_timeout(LONG),
        Some(Error::DeadlineExceeded),
        "a 10 ms deadline did not fire: the timer thread is dead or stuck"
    );
}

// ---------------------------------------------------------------------------------------
// Thread-local teardown
// ---------------------------------------------------------------------------------------

thread_local! {
    /// A user's own thread-local that holds contexts until its thread exits.
    static HELD: RefCell<Vec<Context>> = const { RefCell::new(Vec::new()) };
}

/// Touches everything of ctxkit that keeps per-thread state: cancelling, waiting, timers.
fn use_ctxkit_on_this_thread() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _child_handle) = ctx.with_timeout(HOUR);
    assert_eq!(child.wait_timeout(Duration::from_millis(1)), None);
    handle.cancel();
    drop((ctx, child));
}

/// Two levels, and a deep chain with a deadline and a callback on the way (S23: dropped
/// without recursion, even then).
fn contexts_to_hold() -> Vec<Context> {
    let (a, ha) = Context::background().with_cancel();
    let (b, hb) = a.with_timeout(HOUR);
    drop(b.after_func(|| {}));
    let deep = (0..scale()).fold(b.clone(), |ctx, _| ctx.with_cancel().0);
    std::mem::forget((ha, hb)); // nobody cancels: the contexts are dropped live
    vec![b, deep]
}

#[test]
fn contexts_in_a_users_thread_local_drop_at_thread_exit() {
    // The user's thread-local made first, then ctxkit's (so ctxkit's go first at exit)...
    std::thread::spawn(|| {
        HELD.with(|_| ());
        use_ctxkit_on_this_thread();
        HELD.with(|held| held.borrow_mut().extend(contexts_to_hold()));
    })
    .join()
    .expect("the thread exits cleanly");
    // ...and the other way round.
    std::thread::spawn(|| {
        use_ctxkit_on_this_thread();
        HELD.with(|held| held.borrow_mut().extend(contexts_to_hold()));
    })
    .join()
    .expect("the thread exits cleanly");
}

// ---------------------------------------------------------------------------------------
// User code on the timer thread
// ---------------------------------------------------------------------------------------

/// Panics when dropped.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a value that panics when dropped");
        }
    }
}

/// Waits for a deadline of its own when dropped.
struct WaitsForADeadlineOnDrop;

impl Drop for WaitsForADeadlineOnDrop {
    fn drop(&mut self) {
        let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(20));
        assert_eq!(ctx.wait_timeout(LONG), Some(Error::DeadlineExceeded));
    }
}

/// A deadline context that carries `value`, registers an `after_func` (so the context
/// outlives its clones and handle: S19) and is dropped: when the deadline fires, the
/// context's last reference is the timer's. Returns when the callback has run.
fn last_reference_held_by_the_timer<T: Send + Sync + 'static>(value: T) {
    let (tx, rx) = mpsc::channel();
    let (ctx, handle) = Context::background()
        .with(value)
        .with_timeout(Duration::from_millis(5));
    drop(ctx.after_func(move || tx.send(()).unwrap()));
    drop((ctx, handle));
    rx.recv_timeout(LONG).expect("the after_func ran");
}

const TIMER_USER_CODE: &str = "CTXKIT_SURVIVAL_TIMER_USER_CODE";

#[test]
fn user_code_dropped_or_woken_at_expiry_cannot_break_the_timer_thread() {
    if !in_child(TIMER_USER_CODE) {
        return run_alone_in_child_process(
            module_path!(),
            "user_code_dropped_or_woken_at_expiry_cannot_break_the_timer_thread",
            TIMER_USER_CODE,
        );
    }
    // A value whose drop panics.
    last_reference_held_by_the_timer(PanicsOnDrop);
    assert_deadlines_still_fire();
    // A value whose drop waits for another deadline.
    last_reference_held_by_the_timer(WaitsForADeadlineOnDrop);
    assert_deadlines_still_fire();
    // A waker that waits for another deadline, and one that panics.
    struct Waits;
    impl Wake for Waits {
        fn wake(self: Arc<Self>) {
            let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(20));
            assert_eq!(ctx.wait_timeout(LONG), Some(Error::DeadlineExceeded));
        }
    }
    struct Panics;
    impl Wake for Panics {
        fn wake(self: Arc<Self>) {
            panic!("a waker that panics");
        }
    }
    for waker in [Waker::from(Arc::new(Waits)), Waker::from(Arc::new(Panics))] {
        let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(5));
        let mut done = ctx.done();
        let poll = std::pin::Pin::new(&mut done).poll_fut(&mut TaskCx::from_waker(&waker));
        assert!(poll.is_pending());
        assert_eq!(ctx.wait_timeout(LONG), Some(Error::DeadlineExceeded));
        assert_deadlines_still_fire();
    }
}

/// `Future::poll` under a name that does not need the trait in scope at the call.
trait PollFut: std::future::Future {
    fn poll_fut(self: std::pin::Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Self::Output> {
        self.poll(cx)
    }
}

impl<F: std::future::Future> PollFut for F {}

// ---------------------------------------------------------------------------------------
// Overlapping cancels (S4)
// ---------------------------------------------------------------------------------------

#[test]
fn a_cancel_returns_only_once_its_subtree_is_done_whatever_else_walks_it() {
    for round in 0..5 {
        // L0 → L1 → L2 → L3, and a big subtree under L3 whose walk takes a while.
        let (l0, h0) = Context::background().with_cancel();
        let (l1, _h1) = l0.with_cancel();
        let (l2, h2) = l1.with_cancel();
        let (l3, h3) = l2.with_cancel();
        let leaves: Vec<_> = (0..scale())
            .map(|_| {
                let (leaf, h) = l3.with_cancel();
                drop(leaf.on_cancel(|| {})); // something behind its lock: the slower walk
                (leaf, h)
            })
            .collect();
        // C walks L3's subtree.
        let c = std::thread::spawn(move || h3.cancel());
        while !l3.is_done() {
            std::hint::spin_loop();
        }
        // A cancels L0, finds L3 done already, and goes on to wait for C.
        let a = std::thread::spawn(move || h0.cancel());
        while !l2.is_done() {
            std::hint::spin_loop();
        }
        // L2 is done (by A): cancelling it returns only once all below it is done.
        h2.cancel();
        let undone = leaves
            .iter()
            .rev()
            .filter(|(leaf, _)| !leaf.is_done())
            .count();
        assert_eq!(
            undone, 0,
            "round {round}: cancel() of L2 returned before its subtree was done"
        );
        a.join().unwrap();
        c.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Causes dropped during a cancel
// ---------------------------------------------------------------------------------------

/// A cause that, when dropped, derives from the context it belongs to.
#[derive(Debug)]
struct DerivesOnDrop(Arc<std::sync::Mutex<Option<Context>>>);

impl std::fmt::Display for DerivesOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("derives on drop")
    }
}

impl std::error::Error for DerivesOnDrop {}

impl Drop for DerivesOnDrop {
    fn drop(&mut self) {
        if let Some(ctx) = self.0.lock().unwrap().take() {
            let (child, _h) = ctx.with_cancel();
            assert!(child.is_done());
        }
    }
}

/// A cause that panics when dropped.
#[derive(Debug)]
struct PanicsWhenDropped;

impl std::fmt::Display for PanicsWhenDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("panics when dropped")
    }
}

impl std::error::Error for PanicsWhenDropped {}

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a cause that panics when dropped");
        }
    }
}

#[test]
fn a_cause_dropped_by_a_cancel_may_derive_from_its_own_context() {
    within("cancel dropping a cause that derives", || {
        let slot = Arc::new(std::sync::Mutex::new(None));
        let (ctx, handle) =
            Context::background().with_timeout_cause(HOUR, DerivesOnDrop(Arc::clone(&slot)));
        *slot.lock().unwrap() = Some(ctx.clone());
        handle.cancel_with_cause("replaced"); // the deadline's cause gives way, and drops
        assert_eq!(ctx.cause().unwrap().to_string(), "replaced");
        // The same below a parent: the walk replaces the pending cause of a descendant.
        let slot = Arc::new(std::sync::Mutex::new(None));
        let (parent, parent_handle) = Context::background().with_cancel();
        let (child, _h) = parent.with_timeout_cause(HOUR, DerivesOnDrop(Arc::clone(&slot)));
        *slot.lock().unwrap() = Some(child.clone());
        parent_handle.cancel();
        assert!(child.is_done());
    });
}

#[test]
fn a_cause_that_panics_when_dropped_leaves_the_tree_consistent() {
    within("cancels after a panicking cause", || {
        let (grandparent, gh) = Context::background().with_cancel();
        let (parent, ph) = grandparent.with_cancel();
        let (child, _ch) = parent.with_timeout_cause(HOUR, PanicsWhenDropped);
        let (sibling, _sh) = parent.with_cancel();
        let waiter = {
            let sibling = sibling.clone();
            std::thread::spawn(move || sibling.wait())
        };
        // The walk replaces the child's pending cause: its drop panics, after the walk.
        let panicked = catch_unwind(AssertUnwindSafe(|| ph.cancel())).is_err();
        assert!(panicked, "the cause's panic reaches the canceller");
        assert!(child.is_done() && sibling.is_done());
        assert_eq!(
            waiter.join().unwrap(),
            Error::Canceled,
            "waiters were still woken"
        );
        gh.cancel(); // returns: no walking bit was left behind
        assert!(grandparent.is_done());
        ph.cancel(); // and again
    });
}

// ---------------------------------------------------------------------------------------
// A storm of deadlines with callbacks
// ---------------------------------------------------------------------------------------

const STORM: &str = "CTXKIT_SURVIVAL_STORM";

/// The threads of this process, from `/proc` (Linux).
fn threads() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

#[test]
fn a_storm_of_deadlines_with_callbacks_starts_few_threads_and_fires_them_all() {
    if !in_child(STORM) {
        return run_alone_in_child_process(
            module_path!(),
            "a_storm_of_deadlines_with_callbacks_starts_few_threads_and_fires_them_all",
            STORM,
        );
    }
    let n = scale();
    let ran = Arc::new(AtomicUsize::new(0));
    let at = Instant::now() + Duration::from_millis(100);
    let storm: Vec<_> = (0..n)
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
    assert_eq!(probe.wait_timeout(LONG), Some(Error::DeadlineExceeded));
    if let Some(threads) = threads() {
        assert!(
            threads <= 64,
            "{threads} threads alive when the probe fired"
        );
    }
    assert!(
        eventually(|| ran.load(Ordering::Relaxed) == n),
        "{} of {n} callbacks ran",
        ran.load(Ordering::Relaxed)
    );
    drop(storm);
}

#[test]
fn after_func_callbacks_that_block_do_not_stop_the_others() {
    within("blocked callbacks", || {
        // More blocked callbacks than any pool starts without a stall, each waiting for the
        // one registered after it (S19: none may wait forever).
        let n = 2 * std::thread::available_parallelism().map_or(2, |n| n.get()) + 8;
        let (ctx, handle) = Context::background().with_cancel();
        let gates: Vec<_> = (0..=n).map(|_| Arc::new(Barrier::new(2))).collect();
        for i in 0..n {
            let (wait, open) = (Arc::clone(&gates[i + 1]), Arc::clone(&gates[i]));
            drop(ctx.after_func(move || {
                open.wait();
                wait.wait();
            }));
        }
        let last = Arc::clone(&gates[n]);
        handle.cancel();
        gates[0].wait(); // the first callback started...
        last.wait(); // ...and so did the last, while every other one was blocked
    });
}

// ---------------------------------------------------------------------------------------
// Tokens (tokio-util)
// ---------------------------------------------------------------------------------------

#[test]
fn a_tokens_context_runs_its_after_func_after_every_clone_is_dropped() {
    use tokio_util::sync::CancellationToken;
    for keep_handle in [true, false] {
        let token = CancellationToken::new();
        let (ctx, handle) = ctxkit::tokio_util::with_token(&Context::background(), &token);
        let (tx, rx) = mpsc::channel();
        drop(ctx.after_func(move || tx.send(()).unwrap()));
        let (on_cancel_tx, on_cancel_rx) = mpsc::channel();
        drop(ctx.on_cancel(move || on_cancel_tx.send(()).unwrap()));
        drop(ctx);
        let handle = keep_handle.then_some(handle);
        token.cancel();
        on_cancel_rx
            .try_recv()
            .expect("on_cancel ran before the token's cancel returned");
        rx.recv_timeout(LONG).expect("the after_func ran");
        drop(handle);
    }
}

#[test]
fn a_tokens_context_without_callbacks_is_freed_when_dropped() {
    use tokio_util::sync::CancellationToken;
    let token = CancellationToken::new();
    let (flag, dropped) = common::drop_flag();
    let parent = Context::background().with(flag); // freed once the token's context is
    let (ctx, handle) = ctxkit::tokio_util::with_token(&parent, &token);
    drop(parent);
    let stopped = ctx.after_func(|| {});
    assert!(stopped.stop());
    drop((ctx, handle));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the token keeps nothing alive"
    );
}
