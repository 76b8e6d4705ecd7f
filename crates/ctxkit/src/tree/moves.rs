//! Deadlines that move ([S33](crate::guarantees#s33), N11): `set_deadline` and
//! `set_timeout` on a handle, and what the rest of the tree does about it.
//!
//! A node caches the earliest deadline of itself and its ancestors when it is made, so that
//! `deadline()` is one load. A move would make the caches below it stale, so the first move
//! of a node marks it [`MOVED`] and every node below it [`BELOW_MOVED`] (nodes made later
//! under a marked parent are marked as they are made). A marked node's `deadline` holds only
//! its own deadline, and `deadline()` of a marked node goes up to the first unmarked
//! ancestor, whose cache is exact. Moves are rare where deadlines are read on hot paths;
//! a tree where nothing ever moved reads one load, as before.
//!
//! Moving a deadline later touches no timer: the entry made for the earlier deadline fires
//! at its time, finds the node's deadline later, and puts the node back in the queue at its
//! new deadline. So an idle timeout pushed back on every message costs a store, and the timer
//! thread wakes once per period, not once per push. Moving it earlier adds an entry at the
//! new deadline; the later one finds the node done when it comes due.

use std::panic::Location;
use std::sync::Arc;

use super::node::{extra_ref, Kind, Node, BELOW_MOVED, MOVED, MOVES};
use super::Pair;
use crate::callback::Callbacks;
use crate::origin::{Began, OriginKind};
use crate::sync::{lock, Ordering};
use crate::time::{Nanos, NO_DEADLINE};
use crate::Error;

impl Node {
    /// Marks a node just made and linked [`BELOW_MOVED`] if a parent is marked (N11).
    #[inline]
    pub(super) fn inherit_moves(&self, parent: &Pair, other: Option<&Pair>) {
        let marked = |p: &Pair| {
            p.node
                .as_ref()
                .is_some_and(|n| n.marks.load(Ordering::Acquire) & MOVES != 0)
        };
        if marked(parent) || other.is_some_and(marked) {
            self.marks.fetch_or(BELOW_MOVED, Ordering::AcqRel);
        }
    }

    /// This node's own deadline, for a node whose `deadline` is not a cache (N11).
    pub(super) fn own_deadline(&self) -> Nanos {
        if self.kind() == Kind::Deadline || self.marks.load(Ordering::Acquire) & MOVED != 0 {
            self.deadline.load(Ordering::Acquire)
        } else {
            NO_DEADLINE
        }
    }

    /// `deadline()` once something at or above this node moved: the earliest own deadline
    /// on the way up to the first node nothing above ever moved, and that node's cache.
    #[cold]
    pub(super) fn deadline_after_moves(&self) -> Nanos {
        let mut earliest = NO_DEADLINE;
        // Second parents of merges met on the way, still to go up from.
        let mut others: Vec<Arc<Node>> = Vec::new();
        let mut at: Option<&Node> = Some(self);
        let mut held: Option<Arc<Node>>;
        loop {
            let Some(node) = at else {
                match others.pop() {
                    Some(next) => {
                        held = Some(next);
                        at = held.as_deref();
                        continue;
                    }
                    None => return earliest,
                }
            };
            if node.marks.load(Ordering::Acquire) & MOVES == 0 {
                earliest = earliest.min(node.deadline.load(Ordering::Relaxed));
                at = None;
                continue;
            }
            earliest = earliest.min(node.own_deadline());
            if let Some(other) = node.merged_with().and_then(|p| p.node) {
                others.push(other);
            }
            at = node.parent.node.as_deref();
        }
    }

