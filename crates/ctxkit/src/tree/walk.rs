//! The cancellation walk: how a cancel makes a node and its whole subtree done (N1b, N4, N7,
//! N9), and how a canceller waits for walks of other threads.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use super::aftermath::{Aftermath, Garbage, Walked};
use super::node::{extra, extra_mut, extra_ref, Inner, MergeParent, Node};
use super::state::Walk;
use crate::callback::Callbacks;
use crate::error::Cause;
use crate::origin::{Began, OriginKind};
use crate::sync::lock;
use crate::Error;

/// How a cancellation came to a node it makes done (N10).
#[derive(Clone, Copy)]
enum Reached<'a> {
    /// It is the node the walk started at: the kind of the cancellation that began there (its
    /// origin was recorded), or `None` if it came from a merge's other parent.
    Began(Option<OriginKind>),
    /// Found below the node the walk started at.
    From(&'a Arc<Node>),
}

impl Node {
    /// Cancels this node and every descendant not yet done, with `err` and `cause` (`None`:
    /// the cause given to `with_*_cause`, or the sentinel). Does nothing if already done
    /// ([S8](crate::guarantees#s8)). When this returns, the whole subtree is done
    /// ([S4](crate::guarantees#s4)) and every `on_cancel` callback has run
    /// ([S20](crate::guarantees#s20)). `began` is what started the cancellation, recorded on
    /// this node if it makes it done (N10).
    pub(crate) fn cancel(self: &Arc<Self>, err: Error, cause: Option<Cause>, began: Began) {
        self.walk(err, cause, Callbacks::Inline, Some(began));
    }

    /// [`cancel`](Self::cancel), for a cancel or an expiry. `began` is what started it, if
    /// it begins here (`None`: it reached this node from a parent that is done, N10). No
    /// timer entry is touched: a done node's entry stays in its queue until the node is
    /// dropped or the entry comes due (T2).
    #[inline]
    pub(super) fn walk(
        self: &Arc<Self>,
        err: Error,
        cause: Option<Cause>,
        callbacks: Callbacks,
        began: Option<Began>,
    ) {
        let sentinel = cause.as_ref().is_none_or(|c| c.is_sentinel(err));
        if sentinel && self.state.cancel_unclaimed(err, began.map(|b| b.kind)) {
            // N9: no children, waiters or callbacks. N10: the origin is written right after
            // the swap that made the node done; a reader waits for it.
            if let Some(began) = began {
                self.record_origin(began);
            }
            #[cfg(feature = "tracing")]
            if began.is_some() {
                self.trace_origin(callbacks);
            }
            return;
        }
        self.walk_locked(err, cause, callbacks, began);
    }

    /// The walk of a node with something behind its lock (N9).
    #[inline(never)]
    fn walk_locked(
        self: &Arc<Self>,
        err: Error,
        cause: Option<Cause>,
        callbacks: Callbacks,
        began: Option<Began>,
    ) {
        let mut after = Aftermath::take();
        let cause = {
            let mut inner = lock(&self.inner);
            if self.state.claim().is_some() {
                drop(inner);
                drop(cause); // with no lock held (N6)
                self.await_walk(); // N1b
                after.run(callbacks);
                return;
            }
            // A handle's cancel replaces the pending deadline cause, which is dropped after
            // the walk (N6); expiry keeps it. The sentinel of `err` itself is stored as
            // `None`: nothing to allocate.
            let pending = extra_mut(&mut inner).and_then(|e| e.cause.take());
            let cause = match cause {
                Some(cause) => {
                    after.garbage.extend(pending.map(Garbage::Cause));
                    Some(cause)
                }
                None => pending,
            };
            let cause = cause.filter(|c| !c.is_sentinel(err));
            if let Some(began) = began {
                self.record_origin(began); // N10: before the state says done
            }
            let reached = Reached::Began(began.map(|b| b.kind));
            self.finish(&mut inner, err, cause.clone(), reached, &mut after);
            cause
        };
        if after.found.is_empty() {
            // No child to walk (every level of a chain's end, a parent whose children are
            // all gone): `finish` made the node done with its walk over, so no walking bit
            // was set and none is to be cleared or waited for (N1b).
            drop(cause);
            after.run(callbacks);
            #[cfg(feature = "tracing")]
            if began.is_some() {
                self.trace_origin(callbacks);
            }
            return;
        }
        // The walk goes through `reached` in order, appending the children it finds that it
        // must lock (N7); the walk's own node's children come first, up to `root_end`.
        let mut reached = std::mem::take(&mut after.reached);
        let lock_free = cause.is_none();
        sift(&mut after, err, lock_free, &mut reached);
        let root_end = reached.len();
        let mut at = 0;
        while let Some(node) = reached.get(at) {
            at += 1;
            {
                let mut inner = lock(&node.inner);
                if node.state.claim().is_some() {
                    // Done already: it keeps its own err and cause (S8), but its subtree may
                    // still be under another walk, to be waited for (N1b).
                    drop(inner);
                    after.found_done.push(at - 1);
                    continue;
                }
                node.finish(
                    &mut inner,
                    err,
                    cause.clone(),
                    Reached::From(self),
                    &mut after,
                );
            }
            // Indices fit in `u32`: 2^32 nodes would need hundreds of GiB.
            after.walked.push(Walked {
                at: (at - 1) as u32,
                first_child: reached.len() as u32,
            });
            sift(&mut after, err, lock_free, &mut reached);
        }
        after.reached = reached;
        drop(cause);
        self.end_walk(root_end, &after);
        after.run(callbacks);
        #[cfg(feature = "tracing")]
        if began.is_some() {
            self.trace_origin(callbacks);
        }
    }

