//! What one cancellation collects under its locks to do after releasing them (N6), and the
//! buffers each thread keeps for its next cancellation.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::Waker;

use super::node::{MergeParent, Node};
use crate::callback::{self, Callbacks, Reg};

/// What one cancellation collected to do after releasing its locks (N6).
#[derive(Default)]
pub(super) struct Aftermath {
    pub(super) wakers: Vec<Waker>,
    pub(super) regs: Vec<Arc<Reg>>,
    /// Children found by the last `finish`, not yet in `reached`.
    pub(super) found: Vec<Arc<Node>>,
    /// Every node the walk reached, in the order reached, kept alive until every lock is
    /// released and every callback has run (N6).
    pub(super) reached: Vec<Arc<Node>>,
    /// The nodes of `reached` this walk made done under their lock (with a merge's second
    /// parent, to leave).
    pub(super) walked: Vec<(usize, Option<Arc<MergeParent>>)>,
    /// The nodes of `reached` the walk found done already: their subtrees may still be under
    /// another walk (N1b).
    pub(super) found_done: Vec<usize>,
    /// Pins of nodes made done (N8).
    pub(super) unpinned: Vec<Arc<Node>>,
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
        found_done: Vec::new(),
        unpinned: Vec::new(),
    };

    /// An empty aftermath with the buffers of this thread's last one: a cancellation
    /// allocates nothing for its bookkeeping in the steady state. (A cancellation inside a
    /// callback of another finds none and allocates.)
    pub(super) fn take() -> Aftermath {
        SPARE.try_with(Cell::take).unwrap_or_default()
    }

    /// Keeps this emptied aftermath's buffers for the thread's next cancellation, unless one
    /// grew large (a big subtree): that memory goes back now.
    fn recycle(self) {
        const KEEP: usize = 64;
        let small = self.wakers.capacity() <= KEEP
            && self.found.capacity() <= KEEP
            && self.walked.capacity() <= KEEP
            && self.found_done.capacity() <= KEEP
            && self.reached.capacity() <= KEEP
            && self.unpinned.capacity() <= KEEP;
        if small {
            let _ = SPARE.try_with(|spare| spare.set(self));
        }
    }

    /// Wakes and runs everything a cancellation collected, with no lock held (N6). Panics of
    /// `on_cancel` callbacks are resumed after all of them have run
    /// ([S21](crate::guarantees#s21)).
    pub(super) fn run(mut self, callbacks: Callbacks) {
        let mut panic = None;
        for waker in self.wakers.drain(..) {
            // A broken waker must not keep the other waiters and the callbacks from hearing.
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| waker.wake())) {
                panic.get_or_insert(payload);
            }
        }
        let regs = std::mem::take(&mut self.regs);
        match callbacks {
            Callbacks::Inline => {
                if let Some(payload) = callback::fire_all(regs) {
                    panic.get_or_insert(payload);
                }
            }
            Callbacks::Pool => callback::fire_all_on_pool(regs),
        }
        self.walked.clear();
        self.found_done.clear();
        self.reached.clear();
        self.unpinned.clear();
        self.recycle();
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
    }
}
