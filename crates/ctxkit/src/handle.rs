//! The right to cancel: [`CancelHandle`] and its drop guard, [`CancelGuard`].

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Weak};

use std::panic::Location;
use std::time::{Duration, Instant};

use crate::error::{BoxError, Cause};
use crate::origin::{Began, OriginKind};
use crate::time;
use crate::tree::Node;
use crate::Error;

/// Cancels the context it was returned with, and with it every descendant (Go's
/// `CancelFunc`).
///
/// Dropping a handle does **not** cancel; use [`drop_guard`](CancelHandle::drop_guard) for
/// Go's `defer cancel()`. A context whose handles and clones are all dropped is freed even if
/// it was never cancelled ([S22](crate::guarantees#s22)). Clones cancel the same context.
///
/// # Examples
///
/// ```
/// use ctxkit::{Context, Error};
///
/// let (parent, handle) = Context::background().with_cancel();
/// let (child, _child_handle) = parent.with_cancel();
/// handle.cancel();
/// assert_eq!(child.err(), Some(Error::Canceled));
/// ```
#[derive(Clone)]
pub struct CancelHandle {
    node: Arc<Node>,
}

impl CancelHandle {
    pub(crate) fn new(node: Arc<Node>) -> CancelHandle {
        CancelHandle { node }
    }

    /// Cancels the context with [`Error::Canceled`] (and that error as its cause). Idempotent
    /// and callable from any thread. When it returns, the context and all its descendants
    /// report done and every `on_cancel` callback has run ([S4](crate::guarantees#s4),
    /// [S20](crate::guarantees#s20)). Waiters are woken;
    /// `after_func` callbacks are started but not waited for.
    ///
    /// ```
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// handle.cancel();
    /// handle.cancel(); // no effect
    /// assert!(ctx.is_done());
    /// ```
    #[track_caller]
    pub fn cancel(&self) {
        self.cancel_as(Began::here(OriginKind::Cancel));
    }

    /// [`cancel`](Self::cancel), charged to `began` ([S27](crate::guarantees#s27)).
    pub(crate) fn cancel_as(&self, began: Began) {
        let cause = Some(Cause::sentinel(Error::Canceled));
        self.node.cancel(Error::Canceled, cause, began);
    }

    /// Cancels with [`Error::Canceled`] and `cause` as the context's
    /// [`cause`](crate::Context::cause) (Go's `CancelCauseFunc`). If the context is already
    /// done, nothing changes: the first cause wins ([S8](crate::guarantees#s8)). Either way,
    /// as with [`cancel`](Self::cancel), it returns once the context and all its descendants
    /// report done, also when another thread's cancellation got there first
    /// ([S4](crate::guarantees#s4)).
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    /// let (ctx, handle) = Context::background().with_cancel();
    /// handle.cancel_with_cause("backend unavailable");
    /// assert_eq!(ctx.err(), Some(Error::Canceled));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "backend unavailable");
    /// ```
    #[track_caller]
    pub fn cancel_with_cause(&self, cause: impl Into<BoxError>) {
        self.cancel_with_cause_as(cause, Began::here(OriginKind::Cancel));
    }

    /// [`cancel_with_cause`](Self::cancel_with_cause), charged to `began`
    /// ([S27](crate::guarantees#s27)).
    pub(crate) fn cancel_with_cause_as(&self, cause: impl Into<BoxError>, began: Began) {
        if self.node.is_done() {
            // The first cause stays (S8), so this one is not even boxed. The cancellation that
            // got here first may still be walking the subtree: return once it has (S4, N1b).
            self.node.await_walk();
            return;
        }
        let cause = Some(Cause::custom(cause.into()));
        self.node.cancel(Error::Canceled, cause, began);
    }

    /// Moves the context's own deadline to `deadline`, earlier or later
    /// ([S33](crate::guarantees#s33)); a context made by `with_cancel` gains one. Returns
    /// false, changing nothing, if the context is done.
    ///
    /// - [`deadline()`](crate::Context::deadline) of the context and of its descendants
    ///   reflects the move at once (still the earliest of its ancestors',
    ///   [S10](crate::guarantees#s10)).
    /// - A deadline already past cancels at once with [`Error::DeadlineExceeded`]; one moved
    ///   later never fires at the old time. A `with_*_cause` context keeps its cause.
    /// - A child never has a deadline later than its parent's: a child made with a later
    ///   deadline than its parent had at the time has none of its own
    ///   ([S12](crate::guarantees#s12)), and does not get it back when the parent's deadline
    ///   moves later; it simply follows the parent.
    /// - The origin of its expiry is this call's site ([S27](crate::guarantees#s27)).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ctxkit::{Context, Error};
    /// let (ctx, handle) = Context::background().with_timeout(Duration::from_millis(10));
    /// let later = Instant::now() + Duration::from_secs(60);
    /// assert!(handle.set_deadline(later));
    /// assert_eq!(ctx.deadline(), Some(later));
    /// assert!(handle.set_deadline(Instant::now())); // now past: done at once
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// assert!(!handle.set_deadline(later)); // done: nothing changes
    /// ```
    #[track_caller]
    pub fn set_deadline(&self, deadline: Instant) -> bool {
        let at = time::to_nanos(deadline);
        self.node.set_deadline(at, None, Location::caller())
    }

