//! A node of the cancellation tree: what it holds, how it is made and linked into its
//! parents, and what can be read from it.

use std::any::Any;
use std::panic::Location;

use crossbeam_utils::atomic::AtomicCell;
use std::sync::{Arc, Weak};
use std::task::Waker;

use slab::Slab;

use super::children::{Children, UNLINKED};
use super::clock::Queue;
use super::lanes::{self, Lanes, CONTENDED_LINKS};
use super::state::{State, Walk};
use super::Pair;
use crate::callback::{self, Callbacks, Priority, Reg};
use crate::error::Cause;
use crate::sync::{lock, lock_noting_contention, AtomicI64, AtomicU32, AtomicU8, Mutex, Ordering};
use crate::time::{Nanos, NO_DEADLINE};
use crate::timer::{self, Timed};
use crate::Error;

/// What kind of derivation made a node: decides how it displays and whether it can be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `with_cancel`, or a `with_deadline` later than the parent's
    /// ([S12](crate::guarantees#s12)).
    Cancel,
    /// `with_deadline`/`with_timeout` with its own timer.
    Deadline,
    /// `merge`: a second parent lives in [`Extra::merge`].
    Merge,
    /// `without_cancel`: never done, not linked to its parent.
    WithoutCancel,
    /// The `todo()` root: never done.
    Todo,
}

/// [`Node::marks`]: this node's own deadline was moved at least once (N11).
pub(super) const MOVED: u8 = 1;
/// [`Node::marks`]: an ancestor's deadline was moved at least once (N11).
pub(super) const BELOW_MOVED: u8 = 2;
/// [`Node::marks`]: either of the marks of N11, which a node's deadline reads look at.
pub(super) const MOVES: u8 = MOVED | BELOW_MOVED;
/// [`Node::marks`]: the node has lanes (N14). A hint, read with a `Relaxed` load: the lanes
/// themselves are in the node's [`Extra`].
pub(super) const LANES: u8 = 4;
/// [`Node::marks`]: the node is done and its timer queue holds no entry of it (its entry came
/// due, or none was made), so its drop has no entry to count dead (T2).
pub(super) const UNQUEUED: u8 = 8;

impl Kind {
    /// The word Display uses for the derivation ([S2](crate::guarantees#s2)).
    pub(crate) fn word(self) -> &'static str {
        match self {
            Kind::Cancel => "WithCancel",
            Kind::Deadline => "WithDeadline",
            Kind::Merge => "Merge",
            Kind::WithoutCancel => "WithoutCancel",
            Kind::Todo => "TODO",
        }
    }
}

/// A context that can be done (or a `without_cancel`/`todo` context, which cannot). See the
/// invariants in `tree/mod.rs`.
///
/// Laid out in this order (`repr(C)`) so that what a child's thread reads of its parent (the
/// state, the marks, the deadline and the parent's own parent, for a lookup) lies 64 bytes or
/// more past the start of the parent's `Arc` allocation, where its reference count is: never
/// on the count's cache line, which every child made or dropped on any thread writes (N15).
/// What lies on that line is written by cancellations, links through the lock and
/// snapshots, which are rare where a parent is shared between threads (a shared parent has
/// lanes, N14).
#[repr(C)]
pub(crate) struct Node {
    pub(super) inner: Mutex<Inner>,
    /// The call that derived it (`None` for the `todo()` root).
    pub(super) site: Option<&'static Location<'static>>,
    /// Where a cancellation that began at this node is charged (N10): `None` until then,
    /// or, on a node whose deadline moved, where it was last set (N11).
    pub(super) origin_at: AtomicCell<Option<&'static Location<'static>>>,
    /// When it was derived, as [`time::coarse_now`](crate::time::coarse_now).
    pub(super) born: u32,
    /// The cancelling thread's name, as [`origin::thread_tag`](crate::origin::thread_tag)
    /// (N10). A std atomic, like `origin_at`, which publishes it: under loom the pair is
    /// written and read with no model operation between them. On a node done with no origin
    /// of its own, which no thread ever cancelled, the levels it folded instead (N13).
    pub(super) origin_thread: std::sync::atomic::AtomicU32,
    // What a child reads of its parent starts here, at offset 48: 64 in the `Arc` (N15).
    /// This node's slot in its parent's child list (N3).
    pub(super) slot: AtomicU32,
    pub(super) state: State,
    /// Whether this node's deadline ([`MOVED`]) or an ancestor's ([`BELOW_MOVED`]) was ever
    /// moved (N11), whether the node has lanes ([`LANES`], N14), and whether its timer entry
    /// is gone ([`UNQUEUED`], T2).
    pub(super) marks: AtomicU8,
    kind: Kind,
    /// For a [`Kind::Deadline`] node: the timer shard its entry went to (T2).
    shard: u8,
    /// Unless a [`MOVES`] mark is set: the earliest deadline of this node and its ancestors
    /// ([`NO_DEADLINE`] if none), exact because none of them ever moved. With one set: this
    /// node's own deadline, if it has one (N11).
    pub(super) deadline: AtomicI64,
    /// The context this one was derived from (its first parent, for a merge).
    pub(super) parent: Pair,
}

