//! Lanes: more child lists for a node that many threads derive from at once (N14).
//!
//! Every child goes into its parent's list under the parent's lock (N3), so threads that
//! derive from one parent at once (the children of a server's root context, of a request
//! shared by its calls) take one lock and write one list, and each link and unlink moves
//! their cache lines from core to core. A node whose lock such links found taken
//! [`CONTENDED_LINKS`] times gets lanes: child lists of their own, each behind its own lock
//! on its own cache line, one per core up to [`MAX_LANES`]. A thread links its children of
//! that node into its lane, which it finds without the node's lock through a cache of its
//! own ([`Cache`]), and takes them out of it again; the node's lock and list are left to the
//! threads the cache does not serve.
//!
//! A child's slot (N3) names its lane and its entry there (`LANE_BASE` and up); a slot of the
//! node's own list is below. The lanes stay with the node until it is dropped.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock, Weak};

use crossbeam_utils::CachePadded;

use super::children::{Children, FIRST};
use super::node::Node;
use crate::sync::{lock, AtomicUsize, Mutex, Ordering};

/// How many links of a node's children must find its lock taken before it gets lanes: a
/// parent two requests happen to derive from at the same moment does not, one that threads
/// keep deriving from does, after a few microseconds. Under loom, and with
/// `--cfg ctxkit_eager_lanes` (the stress test's second run in `.ci/run`), every node gets
/// lanes at its first link, and each thread's next children of it go there.
pub(super) const CONTENDED_LINKS: u32 = if cfg!(any(loom, ctxkit_eager_lanes)) {
    1
} else {
    8
};

/// The most lanes a node gets, whatever the number of cores: six bits of a slot.
const MAX_LANES: usize = 64;

/// The first slot that names an entry in a lane: slots of the node's own list are below it
/// (`Children` hands out `FIRST`, `UNLINKED` and, before them, one slot a child: a node
/// with 2^31 children would take hundreds of GiB).
const LANE_BASE: u32 = 1 << 31;
/// A lane slot is `LANE_BASE | lane << LANE_SHIFT | entry`.
const LANE_SHIFT: u32 = 24;
/// The entry of a lane's first child (its list's `FIRST`); entries at or above it are not
/// put in a lane (a lane of 16 million children: the child goes to the node's list).
const ENTRY_FIRST: u32 = (1 << LANE_SHIFT) - 1;

/// Whether `slot` names an entry in a lane rather than in the node's own list.
#[inline]
pub(super) fn is_lane_slot(slot: u32) -> bool {
    (LANE_BASE..LANE_BASE + ((MAX_LANES as u32) << LANE_SHIFT)).contains(&slot)
}

fn lane_slot(lane: usize, entry: u32) -> Option<u32> {
    let entry = match entry {
        FIRST => ENTRY_FIRST,
        e if e < ENTRY_FIRST => e,
        _ => return None,
    };
    Some(LANE_BASE | (lane as u32) << LANE_SHIFT | entry)
}

/// The lane and the entry in it that a lane slot names.
fn split(slot: u32) -> (usize, u32) {
    let lane = ((slot - LANE_BASE) >> LANE_SHIFT) as usize;
    let entry = match slot & ENTRY_FIRST {
        ENTRY_FIRST => FIRST,
        e => e,
    };
    (lane, entry)
}

/// How many lanes a node gets: one per core the process may run on, at least two.
fn lane_count() -> usize {
    if cfg!(loom) {
        return 2;
    }
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(2, usize::from)
            .clamp(2, MAX_LANES)
    })
}

/// The lanes of one node.
pub(super) struct Lanes {
    lanes: Box<[CachePadded<Mutex<Lane>>]>,
    /// The lane the next thread to take these lanes at hand gets (modulo their number): the
    /// threads that derive from one node at once get one lane each, as far as there are.
    next: AtomicUsize,
}

#[derive(Default)]
struct Lane {
    /// Set by the walk that makes the node done, before its state says so (N14), and when
    /// the node is dropped: the lane takes no child any more, and its list never changes
    /// again (N3).
    closed: bool,
    children: Children<Weak<Node>, ()>,
}

