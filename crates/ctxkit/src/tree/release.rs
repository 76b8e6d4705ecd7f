//! Dropping: a node leaves the tree when its last reference goes, cancelled or not (N2,
//! [S22](crate::guarantees#s22)), and a chain of any length drops without recursion (N7,
//! [S23](crate::guarantees#s23)).
//!
//! Dropping the last reference to a node or a layer must not drop its parent in place: the
//! parent's drop would drop the grandparent, and so on, one stack frame per level. So a
//! node or layer hands its parents to a work list of references to release, local to the
//! drop: one that was the last reference is taken out of its `Arc`, its own parents go on
//! the list, and only then is it dropped, finding nothing left to release. No thread-local
//! is touched, so dropping works anywhere, thread-local destructors included.
//!
//! Two drops are done in place. A node dropped by its last handle or context (not by a work
//! list) drops its parent's layer in place when the parent's node lives on; and it drops
//! its parent's node in place, in its `Arc`, when that node is at the top of the tree (its
//! own parent holds no node), which the root of every chain under `background()` is. The
//! layer's own drop, like the top node's, hands its parents to a work list, so each adds one
//! level to the stack, never more: a layer's drop never drops another layer in place, a top
//! node's drop releases no node, and a node taken out by a work list has left the tree
//! already and releases nothing when dropped. That layer is most often the name or values
//! of a call, whose node alone held them (N12).

use std::sync::Arc;

use super::layer::Layer;
use super::node::{MergeParent, Node};
use super::Pair;
use crate::callback::Reg;

impl Drop for Node {
    /// A node a release took out of its `Arc` has left already (`Releases::adopt`): its
    /// drop looks at one bit, inline.
    #[inline(always)]
    fn drop(&mut self) {
        if !self.state.has_left() {
            self.drop_in_tree();
        }
    }
}

impl Node {
    /// The drop of a node dropped by its last handle or context, still in the tree.
    #[inline(never)]
    fn drop_in_tree(&mut self) {
        let Some((parent, merge)) = self.leave(false) else {
            return;
        };
        if let Some(merge) = merge {
            let mut work = Releases::default();
            work.release(parent);
            work.release(merge);
            return work.drain();
        }
        let Pair { node, layer } = parent;
        // A parent at the top of the tree (its own parent holds no node: `background()`, or
        // values over it) is dropped in place, in its `Arc`, when this is likely its last
        // reference (one load of the count this drop writes next): its drop releases no node,
        // and hands its layer, if any, to a list (see above). One frame deeper, never more,
        // whoever holds the last reference when the count comes down; the root of every
        // chain under `background()` is freed without being moved out.
        if node
            .as_ref()
            .is_some_and(|p| Arc::strong_count(p) == 1 && p.parent.node.is_none())
        {
            return release_top(node, layer);
        }
        match node.and_then(Arc::into_inner) {
            // Its node lives on: the layer, if this was its last reference, is dropped in
            // place (see above).
            None => drop(layer),
            Some(node) => {
                let mut work = Releases::default();
                work.adopt(Some(node), layer.and_then(Arc::into_inner));
                work.drain();
            }
        }
    }
}

/// Drops the references to a parent at the top of the tree, its node dropped in place if
/// this was the last (see `drop_in_tree`). Out of line: the drop of a node, inlined, would
/// crowd the rest of `drop_in_tree` out of the inliner's reach.
#[inline(never)]
fn release_top(node: Option<Arc<Node>>, layer: Option<Arc<Layer>>) {
    drop(node);
    drop(layer);
}

/// Releases the one parent of a node or layer being dropped. In the common case, where this
/// was not the last reference to the parent's node or layer, nothing is taken out of an
/// `Arc` and no list is made.
#[inline]
fn release_one(parent: Pair) {
    let Pair { node, layer } = parent;
    let node = node.and_then(Arc::into_inner);
    let layer = layer.and_then(Arc::into_inner);
    if node.is_none() && layer.is_none() {
        return;
    }
    let mut work = Releases::default();
    work.adopt(node, layer);
    work.drain();
}

