//! Dropping: a node leaves the tree when its last reference goes, cancelled or not (N2,
//! [S22](crate::guarantees#s22)), and a chain of any length drops without recursion (N7,
//! [S23](crate::guarantees#s23)).
//!
//! Dropping the last reference to a node or a layer must not drop its parent in place: the
//! parent's drop would drop the grandparent, and so on, one stack frame per level. So a
//! node or layer hands its parents to a work list that takes every one it holds the last
//! reference to out of its `Arc`, detaches that one's own parents first, and only then drops
//! it: its `Drop` finds nothing left to release. The work list is local to the call and no
//! thread-local is touched, so dropping works anywhere, thread-local destructors included.

use std::sync::Arc;

use super::layer::Layer;
use super::node::Node;
use super::Pair;
use crate::callback::Reg;

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(left) = self.leave() {
            let mut work = Orphans::default();
            work.adopt_left(left);
            work.drain();
        }
    }
}

/// What a node that left the tree still holds: its parents, and nodes whose last reference
/// came out of its timer queue as it left.
struct Left {
    parent: Pair,
    merge: Option<Pair>,
    orphans: Vec<Node>,
}

impl Node {
    /// Leaves the tree, once: a node dropped before it was done leaves its parents' child
    /// lists and its timer queue, and hands its pending callbacks to its parents (N2, N8).
    /// Returns its parents, for the caller to release.
    fn leave(&mut self) -> Option<Left> {
        if !self.state.leave_once() {
            return None;
        }
        #[cfg(feature = "diagnostics")]
        crate::diagnostics::node_dropped();
        let branch = crate::sync::get_mut(&mut self.inner).take();
        let mut extra = branch.and_then(|b| b.extra);
        let merge = extra.as_mut().and_then(|e| e.merge.take());
        let mut orphans = Vec::new();
        if !self.is_done() {
            self.leave_parents_on_drop(merge.clone());
            orphans = self.forget_timer();
            if let Some(e) = extra {
                let pending: Vec<Arc<Reg>> =
                    e.regs.into_iter().filter(|r| r.is_pending()).collect();
                if !pending.is_empty() {
                    self.hand_to_parents(pending, merge.as_deref());
                }
            }
        }
        Some(Left {
            parent: std::mem::take(&mut self.parent),
            merge: merge.and_then(Arc::into_inner).map(|m| m.pair),
            orphans,
        })
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        let mut parents = self.take_parents();
        if let Some(first) = parents.next() {
            let mut work = Orphans::default();
            work.adopt(first);
            parents.for_each(|p| work.adopt(p));
            work.drain();
        }
    }
}

/// A node or a layer whose last reference was taken: dropped once its parents are out.
enum Orphan {
    Node(Node),
    Layer(Layer),
}

/// The work list of one [`release`]. The first orphan waits in `next`, so a chain (one
/// parent a level) is dropped without allocating.
#[derive(Default)]
struct Orphans {
    next: Option<Orphan>,
    more: Vec<Orphan>,
}

impl Orphans {
    /// Takes the last references `pair` holds; other references are just dropped.
    fn adopt(&mut self, pair: Pair) {
        let Pair { node, layer } = pair;
        if let Some(node) = node.and_then(Arc::into_inner) {
            self.push(Orphan::Node(node));
        }
        if let Some(layer) = layer.and_then(Arc::into_inner) {
            self.push(Orphan::Layer(layer));
        }
    }

    fn adopt_left(&mut self, left: Left) {
        self.adopt(left.parent);
        left.merge.into_iter().for_each(|m| self.adopt(m));
        left.orphans
            .into_iter()
            .for_each(|n| self.push(Orphan::Node(n)));
    }

    fn push(&mut self, orphan: Orphan) {
        match self.next {
            None => self.next = Some(orphan),
            Some(_) => self.more.push(orphan),
        }
    }

    fn drain(&mut self) {
        while let Some(orphan) = self.next.take().or_else(|| self.more.pop()) {
            match orphan {
                Orphan::Node(mut node) => {
                    if let Some(left) = node.leave() {
                        self.adopt_left(left);
                    }
                }
                Orphan::Layer(mut layer) => {
                    for parent in layer.take_parents() {
                        self.adopt(parent);
                    }
                }
            }
            // Dropped here, with nothing left to release.
        }
    }
}