impl Lanes {
    pub(super) fn new() -> Arc<Lanes> {
        Arc::new(Lanes {
            lanes: (0..lane_count())
                .map(|_| CachePadded::new(Mutex::new(Lane::default())))
                .collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// Puts `child` into lane `lane`; gives it back if the lane is closed or full.
    fn link(&self, lane: usize, child: Weak<Node>) -> Result<u32, Weak<Node>> {
        let mut list = lock(&self.lanes[lane]);
        if list.closed {
            return Err(child);
        }
        let entry = list.children.insert(child);
        match lane_slot(lane, entry) {
            Some(slot) => Ok(slot),
            None => Err(list.children.remove(entry).expect("just inserted")),
        }
    }

    /// Takes the entry `slot` names out of its lane, unless the lane is closed: `Err` then,
    /// and nothing changes.
    pub(super) fn remove(&self, slot: u32) -> Result<Option<Weak<Node>>, ()> {
        let (lane, entry) = split(slot);
        let mut lane = lock(&self.lanes[lane]);
        if lane.closed {
            return Err(());
        }
        Ok(lane.children.remove(entry))
    }

    /// Calls `f` on every child in every lane, one lane locked at a time; with `close`, each
    /// lane is closed in the same critical section (N14).
    pub(super) fn for_each(&self, close: bool, mut f: impl FnMut(&Weak<Node>)) {
        for lane in &*self.lanes {
            let mut lane = lock(lane);
            lane.closed |= close;
            lane.children.for_each(&mut f);
        }
    }

    /// Closes every lane and empties it: the node is being dropped, and a thread's cache
    /// may keep the lanes a while longer. The entries are dropped with no lock held.
    pub(super) fn clear(&self) {
        for lane in &*self.lanes {
            let taken = {
                let mut lane = lock(lane);
                lane.closed = true;
                std::mem::take(&mut lane.children)
            };
            drop(taken);
        }
    }
}

/// The lanes this thread used last, by the address of their node, each with this thread's
/// lane in them. A node's address names it while it lives; once it is dropped, its lanes
/// are closed (`Lanes::clear`), so an entry left for a node whose address a new node took
/// is never used: a closed lane sends the thread to the node's lock, which refreshes the
/// entry.
struct Cache {
    entries: [Option<Entry>; CACHED],
    /// The entry to replace next.
    next: usize,
}

struct Entry {
    node: usize,
    lanes: Arc<Lanes>,
    lane: usize,
}

/// How many nodes' lanes a thread keeps at hand.
const CACHED: usize = 4;

#[cfg(not(loom))]
std::thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache::new()) };
}
#[cfg(loom)]
loom::thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::new());
}

impl Cache {
    const fn new() -> Cache {
        Cache {
            entries: [const { None }; CACHED],
            next: 0,
        }
    }

    /// Where `node`'s entry is, if the cache has one.
    fn position(&self, node: &Node) -> Option<usize> {
        let key = node as *const Node as usize;
        self.entries
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.node == key))
    }

    fn entry(&self, node: &Node) -> Option<&Entry> {
        self.entries[self.position(node)?].as_ref()
    }
}

/// Links `child` into this thread's lane of `node`'s lanes, if this thread has them at hand
/// and the lane takes it; gives it back otherwise. Works during thread-local teardown too:
/// the cache is then out of reach, and the child goes back to the caller.
#[inline]
pub(super) fn link_cached(node: &Node, child: Weak<Node>) -> Result<u32, Weak<Node>> {
    let mut child = Some(child);
    let linked = CACHE.try_with(|cache| {
        let cache = cache.try_borrow().ok()?;
        let entry = cache.entry(node)?;
        match entry.lanes.link(entry.lane, child.take()?) {
            Ok(slot) => Some(slot),
            Err(back) => {
                child = Some(back);
                None
            }
        }
    });
    match linked {
        Ok(Some(slot)) => Ok(slot),
        _ => Err(child.expect("given back unless linked")),
    }
}

/// Takes the entry `slot` names out of `node`'s lanes if this thread has them at hand and
/// the lane is open: `Some` then, with the entry to drop. `None`: the caller goes through
/// the node's lock.
#[inline]
pub(super) fn remove_cached(node: &Node, slot: u32) -> Option<Option<Weak<Node>>> {
    CACHE
        .try_with(|cache| {
            let cache = cache.try_borrow().ok()?;
            cache.entry(node)?.lanes.remove(slot).ok()
        })
        .ok()
        .flatten()
}

