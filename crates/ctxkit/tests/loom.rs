//! Model checking of the cancellation tree's races with loom.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p ctxkit --release --lib --test loom
//! ```
//!
//! (`--lib` adds the model of the timer thread's wake-up protocol, which needs the crate's
//! private parts: `src/timer/mod.rs`, module `model`.)
//!
//! Under `cfg(loom)` the tree's mutexes and atomics (`src/sync.rs`) are loom's, so every model
//! below explores every interleaving of their operations (each model is exhaustive within
//! loom's default bounds unless its comment says it sets a preemption bound). Reference counts
//! (`Arc`/`Weak`) stay std's; dropping a chain uses a work list local to the drop, no
//! thread-local.
//!
//! The models here use no deadlines, `todo()` or blocking waits: those go through std threads
//! and statics outside the model. `after_func` hands its callback to a std thread pool; the
//! callback itself touches only std types, and the model checks the registration's side
//! (stop's answer, the callback dropped or started) inside loom and the run itself outside.
#![cfg(loom)]

use std::sync::atomic::Ordering as StdOrdering;
use std::sync::{mpsc, Arc};
use std::task::{Context as TaskCx, Poll, Wake, Waker};
use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use ctxkit::{Cause, Context, Error, OriginKind};

mod common;
use common::{drop_flag, Named, PAYLOAD};

/// The name of a `Named` cause, or the sentinel's text.
fn name(cause: &Cause) -> String {
    cause.to_string()
}