// N15: the fields a child reads of its parent start 48 bytes into the node, 64 into its `Arc`
// (two words of counts before it), and the node is 80 bytes: 96 in its `Arc`. Checked where
// those figures hold: on 64-bit targets, outside loom's instrumented atomics.
#[cfg(all(not(loom), target_pointer_width = "64"))]
const _: () = {
    assert!(std::mem::offset_of!(Node, slot) == 48);
    assert!(std::mem::size_of::<Node>() == 80);
};

/// Where and when a node is made: the call site of the deriving call, and its birth on the
/// coarse clock.
#[derive(Clone, Copy)]
pub(crate) struct Birth {
    pub(crate) site: Option<&'static Location<'static>>,
    pub(crate) born: u32,
}

impl Birth {
    /// Born now at the caller's call site.
    #[track_caller]
    #[inline]
    pub(crate) fn here() -> Birth {
        Birth {
            site: Some(Location::caller()),
            born: crate::time::coarse_now(),
        }
    }
}

/// What a node's lock guards (N2, N3): its children, the first of them in the node itself so
/// that a level of a chain is one allocation, and out of line the rest, with the [`Extra`]
/// state most nodes never have.
pub(super) type Inner = Children<Weak<Node>, Extra>;

/// Causes, waiters, callbacks and merges: what most nodes never have.
#[derive(Default)]
pub(super) struct Extra {
    /// While live: the cause a `with_*_cause` deadline will use. Once done: the cause
    /// (`None` means the sentinel of the err, [S7](crate::guarantees#s7)).
    pub(super) cause: Option<Cause>,
    /// Wakers of pending `Done` futures and blocked threads, keyed so a dropped future can
    /// remove its own.
    pub(super) wakers: Slab<Waker>,
    /// `after_func` and `on_cancel` registrations. Stopped ones are swept when the vector
    /// would grow, so it stays within twice the live registrations.
    pub(super) regs: Vec<Arc<Reg>>,
    /// How many of `regs` may still be pending: added on registration, taken off when one
    /// settles.
    pub(super) pending: usize,
    /// While callbacks are pending on a node with its own timer: the node itself, so that
    /// the timer (which holds only a `Weak`, T1) can still find it (N8).
    pub(super) pin: Option<Arc<Node>>,
    /// The second parent of a merged context (set at creation, never changed).
    pub(super) merge: Option<Arc<MergeParent>>,
    /// For a merge made done by a cancellation that began elsewhere: the node where that
    /// walk started, whose origin it reports (N10). An ancestor, alive as long as this node.
    pub(super) reached_from: Option<Weak<Node>>,
    /// What cancels this node from outside the tree (a token's watch), kept for as long as
    /// the node lives; while callbacks are pending, it pins the node like a timer (N8).
    pub(super) canceller: Option<Box<dyn Any + Send + Sync>>,
    /// The node's lanes, once it has them (N14).
    pub(super) lanes: Option<Arc<Lanes>>,
    /// Until then: how many links of its children found its lock taken.
    pub(super) contended: u32,
}

/// The second parent of a merged context, shared so that it can be used without the
/// merged node's lock (N5).
pub(super) struct MergeParent {
    pub(super) pair: Pair,
    pub(super) slot: AtomicU32,
}

pub(super) fn extra(inner: &mut Inner) -> &mut Extra {
    inner.side_or_default()
}