impl Node {
    /// Leaves the tree, once: a node leaves its parents' child lists and its timer queue, and
    /// if it was dropped before it was done, hands its pending callbacks to its parents (N2,
    /// N8).
    /// Returns its parents, for the caller to release. `in_chain`: the node was taken out of
    /// its `Arc` by a release (see `leave_parents_on_drop`).
    #[inline]
    fn leave(&mut self, in_chain: bool) -> Option<(Pair, Option<Pair>)> {
        if !self.state.leave_once() {
            return None;
        }
        #[cfg(feature = "diagnostics")]
        crate::diagnostics::node_dropped(self.site);
        let merge = if crate::sync::get_mut(&mut self.inner).side().is_some() {
            self.leave_boxed(in_chain)
        } else {
            // No merge, lanes or callbacks: only its first parent and its timer queue.
            self.leave_parents_and_timer(None, in_chain);
            None
        };
        Some((std::mem::take(&mut self.parent), merge))
    }

    /// [`leave`](Self::leave) of a node with a box, out of line: its lanes, its merge's
    /// second parent and its pending callbacks. Returns the second parent.
    #[inline(never)]
    fn leave_boxed(&mut self, in_chain: bool) -> Option<Pair> {
        let mut extra = crate::sync::get_mut(&mut self.inner)
            .side_mut()
            .map(std::mem::take);
        let merge = extra.as_mut().and_then(|e| e.merge.take());
        if let Some(lanes) = extra.as_ref().and_then(|e| e.lanes.as_deref()) {
            lanes.clear(); // a thread's cache may outlive the node (N14)
        }
        self.leave_parents_and_timer(merge.clone(), in_chain);
        if !self.is_done() {
            if let Some(e) = extra {
                let pending: Vec<Arc<Reg>> =
                    e.regs.into_iter().filter(|r| r.is_pending()).collect();
                if !pending.is_empty() {
                    self.hand_to_parents(pending, merge.as_deref());
                }
            }
        }
        merge.and_then(Arc::into_inner).map(|m| m.pair)
    }

    /// Done or not, a node being dropped is still listed by its parents that are live (N3),
    /// and its timer entry, if any, is still queued (T2).
    #[inline(always)]
    fn leave_parents_and_timer(&self, merge: Option<Arc<MergeParent>>, in_chain: bool) {
        self.leave_parents_on_drop(merge, in_chain);
        self.forget_timer();
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        if !self.has_rows() {
            // A name's layer, or one with no values above it: its parent alone.
            if let Some(parent) = self.take_parent() {
                release_one(parent);
            }
            return;
        }
        let mut work = Releases::default();
        for parent in self.take_parents() {
            work.release(parent);
        }
        work.drain();
    }
}

/// The work list of one drop: the parents of nodes and layers whose last reference it took,
/// still to release. The first waits in `next`, so a chain (one parent a level) is dropped
/// without allocating.
#[derive(Default)]
struct Releases {
    next: Option<Pair>,
    more: Vec<Pair>,
}

impl Releases {
    /// Drops the references `pair` holds; a node or layer of which one was the last gives
    /// its own parents to the list, and is dropped finding nothing left to release.
    fn release(&mut self, pair: Pair) {
        let Pair { node, layer } = pair;
        self.adopt(
            node.and_then(Arc::into_inner),
            layer.and_then(Arc::into_inner),
        );
    }

    /// Puts the parents of a node and a layer whose last references were taken on the list;
    /// then they are dropped, finding nothing left to release.
    fn adopt(&mut self, node: Option<Node>, layer: Option<Layer>) {
        if let Some(mut node) = node {
            if let Some((parent, merge)) = node.leave(true) {
                self.push(parent);
                if let Some(merge) = merge {
                    self.push(merge);
                }
            }
        }
        if let Some(mut layer) = layer {
            for parent in layer.take_parents() {
                self.push(parent);
            }
        }
    }

    fn push(&mut self, pair: Pair) {
        if pair.node.is_none() && pair.layer.is_none() {
            return; // `background()`: nothing to release
        }
        match self.next {
            None => self.next = Some(pair),
            Some(_) => self.more.push(pair),
        }
    }

    fn drain(&mut self) {
        while let Some(pair) = self.next.take().or_else(|| self.more.pop()) {
            self.release(pair);
        }
    }
}