/// A waker that counts its wakes in a loom atomic.
struct Recorder(AtomicUsize);

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder(AtomicUsize::new(0)))
    }

    fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for Recorder {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn poll(done: &mut ctxkit::Done, waker: &Waker) -> Poll<Error> {
    let mut cx = TaskCx::from_waker(waker);
    std::pin::Pin::new(done).poll(&mut cx)
}

use std::future::Future;

// ---------------------------------------------------------------------------------------
// S5: cancel racing with deriving a child
// ---------------------------------------------------------------------------------------

/// A child derived (with_cancel, a value layer then with_cancel, merge) while its parent is
/// being cancelled is done once both have finished, with the parent's err and cause.
#[test]
fn cancel_racing_derive_leaves_the_child_done() {
    loom::model(|| {
        let (parent, h) = Context::background().with_cancel();
        let canceller = thread::spawn(move || h.cancel_with_cause(Named("stop")));
        let (child, _hc) = parent.with_cancel();
        let (grandchild, _hg) = child.with_value(&PAYLOAD, drop_flag().0).with_cancel();
        canceller.join().unwrap();
        for c in [&parent, &child, &grandchild] {
            assert_eq!(c.err(), Some(Error::Canceled));
            assert_eq!(name(&c.cause().unwrap()), "stop");
        }
    });
}

/// A child and a grandchild derived while their parent is cancelled without a cause (the
/// lock-free path while it has no child) and, at once, with one: however they interleave,
/// the children end with the parent's err, cause and origin, and a child born done under a
/// parent done without a cause (N9b) has none either.
#[test]
fn children_born_under_a_parent_done_with_or_without_a_cause() {
    loom::model(|| {
        let (parent, h) = Context::background().with_cancel();
        let h2 = h.clone();
        let plain = thread::spawn(move || h.cancel());
        let caused = thread::spawn(move || h2.cancel_with_cause(Named("stop")));
        let (child, _hc) = parent.with_cancel();
        let (grandchild, _hg) = child.with_cancel();
        plain.join().unwrap();
        caused.join().unwrap();
        let cause = name(&parent.cause().unwrap());
        for c in [&child, &grandchild] {
            assert_eq!(c.err(), Some(Error::Canceled));
            assert_eq!(name(&c.cause().unwrap()), cause);
            assert_eq!(c.origin(), parent.origin());
        }
    });
}

/// Levels derived while their root is cancelled, each level's context and handle dropped
/// once the next is made (Go's `CancelTree` shape): whether a level folds into the next
/// (N13) or stays linked, the leaf ends done with the root's err, cause and origin, prints
/// the whole chain, also once the levels it may have folded are dropped.
#[test]
fn chain_folding_while_its_root_cancels() {
    loom::model(|| {
        let (root, h) = Context::background().with_cancel();
        let canceller = thread::spawn(move || h.cancel());
        let mut leaf = root.clone();
        let mut levels = Vec::new();
        for _ in 0..3 {
            leaf = leaf.with_cancel().0;
            levels.push(leaf.clone());
        }
        canceller.join().unwrap();
        let last = leaf.with_cancel().0;
        assert_eq!(last.err(), Some(Error::Canceled));
        assert_eq!(name(&last.cause().unwrap()), "context canceled");
        assert_eq!(last.origin(), root.origin());
        assert_eq!(
            last.to_string(),
            "context.Background.WithCancel.WithCancel.WithCancel.WithCancel.WithCancel"
        );
        drop(levels);
        drop(leaf);
        assert_eq!(last.to_string().matches(".WithCancel").count(), 5);
        assert_eq!(last.origin(), root.origin());
    });
}

/// A merge derived while its first parent is cancelled (the second stays live).
#[test]
fn cancel_racing_merge_derive_leaves_the_merge_done() {
    loom::model(|| {
        let (a, ha) = Context::background().with_cancel();
        let (b, _hb) = Context::background().with_cancel();
        let canceller = thread::spawn(move || ha.cancel_with_cause(Named("a")));
        let (m, _hm) = b.merge(&a);
        canceller.join().unwrap();
        assert_eq!(m.err(), Some(Error::Canceled));
        assert_eq!(name(&m.cause().unwrap()), "a");
        assert!(!b.is_done());
    });
}

// ---------------------------------------------------------------------------------------
// S8: two cancels with different causes racing
// ---------------------------------------------------------------------------------------

/// Two threads cancel the same context with different causes while a third reads the
/// child: exactly one cause wins, and the parent, the child and the reader agree on it.
#[test]
fn two_cancels_racing_agree_on_one_cause() {
    loom::model(|| {
        let (parent, h) = Context::background().with_cancel();
        let (child, _hc) = parent.with_cancel();
        let h2 = h.clone();
        let t1 = thread::spawn(move || h.cancel_with_cause(Named("one")));
        let t2 = thread::spawn(move || h2.cancel_with_cause(Named("two")));
        // The reader: whatever it sees once done must be final (N1: cause before state).
        let seen = child.err().map(|e| (e, name(&child.cause().unwrap())));
        t1.join().unwrap();
        t2.join().unwrap();
        let won = name(&parent.cause().unwrap());
        assert!(won == "one" || won == "two", "{won}");
        assert_eq!(parent.err(), Some(Error::Canceled));
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(name(&child.cause().unwrap()), won);
        if let Some((err, cause)) = seen {
            assert_eq!(err, Error::Canceled);
            assert_eq!(cause, won, "a reader saw a cause that did not win");
        }
    });
}

/// N10: a leaf cancelled without a lock (N9) by a cancel and a dropped guard at once, and a
/// node with a child (the locked path) by the same two: a reader that sees the context done
/// sees the origin of the cancellation that won, and it never changes.
#[test]
fn racing_cancels_record_one_origin_and_readers_wait_for_it() {
    for with_child in [false, true] {
        loom::model(move || {
            let (ctx, h) = Context::background().with_cancel();
            let child = with_child.then(|| ctx.with_cancel());
            let guard = h.clone().drop_guard();
            let t1 = thread::spawn(move || h.cancel());
            let t2 = thread::spawn(move || drop(guard));
            let seen = ctx.origin();
            t1.join().unwrap();
            t2.join().unwrap();
            let origin = ctx.origin().expect("done");
            assert!(matches!(
                origin.kind(),
                OriginKind::Cancel | OriginKind::Guard
            ));
            assert_eq!(origin.err(), Error::Canceled);
            if let Some(seen) = seen {
                assert_eq!(seen, origin, "the origin changed");
            }
            if let Some((child, _h)) = child {
                assert_eq!(child.origin(), Some(origin));
            }
        });
    }
}

/// A parent and its child cancelled at once with different causes: the parent keeps its
/// own; the child keeps whichever reached it first, and its child agrees with it (S8).
#[test]
fn parent_and_child_cancels_racing() {
    loom::model(|| {
        let (parent, hp) = Context::background().with_cancel();
        let (child, hc) = parent.with_cancel();
        let (grandchild, _hg) = child.with_cancel();
        let t1 = thread::spawn(move || hp.cancel_with_cause(Named("parent")));
        hc.cancel_with_cause(Named("child"));
        // S4: when our cancel returns, our subtree is done.
        assert!(child.is_done() && grandchild.is_done());
        t1.join().unwrap();
        assert_eq!(name(&parent.cause().unwrap()), "parent");
        let c = name(&child.cause().unwrap());
        assert!(c == "parent" || c == "child", "{c}");
        assert_eq!(name(&grandchild.cause().unwrap()), c);
    });
}

/// Two cancels of the same context at once (S4, N1b): the one that finds it done already
/// returns only once the other's walk has made the whole subtree done, two levels down, also
/// when it carries a cause (which it drops unread).
#[test]
fn same_context_cancelled_twice_at_once() {
    loom::model(|| {
        let (x, h) = Context::background().with_cancel();
        let h2 = h.clone();
        let (w, _hw) = x.with_cancel();
        let (y, _hy) = w.with_cancel();
        let (y2, _hy2) = w.with_cancel();
        let other = thread::spawn(move || h2.cancel());
        // A cause given to a context done already is dropped unread (S8): the call still
        // waits for the walk under way.
        h.cancel_with_cause(Named("second"));
        assert!(
            w.is_done() && y.is_done() && y2.is_done(),
            "a cancel returned before the subtree was done"
        );
        other.join().unwrap();
    });
}

/// A leaf with nothing behind its lock cancels itself without its lock (`tree/state.rs`, N9) while
/// its parent's walk, carrying a cause, reaches it under the lock: exactly one wins, and
/// the leaf's err and cause are the winner's, never a mix.
#[test]
fn lock_free_leaf_cancel_racing_the_parents_walk() {
    loom::model(|| {
        let (parent, hp) = Context::background().with_cancel();
        let (leaf, hl) = parent.with_cancel();
        let t1 = thread::spawn(move || hp.cancel_with_cause(Named("parent")));
        hl.cancel();
        assert_eq!(leaf.err(), Some(Error::Canceled));
        t1.join().unwrap();
        // Its own cancel leaves the sentinel as the cause (API S7); the walk, the parent's.
        let cause = name(&leaf.cause().unwrap());
        let sentinel = Error::Canceled.to_string();
        assert!(cause == sentinel || cause == "parent", "{cause}");
        assert_eq!(name(&parent.cause().unwrap()), "parent");
    });
}

// ---------------------------------------------------------------------------------------
// S17: a waiter registering while cancel runs
// ---------------------------------------------------------------------------------------

/// A `Done` polled (registering a waker) while another thread cancels: either the poll sees
/// the context done, or the waker is woken. Never a lost wakeup.
#[test]
fn waiter_registering_while_cancel_runs_is_never_lost() {
    loom::model(|| {
        let (parent, h) = Context::background().with_cancel();
        let (ctx, _hc) = parent.with_cancel();
        let canceller = thread::spawn(move || h.cancel());
        let rec = Recorder::new();
        let waker = Waker::from(Arc::clone(&rec));
        let mut done = ctx.done();
        let first = poll(&mut done, &waker);
        canceller.join().unwrap();
        match first {
            Poll::Ready(err) => assert_eq!(err, Error::Canceled),
            Poll::Pending => {
                assert_eq!(rec.wakes(), 1, "lost wakeup");
                assert_eq!(poll(&mut done, &waker), Poll::Ready(Error::Canceled));
            }
        }
    });
}

/// The waiter is re-polled with a different waker (re-registration) while cancel runs: the
/// waker of the last pending poll is woken.
#[test]
fn waiter_switching_wakers_while_cancel_runs_is_never_lost() {
    loom::model(|| {
        let (ctx, h) = Context::background().with_cancel();
        let (rec_a, rec_b) = (Recorder::new(), Recorder::new());
        let (waker_a, waker_b) = (
            Waker::from(Arc::clone(&rec_a)),
            Waker::from(Arc::clone(&rec_b)),
        );
        let mut done = ctx.done();
        assert_eq!(poll(&mut done, &waker_a), Poll::Pending);
        let canceller = thread::spawn(move || h.cancel());
        let second = poll(&mut done, &waker_b);
        canceller.join().unwrap();
        if second.is_pending() {
            assert_eq!(rec_b.wakes(), 1, "lost wakeup of the new waker");
        }
        assert!(rec_a.wakes() + rec_b.wakes() >= 1);
        assert_eq!(poll(&mut done, &waker_b), Poll::Ready(Error::Canceled));
    });
}

/// A waiter in another thread, and a pending `Done` dropped (unregistering) while cancel runs.
#[test]
fn waiter_in_another_thread_and_dropped_waiter() {
    loom::model(|| {
        let (ctx, h) = Context::background().with_cancel();
        let rec = Recorder::new();
        let waiter = {
            let ctx = ctx.clone();
            let rec = Arc::clone(&rec);
            thread::spawn(move || {
                let waker = Waker::from(rec);
                let mut done = ctx.done();
                // Kept alive: dropping a pending `Done` unregisters its waker.
                (poll(&mut done, &waker), done)
            })
        };
        let mut gone = ctx.done();
        let noop = Waker::from(Recorder::new());
        let _ = poll(&mut gone, &noop);
        let dropper = thread::spawn(move || drop(gone));
        h.cancel();
        let (first, _done) = waiter.join().unwrap();
        dropper.join().unwrap();
        if first.is_pending() {
            assert_eq!(rec.wakes(), 1, "lost wakeup");
        }
    });
}

// ---------------------------------------------------------------------------------------
// S20: on_cancel registration racing cancel
// ---------------------------------------------------------------------------------------

/// `on_cancel` registered (on the context and on a child) while the context is cancelled:
/// each callback runs exactly once, and sees its context done when it runs.
#[test]
fn on_cancel_registration_racing_cancel_runs_exactly_once() {
    loom::model(|| {
        let (ctx, h) = Context::background().with_cancel();
        let (child, _hc) = ctx.with_cancel();
        let canceller = thread::spawn(move || h.cancel());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut regs = Vec::new();
        for c in [&ctx, &child] {
            let (runs, me) = (Arc::clone(&runs), c.clone());
            regs.push(c.on_cancel(move || {
                assert!(me.is_done(), "on_cancel ran before its context was done");
                runs.fetch_add(1, Ordering::SeqCst);
            }));
        }
        canceller.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        for r in &regs {
            assert!(!r.stop(), "stop after the callback ran");
        }
    });
}

// ---------------------------------------------------------------------------------------
// S21: stop racing cancel
// ---------------------------------------------------------------------------------------

/// `on_cancel`'s `stop()` racing cancel: exactly one of {f runs, stop returns true}, and f
/// is dropped in both cases.
#[test]
fn on_cancel_stop_racing_cancel_exactly_one_wins() {
    loom::model(|| {
        let (ctx, h) = Context::background().with_cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let (flag, dropped) = drop_flag();
        let r2 = Arc::clone(&runs);
        let reg = ctx.on_cancel(move || {
            let _f = &flag;
            r2.fetch_add(1, Ordering::SeqCst);
        });
        let canceller = thread::spawn(move || h.cancel());
        let stopped = reg.stop();
        canceller.join().unwrap();
        let ran = runs.load(Ordering::SeqCst);
        assert_eq!(
            ran + stopped as usize,
            1,
            "ran {ran} times, stop returned {stopped}"
        );
        assert!(
            dropped.load(StdOrdering::SeqCst),
            "f was neither run nor dropped"
        );
        assert!(!reg.stop());
    });
}

/// `after_func`'s `stop()` racing cancel. The callback goes to the std thread pool, outside
/// the model: the model checks stop's answer against the registration's state and that a
/// stopped f is dropped at once; the run itself is awaited on a std channel.
#[test]
fn after_func_stop_racing_cancel_exactly_one_wins() {
    loom::model(|| {
        let (ctx, h) = Context::background().with_cancel();
        let (tx, rx) = mpsc::channel::<()>();
        let (flag, dropped) = drop_flag();
        let reg = ctx.after_func(move || {
            let _f = &flag;
            tx.send(()).unwrap();
        });
        let canceller = thread::spawn(move || h.cancel());
        let stopped = reg.stop();
        canceller.join().unwrap();
        if stopped {
            assert!(dropped.load(StdOrdering::SeqCst), "stopped f not dropped");
            assert!(rx.try_recv().is_err(), "stopped f ran");
            assert!(format!("{reg:?}").contains("stopped"));
        } else {
            assert!(format!("{reg:?}").contains("started"));
            rx.recv_timeout(Duration::from_secs(10))
                .expect("stop returned false but f never ran");
        }
        assert!(!reg.stop());
        // f ran at most once: its sender is gone after the single run.
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_err());
    });
}

