//! The client side: [`ClientLayer`] carries a request's [`Context`] to the server and stops
//! the call when the context is done.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use ctxkit::{Context, Done, Error};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::codec;
use crate::error::ContextError;
use crate::server::{is_grpc, GRPC_TIMEOUT};

/// A boxed error, as tower and tonic pass them around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Debug)]
struct Config {
    ms_header: Option<HeaderName>,
    headroom: Duration,
    slack: Duration,
    call_contexts: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ms_header: None,
            headroom: Duration::ZERO,
            slack: DEFAULT_SLACK,
            call_contexts: true,
        }
    }
}

/// The default [`ClientLayer::deadline_slack`].
const DEFAULT_SLACK: Duration = Duration::from_millis(20);

/// A [`tower::Layer`](tower_layer::Layer) for HTTP clients (a tonic `Channel`, a hyper
/// client) that honours the [`Context`] each request carries (set with
/// [`RequestContextExt`](crate::RequestContextExt)):
///
/// - a context that is already done fails the call at once, without sending it;
/// - the time left goes to the server: as `grpc-timeout` for gRPC (rounded up, never
///   shortened; a smaller `grpc-timeout` already on the request is kept), and for plain HTTP
///   as the header set with [`timeout_ms_header`](ClientLayer::timeout_ms_header), if any;
/// - the call (and the response body) race `ctx.done()`: cancelling the context drops the
///   call, which resets the HTTP/2 stream or closes the HTTP/1.1 connection. At the
///   deadline, the call (or a body still waiting for data) fails at once with
///   `DEADLINE_EXCEEDED` too, but the stream is reset only
///   [`deadline_slack`](ClientLayer::deadline_slack) later, when the server was sent the
///   deadline: the server's own copy of it fires first, so its handler sees its deadline
///   (grpc-go: `context.DeadlineExceeded`), not a cancel;
/// - once the deadline has passed, a failure or a gRPC `CANCELLED` status (what tonic reports
///   for a timeout) becomes `DEADLINE_EXCEEDED`.
///
/// Errors are boxed: a done context fails a gRPC call with a `tonic::Status`
/// (`DEADLINE_EXCEEDED` or `CANCELLED`, with the feature `tonic` or `tonic-0_13`; with both,
/// a Status of either version is found by that version's `Status::from_error`) whose
/// message says why (the context's origin, with its cause) and whose chain of sources ends
/// in a [`ContextError`](crate::ContextError); any other call fails with a
/// [`ContextError`](crate::ContextError) itself: its `err()`, `cause()` and `origin()`, and
/// as its `source()` the error the call failed with, if it failed on its own as the context
/// ended. Requests without a context pass through untouched.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ctxkit::Context;
/// use ctxkit_tower::{ClientLayer, RequestContextExt};
/// use tower::ServiceExt;
/// use tower_layer::Layer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // A stand-in for a hyper client or a tonic Channel: shows the header it was sent.
/// let inner = tower::service_fn(|req: http::Request<()>| async move {
///     let sent = req.headers()["x-timeout-ms"].to_str().unwrap().to_owned();
///     Ok::<_, std::convert::Infallible>(http::Response::new(sent))
/// });
/// let client = ClientLayer::new().timeout_ms_header("x-timeout-ms").layer(inner);
///
/// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(2));
/// let res = client.oneshot(http::Request::new(()).with_context(ctx)).await.unwrap();
/// let sent: u64 = res.body().get_ref().unwrap().parse().unwrap();
/// assert!(sent > 1900 && sent <= 2000);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientLayer {
    config: Arc<Config>,
}

impl ClientLayer {
    /// A layer that sends `grpc-timeout` on gRPC calls and no timeout header on plain HTTP.
    pub fn new() -> ClientLayer {
        ClientLayer::default()
    }

    /// Send the time left on plain HTTP requests as whole milliseconds (rounded up) in the
    /// header `name`, e.g. `connect-timeout-ms` or `x-timeout-ms`.
    ///
    /// # Panics
    /// If `name` is not a valid header name.
    pub fn timeout_ms_header(mut self, name: &str) -> ClientLayer {
        let name = HeaderName::try_from(name).expect("a valid header name");
        Arc::make_mut(&mut self.config).ms_header = Some(name);
        self
    }

