//! The cancellation walk: how a cancel makes a node and its whole subtree done (N1b, N4, N7,
//! N9), and how a canceller waits for walks of other threads.

use std::sync::Arc;

use super::aftermath::Aftermath;
use super::node::{extra, extra_mut, Inner, MergeParent, Node};
use super::state::Walk;
use crate::callback::Callbacks;
use crate::error::Cause;
use crate::sync::lock;
use crate::Error;

/// What becomes of a node's own timer entry once it is done.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum OwnTimer {
    /// Cancelled: the entry is counted dead (T2).
    Forget,
    /// The entry fired: the queue took it out already.
    Fired,
}

/// How a node made done leaves its parents' child lists.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Leave {
    /// Lock each parent straight away: on a parent shared between threads, reading its cache
    /// line and then locking costs two transfers of the line instead of one.
    Locking,
    /// Look first: a walk reached the node through a parent that is done now, and a done
    /// parent emptied its list when it became done (N3).
    LookingFirst,
}

impl Node {
    /// Cancels this node and every descendant not yet done, with `err` and `cause` (`None`:
    /// the cause given to `with_*_cause`, or the sentinel). Does nothing if already done
    /// ([S8](crate::guarantees#s8)). When this returns, the whole subtree is done
    /// ([S4](crate::guarantees#s4)) and every `on_cancel` callback has run
    /// ([S20](crate::guarantees#s20)).
    pub(crate) fn cancel(self: &Arc<Self>, err: Error, cause: Option<Cause>) {
        self.walk(err, cause, OwnTimer::Forget, Callbacks::Inline);
    }

    /// [`cancel`](Self::cancel), for a cancel (`OwnTimer::Forget`) or an expiry
    /// (`OwnTimer::Fired`).
    pub(super) fn walk(
        self: &Arc<Self>,
        err: Error,
        cause: Option<Cause>,
        own_timer: OwnTimer,
        callbacks: Callbacks,
    ) {
        let sentinel = cause.as_ref().map_or(true, |c| c.is_sentinel(err));
        if sentinel && self.state.cancel_unclaimed(err) {
            // N9: no children, waiters or callbacks.
            self.leave_tree(None, own_timer, Leave::Locking);
            return;
        }
        let mut after = Aftermath::take();
        let (cause, merge) = {
            let mut inner = lock(&self.inner);
            if self.state.claim().is_some() {
                drop(inner);
                self.await_walk(); // N1b
                return;
            }
            // A handle's cancel replaces the pending deadline cause; expiry keeps it. The
            // sentinel of `err` itself is stored as `None`: nothing to allocate.
            let pending = extra_mut(&mut inner).and_then(|e| e.cause.take());
            let cause = cause.or(pending).filter(|c| !c.is_sentinel(err));
            let merge = self.finish(&mut inner, err, cause.clone(), &mut after);
            (cause, merge)
        };
        // The walk goes through `reached` in order, appending the children it finds (N7).
        let mut reached = std::mem::take(&mut after.reached);
        reached.append(&mut after.found);
        let mut at = 0;
        while let Some(node) = reached.get(at) {
            at += 1;
            if cause.is_none() && node.state.cancel_unclaimed(err) {
                // N9. It has one parent, done by this walk: only its timer is left.
                node.forget_timer();
                continue;
            }
            let merge = {
                let mut inner = lock(&node.inner);
                if node.state.claim().is_some() {
                    // Done already: it keeps its own err and cause (S8), but its subtree may
                    // still be under another walk, to be waited for (N1b).
                    drop(inner);
                    after.found_done.push(at - 1);
                    continue;
                }
                node.finish(&mut inner, err, cause.clone(), &mut after)
            };
            after.walked.push((at - 1, merge));
            reached.append(&mut after.found);
        }
        after.reached = reached;
        // N1b: first clear this walk's bits, then wait for other walks. Nodes leave their
        // parents only now: until the walk is over, a cancel of another parent must still
        // find them there, and wait.
        self.state.end_walk();
        after
            .walked
            .iter()
            .for_each(|&(i, _)| after.reached[i].state.end_walk());
        walks_ended();
        self.leave_tree(merge, own_timer, Leave::Locking);
        for (i, merge) in &mut after.walked {
            after.reached[*i].leave_tree(merge.take(), OwnTimer::Forget, Leave::LookingFirst);
        }
        after
            .found_done
            .iter()
            .for_each(|&i| after.reached[i].await_walk());
        after.run(callbacks);
    }