// ---------------------------------------------------------------------------------------
// S22: a child dropped while its parent cancels
// ---------------------------------------------------------------------------------------

/// The last clone and handle of a child dropped while its parent cancels: the child (and the
/// value it holds) is freed, exactly once, whichever thread gets there first.
#[test]
fn child_dropped_while_parent_cancels_is_freed() {
    loom::model(|| {
        let (parent, hp) = Context::background().with_cancel();
        let (flag, dropped) = drop_flag();
        let (child, hc) = parent.with_value(&PAYLOAD, flag).with_cancel();
        let canceller = thread::spawn(move || hp.cancel());
        drop((child, hc));
        canceller.join().unwrap();
        assert!(dropped.load(StdOrdering::SeqCst), "leak: child not freed");
        assert!(parent.is_done());
        // The parent still works as a parent.
        let (late, _hl) = parent.with_cancel();
        assert!(late.is_done());
    });
}

/// A child with a pending `on_cancel` dropped while its parent cancels: the callback is
/// handed to the parent or fired by the walk, and runs exactly once (S19, S20).
#[test]
fn child_with_callback_dropped_while_parent_cancels() {
    loom::model(|| {
        let (parent, hp) = Context::background().with_cancel();
        let (flag, dropped) = drop_flag();
        let (child, hc) = parent.with_value(&PAYLOAD, flag).with_cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let r2 = Arc::clone(&runs);
        drop(child.on_cancel(move || {
            r2.fetch_add(1, Ordering::SeqCst);
        }));
        let canceller = thread::spawn(move || hp.cancel());
        drop((child, hc));
        canceller.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(dropped.load(StdOrdering::SeqCst), "leak: child not freed");
    });
}

