//! tokio-util integration (feature `tokio-util`): a [`Context`] and a
//! [`CancellationToken`] that cancel each other, with no thread, no task and no polling.
//!
//! - Context → token: [`child_token`] and [`cancel_on_done`] register an
//!   [`on_cancel`](Context::on_cancel) callback that cancels the token, on the thread that
//!   cancels the context (ctxkit's timer thread, for a deadline), before its `cancel()`
//!   returns. (A thread blocked in `ctx.wait()` may wake a moment before that.)
//! - Token → context: [`with_token`] derives a context that is cancelled when the token is.
//!   A token offers no callback, only futures, so the context registers a waker of its own
//!   with the token's `cancelled()` future (polled once, at creation, and never by a
//!   runtime): the token's `cancel()` wakes it, and the waker cancels the context right
//!   there, on the token's cancelling thread, before that `cancel()` returns.
//!
//! Neither direction keeps the other side alive: dropping a context frees it even if its
//! token lives on (and stops watching the token), and a token keeps a context alive only
//! while callbacks registered on that context wait for the token to run them
//! ([S19](crate::guarantees#s19)).
//!
//! # Examples
//!
//! ```
//! use ctxkit::Context;
//! use tokio_util::sync::CancellationToken;
//!
//! // A library that takes a token, driven from a ctxkit context:
//! let (ctx, handle) = Context::background().with_cancel();
//! let token = ctxkit::tokio_util::child_token(&ctx);
//! handle.cancel();
//! assert!(token.is_cancelled());
//!
//! // A token from a server's shutdown logic, turned into a context for a request:
//! let shutdown = CancellationToken::new();
//! let (request, _h) = ctxkit::tokio_util::with_token(&Context::background(), &shutdown);
//! shutdown.cancel();
//! assert_eq!(request.err(), Some(ctxkit::Error::Canceled));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context as TaskContext, Wake, Waker};

use ::tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::handle::WeakCancelHandle;
use crate::{AfterFunc, CancelHandle, Context};

/// A new token that is cancelled when `ctx` is done (at once if it is done already).
///
/// The registration holds a clone of the token until `ctx` is done or can no longer be done
/// (then it is dropped, and the token is not cancelled). For many short-lived tokens on a
/// long-lived context, prefer [`cancel_on_done`] and `stop()` each registration when its
/// token is no longer needed.
///
/// ```
/// let (ctx, handle) = ctxkit::Context::background().with_cancel();
/// let token = ctxkit::tokio_util::child_token(&ctx);
/// handle.cancel();
/// assert!(token.is_cancelled()); // cancelled before `cancel` returned
/// ```
pub fn child_token(ctx: &Context) -> CancellationToken {
    let token = CancellationToken::new();
    // Dropping the registration leaves it in place (S19): it lasts as long as `ctx` can
    // be done.
    drop(cancel_on_done(ctx, &token));
    token
}

/// Cancels `token` when `ctx` is done (at once if it is done already), from the thread that
/// cancels `ctx`, before its `cancel()` returns. [`AfterFunc::stop`] unlinks them and drops
/// the clone of the token that the registration holds.
///
/// ```
/// use tokio_util::sync::CancellationToken;
/// let (ctx, handle) = ctxkit::Context::background().with_cancel();
/// let token = CancellationToken::new();
/// let link = ctxkit::tokio_util::cancel_on_done(&ctx, &token);
/// assert!(link.stop()); // the request finished first
/// handle.cancel();
/// assert!(!token.is_cancelled());
/// ```
pub fn cancel_on_done(ctx: &Context, token: &CancellationToken) -> AfterFunc {
    let token = token.clone();
    ctx.on_cancel(move || token.cancel())
}

/// A child of `parent` that is also cancelled, with [`Error::Canceled`](crate::Error), when
/// `token` is cancelled (at creation if it is already).
///
/// The context is cancelled on the thread that cancels the token, before the token's
/// `cancel()` returns; so `on_cancel` callbacks of the context (and of its descendants) run
/// there too. The token holds the context only weakly: once every clone of the context (and
/// of contexts derived from it) and its handle are dropped, the context is freed and stops
/// watching the token ([S22](crate::guarantees#s22)) — unless callbacks registered on it are
/// still pending, which the token must still be able to run
/// ([S19](crate::guarantees#s19)): then the context lives until the token is cancelled or
/// the callbacks are stopped.
///
/// ```
/// use ctxkit::Context;
/// use tokio_util::sync::CancellationToken;
///
/// let token = CancellationToken::new();
/// let (ctx, _h) = ctxkit::tokio_util::with_token(&Context::background(), &token);
/// let worker = {
///     let ctx = ctx.clone();
///     std::thread::spawn(move || ctx.wait())
/// };
/// token.cancel();
/// assert_eq!(worker.join().unwrap(), ctxkit::Error::Canceled);
/// ```
pub fn with_token(parent: &Context, token: &CancellationToken) -> (Context, CancelHandle) {
    let (ctx, handle) = parent.with_cancel();
    if ctx.is_done() {
        return (ctx, handle);
    }
    let watch = Arc::new(Watch {
        token: token.clone(),
        handle: handle.downgrade(),
        cancelled: Mutex::new(None),
    });
    let mut cancelled = Box::pin(token.clone().cancelled_owned());
    // The waker holds the watch weakly and the watch holds the context weakly: the token's
    // waiter list owns the waker, the context owns the watch, so the token never keeps the
    // context alive by itself.
    let waker = Waker::from(Arc::new(WatchWaker(Arc::downgrade(&watch))));
    if cancelled
        .as_mut()
        .poll(&mut TaskContext::from_waker(&waker))
        .is_ready()
    {
        handle.cancel();
        return (ctx, handle);
    }
    // A cancel between the poll and here wakes the waker, which finds the watch (we hold it)
    // and cancels: it does not need the future.
    *lock(&watch.cancelled) = Some(cancelled);
    handle.keep_canceller(Box::new(watch));
    (ctx, handle)
}

/// A context's registration with a token, owned by the context (`keep_canceller`).
struct Watch {
    token: CancellationToken,
    handle: WeakCancelHandle,
    /// The token's `cancelled()` future, polled once: while it lives, its waker is in the
    /// token's waiter list. Dropping it (with the watch) unregisters the waker.
    cancelled: Mutex<Option<Pin<Box<WaitForCancellationFutureOwned>>>>,
}

impl Watch {
    fn cancel(&self) {
        if let Some(handle) = self.handle.upgrade() {
            handle.cancel();
        }
    }
}

struct WatchWaker(Weak<Watch>);

impl Wake for WatchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Gone: the context was dropped; nothing to cancel.
        let Some(watch) = self.0.upgrade() else {
            return;
        };
        if watch.token.is_cancelled() {
            watch.cancel();
            return;
        }
        // Not cancelled (a wake-up tokio does not make today): register again.
        let waker = Waker::from(Arc::clone(self));
        let ready = {
            let mut cancelled = lock(&watch.cancelled);
            cancelled.as_mut().is_some_and(|fut| {
                fut.as_mut()
                    .poll(&mut TaskContext::from_waker(&waker))
                    .is_ready()
            })
        };
        if ready {
            watch.cancel(); // outside the lock: callbacks run in `cancel`
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