    /// Moves this node's own deadline to `at` ([S33](crate::guarantees#s33)): `false`,
    /// changing nothing, if the node is done. A deadline already past cancels at once.
    /// `now`: the clock's reading `at` was computed from, if any.
    pub(crate) fn set_deadline(
        self: &Arc<Self>,
        at: Nanos,
        now: Option<Nanos>,
        site: &'static Location<'static>,
    ) -> bool {
        if self.is_done() {
            return false;
        }
        // Due already, whatever it was before: cancels at once.
        let due = at <= now.unwrap_or_else(|| self.clock_now());
        if !due && self.marks.load(Ordering::Acquire) & MOVED != 0 {
            // The idle timeout's path: later, from the call site that set it last. An entry
            // at or before the old deadline is in the queue and will re-arm (N11); the site
            // is unchanged, so nothing needs the lock.
            let before = self.deadline.load(Ordering::Acquire);
            if at >= before && self.origin_at.load() == Some(site) {
                self.deadline.store(at, Ordering::Release);
                return true;
            }
        }
        {
            let _inner = lock(&self.inner);
            if self.state.claim().is_some() {
                return false;
            }
            let first = self.marks.load(Ordering::Acquire) & MOVED == 0;
            // Before the first move, `deadline` is a cache: the own deadline is `own_deadline`.
            let before = self.own_deadline();
            if first {
                // Readers now take `deadline` as this node's own deadline and look above it
                // for the rest; the cache they read until `at` is stored is exact (N11).
                self.marks.fetch_or(MOVED, Ordering::AcqRel);
            }
            // While the node is live, `origin_at` of a moved node is where its deadline was
            // set; written under the lock, as a cancellation's origin is (N10, N11).
            self.origin_at.store(Some(site));
            self.deadline.store(at, Ordering::Release);
            drop(_inner);
            if first {
                self.mark_below();
            }
            if at >= before && !due {
                return true; // the entry of the earlier deadline re-arms (lazy)
            }
        }
        if at == NO_DEADLINE {
            return true;
        }
        if due || !self.parent.timer_queue().insert(at, self) {
            let began = Began {
                kind: OriginKind::Deadline,
                at: site,
            };
            self.walk(
                Error::DeadlineExceeded,
                None,
                Callbacks::Inline,
                Some(began),
            );
        }
        true
    }

    /// Marks every node below this one [`BELOW_MOVED`] (N11), one lock at a time (N5), with
    /// a work list (N7). A node marked already has its subtree marked, or being marked by
    /// the walk that marked it.
    fn mark_below(self: &Arc<Self>) {
        let mut work = vec![Arc::clone(self)];
        while let Some(node) = work.pop() {
            let inner = lock(&node.inner);
            let mut mark = |child: &std::sync::Weak<Node>| {
                let Some(child) = child.upgrade() else { return };
                if child.marks.fetch_or(BELOW_MOVED, Ordering::AcqRel) & MOVES == 0 {
                    work.push(child);
                }
            };
            inner.for_each(&mut mark);
            if let Some(lanes) = extra_ref(&inner).and_then(|e| e.lanes.as_deref()) {
                lanes.for_each(false, &mut mark); // N14: the same order as a link there
            }
        }
    }

    /// The current time on this node's clock.
    pub(crate) fn clock_now(&self) -> Nanos {
        self.parent.now()
    }

    /// For an entry of this node's timer that came due: if the node's deadline was moved
    /// later meanwhile, puts it back in the queue at its deadline and returns true (N11).
    pub(super) fn rearm(self: &Arc<Self>) -> bool {
        if self.marks.load(Ordering::Acquire) & MOVED == 0 {
            return false;
        }
        let own = self.deadline.load(Ordering::Acquire);
        let queue = self.parent.timer_queue();
        if own == NO_DEADLINE {
            return true; // moved to no deadline at all: nothing to fire
        }
        own > queue.now() && queue.insert(own, self)
    }

    /// Where this node's deadline was set: its last `set_deadline`, else its creation.
    pub(super) fn deadline_set_at(&self) -> Option<&'static Location<'static>> {
        if self.marks.load(Ordering::Acquire) & MOVED != 0 {
            if let Some(site) = self.origin_at.load() {
                return Some(site);
            }
        }
        self.site
    }
}
