//! Process-wide counters for leak tests (feature `diagnostics`).
//!
//! Every context that can be done, and every `without_cancel` context, is one node of a
//! context tree. [`live_nodes`] counts the nodes not yet freed: a test that drops everything
//! it made can check that the count returns to where it started ([S22](crate::guarantees#s22)).

use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn node_created() {
    LIVE.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn node_dropped() {
    LIVE.fetch_sub(1, Ordering::Relaxed);
}

/// The number of context nodes alive in the process right now.
///
/// ```
/// let before = ctxkit::diagnostics::live_nodes();
/// let (ctx, handle) = ctxkit::Context::background().with_cancel();
/// assert!(ctxkit::diagnostics::live_nodes() >= before + 1);
/// drop((ctx, handle));
/// ```
pub fn live_nodes() -> usize {
    LIVE.load(Ordering::Relaxed)
}