    /// Keep `headroom` of the context's time for the caller: the server is sent the time left
    /// less `headroom`, so its answer (even its `DEADLINE_EXCEEDED`) arrives while the caller
    /// still has about `headroom` to use it; and a call with no more than `headroom` left
    /// fails at once, without being sent, with `DEADLINE_EXCEEDED` (a `tonic::Status` for
    /// gRPC, else a [`ContextError`](crate::ContextError) whose `err()` is
    /// [`ctxkit::Error::DeadlineExceeded`]). A plain HTTP call runs until the context's own
    /// deadline, so that the server's answer reaches the caller. A gRPC call ends at the time
    /// it was sent, as the channel enforces it (tonic's does): it fails with
    /// `DEADLINE_EXCEEDED` saying that the time sent to the server ran out, and, like a call
    /// at its deadline, its stream is reset only
    /// [`deadline_slack`](ClientLayer::deadline_slack) later, so that the server sees its own
    /// deadline. Default: none.
    ///
    /// With [`ServerLayer::min_budget`](crate::ServerLayer::min_budget) on the next service,
    /// a chain A → B → C spends its time where it can still be used: see the example there.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::Context;
    /// use ctxkit_tower::{ClientLayer, RequestContextExt};
    /// use tower::ServiceExt;
    /// use tower_layer::Layer;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let inner = tower::service_fn(|req: http::Request<()>| async move {
    ///     let sent = req.headers()["x-timeout-ms"].to_str().unwrap().to_owned();
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(sent))
    /// });
    /// let client = ClientLayer::new()
    ///     .timeout_ms_header("x-timeout-ms")
    ///     .headroom(Duration::from_millis(300))
    ///     .layer(inner);
    ///
    /// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(1));
    /// let res = client.clone().oneshot(http::Request::new(()).with_context(ctx)).await.unwrap();
    /// let sent: u64 = res.body().get_ref().unwrap().parse().unwrap();
    /// assert!(sent > 600 && sent <= 700); // 1 s less the 300 ms kept
    ///
    /// let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(200));
    /// let err = client.oneshot(http::Request::new(()).with_context(ctx)).await.unwrap_err();
    /// let err = err.downcast_ref::<ctxkit_tower::ContextError>().unwrap();
    /// assert_eq!(err.err(), ctxkit::Error::DeadlineExceeded); // not sent
    /// # }
    /// ```
    pub fn headroom(mut self, headroom: Duration) -> ClientLayer {
        Arc::make_mut(&mut self.config).headroom = headroom;
        self
    }
}

impl ClientLayer {
    /// How long after a deadline the call is reset, when the server was sent the deadline
    /// (gRPC, or the header of [`timeout_ms_header`](ClientLayer::timeout_ms_header)).
    /// Default: 20 ms; use at least the one-way network latency. The caller sees nothing of
    /// it: the call, or a response body still waiting for data, fails with
    /// `DEADLINE_EXCEEDED` at the deadline; only the reset of the stream (or the close of an
    /// HTTP/1.1 connection) waits, on ctxkit's timer thread.
    ///
    /// The server started its copy of the deadline when the request arrived, a network
    /// transit after the client started its own, so the server's fires that much later. A
    /// reset sent at the client's deadline arrives as the server's deadline is due, and a
    /// server that sees the reset first takes the call for a cancel: its handler's context
    /// ends `Canceled` (grpc-go: `context.Canceled`), and its logs and metrics count a
    /// cancel where a deadline passed. Delaying the reset lets the server's own deadline fire
    /// first. `Duration::ZERO` resets at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit_tower::ClientLayer;
    ///
    /// // A server in another region, about 40 ms away.
    /// let layer = ClientLayer::new().deadline_slack(Duration::from_millis(60));
    /// # drop(layer);
    /// ```
    pub fn deadline_slack(mut self, slack: Duration) -> ClientLayer {
        Arc::make_mut(&mut self.config).slack = slack;
        self
    }

