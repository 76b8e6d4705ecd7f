//! The cancellation tree: one [`Node`] per context that can be done, and how cancellation,
//! registration and dropping move through the tree.
//!
//! A node is created by `with_cancel`, `with_deadline`/`with_timeout` (kind [`Kind::Deadline`]
//! when it owns a timer), `merge`, and — as a node that is never done — `without_cancel` and
//! `todo`. Value layers are not nodes: a context is a pair (nearest node, nearest value layer),
//! so cancellation never walks value layers and value lookups never walk nodes.
//!
//! # Invariants
//! - **N1 (one load)**: the err bits of `state` are `LIVE` until the node is done, then the
//!   [`Error`] it ended with, which never changes again. It is written with `Release` under
//!   the node's lock, after `cause` is written; readers load it with `Acquire`, so a reader
//!   that sees it done also sees the final cause.
//! - **N1b (walks finish before cancels return)**: a node made done by a cancellation also
//!   carries the `WALKING` bit (if it has children) until that cancellation has made its
//!   whole subtree done, and leaves its parents' child lists only after that. A
//!   cancel that finds a node done with `WALKING` set waits for the bit to clear, so that every
//!   `cancel()` returns only once the subtree is done (API S4), even when another thread's
//!   cancellation got there first. A walk clears its own bits before waiting on another's, so
//!   two walks never wait on each other.
//! - **N2 (links)**: a child holds a strong reference to its parent (through `parent`); a parent
//!   holds only `Weak` references to its children, in `first` and `children`. So dropping every
//!   handle and clone of a child frees it, cancelled or not (API S22).
//! - **N3 (slots)**: `slot` (and a merge's `MergeParent::slot`) is the child's key in the
//!   parent's `children`, `FIRST` (the parent's `first` field), or `UNLINKED`. It is read and
//!   written only under the parent's lock, and is set to `UNLINKED` by whoever removes the
//!   entry, so removal happens at most once. While a parent is live, a child whose slot is
//!   not `UNLINKED` is in the parent's child list; once the parent is done its list has been
//!   emptied and slots are not looked at again.
//! - **N4 (done is final and downward-closed)**: a node becomes done under its own lock, and in
//!   the same critical section takes its children, waiters and callbacks out (or, with
//!   nothing behind its lock, without it: N9). A node is
//!   registered with a parent only under the parent's lock and only while the parent is live,
//!   so every child of a done parent was reached by the parent's cancellation or created done.
//! - **N5 (one lock at a time)**: no code path holds two node locks, or a node lock and a timer
//!   queue lock, at once. There is no lock order to get wrong, so no deadlock.
//! - **N6 (nothing runs under a lock)**: wakers, threads and callbacks are woken or run only
//!   after every lock is released (API S20), and nodes whose last reference is dropped during
//!   cancellation are dropped after the walk.
//! - **N7 (stack safety)**: cancellation walks the subtree with an explicit work list, and
//!   dropping a chain of contexts goes through [`release`], which drops parents from a loop
//!   instead of recursively (API S23).
//! - **N8 (pins)**: a node with its own timer pins itself (holds an `Arc` to itself) while
//!   callbacks are pending on it, so that its deadline can still fire them after its handles
//!   and clones are gone (API S19). The pin goes when the node is done, when no callback is
//!   pending any more (stopped, or fired through another parent), or when its manual clock is
//!   abandoned (`timer/mod.rs`, T5). A node without its own timer hands its pending callbacks to
//!   its parents when dropped.
//! - **N9 (bare nodes cancel without a lock)**: the `BRANCH` bit of `state` is set, under the
//!   node's lock, before anything is put behind that lock (a child, a waiter, a callback, a
//!   cause) and before a locked path makes the node done ([`Node::claim`]). A node whose
//!   `state` is exactly `LIVE` therefore has nothing behind its lock, and a cancellation
//!   without a cause makes it done with one compare-and-swap from `LIVE`, taking no lock. The
//!   swap and `claim` are read-modify-writes of one atomic, so exactly one of them comes
//!   first: a swap that wins leaves `claim` seeing the node done; a `claim` that wins makes
//!   the swap fail, and the cancellation takes the locked path.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::task::Waker;

