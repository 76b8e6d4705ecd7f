//! The cancellation tree and the value layers: what a context is made of.
//!
//! A context is a [`Pair`]: its nearest [`Node`] (what can be done: err, cause, deadline,
//! waiters, callbacks, children) and its nearest value [`Layer`] (what values it carries).
//! Nodes are made by `with_cancel`, `with_deadline`/`with_timeout` (kind [`Kind::Deadline`]
//! when it owns a timer), `merge`, and — as nodes that are never done — `without_cancel` and
//! `todo`; layers by `with_value`, `with`, `with_clock` and `merge`. Cancellation never walks
//! value layers and value lookups never walk nodes. Nodes and layers both hold their parent
//! as a `Pair`, so this module is one closed group, the way Go keeps its context types in one
//! file; nothing in it knows the public [`Context`](crate::Context), which wraps a `Pair`.
//!
//! | file | concept |
//! |---|---|
//! | `state.rs` | the state word: err, walking, claimed (N1, N1b, N9) |
//! | `children.rs` | what a node's lock guards: its child list, the slots that name its entries (N2, N3), and its rare state out of line |
//! | `lanes.rs` | child lists per core for a node many threads derive from at once (N14) |
//! | `node.rs` | a node: its fields, how it is made and linked, what can be read from it |
//! | `moves.rs` | deadlines that move: marks, reads, lazy re-arming (N11) |
//! | `walk.rs` | the cancellation walk and waiting for other walks (N1b, N4, N7, N9) |
//! | `aftermath.rs` | what a cancellation does once its locks are released (N6) |
//! | `waiters.rs` | wakers of `Done` futures and blocked threads |
//! | `callbacks.rs` | registrations and the pin of a node with a timer (N8) |
//! | `provenance.rs` | where a cancellation began: recorded once, found from any node (N10) |
//! | `release.rs` | dropping nodes and chains without recursion (N2, N7) |
//! | `inspect.rs` | the live tree under a context, read one node at a time (S30, S31) |
//! | `layer.rs` | value layers and their flat tables (V1–V5) |
//! | `name.rs` | a context's name as its layer keeps it: short ones inline |
//! | `clock.rs` | which timer queue a context's deadlines go to |
//!
//! # Invariants
//! - **N1 (one load)**: the err bits of the state word are `LIVE` until the node is done, then
//!   the [`Error`](crate::Error) it ended with, which never changes again. It is written with
//!   `Release` under the node's lock, after the cause is written; readers load it with
//!   `Acquire`, so a reader that sees it done also sees the final cause.
//! - **N1b (walks finish before cancels return)**: a node made done by a cancellation also
//!   carries the `WALKING` bit (if it has children) until its whole subtree is done. A
//!   cancel that finds a node done with `WALKING` set waits for the bit to clear, so that every `cancel()` returns only once the
//!   subtree is done ([S4](crate::guarantees#s4)), even when another thread's cancellation got
//!   there first. A walk that finds, below a node it made done, a node still walked by another
//!   keeps that node's bit (and the bits on the way to it) while the other walk is under
//!   way: it clears every other bit of its own first, and each kept bit as soon as no walk
//!   still under way is below it. A bit is kept only for a node below it, so walks that
//!   wait for each other's bits would need a circle of nodes each below the next: there is
//!   none, so no two walks wait on each other for good (`walk.rs`).
//! - **N2 (links)**: a child holds a strong reference to its parent (through `parent`; a
//!   child made under a folded level holds the level's parent instead, N13); a parent holds
//!   only `Weak` references to its children. So dropping every handle and clone of a child
//!   frees it, cancelled or not ([S22](crate::guarantees#s22)).
//! - **N3 (slots)**: `slot` (and a merge's second `slot`) is the child's entry in the parent's
//!   child list or in one of its lanes (N14), or `UNLINKED`. It is written only under the
//!   lock of the list it names, by the call that links the child and by the drop that
//!   unlinks it, which never overlap: a lane's slot is read without a lock to find the lane.
//!   It is set to `UNLINKED` by whoever removes the entry, so removal happens at most once. A child
//!   stays in its parents' lists, done or not, until it is dropped, so that a snapshot lists
//!   the done contexts still held ([S30](crate::guarantees#s30)). Once a parent is done, its
//!   list never changes again: it takes no new child, and a child dropped after that leaves
//!   its `Weak` in place (the parent is not locked) until the parent itself is dropped. So
//!   may a child dropped while it holds the last strong reference to its parent (a level of
//!   a chain being released): no context or handle of the parent is left to derive a child
//!   from it, only a passing walk or snapshot can still reach it through a `Weak`, and it is
//!   dropped, its list with it, as soon as they let go (`walk.rs`, `leave_parents_on_drop`).
//! - **N4 (done is final and downward-closed)**: a node becomes done under its own lock, and
//!   in the same critical section reads its children and takes its waiters and callbacks out (or, with
//!   nothing behind its lock, without it: N9). A node is registered with a parent only under
//!   the parent's lock and only while the parent is live, so every child of a done parent was
//!   reached by the parent's cancellation or created done.
//! - **N5 (one lock at a time)**: no code path holds two node locks, or a node lock and a
//!   timer queue lock, at once. The one nesting: a lane's lock (N14) may be taken under its
//!   own node's lock, and nothing is ever locked under a lane's. There is no lock order to
//!   get wrong, so no deadlock.
//! - **N6 (nothing runs under a lock)**: wakers, threads and callbacks are woken or run only
//!   after every lock is released ([S20](crate::guarantees#s20)), and nodes whose last
//!   reference is dropped during cancellation are dropped after the walk.
//! - **N7 (stack safety)**: cancellation walks the subtree with an explicit work list, and
//!   dropping a chain of contexts detaches each parent before dropping it, from a loop
//!   instead of recursively (`release.rs`, [S23](crate::guarantees#s23)).
//! - **N8 (pins)**: a node with its own timer, or with a canceller outside the tree (a
//!   token's watch), pins itself (holds an `Arc` to itself) while callbacks are pending on
//!   it, so that its deadline or canceller can still fire them after its handles and clones
//!   are gone ([S19](crate::guarantees#s19)). The pin goes when the node is done,
//!   when no callback is pending any more (stopped, or fired through another parent), or when
//!   its manual clock is abandoned (T5). A node without its own timer hands its pending
//!   callbacks to its parents when dropped.
//! - **N9 (unclaimed nodes cancel without a lock)**: the `CLAIMED` bit of the state word is
//!   set, under the node's lock, before anything is put behind that lock (a child, a waiter, a
//!   callback, a cause) and before a locked path makes the node done (`State::claim`). A node
//!   whose state is exactly `LIVE` is unclaimed: it has nothing behind its lock, and a
//!   cancellation without a cause makes it done with one compare-and-swap from `LIVE`, taking
//!   no lock. The swap and `claim` are read-modify-writes of one atomic, so exactly one of
//!   them comes first: a swap that wins leaves `claim` seeing the node done; a `claim` that
//!   wins makes the swap fail, and the cancellation takes the locked path.
//! - **N9b (done without a cause)**: a node that is done and unclaimed was made done by such
//!   a swap, or born done under such a node, and has no cause: a done node's cause never
//!   changes (S8), and every path that stores one claims the node first. So its err and cause
//!   are read without its lock (`State::done_without_cause`), and a child born under it is
//!   made done at once, unclaimed too, without locking or linking anything
//!   ([S5](crate::guarantees#s5)).
//! - **N10 (origins)**: a cancellation records where it began on the one node where it
//!   began, and nowhere else: the kind in the state word, in the same write that makes the
//!   node done, and the location and thread in `origin_at`/`origin_thread` (under the lock
//!   before that write on the locked path; right after the swap on the N9 path, so a reader
//!   that finds the kind but no location yet waits for it). A node a cancellation reached
//!   records nothing: its origin is found by going up to the parent that is done (N4 says
//!   there is one), or, for a merge, to the node whose walk reached it (`reached_from`).
//! - **N11 (moved deadlines)**: a node's `deadline` is the earliest deadline of it and its
//!   ancestors as long as none of them ever moved (no `MOVES` mark): nothing can change it then.
//!   The first move of a node sets `MOVED` on it, then `BELOW_MOVED` on every node below it
//!   (a node made under a marked parent marks itself after it is linked, so that either the
//!   marking walk finds it in a child list or it finds the parent marked). A marked node's
//!   `deadline` is its own deadline only, and reading its deadline goes up to the first
//!   unmarked node. A timer entry that comes due for a node whose deadline moved later puts
//!   the node back at its new deadline instead of expiring it (never early, T3). So there
//!   is always an entry at or before a moved node's deadline: moving it later needs no
//!   entry, moving it earlier adds one. While a moved node is live, its `origin_at` holds
//!   where its deadline was last set, written under its lock (a moved node is claimed, so
//!   it is never cancelled lock-free and its origin is written under the lock too, N10).
//! - **N12 (a node's context shares its parent's layer)**: a [`Pair`] whose `node` is set and
//!   whose `layer` is `None` has the layer of its node's parent ([`Pair::nearest_layer`]).
//!   So the context of a new node (`with_cancel`, `with_timeout`, `without_cancel`,
//!   `named_child`, a merge with one side's values) holds no reference of its own to the
//!   values it shares with its parent: making, cloning and dropping it changes one reference
//!   count, not two, and a layer shared by the children of many threads is written half as
//!   often. A pair held as a parent (by a node, a merge or a layer) is made by
//!   [`Pair::as_parent`] and holds its layer itself whenever there is one, except when it is
//!   the context of a node whose own parent holds that layer: then it holds the node alone,
//!   like the context itself, and the layer is found one step further up. So the children
//!   of a context that shares its parent's values (each call's `with_timeout` under a
//!   request's `with_cancel`, the children many threads make under one parent) count no
//!   reference on the layer, which is not written when they come and go; finding a
//!   context's layer takes at most two steps and never walks further. The two steps: a pair
//!   `(node, None)` looks at the node's parent; if that is `(up, None)` too, either it was
//!   made by the exception above, and `up`'s parent holds the layer, or there are no values
//!   above at all, and `up`'s parent holds none. A layer whose last reference a node's
//!   parent held is dropped when the node is (`release.rs`).
//! - **N13 (folded levels)**: a child made under the own context of a `with_cancel` level
//!   that is done with no origin of its own (made done from its parent, which is done) and
//!   whose deadline never moved takes that level's parent as its parent, and is born done
//!   from there (S5). It counts the level, with the levels the level had folded itself, in
//!   `origin_thread` (`node::fold`). The level's err and cause are its parent's (it was made
//!   done from there), and so are its origin (N10), its deadline (N11), its values and its
//!   name (N12): only Display prints it, from the count.
//!   So a level is held by its own contexts and handles alone, and a chain built under a
//!   cancelled context stays as short as the chain of its live contexts, however deep the
//!   caller builds it. `origin_thread` holds the count only on a node that is done with no
//!   origin kind in its state: N10 writes the thread only on the way to a done state that
//!   carries the origin's kind (`Node::folded_levels`).
//! - **N14 (lanes)**: a node whose lock `lanes::CONTENDED_LINKS` links of its children
//!   found taken gets lanes (`lanes.rs`): child lists of their own, one per core, each behind
//!   its own lock on its own cache line, kept in its `Extra` for as long as it lives and
//!   announced by the `LANES` mark. It is claimed by then (N9), so it is never made done
//!   without its lock. A thread links its children of such a node into the lane it was given,
//!   found without the node's lock through a cache of its own, and unlinks them there; a
//!   thread without the lanes at hand goes through the node's lock as before. A lane takes a
//!   child only while it is open. The walk that makes the node done (N4) closes every lane,
//!   reading its children, under the node's lock and before the state says done: a child
//!   linked into a lane before the close is found by the walk, and a link after it finds the
//!   lane closed and goes to the node's lock, where it finds the node done and is born done.
//!   A closed lane never changes again, like the node's own list once done (N3). The marking
//!   walk of N11 and a snapshot read the lanes too, each lane under its lock, after the node's
//!   mark is set: a child linked into a lane before the marking walk reads it is marked by
//!   the walk, and one linked after sees the parent's mark. A node's lanes are closed and
//!   emptied when it is dropped: a thread's cache may hold them, by the node's address, after
//!   the node is gone; a later node at that address never uses them, for they are closed.
//! - **N15 (a parent's lines)**: every child made or dropped writes its parent's reference
//!   count, at the start of the parent's `Arc` allocation, so threads sharing a parent keep
//!   that cache line moving between their cores. What a child reads of its parent (state,
//!   marks, deadline, and the parent's own parent, which a value lookup goes through) lies 64
//!   bytes or more past that start, never on that line (`Node` is `repr(C)`, and a constant
//!   checks the offset): a read costs no transfer of the line another core is writing.