/// A chain root → middle → leaf where the leaf holds the middle's last reference: dropping the
/// leaf takes the middle out of its `Arc` without unlinking from it (N3), while the root's
/// cancellation may be walking the middle. Both levels are freed exactly once, and the root
/// lists no child after.
#[test]
fn chain_dropped_while_its_root_cancels_is_freed() {
    loom::model(|| {
        let (root, hr) = Context::background().with_cancel();
        let (middle_flag, middle_dropped) = drop_flag();
        let (leaf_flag, leaf_dropped) = drop_flag();
        let leaf = {
            let (middle, _hm) = root.with_value(&PAYLOAD, middle_flag).with_cancel();
            let (leaf, _hl) = middle.with_cancel();
            leaf.with_value(&PAYLOAD, leaf_flag)
        };
        let canceller = thread::spawn(move || hr.cancel());
        drop(leaf);
        canceller.join().unwrap();
        assert!(
            leaf_dropped.load(StdOrdering::SeqCst),
            "leak: leaf not freed"
        );
        assert!(
            middle_dropped.load(StdOrdering::SeqCst),
            "leak: middle not freed"
        );
        assert!(root.is_done());
        assert_eq!(
            ctxkit::inspect::Snapshot::of(&root).entries().len(),
            1,
            "only the root"
        );
    });
}