use slab::Slab;

use crate::callback::Reg;
use crate::context::Context;
use crate::error::Cause;
use crate::sync::{lock, AtomicU32, AtomicU8, Mutex, Ordering};
use crate::timer::{Nanos, TimerQueue, NO_DEADLINE};
use crate::Error;

/// `state` of a node that is not done (N1). Done states are `encode(err)`, possibly with
/// `WALKING` (N1b).
const LIVE: u8 = 0;
const ERR_BITS: u8 = 0b11;
const WALKING: u8 = 0b100;
/// Set once the node's lock guards anything, or a locked path is making it done (N9).
const BRANCH: u8 = 0b1000;

/// `slot` of a node that is in no parent's child list (N3).
const UNLINKED: u32 = u32::MAX;
/// `slot` of the child kept in its parent's `Branch::first`, outside `children`.
const FIRST: u32 = u32::MAX - 1;

fn encode(err: Error) -> u8 {
    match err {
        Error::Canceled => 1,
        Error::DeadlineExceeded => 2,
    }
}

fn decode(state: u8) -> Option<Error> {
    match state & ERR_BITS {
        LIVE => None,
        1 => Some(Error::Canceled),
        _ => Some(Error::DeadlineExceeded),
    }
}

/// What kind of derivation made a node: decides how it displays and whether it can be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `with_cancel`, or a `with_deadline` later than the parent's (API S12).
    Cancel,
    /// `with_deadline`/`with_timeout` with its own timer.
    Deadline,
    /// `merge`: a second parent lives in `Node::other`.
    Merge,
    /// `without_cancel`: never done, not linked to its parent.
    WithoutCancel,
    /// The `todo()` root: never done.
    Todo,
}

/// The children of a node beyond its first: entries with a list of the free ones, so that
/// insert and remove are O(1). An entry is 8 B (a `slab::Slab` entry is 16), which keeps a
/// parent of many children within the wide fan-out's memory budget.
#[derive(Default)]
struct Children {
    entries: Vec<Option<Weak<Node>>>,
    free: Vec<u32>,
}

impl Children {
    /// Stores `child`; returns its key.
    fn insert(&mut self, child: Weak<Node>) -> u32 {
        match self.free.pop() {
            Some(key) => {
                self.entries[key as usize] = Some(child);
                key
            }
            None => {
                self.entries.push(Some(child));
                // u32::MAX - 1 children would need hundreds of GiB of nodes (N3).
                (self.entries.len() - 1) as u32
            }
        }
    }

    /// Removes the entry `key`, which is occupied (N3), and returns it.
    fn remove(&mut self, key: u32) -> Option<Weak<Node>> {
        let child = self.entries[key as usize].take();
        if self.free.len() + 1 == self.entries.len() {
            // Empty again: start over, keeping the capacity.
            self.entries.clear();
            self.free.clear();
        } else {
            self.free.push(key);
        }
        child
    }

    /// Takes every child out.
    fn take(&mut self) -> impl Iterator<Item = Weak<Node>> {
        self.free.clear();
        std::mem::take(&mut self.entries).into_iter().flatten()
    }
}

/// Everything of a node that changes, under its lock. Boxed and made on first use: most
/// contexts are leaves that nobody waits on, and for them the node stays small (one
/// allocation per `with_cancel` child). The rarely used part is boxed again, so that a node
/// with children (every level of a deep chain) carries only the child list.
#[derive(Default)]
struct Branch {
    /// A child that can be cancelled through this node (N2, N3), kept outside `children`: a
    /// node with one child at a time (each level of a chain, a parent whose children come
    /// and go one by one) never allocates `children`.
    first: Option<Weak<Node>>,
    /// The other children that can be cancelled through this node (N2, N3).
    children: Children,
    extra: Option<Box<Extra>>,
}