mod aftermath;
mod callbacks;
mod children;
mod clock;
mod inspect;
mod lanes;
mod layer;
mod moves;
mod name;
mod node;
mod provenance;
mod release;
mod state;
mod waiters;
mod walk;

use std::sync::Arc;

pub(crate) use clock::{clock_key, Queue};
pub(crate) use inspect::{snapshot, Seen};
pub(crate) use layer::{
    merge as merge_layers, name_key, with_name, with_value, AnyValue, Label, Layer,
};
pub(crate) use name::Name;
pub(crate) use node::{Birth, Kind, Node};

use crate::key::KeyId;
use crate::time::{Nanos, NO_DEADLINE};

/// A context as the tree holds it: its nearest node and its nearest value layer. `None`
/// node: never done; both `None`: `background()`; a node and no layer: the layer of the
/// node's parent (N12).
#[derive(Clone, Default)]
pub(crate) struct Pair {
    pub(crate) node: Option<Arc<Node>>,
    /// The layer this pair holds itself; see N12 for `None`.
    pub(crate) layer: Option<Arc<Layer>>,
}

impl Pair {
    /// A context with values only.
    pub(crate) fn from_layer(layer: Arc<Layer>) -> Pair {
        Pair {
            node: None,
            layer: Some(layer),
        }
    }