    /// Whether each call gets a context of its own, a child of the request's named like a
    /// request (`GET /path`, or the gRPC method path), alive while the call and its response
    /// body are: what shows the call under its request in a
    /// [`Snapshot`](ctxkit::inspect::Snapshot) and on the live page, and where the origin of a
    /// call's error points. Default: yes. Without them, a call watches the request's context
    /// directly, which saves a context ([`Context::named_child`]: a name's layer, a node and
    /// its entry under the request) per call: about 2% of the requests per second of a small
    /// request on loopback (see BENCHMARKS.md); nothing else changes.
    ///
    /// ```
    /// use ctxkit_tower::ClientLayer;
    /// // A client whose calls need not show on the live page.
    /// let layer = ClientLayer::new().call_contexts(false);
    /// # drop(layer);
    /// ```
    pub fn call_contexts(mut self, on: bool) -> ClientLayer {
        Arc::make_mut(&mut self.config).call_contexts = on;
        self
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> ClientService<S> {
        ClientService {
            inner,
            config: Arc::clone(&self.config),
            ctx: None,
        }
    }
}

/// The service made by [`ClientLayer`].
#[derive(Clone, Debug)]
pub struct ClientService<S> {
    inner: S,
    config: Arc<Config>,
    /// The context of calls whose request carries none ([`ClientService::with_context`]).
    ctx: Option<Context>,
}

impl<S> ClientService<S> {
    /// This service, calling under `ctx`: a request that carries no context of its own
    /// ([`RequestContextExt`](crate::RequestContextExt)) is sent as if it carried `ctx`.
    ///
    /// The same as giving each request the context, without the cost: the first entry in a
    /// request's extensions makes `http` allocate a map, its table and the entry, three
    /// allocations per request (measured in BENCHMARKS.md), where a clone of this service
    /// with a context costs none. A tower service is cloned per call anyway.
    ///
    /// ```
    /// use ctxkit::Context;
    /// use ctxkit_tower::ClientLayer;
    /// use tower::{Layer, ServiceExt};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let echo = tower::service_fn(|req: http::Request<()>| async move {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// });
    /// let client = ClientLayer::new().layer(echo);
    /// let (ctx, cancel) = Context::background().with_cancel();
    /// cancel.cancel();
    /// // The call is not made: its context is done.
    /// let err = client.clone().with_context(ctx).oneshot(http::Request::new(())).await;
    /// assert!(err.is_err());
    /// # });
    /// ```
    pub fn with_context(mut self, ctx: Context) -> Self {
        self.ctx = Some(ctx);
        self
    }
}

/// Writes the time left on `ctx` into `headers` (`grpc-timeout` for gRPC, else the configured
/// millisecond header). Never lengthens a timeout already there.
#[cfg(any(feature = "reqwest", feature = "reqwest-0_12"))]
pub(crate) fn send_deadline(
    ctx: &Context,
    headers: &mut HeaderMap,
    grpc: bool,
    ms_header: Option<&HeaderName>,
    headroom: Duration,
) {
    if grpc || ms_header.is_some() {
        write_deadline(ctx.remaining(), headers, grpc, ms_header, headroom);
    }
}

/// [`send_deadline`], given the time left (`None`: no deadline).
fn write_deadline(
    left: Option<Duration>,
    headers: &mut HeaderMap,
    grpc: bool,
    ms_header: Option<&HeaderName>,
    headroom: Duration,
) {
    let Some(left) = left else {
        return;
    };
    let left = left.saturating_sub(headroom);
    if grpc {
        let existing = headers
            .get(&GRPC_TIMEOUT)
            .and_then(|v| codec::decode_grpc_timeout(v.as_bytes()).ok());
        if existing.is_some_and(|t| t <= left) {
            return;
        }
        let value = HeaderValue::try_from(codec::encode_grpc_timeout(left))
            .expect("digits and a unit are a valid header value");
        headers.insert(GRPC_TIMEOUT, value);
    } else if let Some(name) = ms_header {
        let value = HeaderValue::try_from(codec::encode_timeout_ms(left))
            .expect("digits are a valid header value");
        headers.insert(name.clone(), value);
    }
}

/// The context of one outgoing call: a child of the request's `ctx`, named like a request
/// (`GET /path`, or the gRPC method path), alive while the call and its response body are.
/// It is what shows the call under its request in a snapshot or on the live page.
pub(crate) fn call_context(
    ctx: &Context,
    method: &http::Method,
    uri: &http::Uri,
    grpc: bool,
) -> Context {
    // Done when `ctx` is; gone once the call and its body drop it.
    ctx.named_child(crate::name::request_name(method, uri, grpc))
}

/// The error for a call stopped because `ctx` is done (or its deadline passed): a
/// [`ContextError`], or for gRPC a `tonic::Status` whose message is its text and whose chain
/// of sources ends in it. `source` is the error the call failed with on its own, if any.
fn context_error(ctx: &Context, err: Error, grpc: bool, source: Option<BoxError>) -> BoxError {
    boxed(ContextError::new(ctx, err, source), grpc)
}

/// `error` as the call's error: itself, or for gRPC a `tonic::Status` whose message is its
/// text and whose chain of sources ends in it.
fn boxed(error: ContextError, grpc: bool) -> BoxError {
    #[cfg(any(feature = "tonic", feature = "tonic-0_13"))]
    if grpc {
        return grpc_status(error);
    }
    let _ = grpc;
    Box::new(error)
}

/// A `tonic::Status` of the version the call's channel speaks, with `error`'s text as its
/// message and `error` as its source. Which version that is, the layer cannot tell (it sees
/// only `http` types), so with both versions enabled the error is the current version's
/// `Status` with the previous version's as its source: each version's `Status::from_error`,
/// through which a generated client passes the layer's error, takes its own `Status` from
/// the error itself or from its chain of sources.
#[cfg(any(feature = "tonic", feature = "tonic-0_13"))]
fn grpc_status(error: ContextError) -> BoxError {
    let (err, message) = (error.err(), error.to_string());
    macro_rules! status {
        ($tonic:ident) => {
            match err {
                Error::DeadlineExceeded => $tonic::Status::deadline_exceeded(message.clone()),
                Error::Canceled => $tonic::Status::cancelled(message.clone()),
            }
        };
    }
    let error: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error);
    #[cfg(all(feature = "tonic", feature = "tonic-0_13"))]
    let status = {
        let mut previous = status!(tonic_0_13);
        previous.set_source(error);
        let mut status = status!(tonic);
        status.set_source(Arc::new(previous));
        status
    };
    #[cfg(all(feature = "tonic", not(feature = "tonic-0_13")))]
    let status = {
        let mut status = status!(tonic);
        status.set_source(error);
        status
    };
    #[cfg(not(feature = "tonic"))]
    let status = {
        let mut status = status!(tonic_0_13);
        status.set_source(error);
        status
    };
    Box::new(status)
}