/// Keeps `node`'s lanes at hand for this thread's next links and unlinks.
pub(super) fn remember(node: &Node, lanes: &Arc<Lanes>) {
    let _ = CACHE.try_with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return;
        };
        if cache
            .entry(node)
            .is_some_and(|e| Arc::ptr_eq(&e.lanes, lanes))
        {
            return; // at hand already
        }
        let at = cache.position(node).unwrap_or_else(|| {
            let at = cache.next;
            cache.next = (at + 1) % CACHED;
            at
        });
        let lane = lanes.next.fetch_add(1, Ordering::Relaxed) % lanes.lanes.len();
        let old = cache.entries[at].replace(Entry {
            node: node as *const Node as usize,
            lanes: Arc::clone(lanes),
            lane,
        });
        // The entry it replaces is dropped once the cache is let go of.
        drop(cache);
        drop(old);
    });
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Context, Error};

    fn node(ctx: &Context) -> &Arc<Node> {
        ctx.pair().node.as_ref().expect("a context with a node")
    }

    impl Lanes {
        fn len(&self) -> usize {
            let mut n = 0;
            self.for_each(false, |_| n += 1);
            n
        }
    }

    #[test]
    fn a_lane_slot_names_its_lane_and_entry_and_no_slot_of_the_list() {
        for lane in [0, 1, MAX_LANES - 1] {
            for entry in [FIRST, 0, 3, 4, 1000, ENTRY_FIRST - 1] {
                let slot = lane_slot(lane, entry).expect("fits");
                assert!(is_lane_slot(slot));
                assert_eq!(split(slot), (lane, entry));
            }
            assert_eq!(lane_slot(lane, ENTRY_FIRST), None, "full: to the list");
        }
        for slot in [0, 4, LANE_BASE - 1, FIRST, super::super::children::UNLINKED] {
            assert!(!is_lane_slot(slot), "{slot:#x}");
        }
    }

    #[test]
    fn children_in_lanes_are_cancelled_with_their_parent_and_its_cause() {
        let (parent, cancel) = Context::background().with_cancel();
        let lanes = node(&parent).with_lanes();
        let children: Vec<_> = (0..10).map(|_| parent.with_cancel()).collect();
        let below: Vec<_> = children
            .iter()
            .map(|(c, _)| c.with_timeout(Duration::from_secs(60)))
            .collect();
        assert_eq!(lanes.len(), 10, "every child in this thread's lane");
        assert!(children.iter().all(|(c, _)| !c.is_done()));
        cancel.cancel_with_cause(std::io::Error::other("stop"));
        for (c, _) in children.iter().chain(&below) {
            assert_eq!(c.err(), Some(Error::Canceled));
            assert_eq!(c.cause().map(|c| c.to_string()), Some("stop".to_string()));
        }
        // A closed lane takes no child: one made now is born done, from the parent's lock.
        let (late, _h) = parent.with_cancel();
        assert_eq!(late.err(), Some(Error::Canceled));
        assert_eq!(
            late.cause().map(|c| c.to_string()),
            Some("stop".to_string())
        );
        // A done parent's lists never change (N3): the children stay listed until dropped.
        assert_eq!(lanes.len(), 10);
        drop((children, below));
        assert_eq!(lanes.len(), 10, "left in place, as in the node's own list");
    }

    #[test]
    fn a_child_leaves_its_lane_when_dropped_on_this_thread_or_another() {
        let (parent, _cancel) = Context::background().with_cancel();
        let lanes = node(&parent).with_lanes();
        let a = parent.with_cancel();
        let b = parent.with_cancel();
        assert_eq!(lanes.len(), 2);
        drop(a);
        assert_eq!(lanes.len(), 1);
        // A thread without the lanes at hand goes through the parent's lock.
        std::thread::spawn(move || drop(b)).join().unwrap();
        assert_eq!(lanes.len(), 0);
        // Cancelled and dropped, with its own subtree.
        let (c, h) = parent.with_cancel();
        let d = c.with_cancel();
        h.cancel();
        drop((c, h));
        assert_eq!(lanes.len(), 1, "held by the child below it");
        drop(d);
        assert_eq!(lanes.len(), 0);
    }

    #[test]
    fn a_snapshot_lists_the_children_in_lanes() {
        let (parent, _cancel) = Context::background().with_cancel();
        node(&parent).with_lanes();
        let _kept: Vec<_> = (0..3).map(|_| parent.with_cancel()).collect();
        let seen = super::super::snapshot(parent.pair());
        assert_eq!(seen.len(), 4, "the parent and its three children");
    }

    #[test]
    fn a_moved_deadline_reaches_the_children_in_lanes() {
        let (parent, handle) = Context::background().with_timeout(Duration::from_secs(3600));
        node(&parent).with_lanes();
        let (child, _h) = parent.with_cancel();
        let soon = std::time::Instant::now() + Duration::from_secs(60);
        assert!(handle.set_deadline(soon));
        let read = child.deadline().expect("the parent's deadline");
        let off = read.max(soon) - read.min(soon);
        assert!(
            off < Duration::from_micros(1),
            "the child reads the moved deadline"
        );
    }

    #[test]
    fn lanes_of_a_dropped_parent_are_closed_and_emptied() {
        let (parent, cancel) = Context::background().with_cancel();
        let lanes = node(&parent).with_lanes();
        let children: Vec<_> = (0..3).map(|_| parent.with_cancel()).collect();
        drop(children);
        let kept = parent.with_cancel();
        drop((parent, cancel));
        assert_eq!(lanes.len(), 1, "the child holds the parent");
        drop(kept);
        assert_eq!(lanes.len(), 0);
        assert!(
            lanes.link(0, Weak::new()).is_err(),
            "closed once the node is gone"
        );
    }
}