/// Causes, waiters, callbacks and merges: what most nodes never have.
#[derive(Default)]
struct Extra {
    /// While live: the cause a `with_*_cause` deadline will use. Once done: the cause
    /// (`None` means the sentinel of `state`, API S7).
    cause: Option<Cause>,
    /// Wakers of pending `Done` futures and blocked threads, keyed so a dropped future can
    /// remove its own.
    wakers: Slab<Waker>,
    /// `after_func` and `on_cancel` registrations. Stopped ones are swept when the vector
    /// would grow, so it stays within twice the live registrations.
    regs: Vec<Arc<Reg>>,
    /// How many of `regs` may still be pending: added on registration, taken off by `stop`.
    pending: usize,
    /// While callbacks are pending on a node with its own timer: the node itself, so that
    /// the timer (which holds only a `Weak`, T1) can still find it (API S19).
    pin: Option<Arc<Node>>,
    /// The second parent of a merged context (set at creation, never changed).
    merge: Option<Arc<MergeParent>>,
}

/// The second parent of a merged context, shared so that it can be used without the
/// merged node's lock (N5).
struct MergeParent {
    ctx: Context,
    slot: AtomicU32,
}

/// A node's lock and what it guards.
type Inner = Option<Box<Branch>>;

fn branch(inner: &mut Inner) -> &mut Branch {
    inner.get_or_insert_with(Default::default)
}

fn extra(inner: &mut Inner) -> &mut Extra {
    branch(inner).extra.get_or_insert_with(Default::default)
}

/// The rare part of a node's state, if it was ever made.
fn extra_ref(inner: &Inner) -> Option<&Extra> {
    inner.as_ref()?.extra.as_deref()
}

fn extra_mut(inner: &mut Inner) -> Option<&mut Extra> {
    inner.as_mut()?.extra.as_deref_mut()
}

/// A context that can be done. See the module's invariants.
pub(crate) struct Node {
    state: AtomicU8,
    kind: Kind,
    /// For a [`Kind::Deadline`] node: the timer shard its entry went to (`timer/mod.rs`, T2).
    shard: u8,
    slot: AtomicU32,
    /// The earliest deadline of this node and its ancestors ([`NO_DEADLINE`] if none).
    deadline: Nanos,
    inner: Mutex<Inner>,
    /// The context this one was derived from (its first parent, for a merge).
    parent: Context,
}

/// Where the `on_cancel` callbacks of a cancellation run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callbacks {
    /// On the cancelling thread, before the cancel returns (API S20).
    Inline,
    /// On the callback pool: for the real-time timer thread, which must stay free to fire
    /// other deadlines, even those an `on_cancel` callback waits for.
    Pool,
}

/// What one cancellation collected to do after releasing its locks (N6).
#[derive(Default)]
struct Aftermath {
    wakers: Vec<Waker>,
    regs: Vec<Arc<Reg>>,
    /// Children found by the last `finish`, not yet in `reached`.
    found: Vec<Arc<Node>>,
    /// Every node the walk reached, in the order reached, kept alive until every lock is
    /// released and every callback has run (N6).
    reached: Vec<Arc<Node>>,
    /// The nodes of `reached` this walk made done under their lock (with a merge's second
    /// parent, to leave).
    walked: Vec<(usize, Option<Arc<MergeParent>>)>,
    /// The nodes of `reached` the walk found done already.
    others: Vec<usize>,
    /// Pins of nodes made done (see `Branch::pin`).
    unpinned: Vec<Arc<Node>>,
}

