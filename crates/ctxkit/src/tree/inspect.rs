//! The live tree ([S30–S31](crate::guarantees#s30)): every live context under one, read one
//! node at a time.

use std::borrow::Cow;
use std::collections::HashSet;
use std::panic::Location;
use std::sync::Arc;

use super::node::{extra_ref, Kind, Node};
use super::Pair;
use crate::origin::Origin;
use crate::sync::lock;
use crate::time::Nanos;
use crate::Error;

/// One context of a snapshot, as read from its node.
pub(crate) struct Seen {
    pub(crate) depth: usize,
    /// `None`: `Background` (no node).
    pub(crate) kind: Option<Kind>,
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) site: Option<&'static Location<'static>>,
    /// Birth on the coarse clock; `None` for `Background`.
    pub(crate) born: Option<u32>,
    pub(crate) deadline: Nanos,
    /// Whether `deadline` is on the real clock.
    pub(crate) real_time: bool,
    /// For a deadline on a manual clock: that clock's reading.
    pub(crate) clock_now: Nanos,
    pub(crate) err: Option<Error>,
    pub(crate) origin: Option<Origin>,
}

impl Seen {
    /// `above`: the origin of the entry this one is listed under, if that one is done.
    fn of(
        node: &Arc<Node>,
        depth: usize,
        name: Option<Cow<'static, str>>,
        above: Option<&Origin>,
    ) -> Seen {
        let err = node.err();
        // A node (not a merge) reached by a cancellation has its parent's origin (N10): a
        // done chain of any length is read in one pass, not one walk up per entry.
        let inherits = node.state.began().is_none() && node.kind() != Kind::Merge;
        let origin = match (err, above) {
            (None, _) => None, // read as live: no origin, even if it is done by now
            (Some(_), Some(o)) if inherits => Some(o.clone()),
            (Some(_), _) => node.origin(),
        };
        let deadline = node.deadline();
        let real_time = node.parent.is_real_time();
        let clock_now = match deadline != crate::time::NO_DEADLINE && !real_time {
            true => node.parent.now(),
            false => 0,
        };
        Seen {
            depth,
            kind: Some(node.kind()),
            name,
            site: node.site,
            born: Some(node.born),
            deadline,
            real_time,
            clock_now,
            err,
            origin,
        }
    }
}

/// Every live context derived from `pair` that can be cancelled on its own, depth first,
/// pre-order, `pair` itself first. Holds one node's lock at a time, only to copy out its
/// child list (S31); a merge is listed under the first of its parents reached (S30).
pub(crate) fn snapshot(pair: &Pair) -> Vec<Seen> {
    let name = pair.name().map(super::Name::to_cow);
    let Some(root) = &pair.node else {
        return vec![Seen {
            depth: 0,
            kind: None,
            name,
            site: None,
            born: None,
            deadline: crate::time::NO_DEADLINE,
            real_time: true,
            clock_now: 0,
            err: None,
            origin: None,
        }];
    };
    let mut seen = vec![Seen::of(root, 0, name, None)];
    let mut merges: HashSet<*const Node> = HashSet::new();
    // The nodes still to list, last first, each with its depth and the index of the entry it
    // is listed under (N7: no recursion).
    let mut work: Vec<(Arc<Node>, usize, usize)> = Vec::new();
    push_children(root, 1, 0, &mut work);
    while let Some((node, depth, above)) = work.pop() {
        if node.kind() == Kind::Merge && !merges.insert(Arc::as_ptr(&node)) {
            continue;
        }
        let name = node.parent.name().map(super::Name::to_cow);
        let entry = Seen::of(&node, depth, name, seen[above].origin.as_ref());
        seen.push(entry);
        push_children(&node, depth + 1, seen.len() - 1, &mut work);
    }
    seen
}

/// Pushes the live children of `node` (listed at `index`) on `work`, so that the first is
/// popped first.
fn push_children(
    node: &Arc<Node>,
    depth: usize,
    index: usize,
    work: &mut Vec<(Arc<Node>, usize, usize)>,
) {
    let start = work.len();
    {
        let inner = lock(&node.inner);
        // Upgraded under the lock: a child being dropped fails to upgrade and is skipped.
        let mut push = |c: &std::sync::Weak<Node>| {
            if let Some(c) = c.upgrade() {
                work.push((c, depth, index));
            }
        };
        inner.for_each(&mut push);
        if let Some(lanes) = extra_ref(&inner).and_then(|e| e.lanes.as_deref()) {
            lanes.for_each(false, &mut push);
        }
    }
    work[start..].reverse();
}