    /// N1b: clears this walk's bits: first those of the nodes with nothing still under
    /// another walk below them, then, as each of the other walks this one found ends, those
    /// of the nodes no walk still under way is below.
    ///
    /// A walk keeps the bit of a node set while a node below it (found through it) is still
    /// under another walk, so that a cancel of that node waits as long as its subtree is not
    /// all done, whoever is still walking it. No two walks wait on each other for good: a
    /// walk keeps a bit only for a node below it that another walk still walks, so a circle
    /// of walks each waiting for a bit another keeps would be a circle of nodes each below
    /// the next, and a tree with merges has none.
    fn end_walk(self: &Arc<Self>, root_end: usize, after: &Aftermath) {
        let mut foreign = self.found_under_other_walks(after);
        if foreign.is_empty() {
            // Nothing below is under another walk (almost always): every bit goes at once.
            return self.clear_bits(after, |_| true, true);
        }
        let (mut kept, mut root_kept) = Self::kept(&foreign, root_end, after);
        // First every bit not on the way to a node another walk still walks.
        self.clear_bits(
            after,
            |w| !kept.get(w).copied().unwrap_or(false),
            !root_kept,
        );
        // Then, each time one of those walks ends, the bits no longer on the way to one still
        // under way. A bit is never kept for a walk that has ended: two walks that each keep
        // a bit the other waits for would each keep it for a node below it that the other
        // walks, and "below" cannot go round in a circle.
        while !foreign.is_empty() {
            wait_while(|| foreign.iter().all(|&i| after.reached[i].state.is_walking()));
            foreign.retain(|&i| after.reached[i].state.is_walking());
            let (still, root_still) = Self::kept(&foreign, root_end, after);
            let released = |w: usize| kept[w] && !still.get(w).copied().unwrap_or(false);
            self.clear_bits(after, released, root_kept && !root_still);
            (kept, root_kept) = (still, root_still);
        }
    }

    /// Which walked nodes, and whether the root, are on the way to one of the `foreign`
    /// nodes (N1b). The node a reached node was found through is the walked node whose
    /// children start last at or before it (children are appended right after their parent
    /// is walked). Empty, allocating nothing, when `foreign` is.
    fn kept(foreign: &[usize], root_end: usize, after: &Aftermath) -> (Vec<bool>, bool) {
        let size = if foreign.is_empty() {
            0
        } else {
            after.walked.len()
        };
        let mut kept = vec![false; size];
        let mut root_kept = false;
        for &found in foreign {
            let mut child = found as u32;
            loop {
                if (child as usize) < root_end {
                    root_kept = true;
                    break;
                }
                let w = after.walked.partition_point(|w| w.first_child <= child) - 1;
                if std::mem::replace(&mut kept[w], true) {
                    break; // marked from here up already
                }
                child = after.walked[w].at;
            }
        }
        (kept, root_kept)
    }

    /// Clears the walking bits of the walked nodes `clear` picks, and the root's if `root`,
    /// and wakes the waiters.
    fn clear_bits(&self, after: &Aftermath, clear: impl Fn(usize) -> bool, root: bool) {
        if root {
            self.state.end_walk();
        }
        for (w, walked) in after.walked.iter().enumerate() {
            if clear(w) {
                after.reached[walked.at as usize].state.end_walk();
            }
        }
        walks_ended();
    }

