//! Origins (N10, [S26–S29](crate::guarantees#s26)): recording where a cancellation began, on
//! the node where it began only, and finding it again from any node it reached.

use std::panic::Location;
use std::sync::Arc;

use super::node::{extra, extra_ref, Kind, Node};
use super::Pair;
use crate::callback::Callbacks;
use crate::error::Cause;
use crate::origin::{self, Began, Origin, OriginKind};
use crate::sync::{lock, Ordering};
use crate::time;
use crate::Error;

impl Node {
    /// Writes the origin of a cancellation that began at this node (N10): the thread first,
    /// then the location, which a reader waits for.
    pub(super) fn record_origin(&self, began: Began) {
        let tag = origin::thread_tag();
        self.origin_thread
            .store(tag, std::sync::atomic::Ordering::Relaxed);
        // `AtomicCell` stores with `Release` and loads with `Acquire` (sequentially
        // consistent, in fact): the thread written above is seen with the location.
        self.origin_at.store(Some(began.at));
    }

    /// What starts this node's own deadline when it passes: charged to the call that set it.
    #[track_caller]
    pub(super) fn deadline_began(&self) -> Began {
        Began {
            kind: OriginKind::Deadline,
            at: self.deadline_set_at().unwrap_or_else(Location::caller),
        }
    }

    /// Cancels a merge whose other parent `from` was done when the merge was linked to it:
    /// the merge reports `from`'s origin, not one of its own (N10).
    pub(super) fn reached_through(
        self: &Arc<Self>,
        from: &Arc<Node>,
        err: Error,
        cause: Option<Cause>,
    ) {
        {
            let mut inner = lock(&self.inner);
            if self.state.claim().is_none() {
                extra(&mut inner).reached_from = Some(Arc::downgrade(from));
            }
        }
        self.walk(err, cause, Callbacks::Inline, None);
    }

    /// Where the cancellation that made this node done began ([S26](crate::guarantees#s26)):
    /// the nearest node, going up the way the cancellation came, that recorded an origin.
    pub(crate) fn origin(self: &Arc<Self>) -> Option<Origin> {
        let err = self.err()?;
        let mut node = Arc::clone(self);
        loop {
            if let Some(kind) = node.state.began() {
                return Some(node.origin_here(kind, err));
            }
            let from = match node.kind() {
                Kind::Merge => extra_ref(&lock(&node.inner))
                    .and_then(|e| e.reached_from.as_ref())
                    .and_then(|w| w.upgrade()),
                _ => None,
            };
            // N4: a node reached by a cancellation was reached through a parent that is done.
            match from.or_else(|| node.parent.node.clone()) {
                Some(parent) if parent.is_done() => node = parent,
                _ => return None, // not reachable: every done node has an origin or a way to one
            }
        }
    }

    /// The origin recorded on this node, where a cancellation of `kind` began (N10).
    fn origin_here(&self, kind: OriginKind, err: Error) -> Origin {
        let location = loop {
            if let Some(at) = self.origin_at.load() {
                break at;
            }
            // Done by a lock-free swap a moment ago: its canceller writes the origin next.
            crate::sync::spin();
        };
        let tag = self
            .origin_thread
            .load(std::sync::atomic::Ordering::Relaxed);
        let thread_name = origin::thread_name(tag);
        let cause = self.cause().filter(|c| !c.is_sentinel(err));
        let budget = match kind {
            OriginKind::Deadline
                if self.parent.is_real_time()
                    && self.marks.load(Ordering::Acquire) & super::node::MOVED == 0 =>
            {
                let ms = time::to_coarse(self.deadline()).wrapping_sub(self.born);
                Some(std::time::Duration::from_millis(u64::from(ms)))
            }
            _ => None,
        };
        Origin::new(origin::Data {
            kind,
            err,
            location: Some(location),
            context_name: self.parent.name().map(super::Name::to_cow),
            thread_name,
            cause,
            budget,
        })
    }
}

impl Pair {
    /// The name visible at this context ([S28](crate::guarantees#s28)).
    pub(crate) fn name(&self) -> Option<&super::Name> {
        self.find(super::name_key())?.downcast_ref()
    }
}

#[cfg(feature = "tracing")]
impl Node {
    /// One `tracing` event for a cancellation that began at this node (not one per
    /// descendant). On the timer's thread ([`Callbacks::Pool`]) the subscriber, user code,
    /// runs on the callback pool instead (T4).
    pub(super) fn trace_origin(self: &Arc<Self>, callbacks: Callbacks) {
        if !tracing::enabled!(target: "ctxkit", tracing::Level::DEBUG) {
            return;
        }
        match callbacks {
            Callbacks::Inline => self.emit_origin(),
            Callbacks::Pool => {
                let node = Arc::clone(self);
                crate::callback::execute(
                    Box::new(move || node.emit_origin()),
                    crate::callback::Priority::Normal,
                );
            }
        }
    }

    fn emit_origin(&self) {
        let (Some(err), Some(kind)) = (self.err(), self.state.began()) else {
            return;
        };
        let origin = self.origin_here(kind, err);
        tracing::debug!(
            target: "ctxkit",
            err = %origin.err(),
            cause = origin.cause().map(tracing::field::display),
            origin.kind = ?origin.kind(),
            origin.location = origin.location().map(tracing::field::display),
            origin.thread = origin.thread_name(),
            context.name = origin.context_name(),
            "{origin}"
        );
    }
}