/// The same chain with an `on_cancel` pending on the middle level: dropping the leaf hands the
/// callback to the root (the middle goes with the leaf), and it runs exactly once, whether
/// the root's cancellation comes before or after (S19, S20).
#[test]
fn chain_with_callback_dropped_while_its_root_cancels() {
    loom::model(|| {
        let (root, hr) = Context::background().with_cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let leaf = {
            let (middle, _hm) = root.with_cancel();
            let r2 = Arc::clone(&runs);
            drop(middle.on_cancel(move || {
                r2.fetch_add(1, Ordering::SeqCst);
            }));
            middle.with_cancel().0
        };
        let canceller = thread::spawn(move || hr.cancel());
        drop(leaf);
        canceller.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}

// ---------------------------------------------------------------------------------------
// S24: merge with both parents cancelling at once
// ---------------------------------------------------------------------------------------

/// Both parents of a merge cancel at once with different causes: the merge and its child
/// are done with one of the two causes, and agree.
#[test]
fn merge_with_both_parents_cancelling_at_once() {
    loom::model(|| {
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = Context::background().with_cancel();
        let (m, _hm) = a.merge(&b);
        let (below, _hbelow) = m.with_cancel();
        let t = thread::spawn(move || ha.cancel_with_cause(Named("a")));
        hb.cancel_with_cause(Named("b"));
        // S4: when b's cancel returns, every descendant of b is done, even if a's walk
        // reached the merge first.
        assert!(
            m.is_done(),
            "S4: b's cancel returned, the merge is not done"
        );
        assert!(
            below.is_done(),
            "S4: b's cancel returned, the merge's child is not done"
        );
        t.join().unwrap();
        let won = name(&m.cause().unwrap());
        assert!(won == "a" || won == "b", "{won}");
        assert_eq!(name(&below.cause().unwrap()), won);
        assert_eq!(name(&a.cause().unwrap()), "a");
        assert_eq!(name(&b.cause().unwrap()), "b");
    });
}

/// A merge derived while both parents cancel: done afterwards with one of the causes, and
/// freed once dropped.
///
/// Three threads: exhaustive exploration does not end in minutes, so this model bounds
/// preemptions to 2 (loom's recommended bound; most concurrency bugs need at most 2).
#[test]
fn merge_derived_while_both_parents_cancel() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = Context::background().with_cancel();
        let t = thread::spawn(move || ha.cancel_with_cause(Named("a")));
        let u = thread::spawn(move || hb.cancel_with_cause(Named("b")));
        let (flag, dropped) = drop_flag();
        let (m, hm) = a.with_value(&PAYLOAD, flag).merge(&b);
        t.join().unwrap();
        u.join().unwrap();
        assert_eq!(m.err(), Some(Error::Canceled));
        let won = name(&m.cause().unwrap());
        assert!(won == "a" || won == "b", "{won}");
        drop((m, hm));
        assert!(dropped.load(StdOrdering::SeqCst), "leak: merge not freed");
    });
}