/// The error for a call not sent because no more than `headroom` was left.
#[cold]
fn headroom_error(ctx: &Context, headroom: Duration, grpc: bool) -> BoxError {
    boxed(ContextError::headroom(ctx, headroom), grpc)
}

/// Whether the deadline has passed (the timer may not have fired yet).
fn deadline_passed(ctx: &Context) -> bool {
    ctx.err() == Some(Error::DeadlineExceeded) || ctx.remaining() == Some(Duration::ZERO)
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ClientService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Response<ClientBody<ResB>>;
    type Error = BoxError;
    type Future = ClientFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let grpc = is_grpc(req.headers());
        let headroom = self.config.headroom;
        // Whether the server is sent the deadline; if so, its own timer ends the call there.
        let sent = grpc || self.config.ms_header.is_some();
        // The request's context is only borrowed: what the call needs of it is taken here.
        let (watch, left) = match crate::ext::get(req.extensions()).or(self.ctx.as_ref()) {
            None => {
                return ClientFuture::new(Some(self.inner.call(req)), None, grpc, Duration::ZERO)
            }
            Some(ctx) => {
                if let Some(err) = ctx.err() {
                    return ClientFuture::failed(context_error(ctx, err, grpc, None), grpc);
                }
                // The time left, when the server is sent it or some is kept for the caller.
                let left = (sent || !headroom.is_zero())
                    .then(|| ctx.remaining())
                    .flatten();
                if !headroom.is_zero() && left.is_some_and(|left| left <= headroom) {
                    return ClientFuture::failed(headroom_error(ctx, headroom, grpc), grpc);
                }
                // A gRPC channel ends the call at the time it is sent (tonic's does).
                let sent_headroom = if grpc { headroom } else { Duration::ZERO };
                let watch = if self.config.call_contexts {
                    Watch::new(ctx, req.method(), req.uri(), grpc, sent_headroom)
                } else {
                    Watch::request(ctx, sent_headroom)
                };
                (watch, left)
            }
        };
        // The call's context has the request's values, the trace among them.
        #[cfg(feature = "opentelemetry")]
        crate::otel::inject(&watch.ctx, req.headers_mut());
        write_deadline(
            left,
            req.headers_mut(),
            grpc,
            self.config.ms_header.as_ref(),
            headroom,
        );
        let slack = if sent {
            self.config.slack
        } else {
            Duration::ZERO
        };
        ClientFuture::new(Some(self.inner.call(req)), Some(watch), grpc, slack)
    }
}