    /// [`set_deadline`](Self::set_deadline) to `timeout` from now on the context's clock
    /// (its [`ManualClock`](crate::ManualClock), if it has one). A timeout past the end of
    /// time means no deadline ([S13](crate::guarantees#s13)). Cheap enough to call on every
    /// message of an idle timeout: moving a deadline later allocates nothing and wakes no
    /// timer thread.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, Error, ManualClock};
    /// let clock = ManualClock::new();
    /// let (conn, idle) = Context::background().with_clock(&clock).with_cancel();
    /// for _message in 0..3 {
    ///     idle.set_timeout(Duration::from_secs(30)); // pushed back on every message
    ///     clock.advance(Duration::from_secs(20));
    /// }
    /// assert!(!conn.is_done());
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(conn.err(), Some(Error::DeadlineExceeded));
    /// ```
    #[track_caller]
    pub fn set_timeout(&self, timeout: Duration) -> bool {
        let now = self.node.clock_now();
        let at = time::add_duration(now, timeout);
        self.node.set_deadline(at, Some(now), Location::caller())
    }

    /// Turns the handle into a guard that cancels when dropped (Go's `defer cancel()`).
    ///
    /// ```
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// {
    ///     let _guard = handle.drop_guard();
    /// }
    /// assert!(ctx.is_done());
    /// ```
    #[track_caller]
    pub fn drop_guard(self) -> CancelGuard {
        CancelGuard {
            handle: Some(self),
            at: Location::caller(),
        }
    }
}

// Crate-internal: for integrations that cancel a context from outside the tree
// (`ctxkit::tokio_util::with_token`).
#[cfg_attr(not(feature = "tokio-util"), allow(dead_code))]
impl CancelHandle {
    /// A handle that does not keep the context alive.
    pub(crate) fn downgrade(&self) -> WeakCancelHandle {
        WeakCancelHandle(Arc::downgrade(&self.node))
    }

    /// Keeps `canceller` (what cancels this context from outside, holding only a
    /// [`WeakCancelHandle`]) for as long as the context lives, and keeps the context alive
    /// while callbacks are pending on it, so that `canceller` can still run them
    /// ([S19](crate::guarantees#s19)). Returns `false`, keeping nothing, if the context is
    /// done already.
    pub(crate) fn keep_canceller(&self, canceller: Box<dyn Any + Send + Sync>) -> bool {
        self.node.set_canceller(canceller)
    }
}

/// A [`CancelHandle`] that does not keep its context alive.
#[cfg_attr(not(feature = "tokio-util"), allow(dead_code))]
pub(crate) struct WeakCancelHandle(Weak<Node>);

#[cfg_attr(not(feature = "tokio-util"), allow(dead_code))]
impl WeakCancelHandle {
    /// The handle, if the context is still alive.
    pub(crate) fn upgrade(&self) -> Option<CancelHandle> {
        self.0.upgrade().map(CancelHandle::new)
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("err", &self.node.err())
            .finish()
    }
}

/// Cancels its context when dropped. Made by [`CancelHandle::drop_guard`].
///
/// # Examples
///
/// ```
/// use ctxkit::Context;
///
/// let (ctx, handle) = Context::background().with_cancel();
/// let guard = handle.drop_guard();
/// let handle = guard.disarm(); // keep the context alive past this scope
/// assert!(!ctx.is_done());
/// # drop(handle);
/// ```
#[must_use = "a CancelGuard cancels as soon as it is dropped"]
pub struct CancelGuard {
    handle: Option<CancelHandle>,
    /// Where [`drop_guard`](CancelHandle::drop_guard) was called: the origin of the
    /// cancellation when the guard is dropped ([S27](crate::guarantees#s27)).
    at: &'static Location<'static>,
}

impl CancelGuard {
    /// Gives the handle back without cancelling.
    ///
    /// ```
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// let handle = handle.drop_guard().disarm();
    /// assert!(!ctx.is_done());
    /// handle.cancel();
    /// assert!(ctx.is_done());
    /// ```
    pub fn disarm(mut self) -> CancelHandle {
        self.handle
            .take()
            .expect("a guard holds its handle until dropped")
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.cancel_as(Began {
                kind: OriginKind::Guard,
                at: self.at,
            });
        }
    }
}

impl fmt::Debug for CancelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelGuard").finish_non_exhaustive()
    }
}
