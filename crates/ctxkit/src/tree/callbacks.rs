//! `after_func` and `on_cancel` registrations on a node, and the pin that keeps a node with
//! its own timer alive for them (N8, [S19](crate::guarantees#s19)).

use std::sync::Arc;

use super::node::{extra, extra_mut, MergeParent, Node};
use crate::callback::{self, Home, Reg};
use crate::sync::lock;

impl Node {
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
    /// ([S19](crate::guarantees#s19)). A node with its own timer, or with a canceller outside
    /// the tree, is pinned while callbacks are pending on it (N8).
    fn add_regs(self: &Arc<Self>, regs: &[Arc<Reg>]) -> bool {
        let mut inner = lock(&self.inner);
        if self.state.claim().is_some() {
            return false;
        }
        let b = extra(&mut inner);
        if b.regs.len() + regs.len() > b.regs.capacity() {
            b.regs.retain(|r| r.is_pending());
        }
        b.regs.extend_from_slice(regs);
        b.pending += regs.len();
        let fires = b.canceller.is_some() || self.timer_queue().is_some_and(|q| q.can_fire());
        if fires && b.pin.is_none() {
            b.pin = Some(Arc::clone(self));
        }
        true
    }

    /// Lets go of the pin: this node's deadline can no longer fire (T5).
    pub(super) fn unpin(&self) {
        let pin = extra_mut(&mut lock(&self.inner)).and_then(|e| e.pin.take());
        drop(pin); // may be the last reference: dropped with no lock held (N6)
    }

    /// The callbacks of a node dropped before it was done go to the parents that can still
    /// cancel it: they run when one of them is done ([S19](crate::guarantees#s19)), or are
    /// dropped with the last of them (C3). A parent already done fires them now.
    pub(super) fn hand_to_parents(&self, pending: Vec<Arc<Reg>>, merge: Option<&MergeParent>) {
        let parents = [Some(&self.parent), merge.map(|m| &m.pair)];
        for p in parents
            .into_iter()
            .flatten()
            .filter_map(|p| p.cancel_node())
        {
            if !p.add_regs(&pending) {
                callback::fire_all_resuming(pending);
                return;
            }
            pending.iter().for_each(|reg| reg.add_home(p));
        }
    }
}

impl Home for Node {
    fn is_done(&self) -> bool {
        self.state.is_done()
    }

    /// Once no registration is pending, the node no longer needs to outlive its handles and
    /// clones, so its pin is let go ([S22](crate::guarantees#s22)).
    fn registration_settled(&self) {
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