pin_project! {
    /// The response future of [`ClientService`]: the call, raced against the context.
    #[must_use = "futures do nothing unless polled"]
    pub struct ClientFuture<F> {
        #[pin]
        inner: Held<F>,
        watch: Option<Watch>,
        failed: Option<BoxError>,
        grpc: bool,
        // How long to keep the call open after its deadline.
        slack: Duration,
    }
}

pin_project! {
    /// A call's future, or its response body. Boxed when it may have to outlive its owner,
    /// which hands it to the timer at the deadline (see [`linger`]); in place when it never
    /// does (no slack), which saves an allocation a call.
    #[project = HeldProj]
    #[project_replace = HeldOwned]
    enum Held<T> {
        Boxed { inner: Pin<Box<T>> },
        Inline { #[pin] inner: T },
        Gone,
    }
}

impl<T> Held<T> {
    fn new(inner: Option<T>, slack: Duration) -> Self {
        match inner {
            None => Held::Gone,
            Some(inner) if slack.is_zero() => Held::Inline { inner },
            Some(inner) => Held::Boxed {
                inner: Box::pin(inner),
            },
        }
    }

    fn as_pin_mut(self: Pin<&mut Self>) -> Option<Pin<&mut T>> {
        match self.project() {
            HeldProj::Boxed { inner } => Some(inner.as_mut()),
            HeldProj::Inline { inner } => Some(inner),
            HeldProj::Gone => None,
        }
    }

    fn get(&self) -> Option<&T> {
        match self {
            Held::Boxed { inner } => Some(inner),
            Held::Inline { inner } => Some(inner),
            Held::Gone => None,
        }
    }

    /// Ends it: hands it to the timer for `slack` if `linger` (a boxed one only: one in
    /// place has no slack), else drops it, which aborts a call or a body still under way.
    fn end(self: Pin<&mut Self>, linger: bool, slack: Duration)
    where
        T: Send + 'static,
    {
        if let HeldOwned::Boxed { inner } = self.project_replace(Held::Gone) {
            if linger {
                self::linger(inner, slack);
            }
        }
    }
}

impl<F: Future> Future for Held<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        self.as_pin_mut()
            .expect("ClientFuture polled after completion")
            .poll(cx)
    }
}

/// The context of one call ([`call_context`]; or the request's, see
/// [`ClientLayer::call_contexts`]), and the `done()` future of the request's context.
struct Watch {
    ctx: Context,
    /// The request's context's, not the call's: the call's context is done exactly when the
    /// request's is (nothing holds its handle), and a pending `Done` of the request's context
    /// costs the call nothing more than an entry in that context's list of wakers, where one
    /// of its own would give the call's context a list of its own to allocate.
    done: Done,
    /// For a gRPC call sent its deadline less [`ClientLayer::headroom`]: that headroom. The
    /// channel (tonic's) ends the call at the time it was sent, so the call counts as past
    /// its deadline once no more than this is left (see [`Watch::expired`]). Zero otherwise.
    headroom: Duration,
}

impl Watch {
    fn new(
        request: &Context,
        method: &http::Method,
        uri: &http::Uri,
        grpc: bool,
        headroom: Duration,
    ) -> Watch {
        Watch {
            ctx: call_context(request, method, uri, grpc),
            done: request.done(),
            headroom,
        }
    }

    /// The request's context itself, when calls get no context of their own.
    fn request(request: &Context, headroom: Duration) -> Watch {
        Watch {
            ctx: request.clone(),
            done: request.done(),
            headroom,
        }
    }

