//! Process-wide counters for leak tests (feature `diagnostics`).
//!
//! Every context that can be done, and every `without_cancel` context, is one node of a
//! context tree. [`live_nodes`] counts the nodes not yet freed: a test that drops everything
//! it made can check that the count returns to where it started ([S22](crate::guarantees#s22)).
//! [`live_by_site`] splits the count by the call site that made each node, to point at the
//! code that leaks.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LANES_MADE: AtomicUsize = AtomicUsize::new(0);

/// Live nodes per creation site, keyed by the site's address (a `Location` is a static).
type Sites = HashMap<usize, (&'static Location<'static>, usize)>;

fn sites() -> &'static Mutex<Sites> {
    static SITES: OnceLock<Mutex<Sites>> = OnceLock::new();
    SITES.get_or_init(Default::default)
}

fn key(site: &'static Location<'static>) -> usize {
    site as *const Location<'static> as usize
}

pub(crate) fn node_created(site: Option<&'static Location<'static>>) {
    LIVE.fetch_add(1, Ordering::Relaxed);
    if let Some(site) = site {
        let mut sites = sites().lock().unwrap_or_else(|e| e.into_inner());
        sites.entry(key(site)).or_insert((site, 0)).1 += 1;
    }
}

pub(crate) fn node_dropped(site: Option<&'static Location<'static>>) {
    LIVE.fetch_sub(1, Ordering::Relaxed);
    if let Some(site) = site {
        let mut sites = sites().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = sites.get_mut(&key(site)) {
            entry.1 -= 1;
            if entry.1 == 0 {
                sites.remove(&key(site));
            }
        }
    }
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

/// The context nodes alive in the process right now, counted by the call site that made
/// them (`with_cancel`, `with_timeout`, ... are `#[track_caller]`), most first. A site
/// whose count only grows while a program runs is where contexts are made and never
/// dropped.
///
/// ```
/// let (ctx, handle) = ctxkit::Context::background().with_cancel();
/// let here = (file!(), line!() - 1);
/// let sites = ctxkit::diagnostics::live_by_site();
/// assert!(sites.iter().any(|(site, n)| (site.file(), site.line()) == here && *n >= 1));
/// drop((ctx, handle));
/// ```
pub fn live_by_site() -> Vec<(&'static Location<'static>, usize)> {
    let sites = sites().lock().unwrap_or_else(|e| e.into_inner());
    let mut list: Vec<_> = sites.values().copied().collect();
    list.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
    });
    list
}

pub(crate) fn lanes_made() {
    LANES_MADE.fetch_add(1, Ordering::Relaxed);
}

/// How many contexts were given child lists of their own per core since the process
/// started: a context many threads derive children from at once gets them, so that those
/// threads no longer take one lock to link and unlink their children. A test of such a
/// shape can check that it covers them; whether a given run made any depends on how often
/// the threads met on the context's lock.
///
/// ```
/// use ctxkit::Context;
///
/// let before = ctxkit::diagnostics::contexts_with_lanes();
/// let (server, shutdown) = Context::background().with_cancel();
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| {
///             for _ in 0..10_000 {
///                 let (request, done) = server.with_cancel();
///                 assert!(!request.is_done());
///                 done.cancel();
///             }
///         });
///     }
/// });
/// shutdown.cancel();
/// let made = ctxkit::diagnostics::contexts_with_lanes() - before;
/// assert!(made <= 1, "only `server` has children made by two threads at once");
/// ```
pub fn contexts_with_lanes() -> usize {
    LANES_MADE.load(Ordering::Relaxed)
}