    /// Waits until no cancellation is walking this node's subtree (N1b).
    pub(super) fn await_walk(&self) {
        wait_while(|| self.state.is_walking());
    }

    /// Marks this node done and takes out everything that must hear of it (N1, N4). Returns
    /// the second parent of a merge, which the node must leave.
    fn finish(
        &self,
        inner: &mut Inner,
        err: Error,
        cause: Option<Cause>,
        after: &mut Aftermath,
    ) -> Option<Arc<MergeParent>> {
        if let Some(b) = inner.as_deref_mut() {
            after
                .found
                .extend(b.children.take().filter_map(|c| c.upgrade()));
        }
        let merge = match extra_mut(inner) {
            None => {
                if cause.is_some() {
                    extra(inner).cause = cause;
                }
                None
            }
            Some(e) => {
                e.cause = cause;
                let wakers = std::mem::take(&mut e.wakers);
                after.wakers.extend(wakers.into_iter().map(|(_, w)| w));
                after.regs.append(&mut e.regs);
                // Dropped after the walk, with no lock held (N6).
                after.unpinned.extend(e.pin.take());
                e.merge.clone()
            }
        };
        // A node with no children to walk has its whole subtree done already (N1b).
        let walk = if after.found.is_empty() {
            Walk::Over
        } else {
            Walk::UnderWay
        };
        self.state.finish(err, walk);
        merge
    }

    /// Bookkeeping after a node became done, with no lock held: leave the parents' child
    /// lists and the timer queue.
    fn leave_tree(&self, merge: Option<Arc<MergeParent>>, own_timer: OwnTimer, leave: Leave) {
        self.leave_parents(merge, leave);
        if own_timer == OwnTimer::Forget {
            self.forget_timer();
        }
    }

    /// Leaves the parents' child lists: the first parent, and `merge`'s for a merge.
    fn leave_parents(&self, merge: Option<Arc<MergeParent>>, leave: Leave) {
        // A parent done already emptied its children when it became done (N3).
        let live = |p: &&Arc<Node>| leave == Leave::Locking || !p.is_done();
        if let Some(p) = self.parent.cancel_node().filter(live) {
            p.unlink(&self.slot);
        }
        if let Some(merge) = merge {
            if let Some(p) = merge.pair.cancel_node().filter(live) {
                p.unlink(&merge.slot);
            }
        }
    }

    /// A node dropped before it was done leaves its parents (N2).
    pub(super) fn leave_parents_on_drop(&self, merge: Option<Arc<MergeParent>>) {
        self.leave_parents(merge, Leave::Locking);
    }
}

// ---------------------------------------------------------------------------------------
// Waiting for walks (N1b)
// ---------------------------------------------------------------------------------------
//
// The protocol: a waiter counts itself in `WAITERS` before its first look at the walking bit,
// and a walk clears its bits before reading `WAITERS`. All four steps are `SeqCst`, so either
// the walk sees the waiter and notifies it under the mutex, or the waiter sees the bits
// cleared.

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
    use std::sync::atomic::Ordering;
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

/// Under loom, waiting is a yielding loop: loom runs every model thread on one OS thread.
#[cfg(loom)]
fn wait_while(busy: impl Fn() -> bool) {
    while busy() {
        loom::thread::yield_now();
    }
}

#[cfg(loom)]
fn walks_ended() {}
