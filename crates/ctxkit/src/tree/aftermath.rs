//! What one cancellation collects under its locks to do after releasing them (N6), and the
//! buffers each thread keeps for its next cancellation.
//!
//! Everything user-supplied that a cancellation touches — wakers, callbacks, causes it
//! replaces, nodes and values whose last reference it holds — is woken, run or dropped here,
//! once every lock is released and every walking bit is cleared (N1b, N6). A panic in any of
//! it does not stop the rest and leaves the tree consistent; the first one is resumed at the
//! end. On the real-time timer thread ([`Callbacks::Pool`]) all of it goes to the callback
//! pool instead, so the timer thread runs no user code (T4).

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::Waker;

use super::node::Node;
use crate::callback::{self, Callbacks, Priority, Reg};
use crate::error::Cause;

/// What one cancellation collected to do after releasing its locks (N6).
#[derive(Default)]
pub(super) struct Aftermath {
    pub(super) wakers: Vec<Waker>,
    pub(super) regs: Vec<Arc<Reg>>,
    /// Children found by the last `finish`, not yet in `reached`.
    pub(super) found: Vec<Arc<Node>>,
    /// Every node the walk reached and locked, in the order reached, kept alive until every
    /// lock is released and every callback has run (N6). The children it made done without
    /// a lock are let go of as it goes (`walk.rs`, `sift`).
    pub(super) reached: Vec<Arc<Node>>,
    /// The nodes of `reached` this walk made done under their lock, in the order walked.
    pub(super) walked: Vec<Walked>,
    /// The nodes of `reached` the walk found done already: their subtrees may still be under
    /// another walk (N1b).
    pub(super) found_done: Vec<usize>,
    /// Pins of nodes made done (N8).
    pub(super) unpinned: Vec<Arc<Node>>,
    /// What went out of use during the walk, to drop after: causes a cancel replaced, and
    /// nodes whose last reference the walk held (those it made done without a lock, and on
    /// the timer thread every one).
    pub(super) garbage: Vec<Garbage>,
}

/// User-supplied things a walk lets go of (N6): held only to be dropped.
#[allow(dead_code)]
pub(super) enum Garbage {
    /// A pending deadline cause that a cancel overrode.
    Cause(Cause),
    /// A node whose last reference the walk held: dropped after the walk (N6), and on the
    /// timer thread by the callback pool (T4).
    Node(Node),
}

/// A node a walk made done under its lock.
pub(super) struct Walked {
    /// Its index in `reached`.
    pub(super) at: u32,
    /// The index in `reached` of its first child: its children follow it there, up to the
    /// next walked node's first child (N1b: so that a walk can tell which nodes it found
    /// a node through).
    pub(super) first_child: u32,
}

type Panic = Box<dyn Any + Send + 'static>;

/// The most a thread keeps of its last cancellation's buffers: enough for the walk of a chain
/// or a fan-out of about a thousand contexts (a reference and an index each, about 16 bytes),
/// which then allocates nothing for its bookkeeping when it comes again.
const KEEP_BYTES: usize = 32 * 1024;

thread_local! {
    /// The emptied buffers of this thread's last cancellation, for its next one. Boxed, so
    /// that taking and returning them moves a pointer, not eight vectors.
    static SPARE: Cell<Option<Box<Aftermath>>> = const { Cell::new(None) };
}

impl Aftermath {
    /// An empty aftermath with the buffers of this thread's last one: a cancellation
    /// allocates nothing for its bookkeeping in the steady state. (A cancellation inside a
    /// callback of another finds none and allocates.)
    pub(super) fn take() -> Box<Aftermath> {
        SPARE
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Keeps this emptied aftermath's buffers for the thread's next cancellation, unless
    /// together they grew past [`KEEP_BYTES`] (a subtree of thousands of contexts): that
    /// memory goes back now.
    fn recycle(self: Box<Self>) {
        if self.capacity_bytes() <= KEEP_BYTES {
            let _ = SPARE.try_with(|spare| spare.set(Some(self)));
        }
    }

    /// The bytes the buffers hold on to.
    fn capacity_bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        bytes(&self.wakers)
            + bytes(&self.regs)
            + bytes(&self.found)
            + bytes(&self.reached)
            + bytes(&self.walked)
            + bytes(&self.found_done)
            + bytes(&self.unpinned)
            + bytes(&self.garbage)
    }

    /// Whether this cancellation collected nothing at all.
    fn is_empty(&self) -> bool {
        self.wakers.is_empty()
            && self.regs.is_empty()
            && self.reached.is_empty()
            && self.unpinned.is_empty()
            && self.garbage.is_empty()
            && self.walked.is_empty()
            && self.found_done.is_empty()
    }

    /// Wakes, runs and drops everything this cancellation collected, with no lock held (N6):
    /// here, or on the pool for [`Callbacks::Pool`].
    pub(super) fn run(mut self: Box<Self>, callbacks: Callbacks) {
        if self.is_empty() {
            // Most cancels: nothing was waiting, registered or let go of.
            self.recycle();
            return;
        }
        match callbacks {
            Callbacks::Inline => {
                self.run_here();
                self.recycle();
            }
            Callbacks::Pool => {
                // Wakers go with those of the timer's whole pass (T4); release what is not
                // the last reference here; hand the rest over.
                callback::wake_later(self.wakers.drain(..));
                let nodes = self.reached.drain(..).chain(self.unpinned.drain(..));
                let orphans = nodes.filter_map(Arc::into_inner).map(Garbage::Node);
                let mut garbage = std::mem::take(&mut self.garbage);
                garbage.extend(orphans);
                self.garbage = garbage;
                self.walked.clear();
                self.found_done.clear();
                let idle =
                    self.wakers.is_empty() && self.regs.is_empty() && self.garbage.is_empty();
                if idle {
                    self.recycle();
                } else {
                    let job = move || {
                        self.run_here();
                        self.recycle();
                    };
                    callback::execute(Box::new(job), Priority::Urgent);
                }
            }
        }
    }

    /// Wakes the waiters, runs the callbacks, then drops what was collected. Panics of any of
    /// it are resumed once all of it is done ([S21](crate::guarantees#s21)).
    fn run_here(&mut self) {
        let mut first: Option<Panic> = None;
        let mut note = |result: Result<(), Panic>| {
            if let Err(payload) = result {
                first.get_or_insert(payload);
            }
        };
        // Each list is looked at before it is drained: most cancellations have nothing in most.
        if !self.wakers.is_empty() {
            for waker in self.wakers.drain(..) {
                // A broken waker must not keep the other waiters and the callbacks from
                // hearing.
                note(catch_unwind(AssertUnwindSafe(|| waker.wake())));
            }
        }
        if !self.regs.is_empty() {
            // Drained, not taken: the buffer is kept for the thread's next cancellation.
            if let Some(payload) = callback::fire_all(self.regs.drain(..)) {
                note(Err(payload));
            }
        }
        if !self.garbage.is_empty() {
            for garbage in self.garbage.drain(..) {
                note(catch_unwind(AssertUnwindSafe(|| drop(garbage))));
            }
        }
        // Most of these are not the last reference; a drop that runs a value's `Drop` may
        // panic, and then the rest are still dropped (and a second panic aborts, as in std).
        if !self.reached.is_empty() || !self.unpinned.is_empty() {
            note(catch_unwind(AssertUnwindSafe(|| {
                self.reached.clear();
                self.unpinned.clear();
            })));
        }
        self.walked.clear();
        self.found_done.clear();
        if let Some(payload) = first {
            std::panic::resume_unwind(payload);
        }
    }
}
