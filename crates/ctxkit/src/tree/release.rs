//! Dropping: a node leaves the tree when its last reference goes, cancelled or not (N2,
//! [S22](crate::guarantees#s22)), and a chain of any length drops without recursion (N7,
//! [S23](crate::guarantees#s23)).

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use super::node::Node;
use super::Pair;
use crate::callback::Reg;

impl Drop for Node {
    fn drop(&mut self) {
        #[cfg(feature = "diagnostics")]
        crate::diagnostics::node_dropped();
        let branch = crate::sync::get_mut(&mut self.inner).take();
        let mut extra = branch.and_then(|b| b.extra);
        let merge = extra.as_mut().and_then(|e| e.merge.take());
        if !self.is_done() {
            self.leave_parents_on_drop(merge.clone());
            self.forget_timer();
            if let Some(e) = extra {
                let pending: Vec<Arc<Reg>> =
                    e.regs.into_iter().filter(|r| r.is_pending()).collect();
                if !pending.is_empty() {
                    self.hand_to_parents(pending, merge.as_deref());
                }
            }
        }
        release(std::mem::take(&mut self.parent));
        if let Some(merge) = merge.and_then(Arc::into_inner) {
            release(merge.pair);
        }
    }
}

/// Drops a context without recursion, however long the chain of parents it ends (N7).
///
/// The first `release` on a thread drops its context and then, in a loop, every parent that
/// the drop queued here instead of dropping in place.
pub(crate) fn release(pair: Pair) {
    if pair.is_root() {
        return;
    }
    thread_local! {
        static DRAINING: Cell<bool> = const { Cell::new(false) };
        static QUEUE: RefCell<Vec<Pair>> = const { RefCell::new(Vec::new()) };
    }
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = DRAINING.try_with(|d| d.set(false));
        }
    }
    let Ok(draining) = DRAINING.try_with(|d| d.replace(true)) else {
        return drop(pair); // thread teardown: no queue any more
    };
    if draining {
        let _ = QUEUE.try_with(move |q| q.borrow_mut().push(pair));
        return;
    }
    let _reset = Reset;
    drop(pair);
    while let Some(next) = QUEUE.with(|q| q.borrow_mut().pop()) {
        drop(next);
    }
}