// ---------------------------------------------------------------------------------------
// Hand-downs (S19, S21, S22): a registration moving to the parents of a dropped context
// while it is stopped or fired
// ---------------------------------------------------------------------------------------

/// A child with an `on_cancel` dropped (its registration handed to the parent), the parent
/// cancelled and `stop()` called, all at once: exactly one of {f runs, stop returns true},
/// and the child is freed. Three threads: preemptions bounded to 2, as above.
#[test]
fn stop_racing_hand_to_parents_and_parent_cancel() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let (parent, hp) = Context::background().with_cancel();
        let (flag, freed) = drop_flag();
        let (child, hc) = parent.with_value(&PAYLOAD, flag).with_cancel();
        let runs = Arc::new(AtomicUsize::new(0));
        let r2 = Arc::clone(&runs);
        let reg = child.on_cancel(move || {
            r2.fetch_add(1, Ordering::SeqCst);
        });
        let dropper = thread::spawn(move || drop((child, hc)));
        let canceller = thread::spawn(move || hp.cancel());
        let stopped = reg.stop();
        dropper.join().unwrap();
        canceller.join().unwrap();
        let ran = runs.load(Ordering::SeqCst);
        assert_eq!(
            ran + stopped as usize,
            1,
            "ran {ran} times, stop returned {stopped}"
        );
        assert!(freed.load(StdOrdering::SeqCst), "leak: child not freed");
        assert!(parent.is_done());
    });
}

/// A merge with an `on_cancel` dropped while both of its parents cancel: the callback runs
/// exactly once (through whichever parent got it first) and the merge is freed.
#[test]
fn merge_dropped_while_both_parents_cancel() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = Context::background().with_cancel();
        let (flag, freed) = drop_flag();
        let (m, hm) = a.with_value(&PAYLOAD, flag).merge(&b);
        let runs = Arc::new(AtomicUsize::new(0));
        let r2 = Arc::clone(&runs);
        drop(m.on_cancel(move || {
            r2.fetch_add(1, Ordering::SeqCst);
        }));
        let t = thread::spawn(move || ha.cancel());
        let u = thread::spawn(move || hb.cancel());
        drop((m, hm));
        t.join().unwrap();
        u.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(freed.load(StdOrdering::SeqCst), "leak: merge not freed");
    });
}