    /// The nodes this walk found done that another walk still walks. A node reached twice
    /// (through two parents, in a merge) was made done by this very walk: its bit is its own.
    fn found_under_other_walks(self: &Arc<Self>, after: &Aftermath) -> Vec<usize> {
        let walking = |&i: &usize| after.reached[i].state.is_walking();
        if !after.found_done.iter().any(walking) {
            return Vec::new();
        }
        let ours: HashSet<*const Node> = after
            .walked
            .iter()
            .map(|w| Arc::as_ptr(&after.reached[w.at as usize]))
            .chain([Arc::as_ptr(self)])
            .collect();
        let foreign = |&i: &usize| walking(&i) && !ours.contains(&Arc::as_ptr(&after.reached[i]));
        after.found_done.iter().copied().filter(foreign).collect()
    }

    /// Waits until no cancellation is walking this node's subtree (N1b).
    pub(crate) fn await_walk(&self) {
        wait_while(|| self.state.is_walking());
    }

    /// Marks this node done and takes out everything that must hear of it (N1, N4). Its
    /// children stay listed, for snapshots ([S30](crate::guarantees#s30)), until dropped
    /// (N3).
    #[inline(always)]
    fn finish(
        &self,
        inner: &mut Inner,
        err: Error,
        cause: Option<Cause>,
        reached: Reached<'_>,
        after: &mut Aftermath,
    ) {
        // Each call has a closure of its own, passed by value: the list's loop calls it
        // directly.
        inner.for_each(|c: &Weak<Node>| after.found.extend(c.upgrade()));
        if let Some(lanes) = extra_ref(inner).and_then(|e| e.lanes.as_deref()) {
            // Closed before the state says done, in this critical section (N14).
            lanes.for_each(true, |c: &Weak<Node>| after.found.extend(c.upgrade()));
        }
        match extra_mut(inner) {
            None => {
                if cause.is_some() {
                    extra(inner).cause = cause;
                }
            }
            Some(e) => {
                // Each part is looked at before it is moved: most nodes with this state have
                // children beyond the first and nothing else in it.
                // A pending deadline cause that gives way is dropped after the walk (N6).
                if let Some(replaced) = std::mem::replace(&mut e.cause, cause) {
                    after.garbage.push(Garbage::Cause(replaced));
                }
                if !e.wakers.is_empty() {
                    let wakers = std::mem::take(&mut e.wakers);
                    after.wakers.extend(wakers.into_iter().map(|(_, w)| w));
                }
                if !e.regs.is_empty() {
                    after.regs.append(&mut e.regs);
                }
                // Dropped after the walk, with no lock held (N6).
                if let Some(pin) = e.pin.take() {
                    after.unpinned.push(pin);
                }
                if let (Some(_), Reached::From(root)) = (&e.merge, reached) {
                    // A merge has two parents: it keeps which walk reached it (N10).
                    e.reached_from = Some(Arc::downgrade(root));
                }
            }
        }
        // A node with no children to walk has its whole subtree done already (N1b).
        let walk = if after.found.is_empty() {
            Walk::Over
        } else {
            Walk::UnderWay
        };
        let began = match reached {
            Reached::Began(kind) => kind,
            Reached::From(_) => None,
        };
        self.state.finish(err, walk, began);
    }

    /// A node being dropped leaves its parents' child lists (N2, N3): the first parent, and
    /// `merge`'s for a merge. A parent that is done is not locked: it lists no child any
    /// more once it is dropped, and never takes a new one. With `in_chain` (a node whose
    /// last reference a release took from its child, `release.rs`), nor is a first parent
    /// this node holds the last reference to: only a passing walk or snapshot can still
    /// reach it, and it goes, its list with it, when they let go (N3). So a chain drops
    /// without locking its levels. The first node of a drop does not look: its parent is
    /// most often shared (a child dropped under a live parent), and the look costs that case
    /// more than it saves (BENCHMARKS.md, "A chain released without locking its levels").
    #[inline(always)]
    pub(super) fn leave_parents_on_drop(&self, merge: Option<Arc<MergeParent>>, in_chain: bool) {
        let live = |p: &&Arc<Node>| !p.is_done();
        let shared = |p: &&Arc<Node>| !in_chain || Arc::strong_count(p) != 1;
        if let Some(p) = self.parent.cancel_node().filter(live).filter(shared) {
            p.unlink(&self.slot);
        }
        if let Some(merge) = merge {
            if let Some(p) = merge.pair.cancel_node().filter(live) {
                p.unlink(&merge.slot);
            }
        }
    }
}