impl Node {
    fn bare(
        kind: Kind,
        deadline: Nanos,
        parent: Context,
        merge: Option<Arc<MergeParent>>,
        cause: Option<Cause>,
    ) -> Node {
        #[cfg(feature = "diagnostics")]
        crate::diagnostics::node_created();
        let inner = (merge.is_some() || cause.is_some()).then(|| {
            Box::new(Branch {
                extra: Some(Box::new(Extra {
                    cause,
                    merge,
                    ..Extra::default()
                })),
                ..Branch::default()
            })
        });
        let state = if inner.is_some() { BRANCH } else { LIVE };
        Node {
            state: AtomicU8::new(state),
            kind,
            shard: if kind == Kind::Deadline {
                crate::timer::thread_shard()
            } else {
                0
            },
            slot: AtomicU32::new(UNLINKED),
            deadline,
            inner: Mutex::new(inner),
            parent,
        }
    }

    /// A node that is never done (`todo`, `without_cancel`).
    pub(crate) fn never_done(kind: Kind, parent: Context) -> Arc<Node> {
        Arc::new(Node::bare(kind, NO_DEADLINE, parent, None, None))
    }

    /// A child of `parent` (and of `other`, for a merge), linked into every parent that can
    /// be done. If a parent is already done, so is the child, with the first such parent's
    /// err and cause (API S5, S24).
    pub(crate) fn child(
        kind: Kind,
        deadline: Nanos,
        parent: &Context,
        other: Option<&Context>,
        deadline_cause: Option<Cause>,
    ) -> Arc<Node> {
        let merge = other.map(|ctx| {
            Arc::new(MergeParent {
                ctx: ctx.clone(),
                slot: AtomicU32::new(UNLINKED),
            })
        });
        let node = Arc::new(Node::bare(
            kind,
            deadline,
            parent.clone(),
            merge.clone(),
            deadline_cause,
        ));
        // Linking happens after the Arc exists, so a parent's walk can always upgrade its
        // Weak (N2): a node under construction could not be reached.
        if let Some(p) = parent.cancel_node() {
            if let Err(done) = p.link(&node, &node.slot) {
                node.finish_at_birth(done);
                return node;
            }
        }
        if let Some(merge) = merge {
            if let Some(other) = merge.ctx.cancel_node() {
                if let Err((err, cause)) = other.link(&node, &merge.slot) {
                    // `node` may be reachable from `parent` by now: cancel it properly.
                    node.cancel(err, Some(cause.unwrap_or_else(|| Cause::sentinel(err))));
                } else if node.is_done() {
                    // `parent` cancelled it before it was linked into `other` (N3 makes
                    // this second unlink harmless if the walk already did it).
                    other.unlink(&merge.slot);
                }
            }
        }
        node
    }

    /// Links `child` into this node's child list unless this node is done (N3, N4).
    fn link(&self, child: &Arc<Node>, slot: &AtomicU32) -> Result<(), (Error, Option<Cause>)> {
        // Made before locking: the critical section of a parent shared between threads
        // stays as short as possible.
        let weak = Arc::downgrade(child);
        let mut inner = lock(&self.inner);
        if let Some(err) = self.claim() {
            return Err((err, extra_ref(&inner).and_then(|e| e.cause.clone())));
        }
        let b = branch(&mut inner);
        let key = if b.first.is_none() {
            b.first = Some(weak);
            FIRST
        } else {
            b.children.insert(weak)
        };
        slot.store(key, Ordering::Relaxed);
        Ok(())
    }

    /// Removes the entry `slot` names from this node's child list, once (N3).
    fn unlink(&self, slot: &AtomicU32) {
        let mut inner = lock(&self.inner);
        // Under this node's lock (N3): no read-modify-write needed.
        let key = slot.load(Ordering::Relaxed);
        slot.store(UNLINKED, Ordering::Relaxed);
        if key == UNLINKED || self.is_done() {
            return;
        }
        let b = branch(&mut inner);
        let weak = match key {
            FIRST => b.first.take(),
            key => b.children.remove(key),
        };
        drop(inner);
        drop(weak); // after unlocking: the critical section stays short
    }