    /// The node through which this context can be done, if any.
    pub(crate) fn cancel_node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref().filter(|n| n.can_be_done())
    }

    /// The earliest deadline of this context and its ancestors.
    pub(crate) fn deadline(&self) -> Nanos {
        self.node.as_ref().map_or(NO_DEADLINE, |n| n.deadline())
    }

    /// This context's nearest value layer, `None` if it has no values (N12).
    #[inline]
    pub(crate) fn nearest_layer(&self) -> Option<&Arc<Layer>> {
        match (&self.layer, &self.node) {
            (Some(layer), _) => Some(layer),
            // At most two steps up (N12).
            (None, Some(node)) => match node.parent() {
                Pair {
                    layer: Some(layer), ..
                } => Some(layer),
                Pair {
                    node: Some(up),
                    layer: None,
                } => up.parent().layer.as_ref(),
                Pair {
                    node: None,
                    layer: None,
                } => None,
            },
            (None, None) => None,
        }
    }

    /// This context as a node or layer derived from it holds it: with its layer set
    /// whenever it has one, unless its node's parent holds that layer itself (N12). As many
    /// reference counts as `clone`.
    #[inline]
    pub(crate) fn as_parent(&self) -> Pair {
        let layer = match (&self.layer, &self.node) {
            // The node's parent holds the layer: one step from here, two from a child.
            (None, Some(node)) if node.parent().layer.is_some() => None,
            _ => self.nearest_layer().cloned(),
        };
        Pair {
            node: self.node.clone(),
            layer,
        }
    }

    /// The value set under `key` nearest to this context.
    pub(crate) fn find(&self, key: KeyId) -> Option<&AnyValue> {
        self.nearest_layer()?.find(key)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::{Context, Key};

    static K: Key<u32> = Key::new("k");

    /// The node of a context that has one.
    fn node(ctx: &Context) -> &Arc<super::Node> {
        ctx.pair().node.as_ref().expect("a context with a node")
    }

    /// The node a context's node holds as its parent.
    fn parent_node(ctx: &Context) -> &Arc<super::Node> {
        node(ctx)
            .parent()
            .node
            .as_ref()
            .expect("a node with a parent node")
    }

    /// N12: the contexts of new nodes hold no reference to their values' layer; the node's
    /// parent holds it, once per node, or, when that parent is itself the context of a node
    /// whose parent holds it, not at all: every lookup finds it in at most two steps.
    #[test]
    fn a_nodes_context_shares_its_parents_layer() {
        let values = Context::background().with_value(&K, 7);
        let layer = Arc::clone(values.pair().layer.as_ref().unwrap());
        let counted = |extra: usize| Arc::strong_count(&layer) - extra;
        let alone = counted(0);

        let (child, handle) = values.with_cancel();
        assert_eq!(counted(1), alone, "the node's parent holds the layer, once");
        assert!(Arc::ptr_eq(
            node(&child).parent().layer.as_ref().unwrap(),
            &layer
        ));
        let clones: Vec<Context> = (0..3).map(|_| child.clone()).collect();
        assert_eq!(counted(1), alone, "clones hold the node only");

        // `child`'s node's parent holds the layer: `timed`'s node holds `child`'s node alone.
        let (timed, timed_handle) = child.with_timeout(Duration::from_secs(3600));
        assert_eq!(
            counted(1),
            alone,
            "a child of `child` counts no reference on it"
        );
        assert!(node(&timed).parent().layer.is_none());
        assert!(Arc::ptr_eq(parent_node(&timed), node(&child)));
        // `timed`'s node's parent holds no layer: `detached`'s node's parent holds it again.
        let detached = timed.without_cancel();
        assert_eq!(counted(1), alone + 1);
        assert!(Arc::ptr_eq(
            node(&detached).parent().layer.as_ref().unwrap(),
            &layer
        ));
        let named = detached.named_child("call");
        let (merged, merged_handle) = detached.merge(&Context::background());
        for ctx in [&child, &timed, &detached, &merged] {
            assert!(
                ctx.pair().layer.is_none(),
                "{ctx}: holds no layer of its own"
            );
            assert!(
                Arc::ptr_eq(ctx.pair().nearest_layer().unwrap(), &layer),
                "{ctx}: finds the layer"
            );
            assert_eq!(ctx.value(&K), Some(&7));
        }
        assert_eq!((named.value(&K), named.name()), (Some(&7), Some("call")));
        let shown = timed.to_string();
        assert!(
            shown.starts_with("context.Background.WithValue(")
                && shown.contains(").WithCancel.WithDeadline(["),
            "{shown}"
        );
        assert!(merged
            .to_string()
            .ends_with(".WithoutCancel.Merge(context.Background)"));

        drop((clones, child, handle, timed, timed_handle, detached, named));
        drop((merged, merged_handle));
        assert_eq!(
            counted(0),
            alone,
            "all of them gone, the layer is back to its own count"
        );
    }

    /// N12, with no values anywhere: a chain of nodes under `background()` finds none, and a
    /// chain under a value finds it from every level, whichever of its pairs hold the layer.
    #[test]
    fn every_level_of_a_chain_finds_its_values_in_two_steps_at_most() {
        let mut plain = Context::background();
        let mut valued = Context::background().with_value(&K, 3);
        for depth in 0..6 {
            plain = plain.with_cancel().0;
            valued = if depth % 3 == 2 {
                valued.without_cancel()
            } else {
                valued.with_timeout(Duration::from_secs(3600)).0
            };
            assert!(plain.pair().nearest_layer().is_none());
            assert_eq!(plain.value(&K), None);
            assert_eq!(valued.value(&K), Some(&3), "at depth {depth}");
        }
    }

    /// N13: levels born done under a cancelled context fold into the level below them, which
    /// still tells everything the chain would have told, and each goes with its own handle.
    #[test]
    fn levels_born_done_fold_into_the_next() {
        let values = Context::background().with_value(&K, 7);
        let (root, cancel) = values.with_cancel();
        let (live_below, _live_handle) = root.with_cancel();
        cancel.cancel();
        let expected_origin = root.origin().unwrap();

        let mut leaf = root.clone();
        let mut levels = Vec::new();
        for _ in 0..50 {
            levels.push(Arc::downgrade(node(&leaf)));
            leaf = leaf.with_cancel().0;
        }
        assert!(
            Arc::ptr_eq(parent_node(&leaf), node(&root)),
            "the leaf holds the cancelled root, not the levels between"
        );
        assert_eq!(node(&leaf).folded_levels(), 49);
        assert!(
            levels[1..].iter().all(|level| level.upgrade().is_none()),
            "every level between went with its own context and handle"
        );
        let chain = format!(
            "context.Background.WithValue(k, u32){}",
            ".WithCancel".repeat(51)
        );
        assert_eq!(leaf.to_string(), chain);
        assert_eq!(leaf.err(), Some(crate::Error::Canceled));
        assert_eq!(leaf.origin(), Some(expected_origin.clone()));
        assert_eq!(leaf.value(&K), Some(&7));
        let (timed, _timed_handle) = leaf.with_timeout(Duration::from_secs(3600));
        assert_eq!(node(&timed).folded_levels(), 50);
        assert!(timed
            .to_string()
            .starts_with(&format!("{chain}.WithDeadline([")));
        assert_eq!(timed.origin(), Some(expected_origin.clone()));

        // Under a root cancelled with a cause (claimed, so its children link to learn it).
        let (with_cause, cause_handle) = Context::background().with_cancel();
        cause_handle.cancel_with_cause("shutting down");
        let mut deep = with_cause.with_cancel().0;
        for _ in 0..10 {
            deep = deep.with_cancel().0;
        }
        assert_eq!(node(&deep).folded_levels(), 10);
        assert_eq!(deep.cause().unwrap().to_string(), "shutting down");
        assert_eq!(deep.origin(), with_cause.origin());

        // Not folded: a level with values on top, a level cancelled on its own.
        let on_values = leaf.with_value(&K, 8).with_cancel().0;
        assert_eq!(node(&on_values).folded_levels(), 0);
        assert_eq!(
            on_values.to_string(),
            format!("{chain}.WithValue(k, u32).WithCancel")
        );
        let (own, own_cancel) = Context::background().with_cancel();
        own_cancel.cancel();
        let below_own = own.with_cancel().0;
        assert!(Arc::ptr_eq(parent_node(&below_own), node(&own)));
        assert_eq!(below_own.origin(), own.origin());
        // Folded too: a level the root's cancellation reached, still held.
        let under_reached = live_below.with_cancel().0;
        assert_eq!(node(&under_reached).folded_levels(), 1);
        assert!(Arc::ptr_eq(parent_node(&under_reached), node(&root)));
        assert_eq!(under_reached.origin(), Some(expected_origin));
        assert_eq!(
            under_reached.to_string(),
            "context.Background.WithValue(k, u32).WithCancel.WithCancel.WithCancel"
        );
        assert_eq!(
            live_below.to_string(),
            "context.Background.WithValue(k, u32).WithCancel.WithCancel"
        );
    }
}