// ---------------------------------------------------------------------------------------
// Overlapping cancels (S4, N1b)
// ---------------------------------------------------------------------------------------

/// Three cancels of one chain L0 → L1 → L2 → L3 → leaves, at once: C cancels L3, A cancels
/// L0 (and may find L3 done by C, its walk still under way), and the model's thread cancels
/// L2. When L2's cancel returns, everything below L2 is done, whoever walked it. Three
/// threads: preemptions bounded to 2, as above; a cancel that waits for another walk yields
/// in a loop under loom, which takes more branches than loom's default allows.
#[test]
fn overlapping_cancels_each_return_once_their_subtree_is_done() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.max_branches = 100_000;
    builder.check(|| {
        let (l0, h0) = Context::background().with_cancel();
        let (l1, _h1) = l0.with_cancel();
        let (l2, h2) = l1.with_cancel();
        let (l3, h3) = l2.with_cancel();
        let (leaf, _hl) = l3.with_cancel();
        let (waited, _hw) = l3.with_cancel();
        drop(waited.on_cancel(|| {})); // behind its lock: the locked path of the walk
        let c = thread::spawn(move || h3.cancel());
        let a = thread::spawn(move || h0.cancel());
        h2.cancel();
        assert!(
            leaf.is_done() && waited.is_done(),
            "L2's cancel returned before its subtree was done"
        );
        c.join().unwrap();
        a.join().unwrap();
        drop((l1, l3));
    });
}

// ---------------------------------------------------------------------------------------
// Lanes (N14). Under loom every node gets lanes at its first link, and each thread's next
// children of it go into its lane.
// ---------------------------------------------------------------------------------------

/// A child linked into a lane while the parent's cancellation closes the lanes, and a thread
/// that links its first child through the parent's lock at the same time: every child is
/// done once the cancel has returned and both threads are done, with the parent's cause,
/// and a child made after is born done.
#[test]
fn lane_link_racing_cancel_leaves_every_child_done() {
    loom::model(|| {
        let (parent, h) = Context::background().with_cancel();
        // The lanes: made at this link, at hand for this thread from now on.
        let (first, _h1) = parent.with_cancel();
        let p = parent.clone();
        let other = thread::spawn(move || {
            let (c, hc) = p.with_cancel();
            (c, hc)
        });
        let canceller = thread::spawn(move || h.cancel_with_cause(Named("stop")));
        let (in_lane, _h2) = parent.with_cancel();
        let (c, _hc) = other.join().unwrap();
        canceller.join().unwrap();
        for ctx in [&first, &in_lane, &c] {
            assert_eq!(ctx.err(), Some(Error::Canceled));
            assert_eq!(name(&ctx.cause().unwrap()), "stop");
        }
        let (late, _hl) = parent.with_cancel();
        assert_eq!(name(&late.cause().unwrap()), "stop");
    });
}

/// A child in a lane dropped (on its own thread, with the lanes at hand) while the parent
/// cancels, and one dropped on a thread without them: each is freed exactly once, whichever
/// gets there first.
#[test]
fn lane_children_dropped_while_parent_cancels_are_freed() {
    loom::model(|| {
        let (parent, hp) = Context::background().with_cancel();
        let (_first, _h1) = parent.with_cancel(); // the lanes
        let (flag_a, dropped_a) = drop_flag();
        let (flag_b, dropped_b) = drop_flag();
        let a = parent.with_value(&PAYLOAD, flag_a).with_cancel();
        let b = parent.with_value(&PAYLOAD, flag_b).with_cancel();
        let canceller = thread::spawn(move || hp.cancel());
        let elsewhere = thread::spawn(move || drop(b));
        drop(a);
        canceller.join().unwrap();
        elsewhere.join().unwrap();
        assert!(
            dropped_a.load(StdOrdering::SeqCst),
            "leak: the child in a lane"
        );
        assert!(
            dropped_b.load(StdOrdering::SeqCst),
            "leak: the child dropped elsewhere"
        );
        assert!(parent.is_done());
    });
}