/// Moves the children the last `finish` found to the end of `reached`, but for those it makes
/// done at once. In a cancellation without a cause (`lock_free`), an unclaimed child is made
/// done with one compare-and-swap (N9) and needs nothing more of the walk: it has nothing
/// behind its lock, and one parent, done by this walk. The walk lets go of it there and then,
/// while its counts are still in this core's cache, where keeping it in `reached` until the
/// end would read them again after a walk of a wide parent has evicted them. A reference that
/// was the last goes to the garbage, dropped after the walk (N6).
#[inline(always)]
fn sift(after: &mut Aftermath, err: Error, lock_free: bool, reached: &mut Vec<Arc<Node>>) {
    if !lock_free {
        reached.append(&mut after.found);
        return;
    }
    // One child, as at each level of a chain: no iterator over the list.
    if after.found.len() == 1 {
        if let Some(child) = after.found.pop() {
            sift_one(child, err, reached, &mut after.garbage);
        }
        return;
    }
    sift_many(after, err, reached);
}

/// [`sift`] of more than one child, out of line.
#[inline(never)]
fn sift_many(after: &mut Aftermath, err: Error, reached: &mut Vec<Arc<Node>>) {
    for child in after.found.drain(..) {
        sift_one(child, err, reached, &mut after.garbage);
    }
}

/// [`sift`] of one child: made done without a lock if it is unclaimed, else kept for the
/// walk to lock.
#[inline(always)]
fn sift_one(
    child: Arc<Node>,
    err: Error,
    reached: &mut Vec<Arc<Node>>,
    garbage: &mut Vec<Garbage>,
) {
    if !child.state.cancel_unclaimed(err, None) {
        reached.push(child);
    } else if let Some(orphan) = Arc::into_inner(child) {
        garbage.push(Garbage::Node(orphan));
    }
}

// ---------------------------------------------------------------------------------------
// Waiting for walks (N1b)
// ---------------------------------------------------------------------------------------
//
// The protocol: a waiter counts itself in `WAITERS` (a `SeqCst` read-modify-write) before it
// looks at the walking bit (a `SeqCst` load); a walk clears its bits (`Release` stores, one
// plain store a node) and then, after a `SeqCst` fence, reads `WAITERS`. If the fence comes
// before the waiter's look in the single total order of `SeqCst` operations, the look sees
// the bits cleared; if after, the count came before the fence too, and the walk's read, after
// the fence, sees it (C++20 [atomics.order], the fence rules Rust's atomics follow): either
// the waiter sees the bits cleared, or the walk sees the waiter and notifies it under the
// mutex.

/// Blocks while `busy()` holds, until a [`walks_ended`] call makes it false.
#[cfg(not(loom))]
fn wait_while(busy: impl Fn() -> bool) {
    use crate::sync::lock_std;
    use std::sync::atomic::Ordering;
    if !busy() {
        return;
    }
    WAITERS.fetch_add(1, Ordering::SeqCst);
    let (mutex, condvar) = &COMPLETION;
    let mut guard = lock_std(mutex);
    while busy() {
        guard = condvar.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
    drop(guard);
    WAITERS.fetch_sub(1, Ordering::SeqCst);
}

/// Wakes the threads in [`wait_while`], if any; cheap when there are none.
#[cfg(not(loom))]
fn walks_ended() {
    use std::sync::atomic::{fence, Ordering};
    fence(Ordering::SeqCst); // after the bits were cleared: see the protocol above
    if WAITERS.load(Ordering::SeqCst) > 0 {
        let (mutex, condvar) = &COMPLETION;
        let _guard = crate::sync::lock_std(mutex);
        condvar.notify_all();
    }
}

#[cfg(not(loom))]
static WAITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
#[cfg(not(loom))]
static COMPLETION: (std::sync::Mutex<()>, std::sync::Condvar) =
    (std::sync::Mutex::new(()), std::sync::Condvar::new());

// Under loom: the same protocol on loom's mutex and condition variable (without the count
// of waiters, an optimisation of the real one), so that the models explore it.
#[cfg(loom)]
loom::lazy_static! {
    static ref COMPLETION: (loom::sync::Mutex<()>, loom::sync::Condvar) =
        (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
}

#[cfg(loom)]
fn wait_while(busy: impl Fn() -> bool) {
    let (mutex, condvar) = &*COMPLETION;
    let mut guard = mutex.lock().unwrap();
    while busy() {
        guard = condvar.wait(guard).unwrap();
    }
}

#[cfg(loom)]
fn walks_ended() {
    let (mutex, condvar) = &*COMPLETION;
    let _guard = mutex.lock().unwrap();
    condvar.notify_all();
}
