//! [`ContextError`]: the error of a call cut short by its context, saying why.

use std::fmt;
use std::time::Duration;

use ctxkit::{Cause, Context, Error, Origin};

/// The error of an outgoing call that its [`Context`] cut short: the context was done before
/// the call was sent, while it ran, or while its response body was read (or, with
/// [`ClientLayer::headroom`](crate::ClientLayer::headroom), too little of its time was left
/// to send it).
///
/// It tells what the context tells: [`err`](ContextError::err),
/// [`cause`](ContextError::cause) and [`origin`](ContextError::origin), the one line that
/// says where the cancellation began (and is its `Display`). When the call had failed
/// on its own as the context ended (a connection reset at the deadline, say), that error is
/// its [`source`](std::error::Error::source).
///
/// [`ClientLayer`](crate::ClientLayer) fails plain HTTP calls with it (boxed: downcast the
/// [`BoxError`](crate::BoxError)); reqwest calls give it in
/// `SendError::Context` (feature `reqwest`); gRPC calls fail with a `tonic::Status`
/// whose message is this error's text, and whose chain of sources ends in it.
///
/// ```
/// use ctxkit::{Context, Error};
/// use ctxkit_tower::{ClientLayer, ContextError, RequestContextExt};
/// use tower::ServiceExt;
/// use tower_layer::Layer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let never = tower::service_fn(|_req: http::Request<()>| async move {
///     std::future::pending::<Result<http::Response<()>, std::convert::Infallible>>().await
/// });
/// let client = ClientLayer::new().layer(never);
/// let (ctx, cancel) = Context::background().with_name("checkout").with_cancel();
/// tokio::spawn(async move { cancel.cancel_with_cause(std::io::Error::other("user left")) });
/// let err = client.oneshot(http::Request::new(()).with_context(ctx)).await.unwrap_err();
/// let err = err.downcast_ref::<ContextError>().unwrap();
/// assert_eq!(err.err(), Error::Canceled);
/// assert_eq!(err.cause().unwrap().to_string(), "user left");
/// assert_eq!(err.origin().unwrap().context_name(), Some("checkout"));
/// assert!(err.to_string().ends_with(r#"in "checkout": user left"#), "{err}");
/// # }
/// ```
pub struct ContextError {
    err: Error,
    /// The context whose end cut the call short (the call's own, a child of the request's
    /// context): its cause and origin are read from it.
    ctx: Context,
    /// Set when the call was not sent for want of this much time.
    headroom: Option<Headroom>,
    source: Option<crate::BoxError>,
}

/// Why a call ended with time left on its context, for its
/// [`headroom`](crate::ClientLayer::headroom).
#[derive(Clone, Copy)]
enum Headroom {
    /// Not sent: no more than the headroom was left.
    NotSent(Duration),
    /// Sent the time left less the headroom, which ran out.
    Spent(Duration),
}

impl ContextError {
    pub(crate) fn new(ctx: &Context, err: Error, source: Option<crate::BoxError>) -> ContextError {
        ContextError {
            err,
            ctx: ctx.clone(),
            headroom: None,
            source,
        }
    }

    /// The call was not sent: no more than `headroom` of `ctx`'s time was left.
    pub(crate) fn headroom(ctx: &Context, headroom: Duration) -> ContextError {
        ContextError {
            err: Error::DeadlineExceeded,
            ctx: ctx.clone(),
            headroom: Some(Headroom::NotSent(headroom)),
            source: None,
        }
    }

    /// The call was sent `ctx`'s time left less `headroom`, and that ran out: the server's
    /// deadline, with `headroom` still left on `ctx`.
    pub(crate) fn budget_spent(
        ctx: &Context,
        headroom: Duration,
        source: Option<crate::BoxError>,
    ) -> ContextError {
        ContextError {
            err: Error::DeadlineExceeded,
            ctx: ctx.clone(),
            headroom: Some(Headroom::Spent(headroom)),
            source,
        }
    }

    /// Why the context ended: `Canceled` or `DeadlineExceeded` (the context's
    /// [`err`](Context::err)). A call whose deadline passed is `DeadlineExceeded` even in the
    /// moment before the context's timer says so.
    pub fn err(&self) -> Error {
        self.err
    }

    /// The context's [`cause`](Context::cause): the error it was cancelled with (e.g. a
    /// server's shutdown cause), or the sentinel of [`err`](ContextError::err). `None` when
    /// the context is not done: its deadline had passed by the layer's clock a moment before
    /// its timer fired, or the call was not sent for its headroom, or the time sent to the
    /// server (its time left less the headroom) ran out.
    pub fn cause(&self) -> Option<Cause> {
        self.ctx.cause()
    }

    /// The context's [`origin`](Context::origin): what ended it, at which call site, on
    /// which thread, in which named context. `None` when the context is not done (see
    /// [`cause`](ContextError::cause)).
    pub fn origin(&self) -> Option<Origin> {
        self.ctx.origin()
    }
}

impl fmt::Display for ContextError {
    /// The origin's line, e.g. `deadline exceeded: set at src/api.rs:40:9 (250ms) in "GET
    /// /orders"`; without an origin, the err (`context deadline exceeded`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.headroom {
            Some(Headroom::NotSent(headroom)) => {
                return write!(
                    f,
                    "{}: not sent, no more than the headroom of {headroom:?} left",
                    self.err
                )
            }
            Some(Headroom::Spent(headroom)) => {
                return write!(
                    f,
                    "{}: the time sent to the server ran out, the headroom of {headroom:?} \
                     left",
                    self.err
                )
            }
            None => {}
        }
        match self.origin() {
            Some(origin) if origin.err() == self.err => fmt::Display::fmt(&origin, f),
            _ => fmt::Display::fmt(&self.err, f),
        }
    }
}

impl fmt::Debug for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextError")
            .field("err", &self.err)
            .field("origin", &self.origin().map(|o| o.to_string()))
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for ContextError {
    /// The error the call failed with as its context ended, if it failed on its own.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