/// The rare part of a node's state, if it was ever made.
pub(super) fn extra_ref(inner: &Inner) -> Option<&Extra> {
    inner.side()
}

pub(super) fn extra_mut(inner: &mut Inner) -> Option<&mut Extra> {
    inner.side_mut()
}

impl Node {
    // Inlined into `build`: the fields go straight to the stack slots `Arc::new` copies from.
    #[inline(always)]
    fn new(
        kind: Kind,
        deadline: Nanos,
        parent: Pair,
        merge: Option<Arc<MergeParent>>,
        cause: Option<Cause>,
        birth: Birth,
    ) -> Node {
        #[cfg(feature = "diagnostics")]
        crate::diagnostics::node_created(birth.site);
        let claimed = merge.is_some() || cause.is_some();
        let inner = Children::new(claimed, || Extra {
            cause,
            merge,
            ..Extra::default()
        });
        Node {
            state: State::new(claimed), // N9
            kind,
            shard: if kind == Kind::Deadline {
                timer::thread_shard()
            } else {
                0
            },
            slot: AtomicU32::new(UNLINKED),
            deadline: AtomicI64::new(deadline),
            marks: AtomicU8::new(0),
            inner: Mutex::new(inner),
            parent,
            site: birth.site,
            born: birth.born,
            origin_at: AtomicCell::new(None),
            origin_thread: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// A node that is never done (`todo`, `without_cancel`).
    pub(crate) fn never_done(kind: Kind, parent: Pair, birth: Birth) -> Arc<Node> {
        Arc::new(Node::new(kind, NO_DEADLINE, parent, None, None, birth))
    }

    /// A child under `parent`, a pair made for it: a layer of its own (a name) on top of a
    /// context. Such a pair is never a level's own context, so the child folds nothing (N13);
    /// it is born done if its parent is ([S5](crate::guarantees#s5)).
    pub(crate) fn child(kind: Kind, deadline: Nanos, parent: Pair, birth: Birth) -> Arc<Node> {
        debug_assert!(
            parent.layer.is_some(),
            "a pair made for the child has its layer"
        );
        let born_done = match &parent.node {
            Some(p) if p.is_done() => born_done_under(&parent, true),
            _ => None,
        };
        Node::build(kind, deadline, parent, 0, born_done, None, None, birth)
    }

    /// A child of the context whose pair is `parent` (and of `other`, for a merge), linked
    /// into every parent that can be done. If a parent is already done, so is the child, with
    /// the first such parent's err and cause ([S5](crate::guarantees#s5),
    /// [S24](crate::guarantees#s24)). The child holds `parent` as [`Pair::as_parent`] makes it,
    /// unless it folds it (N13): then it holds the folded level's parent, and `parent` is
    /// never cloned.
    #[inline(always)]
    pub(crate) fn child_of(
        kind: Kind,
        deadline: Nanos,
        parent: &Pair,
        other: Option<&Pair>,
        deadline_cause: Option<Cause>,
        birth: Birth,
    ) -> Arc<Node> {
        // Under a done parent (one load tells), on a path of its own: the child may fold it
        // (N13), and is born done without locking or linking anything if the parent tells its
        // err without its lock (N9b).
        if let (Some(p), None) = (&parent.node, other) {
            if p.is_done() {
                return Node::child_of_done(kind, deadline, parent, deadline_cause, birth);
            }
        }
        Node::build(
            kind,
            deadline,
            parent.as_parent(),
            0,
            None,
            other,
            deadline_cause,
            birth,
        )
    }

    /// [`child_of`](Self::child_of) under a done parent, out of line: the derivations under
    /// a live parent, which most are, carry none of it.
    #[inline(never)]
    fn child_of_done(
        kind: Kind,
        deadline: Nanos,
        parent: &Pair,
        deadline_cause: Option<Cause>,
        birth: Birth,
    ) -> Arc<Node> {
        Node::born_done_child(kind, deadline, parent, deadline_cause, birth)
    }

    /// A `with_cancel` child of the context whose pair is `parent`:
    /// [`child_of`](Self::child_of) with its two paths split where the derivation is
    /// inlined, so that a child under a done parent never sets up the frame of the path
    /// under a live one (a chain under a cancelled root is made of such children).
    #[inline(always)]
    pub(crate) fn cancel_child(parent: &Pair, birth: Birth) -> Arc<Node> {
        match &parent.node {
            Some(p) if p.is_done() => Node::cancel_child_of_done(parent, birth),
            _ => Node::cancel_child_of_live(parent, birth),
        }
    }

    #[inline(never)]
    fn cancel_child_of_done(parent: &Pair, birth: Birth) -> Arc<Node> {
        Node::born_done_child(Kind::Cancel, parent.deadline(), parent, None, birth)
    }

    /// The parent may be done by now: then the link fails and the child is born done all
    /// the same (N4), only without folding (N13).
    #[inline(never)]
    fn cancel_child_of_live(parent: &Pair, birth: Birth) -> Arc<Node> {
        let deadline = parent.deadline();
        Node::build(
            Kind::Cancel,
            deadline,
            parent.as_parent(),
            0,
            None,
            None,
            None,
            birth,
        )
    }

    #[inline(always)]
    fn born_done_child(
        kind: Kind,
        deadline: Nanos,
        parent: &Pair,
        deadline_cause: Option<Cause>,
        birth: Birth,
    ) -> Arc<Node> {
        let (parent, folded) = fold(parent).unwrap_or_else(|| (parent.as_parent(), 0));
        let born_done = born_done_under(&parent, deadline_cause.is_none());
        Node::build(
            kind,
            deadline,
            parent,
            folded,
            born_done,
            None,
            deadline_cause,
            birth,
        )
    }

    /// The rest of [`child_of`](Self::child_of) and [`child`](Self::child), once the parent
    /// is known.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn build(
        kind: Kind,
        deadline: Nanos,
        parent: Pair,
        folded: u32,
        born_done: Option<Error>,
        other: Option<&Pair>,
        deadline_cause: Option<Cause>,
        birth: Birth,
    ) -> Arc<Node> {
        let merge = other.map(|pair| {
            Arc::new(MergeParent {
                pair: pair.as_parent(), // N12
                slot: AtomicU32::new(UNLINKED),
            })
        });
        // `Arc::new` builds the node on the stack and copies it over once allocated. The
        // allocator's call lies between the stores and the loads of that copy, so they never
        // wait on each other; `Arc::new_cyclic`, which builds in place, costs 60 to 140
        // instructions and one atomic increment more per node (BENCHMARKS.md, "a node
        // copied into its allocation").
        let node = Arc::new({
            let mut node = Node::new(kind, deadline, parent, merge.clone(), deadline_cause, birth);
            if let Some(err) = born_done {
                node.state = State::born_done(err);
            }
            // Done at birth whenever it folds (N13): no cancellation will write this.
            node.origin_thread = std::sync::atomic::AtomicU32::new(folded);
            node
        });
        if born_done.is_some() {
            node.inherit_moves(&node.parent, None);
            return node;
        }
        let parent = &node.parent;
        // Linking happens after the Arc exists, so a parent's walk can always upgrade its
        // Weak (N2): a node under construction could not be reached.
        if let Some(p) = parent.cancel_node() {
            if let Err(done) = p.link(&node, &node.slot) {
                node.finish_at_birth(done);
                node.inherit_moves(parent, other);
                return node;
            }
        }
        if let Some(merge) = merge {
            if let Some(other) = merge.pair.cancel_node() {
                if let Err((err, cause)) = other.link(&node, &merge.slot) {
                    // `node` may be reachable from `parent` by now: cancel it properly, with
                    // the origin of the cancellation that reached `other` (N10).
                    let cause = Some(cause.unwrap_or_else(|| Cause::sentinel(err)));
                    node.reached_through(other, err, cause);
                } else if node.is_done() {
                    // `parent` cancelled it before it was linked into `other` (N3 makes
                    // this second unlink harmless if the walk already did it).
                    other.unlink(&merge.slot);
                }
            }
        }
        // After linking (N11): a first move above either finds this node in a child list
        // or has marked the parent already.
        node.inherit_moves(parent, other);
        node
    }

    /// How many levels this node stands for besides its own (N13): `with_cancel` levels done
    /// through their parent that this node, made under them, folded away, each of which
    /// Display still prints ([S2](crate::guarantees#s2)). 0 for every node that folded none.
    pub(crate) fn folded_levels(&self) -> u32 {
        // Done with no origin here: no cancellation ever wrote `origin_thread` (N10 writes
        // it only on the way to a done state that carries the origin's kind).
        if !self.state.done_from_parent() {
            return 0;
        }
        self.folded_count()
    }

    /// [`folded_levels`](Self::folded_levels) of a node known to be done from its parent.
    #[inline]
    fn folded_count(&self) -> u32 {
        self.origin_thread
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Links `child` into this node's child list unless this node is done (N3, N4): into
    /// this thread's lane if the node has lanes this thread has at hand (N14), else under
    /// the node's lock.
    #[inline(always)]
    fn link(&self, child: &Arc<Node>, slot: &AtomicU32) -> Result<(), (Error, Option<Cause>)> {
        // Made before locking: the critical section of a parent shared between threads
        // stays as short as possible.
        let weak = Arc::downgrade(child);
        if self.marks.load(Ordering::Relaxed) & LANES != 0 {
            return self.link_laned(weak, slot);
        }
        self.link_locked(weak, slot, false)
    }

    /// [`link`](Self::link) into a node with lanes (N14): into this thread's lane if it has
    /// it at hand, else under the node's lock.
    #[inline(never)]
    fn link_laned(&self, weak: Weak<Node>, slot: &AtomicU32) -> Result<(), (Error, Option<Cause>)> {
        match lanes::link_cached(self, weak) {
            Ok(key) => {
                slot.store(key, Ordering::Relaxed);
                Ok(())
            }
            Err(weak) => self.link_locked(weak, slot, true),
        }
    }

    /// [`link`](Self::link) under the node's lock. `laned`: the node has lanes, which this
    /// thread did not have at hand.
    #[inline(always)]
    fn link_locked(
        &self,
        weak: Weak<Node>,
        slot: &AtomicU32,
        laned: bool,
    ) -> Result<(), (Error, Option<Cause>)> {
        let (mut inner, contended) = lock_noting_contention(&self.inner);
        if let Some(err) = self.state.claim() {
            return Err((err, extra_ref(&inner).and_then(|e| e.cause.clone())));
        }
        let key = inner.insert(weak);
        slot.store(key, Ordering::Relaxed);
        // Under loom and `ctxkit_eager_lanes` every link counts: the models and the stress
        // test reach lanes after one (`lanes::CONTENDED_LINKS`).
        if contended || laned || cfg!(any(loom, ctxkit_eager_lanes)) {
            self.contended(&mut inner);
        }
        Ok(())
    }

    /// A link found this node's lock taken, or its lanes not at hand: counts it, gives the
    /// node lanes at the [`CONTENDED_LINKS`]th, and puts them at hand for this thread (N14).
    #[cold]
    #[inline(never)]
    fn contended(&self, inner: &mut Inner) {
        let e = extra(inner);
        if e.lanes.is_none() {
            e.contended += 1;
            if e.contended < CONTENDED_LINKS {
                return;
            }
            self.make_lanes(e);
        }
        if let Some(l) = &e.lanes {
            lanes::remember(self, l);
        }
    }

    /// Gives this node lanes, under its lock, on a claimed node: a lock-free cancel (N9)
    /// would not close them (N14).
    fn make_lanes(&self, e: &mut Extra) {
        e.lanes = Some(Lanes::new());
        self.marks.fetch_or(LANES, Ordering::Relaxed);
        #[cfg(feature = "diagnostics")]
        crate::diagnostics::lanes_made();
    }

    /// Gives this node lanes at once and puts them at hand for this thread, as if threads
    /// had contended for its lock.
    #[cfg(all(test, not(loom)))]
    pub(super) fn with_lanes(&self) -> Arc<Lanes> {
        let mut inner = lock(&self.inner);
        assert!(self.state.claim().is_none(), "a live node");
        let e = extra(&mut inner);
        self.make_lanes(e);
        let l = e.lanes.clone().expect("just made");
        lanes::remember(self, &l);
        l
    }

    /// Removes the entry `slot` names from this node's child list or lanes, once (N3, N14).
    #[inline(always)]
    pub(super) fn unlink(&self, slot: &AtomicU32) {
        // Written only by the threads that link and unlink the child, one after the other
        // (N14): read without a lock to find a lane.
        if lanes::is_lane_slot(slot.load(Ordering::Relaxed)) {
            return self.unlink_laned(slot);
        }
        self.unlink_locked(slot);
    }

    /// [`unlink`](Self::unlink) of a child in a lane: from this thread's lane if it has it at
    /// hand, else under the node's lock.
    #[inline(never)]
    fn unlink_laned(&self, slot: &AtomicU32) {
        if let Some(weak) = lanes::remove_cached(self, slot.load(Ordering::Relaxed)) {
            slot.store(UNLINKED, Ordering::Relaxed);
            drop(weak);
            return;
        }
        self.unlink_locked(slot);
    }

    /// [`unlink`](Self::unlink) under the node's lock.
    #[inline(always)]
    fn unlink_locked(&self, slot: &AtomicU32) {
        let mut inner = lock(&self.inner);
        // Under this node's lock (N3): no read-modify-write needed.
        let key = slot.load(Ordering::Relaxed);
        slot.store(UNLINKED, Ordering::Relaxed);
        if key == UNLINKED || self.is_done() {
            return;
        }
        let weak = if lanes::is_lane_slot(key) {
            // Open while the node is live: the walk that makes it done closes them under
            // this lock (N14).
            let lanes = extra_ref(&inner).and_then(|e| e.lanes.as_deref());
            lanes.and_then(|l| l.remove(key).ok().flatten())
        } else {
            inner.remove(key)
        };
        drop(inner);
        drop(weak); // after unlocking: the critical section stays short
    }

    /// Marks a node nobody else can see yet as done with its parent's err and cause
    /// ([S5](crate::guarantees#s5)).
    fn finish_at_birth(&self, (err, cause): (Error, Option<Cause>)) {
        let mut inner = lock(&self.inner);
        // The parent's cause replaces a pending deadline cause, even when it is the sentinel.
        let replaced = match (cause, extra_mut(&mut inner)) {
            (None, None) => None,
            (None, Some(e)) => e.cause.take(),
            (cause, _) => std::mem::replace(&mut extra(&mut inner).cause, cause),
        };
        self.state.finish(err, Walk::Over, None); // N10: its origin is its parent's
        drop(inner);
        drop(replaced); // a user's error: dropped with no lock held (N6)
    }

    /// The node's err: one `Acquire` load (N1).
    #[inline]
    pub(crate) fn err(&self) -> Option<Error> {
        self.state.err()
    }

    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.state.is_done()
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// The earliest deadline of this node and its ancestors, as they are now (N11).
    #[inline]
    pub(crate) fn deadline(&self) -> Nanos {
        if self.marks.load(Ordering::Acquire) & MOVES == 0 {
            return self.deadline.load(Ordering::Relaxed);
        }
        self.deadline_after_moves()
    }

    pub(crate) fn parent(&self) -> &Pair {
        &self.parent
    }

    pub(super) fn merge_parent(&self) -> Option<Arc<MergeParent>> {
        if self.kind != Kind::Merge {
            return None;
        }
        extra_ref(&lock(&self.inner)).and_then(|e| e.merge.clone())
    }

    /// The second parent of a merged context.
    pub(crate) fn merged_with(&self) -> Option<Pair> {
        self.merge_parent().map(|m| m.pair.clone())
    }

    /// Whether this node can ever be done (a parent to link children into).
    pub(crate) fn can_be_done(&self) -> bool {
        !matches!(self.kind, Kind::WithoutCancel | Kind::Todo)
    }

    /// The cause, once done ([S7](crate::guarantees#s7)).
    pub(crate) fn cause(&self) -> Option<Cause> {
        if let Some(err) = self.state.done_without_cause() {
            return Some(Cause::sentinel(err)); // N9b
        }
        let err = self.err()?;
        let inner = lock(&self.inner);
        let cause = extra_ref(&inner).and_then(|e| e.cause.clone());
        Some(cause.unwrap_or_else(|| Cause::sentinel(err)))
    }

    /// Gives the node something outside the tree that can cancel it (a watch on a token),
    /// kept as long as the node. From now on, pending callbacks pin the node (N8), so that
    /// `canceller` can still reach it after every handle and clone is gone
    /// ([S19](crate::guarantees#s19)). Returns `false`, keeping nothing, if the node is done.
    #[cfg_attr(not(feature = "tokio-util"), allow(dead_code))]
    pub(crate) fn set_canceller(&self, canceller: Box<dyn Any + Send + Sync>) -> bool {
        let mut inner = lock(&self.inner);
        if self.state.claim().is_some() {
            drop(inner);
            drop(canceller); // with no lock held (N6)
            return false;
        }
        let replaced = extra(&mut inner).canceller.replace(canceller);
        drop(inner);
        drop(replaced);
        true
    }

    /// The queue this node's own timer is in, if it has one.
    pub(super) fn timer_queue(&self) -> Option<&Arc<Queue>> {
        if self.kind != Kind::Deadline && self.marks.load(Ordering::Acquire) & MOVED == 0 {
            return None;
        }
        Some(self.parent.timer_queue())
    }

    /// Counts this node's own timer entry, if it has one still queued, as dead: called once,
    /// as the node is dropped, so that a rebuild of its shard sees the entry dead (T2).
    #[inline]
    pub(super) fn forget_timer(&self) {
        if self.marks.load(Ordering::Relaxed) & UNQUEUED != 0 {
            return;
        }
        if let Some(queue) = self.timer_queue() {
            queue.forget(self.shard, self.own_deadline());
        }
    }

    /// Marks a done node as having no entry in its timer queue ([`UNQUEUED`]). Relaxed: only
    /// the node's drop reads it, after every other reference is gone.
    pub(crate) fn unqueued(&self) {
        self.marks.fetch_or(UNQUEUED, Ordering::Relaxed);
    }
}

/// The err a child of `parent` (done) is born with without a lock (N9b): only a child with no
/// deadline cause of its own, under a parent that tells its err without its lock.
#[inline(always)]
fn born_done_under(parent: &Pair, no_own_cause: bool) -> Option<Error> {
    match parent.cancel_node() {
        Some(p) if no_own_cause => p.state.done_without_cause(),
        _ => None,
    }
}

/// The parent of a child made under `parent`, the context of a `with_cancel` level that was
/// made done from its parent (born done or reached: no origin of its own), and the levels
/// the child folds (N13); `None` if it folds nothing. If `parent` is the level's own context
/// (no values on top) and the level's deadline never moved, the child takes the level's
/// parent instead, and is born done from there. Err, cause, origin, deadline, values and
/// names are all the level's parent's already, so only Display could tell, and it prints the
/// folded levels from the count. The level is then held by its own contexts and handles
/// alone, and goes as soon as they do: a chain built under a cancelled context is as short as
/// the chain of its live contexts.
#[inline]
fn fold(parent: &Pair) -> Option<(Pair, u32)> {
    let level = parent.node.as_ref()?;
    // The level's own context holds no layer: its values and name are its node's parent's
    // (N12). Every context of a `with_cancel` level that holds one has a layer of its own on
    // top (a value or a name).
    if level.kind != Kind::Cancel || parent.layer.is_some() || !level.state.done_from_parent() {
        return None;
    }
    let folds = level.marks.load(Ordering::Acquire) & MOVES == 0
        && level.parent.node.as_ref().is_some_and(|p| p.is_done()); // made done from there
    if !folds {
        return None;
    }
    Some((level.parent.clone(), level.folded_count().checked_add(1)?))
}

impl Timed for Node {
    fn shard(&self) -> u8 {
        self.shard
    }

    /// Cancels with `DeadlineExceeded` and the cause given at creation
    /// ([S7](crate::guarantees#s7), [S11](crate::guarantees#s11)), unless the node is done
    /// already (a cancelled context keeps its entry, T2). On the timer thread
    /// ([`Callbacks::Pool`]), the node is not dropped there even if this was its last
    /// reference: its drop runs user code (T4).
    fn expire(self: Arc<Self>, callbacks: Callbacks) {
        if !self.is_done() {
            if self.rearm() {
                return; // moved later: back in the queue (N11)
            }
            let began = self.deadline_began();
            self.walk(Error::DeadlineExceeded, None, callbacks, Some(began));
        }
        self.unqueued();
        if callbacks == Callbacks::Pool {
            if let Some(node) = Arc::into_inner(self) {
                callback::execute(Box::new(move || drop(node)), Priority::Urgent);
            }
        }
    }

    fn abandoned(&self) {
        self.unpin();
    }
}