    /// Whether the call is past its deadline: the context's, or for a gRPC call sent less
    /// than its time left, the one it was sent (the timers may not have fired yet).
    fn expired(&self) -> bool {
        self.ctx.err() == Some(Error::DeadlineExceeded)
            || self
                .ctx
                .remaining()
                .is_some_and(|left| left <= self.headroom)
    }

    /// The error of a call past its deadline ([`expired`](Self::expired)).
    fn expired_error(&self, grpc: bool, source: Option<BoxError>) -> BoxError {
        if deadline_passed(&self.ctx) {
            return context_error(&self.ctx, Error::DeadlineExceeded, grpc, source);
        }
        // The context has its headroom left; the time the server was sent ran out.
        boxed(
            ContextError::budget_spent(&self.ctx, self.headroom, source),
            grpc,
        )
    }
}

impl<F> ClientFuture<F> {
    fn new(inner: Option<F>, watch: Option<Watch>, grpc: bool, slack: Duration) -> Self {
        ClientFuture {
            inner: Held::new(inner, slack),
            slack,
            watch,
            failed: None,
            grpc,
        }
    }

    /// A call not sent: it fails with `error` when first polled.
    fn failed(error: BoxError, grpc: bool) -> Self {
        let mut fut = ClientFuture::new(None, None, grpc, Duration::ZERO);
        fut.failed = Some(error);
        fut
    }
}

impl<F> fmt::Debug for ClientFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientFuture").finish_non_exhaustive()
    }
}

/// Keeps `call` (the future or the response body of a call whose deadline passed, not
/// polled again) alive for `slack`, then drops it on ctxkit's timer thread: only then is its
/// stream reset.
#[cold]
fn linger<T: Send + 'static>(call: T, slack: Duration) {
    let (timer, _handle) = Context::background().with_timeout(slack);
    // The callback holds the timer's context: a context that nothing holds is freed, timer
    // and callbacks with it. The cycle ends when the timer fires and the callback runs.
    let keep = timer.clone();
    drop(timer.after_func(move || drop((call, keep))));
}

impl<F, B, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    E: Into<BoxError>,
{
    type Output = Result<Response<ClientBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(err) = this.failed.take() {
            return Poll::Ready(Err(err));
        }
        let grpc = *this.grpc;
        // Once the deadline has passed, the call is not polled again, even before the
        // context's timer fires: the inner service may have a timer of its own for the
        // deadline it was sent (tonic's channel has one for `grpc-timeout`), and polled once
        // that timer has fired, the call fails and drops its stream as it does (tonic's
        // channel drops the call's hyper future), which resets the stream at the deadline.
        if !this.slack.is_zero() {
            if let Some(watch) = this.watch.as_ref().filter(|w| w.expired()) {
                this.inner.as_mut().end(true, *this.slack);
                return Poll::Ready(Err(watch.expired_error(grpc, None)));
            }
        }
        if let Poll::Ready(result) = this.inner.as_mut().poll(cx) {
            let watch = this.watch.take();
            // A call that failed as its deadline passed (after the check above) is kept open
            // like one the context's timer stopped, in case it still holds its stream.
            let late = result.is_err() && watch.as_ref().is_some_and(Watch::expired);
            this.inner.end(late, *this.slack);
            return Poll::Ready(match (result, watch) {
                (Ok(res), watch) => {
                    let (mut parts, body) = res.into_parts();
                    ClientBody::<B>::fix_status(&watch, grpc, &mut parts.headers);
                    // The body, like the call, is kept for the slack past the deadline.
                    let slack = if watch.is_some() {
                        *this.slack
                    } else {
                        Duration::ZERO
                    };
                    let body = ClientBody {
                        inner: Held::new(Some(body), slack),
                        watch,
                        grpc,
                        slack,
                    };
                    Ok(Response::from_parts(parts, body))
                }
                (Err(err), Some(watch)) if watch.expired() => {
                    Err(watch.expired_error(grpc, Some(err.into())))
                }
                (Err(err), Some(watch)) => match watch.ctx.err() {
                    Some(e) => Err(context_error(&watch.ctx, e, grpc, Some(err.into()))),
                    None => Err(err.into()),
                },
                (Err(err), None) => Err(err.into()),
            });
        }
        if let Some(watch) = this.watch {
            if let Poll::Ready(err) = Pin::new(&mut watch.done).poll(cx) {
                // Cancelled: abort the call. At the deadline: keep it open for the slack.
                this.inner.end(err == Error::DeadlineExceeded, *this.slack);
                return Poll::Ready(Err(context_error(&watch.ctx, err, grpc, None)));
            }
        }
        Poll::Pending
    }
}

