//! The wakers of `Done` futures and blocked threads waiting on a node (N4, N6).

use std::task::Waker;

use super::node::{extra, extra_mut, Node};
use crate::sync::lock;

impl Node {
    /// Registers a waker to be woken when this node is done. `key` is the registration to
    /// update, if any. Returns `false` (registering nothing) if the node is already done.
    pub(crate) fn register_waker(&self, key: &mut Option<usize>, waker: &Waker) -> bool {
        // Cloned before locking and the replaced one dropped after: a waker is the
        // executor's code (N6).
        let waker = waker.clone();
        let mut inner = lock(&self.inner);
        if self.state.claim().is_some() {
            return false;
        }
        let wakers = &mut extra(&mut inner).wakers;
        let replaced = match key.and_then(|k| wakers.get_mut(k)) {
            Some(slot) => Some(std::mem::replace(slot, waker)),
            None => {
                *key = Some(wakers.insert(waker));
                None
            }
        };
        drop(inner);
        drop(replaced);
        true
    }

    /// Removes a waker registered by [`register_waker`](Self::register_waker).
    pub(crate) fn unregister_waker(&self, key: usize) {
        let mut inner = lock(&self.inner);
        // Once done, the wakers were taken out and keys are meaningless (N4).
        if self.is_done() {
            return;
        }
        let removed = extra_mut(&mut inner).and_then(|e| e.wakers.try_remove(key));
        drop(inner);
        drop(removed); // the executor's code: with no lock held (N6)
    }
}