    /// Marks a node nobody else can see yet as done with its parent's err and cause (S5).
    fn finish_at_birth(&self, (err, cause): (Error, Option<Cause>)) {
        let mut inner = lock(&self.inner);
        // The parent's cause replaces a pending deadline cause, even when it is the sentinel.
        match (cause, extra_mut(&mut inner)) {
            (None, None) => {}
            (None, Some(e)) => e.cause = None,
            (cause, _) => extra(&mut inner).cause = cause,
        }
        self.state.store(encode(err) | BRANCH, Ordering::Release);
    }

    /// The node's err: one `Acquire` load (N1).
    #[inline]
    pub(crate) fn err(&self) -> Option<Error> {
        decode(self.state.load(Ordering::Acquire))
    }

    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) & ERR_BITS != LIVE
    }

    /// Called under the node's lock before putting anything behind it or making the node
    /// done on the locked path: sets `BRANCH`, so that no lock-free cancel can make the node
    /// done any more (N9). Returns the err if the node is done already.
    fn claim(&self) -> Option<Error> {
        let state = self.state.load(Ordering::Acquire);
        if state & BRANCH != 0 {
            // Set already: only locked paths, which wait for our lock, can change the err.
            return decode(state);
        }
        decode(self.state.fetch_or(BRANCH, Ordering::AcqRel))
    }

    /// N9: makes a node with nothing behind its lock done with one compare-and-swap.
    /// Returns `false`, changing nothing, if the node has anything behind its lock or is done.
    fn cancel_bare(&self, err: Error) -> bool {
        let done = Ordering::AcqRel;
        (self
            .state
            .compare_exchange(LIVE, encode(err), done, Ordering::Relaxed))
        .is_ok()
    }

    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    pub(crate) fn deadline(&self) -> Nanos {
        self.deadline
    }

    pub(crate) fn parent(&self) -> &Context {
        &self.parent
    }

    fn merge_parent(&self) -> Option<Arc<MergeParent>> {
        if self.kind != Kind::Merge {
            return None;
        }
        extra_ref(&lock(&self.inner)).and_then(|e| e.merge.clone())
    }

    /// The second parent of a merged context.
    pub(crate) fn merged_with(&self) -> Option<Context> {
        self.merge_parent().map(|m| m.ctx.clone())
    }

    /// Whether this node can ever be done (a parent to link children into).
    pub(crate) fn can_be_done(&self) -> bool {
        !matches!(self.kind, Kind::WithoutCancel | Kind::Todo)
    }

    /// The cause, once done (API S7).
    pub(crate) fn cause(&self) -> Option<Cause> {
        let err = self.err()?;
        let inner = lock(&self.inner);
        let cause = extra_ref(&inner).and_then(|e| e.cause.clone());
        Some(cause.unwrap_or_else(|| Cause::sentinel(err)))
    }

    /// The queue this node's own timer is in, if it has one.
    fn timer_queue(&self) -> Option<&Arc<TimerQueue>> {
        if self.kind != Kind::Deadline {
            return None;
        }
        Some(self.parent.timer_queue())
    }

    /// The timer shard of a [`Kind::Deadline`] node's entry.
    pub(crate) fn timer_shard(&self) -> u8 {
        self.shard
    }

    /// Counts this node's own timer entry, if any, as dead (`timer/mod.rs`, T2).
    fn forget_timer(&self) {
        if let Some(queue) = self.timer_queue() {
            queue.forget(self.shard, self.deadline);
        }
    }

    /// Called by the timer when the deadline passed: cancels with `DeadlineExceeded` and the
    /// cause given at creation (API S7, S11).
    pub(crate) fn expire(self: &Arc<Self>, callbacks: Callbacks) {
        self.cancel_inner(Error::DeadlineExceeded, None, false, callbacks);
    }

    /// Cancels this node and every descendant not yet done, with `err` and `cause` (`None`:
    /// the cause given to `with_*_cause`, or the sentinel). Does nothing if already done
    /// (API S8). When this returns, the whole subtree is done (API S4) and every `on_cancel`
    /// callback has run (API S20).
    pub(crate) fn cancel(self: &Arc<Self>, err: Error, cause: Option<Cause>) {
        self.cancel_inner(err, cause, true, Callbacks::Inline);
    }

    fn cancel_inner(
        self: &Arc<Self>,
        err: Error,
        cause: Option<Cause>,
        forget_own_timer: bool,
        callbacks: Callbacks,
    ) {
        let sentinel = cause.as_ref().map_or(true, |c| c.is_sentinel(err));
        if sentinel && self.cancel_bare(err) {
            self.after_done(None, forget_own_timer, false); // N9: no children, waiters or callbacks
            return;
        }
        let mut after = Aftermath::take();
        let (cause, merge) = {
            let mut inner = lock(&self.inner);
            if self.claim().is_some() {
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
        // The walk goes through `reached` in order, appending the children it finds.
        let mut reached = std::mem::take(&mut after.reached);
        reached.append(&mut after.found);
        let mut at = 0;
        while let Some(node) = reached.get(at) {
            at += 1;
            if cause.is_none() && node.cancel_bare(err) {
                // N9. It has one parent, done by this walk: only its timer is left.
                node.forget_timer();
                continue;
            }
            let merge = {
                let mut inner = lock(&node.inner);
                if node.claim().is_some() {
                    // Done already: it keeps its own err and cause (S8), but its subtree may
                    // still be under another walk, to be waited for (N1b).
                    drop(inner);
                    after.others.push(at - 1);
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
        self.end_walk();
        after
            .walked
            .iter()
            .for_each(|&(i, _)| after.reached[i].end_walk());
        crate::sync::walks_ended();
        self.after_done(merge, forget_own_timer, false);
        for (i, merge) in &mut after.walked {
            after.reached[*i].after_done(merge.take(), true, true);
        }
        after
            .others
            .iter()
            .for_each(|&i| after.reached[i].await_walk());
        after.run(callbacks);
    }

    fn end_walk(&self) {
        // Only this walk sets and clears its own bits: a relaxed look is exact.
        if self.state.load(Ordering::Relaxed) & WALKING != 0 {
            self.state.fetch_and(!WALKING, Ordering::SeqCst);
        }
    }

    /// Waits until no cancellation is walking this node's subtree (N1b).
    fn await_walk(&self) {
        crate::sync::wait_while(|| self.state.load(Ordering::SeqCst) & WALKING != 0);
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
            let children = b.first.take().into_iter().chain(b.children.take());
            after.found.extend(children.filter_map(|c| c.upgrade()));
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
        let walking = if after.found.is_empty() { 0 } else { WALKING };
        // `BRANCH` stays set: a done node's cause is behind its lock.
        self.state
            .store(encode(err) | walking | BRANCH, Ordering::Release);
        merge
    }

    /// Bookkeeping after a node became done, with no lock held: leave the parents' child
    /// lists and the timer queue. `walked`: see [`leave_parents`](Self::leave_parents).
    fn after_done(&self, merge: Option<Arc<MergeParent>>, forget_own_timer: bool, walked: bool) {
        self.leave_parents(merge, walked);
        if forget_own_timer {
            self.forget_timer();
        }
    }

    /// Leaves the parents' child lists. `walked`: this node was made done by a walk, which
    /// found it through a parent that is done now: look before locking. Otherwise lock
    /// straight away: on a parent shared between threads, reading its cache line and then
    /// locking costs two transfers of the line instead of one.
    fn leave_parents(&self, merge: Option<Arc<MergeParent>>, walked: bool) {
        // A parent done already emptied its children when it became done (N3).
        let live = |p: &&Arc<Node>| !walked || !p.is_done();
        if let Some(p) = self.parent.cancel_node().filter(live) {
            p.unlink(&self.slot);
        }
        if let Some(merge) = merge {
            if let Some(p) = merge.ctx.cancel_node().filter(live) {
                p.unlink(&merge.slot);
            }
        }
    }

    /// Registers a waker to be woken when this node is done. `key` is the registration to
    /// update, if any. Returns `false` (registering nothing) if the node is already done.
    pub(crate) fn register_waker(&self, key: &mut Option<usize>, waker: &Waker) -> bool {
        let mut inner = lock(&self.inner);
        if self.claim().is_some() {
            return false;
        }
        let wakers = &mut extra(&mut inner).wakers;
        match key.and_then(|k| wakers.get_mut(k)) {
            Some(slot) => slot.clone_from(waker),
            None => *key = Some(wakers.insert(waker.clone())),
        }
        true
    }

    /// Removes a waker registered by [`register_waker`](Self::register_waker).
    pub(crate) fn unregister_waker(&self, key: usize) {
        let mut inner = lock(&self.inner);
        // Once done, the wakers were taken out and keys are meaningless (N4).
        if self.is_done() {
            return;
        }
        if let Some(e) = extra_mut(&mut inner) {
            e.wakers.try_remove(key);
        }
    }

    /// Registers a callback to fire when this node is done. If it is done already, the
    /// callback is handed back to be fired by the caller.
    pub(crate) fn register(self: &Arc<Self>, reg: Arc<Reg>) -> Result<(), Arc<Reg>> {
        reg.add_home(self);
        if self.add_regs(std::slice::from_ref(&reg)) {
            Ok(())
        } else {
            Err(reg)
        }
    }

    /// Adds callbacks, or returns `false` if this node is already done (the caller fires
    /// them). Also takes the callbacks of a dropped child, which this node can still cancel
    /// (API S19). A node with its own timer is pinned while callbacks are pending on it.
    fn add_regs(self: &Arc<Self>, regs: &[Arc<Reg>]) -> bool {
        let mut inner = lock(&self.inner);
        if self.claim().is_some() {
            return false;
        }
        let b = extra(&mut inner);
        if b.regs.len() + regs.len() > b.regs.capacity() {
            b.regs.retain(|r| r.is_pending());
        }
        b.regs.extend_from_slice(regs);
        b.pending += regs.len();
        let fires = self.timer_queue().is_some_and(|q| q.can_fire());
        if fires && b.pin.is_none() {
            b.pin = Some(Arc::clone(self));
        }
        true
    }

    /// Lets go of the pin: this node's deadline can no longer fire (`timer/mod.rs`, T5).
    pub(crate) fn unpin(&self) {
        let pin = extra_mut(&mut lock(&self.inner)).and_then(|e| e.pin.take());
        drop(pin); // may be the last reference: dropped with no lock held (N6)
    }

    /// A registration of this node was stopped, or fired through another node: once none is
    /// pending, the node no longer needs to outlive its handles and clones, so its pin is let
    /// go (API S22).
    pub(crate) fn stopped_one(&self) {
        let pin = {
            let mut inner = lock(&self.inner);
            let Some(b) = extra_mut(&mut inner) else {
                return;
            };
            b.pending = b.pending.saturating_sub(1);
            if b.pending > 0 {
                return;
            }
            b.regs.clear();
            b.pin.take()
        };
        drop(pin); // may be the last reference: dropped with no lock held (N6)
    }
}

thread_local! {
    /// The emptied buffers of this thread's last cancellation, for its next one.
    static SPARE: Cell<Aftermath> = const { Cell::new(Aftermath::EMPTY) };
}

impl Aftermath {
    const EMPTY: Aftermath = Aftermath {
        wakers: Vec::new(),
        regs: Vec::new(),
        found: Vec::new(),
        reached: Vec::new(),
        walked: Vec::new(),
        others: Vec::new(),
        unpinned: Vec::new(),
    };

    /// An empty aftermath with the buffers of this thread's last one: a cancellation
    /// allocates nothing for its bookkeeping in the steady state. (A cancellation inside a
    /// callback of another finds none and allocates.)
    fn take() -> Aftermath {
        SPARE.try_with(Cell::take).unwrap_or_default()
    }

    /// Keeps this emptied aftermath's buffers for the thread's next cancellation, unless one
    /// grew large (a big subtree): that memory goes back now.
    fn recycle(self) {
        const KEEP: usize = 64;
        let small = self.wakers.capacity() <= KEEP
            && self.found.capacity() <= KEEP
            && self.walked.capacity() <= KEEP
            && self.others.capacity() <= KEEP
            && self.reached.capacity() <= KEEP
            && self.unpinned.capacity() <= KEEP;
        if small {
            let _ = SPARE.try_with(|spare| spare.set(self));
        }
    }

    /// Wakes and runs everything a cancellation collected, with no lock held (N6). Panics of
    /// `on_cancel` callbacks are resumed after all of them have run (API S21).
    fn run(mut self, callbacks: Callbacks) {
        let mut panic = None;
        for waker in self.wakers.drain(..) {
            // A broken waker must not keep the other waiters and the callbacks from hearing.
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| waker.wake())) {
                panic.get_or_insert(payload);
            }
        }
        match callbacks {
            Callbacks::Inline => {
                if let Some(payload) = crate::callback::fire_all(std::mem::take(&mut self.regs)) {
                    panic.get_or_insert(payload);
                }
            }
            Callbacks::Pool => crate::callback::fire_all_on_pool(std::mem::take(&mut self.regs)),
        }
        self.walked.clear();
        self.others.clear();
        self.reached.clear();
        self.unpinned.clear();
        self.recycle();
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        #[cfg(feature = "diagnostics")]
        crate::diagnostics::node_dropped();
        let branch = crate::sync::get_mut(&mut self.inner).take();
        let mut extra = branch.and_then(|b| b.extra);
        let merge = extra.as_mut().and_then(|e| e.merge.take());
        if !self.is_done() {
            self.leave_parents(merge.clone(), false);
            self.forget_timer();
            if let Some(e) = extra {
                let pending: Vec<Arc<Reg>> =
                    e.regs.into_iter().filter(|r| r.is_pending()).collect();
                if !pending.is_empty() {
                    self.hand_down(pending, merge.as_deref());
                }
            }
        }
        release(std::mem::take(&mut self.parent));
        if let Some(merge) = merge.and_then(Arc::into_inner) {
            release(merge.ctx);
        }
    }
}

impl Node {
    /// The callbacks of a node dropped before it was done go to the parents that can still
    /// cancel it: they run when one of them is done (API S19), or are dropped with the last
    /// of them (C3). A parent already done fires them now.
    fn hand_down(&self, pending: Vec<Arc<Reg>>, merge: Option<&MergeParent>) {
        let parents = [Some(&self.parent), merge.map(|m| &m.ctx)];
        for p in parents
            .into_iter()
            .flatten()
            .filter_map(Context::cancel_node)
        {
            if !p.add_regs(&pending) {
                crate::callback::fire_all_resuming(pending);
                return;
            }
            pending.iter().for_each(|reg| reg.add_home(p));
        }
    }
}

/// Drops a context without recursion, however long the chain of parents it ends (N7).
///
/// The first `release` on a thread drops its context and then, in a loop, every parent that
/// the drop queued here instead of dropping in place.
pub(crate) fn release(ctx: Context) {
    if ctx.is_root() {
        return;
    }
    thread_local! {
        static DRAINING: Cell<bool> = const { Cell::new(false) };
        static QUEUE: RefCell<Vec<Context>> = const { RefCell::new(Vec::new()) };
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = DRAINING.try_with(|d| d.set(false));
        }
    }
    let Ok(draining) = DRAINING.try_with(|d| d.replace(true)) else {
        return drop(ctx); // thread teardown: no queue any more
    };
    if draining {
        let _ = QUEUE.try_with(move |q| q.borrow_mut().push(ctx));
        return;
    }
    let _reset = Reset;
    drop(ctx);
    while let Some(next) = QUEUE.with(|q| q.borrow_mut().pop()) {
        drop(next);
    }
}