pin_project! {
    /// The response body of [`ClientService`]: fails with the context's error once the
    /// context is done, and turns a gRPC `CANCELLED` into `DEADLINE_EXCEEDED` once the
    /// deadline has passed.
    ///
    /// A body still waiting for data when its deadline fires fails with `DEADLINE_EXCEEDED`
    /// and, when the server was sent the deadline, is kept open for the
    /// [`deadline_slack`](ClientLayer::deadline_slack) on ctxkit's timer thread, like the
    /// call: a reader who then drops it at once (a streaming response cut short by its
    /// deadline) does not reset the stream before the server's own deadline fires. A body
    /// whose context was cancelled is dropped when it fails, which resets its stream.
    pub struct ClientBody<B> {
        #[pin]
        inner: Held<B>,
        watch: Option<Watch>,
        grpc: bool,
        // How long to keep the body open after its deadline.
        slack: Duration,
    }
}

impl<B> fmt::Debug for ClientBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBody").finish_non_exhaustive()
    }
}

impl<B> ClientBody<B> {
    /// The body the inner service answered with; `None` once it failed at its deadline and
    /// went to ctxkit's timer thread for the slack (see [`ClientBody`]).
    ///
    /// ```
    /// use ctxkit::Context;
    /// use ctxkit_tower::{ClientLayer, RequestContextExt};
    /// use tower::ServiceExt;
    /// use tower_layer::Layer;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let inner = tower::service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
    /// });
    /// let (ctx, _cancel) = Context::background().with_cancel();
    /// let res = ClientLayer::new()
    ///     .layer(inner)
    ///     .oneshot(http::Request::new(()).with_context(ctx))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(res.body().get_ref().map(String::as_str), Some("hello"));
    /// assert_eq!(res.into_body().into_inner().as_deref(), Some("hello"));
    /// # }
    /// ```
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.get()
    }

    /// The body the inner service answered with, without the context's watch; `None` once it
    /// failed at its deadline (see [`get_ref`](ClientBody::get_ref)).
    pub fn into_inner(self) -> Option<B>
    where
        B: Unpin,
    {
        match self.inner {
            Held::Boxed { inner } => Some(*Pin::into_inner(inner)),
            Held::Inline { inner } => Some(inner),
            Held::Gone => None,
        }
    }
}

/// gRPC status code 1, `CANCELLED`, which tonic sends when its timeout fires.
const GRPC_CANCELLED: &[u8] = b"1";

impl<B> ClientBody<B> {
    /// In the response headers (a trailers-only gRPC response) or trailers: `CANCELLED`
    /// after the deadline becomes `DEADLINE_EXCEEDED`.
    fn fix_status(watch: &Option<Watch>, grpc: bool, headers: &mut HeaderMap) {
        let Some(watch) = watch else { return };
        if !grpc || !deadline_passed(&watch.ctx) {
            return;
        }
        if headers.get("grpc-status").map(HeaderValue::as_bytes) == Some(GRPC_CANCELLED) {
            headers.insert("grpc-status", HeaderValue::from_static("4"));
        }
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        let grpc = *this.grpc;
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None); // failed already
        };
        match inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_trailers() {
                    Ok(mut trailers) => {
                        Self::fix_status(this.watch, grpc, &mut trailers);
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(match this.watch {
                Some(w) if w.ctx.is_done() || deadline_passed(&w.ctx) => {
                    let e = w.ctx.err().unwrap_or(Error::DeadlineExceeded);
                    context_error(&w.ctx, e, grpc, Some(err.into()))
                }
                _ => err.into(),
            }))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.watch {
                Some(w) => match Pin::new(&mut w.done).poll(cx) {
                    Poll::Ready(err) => {
                        // Cancelled: drop the body. At the deadline: keep it for the slack.
                        this.inner.end(err == Error::DeadlineExceeded, *this.slack);
                        Poll::Ready(Some(Err(context_error(&w.ctx, err, grpc, None))))
                    }
                    Poll::Pending => Poll::Pending,
                },
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.get().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .get()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}
