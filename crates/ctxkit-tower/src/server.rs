//! The server side: [`ServerLayer`] gives every request a [`Context`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use ctxkit::{CancelHandle, Context, Shutdown, ShutdownCause, WorkGuard};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::codec;
use crate::live::{Finished, Recent};

/// The cause given to a request's context when the server cancels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCause {
    /// The response future or body was dropped before the response was complete: the client
    /// went away, reset the stream, or the connection failed.
    ClientGone,
    /// The server is shutting down. Cancel the layer's root context with this cause.
    Shutdown,
}

impl fmt::Display for ServerCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerCause::ClientGone => "client went away before the response was complete",
            ServerCause::Shutdown => "server shutting down",
        })
    }
}

impl std::error::Error for ServerCause {}

/// The cause of a request context's `DeadlineExceeded`: where its deadline came from. Its
/// text ends the context's [`origin`](ctxkit::Context::origin) line, e.g.
/// `deadline exceeded: set at src/server.rs:9:9 (250ms) in "GET /work": deadline sent by the
/// client in its x-timeout-ms header`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadlineSource {
    /// The client sent it in this header (`grpc-timeout`, `connect-timeout-ms` or the header
    /// of [`ServerLayer::timeout_ms_header`]); the smallest value wins.
    Header(HeaderName),
    /// [`ServerLayer::max_timeout`]: the client sent none, or a later one.
    MaxTimeout,
}

impl fmt::Display for DeadlineSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadlineSource::Header(name) => {
                write!(f, "deadline sent by the client in its {name} header")
            }
            DeadlineSource::MaxTimeout => f.write_str("deadline of the server's max_timeout"),
        }
    }
}

impl std::error::Error for DeadlineSource {}

/// How a request's context ended, as [`ServerLayer`] records it on the request's span (the
/// field `outcome`) and in the list of recent requests of its
/// [`LivePage`](crate::live::LivePage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// The response was sent to the end (or the handler failed): the request is over.
    Completed,
    /// The client went away before the response was complete ([`ServerCause::ClientGone`]).
    ClientGone,
    /// The request's deadline passed.
    Deadline,
    /// The server's root context was cancelled (server shutdown) while the request ran, or
    /// the grace period of the layer's [`Shutdown`] ended with the request still in flight
    /// (see [`ServerLayer::with_shutdown`]).
    Shutdown,
}

impl RequestOutcome {
    /// `completed`, `client_gone`, `deadline` or `shutdown`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Completed => "completed",
            RequestOutcome::ClientGone => "client_gone",
            RequestOutcome::Deadline => "deadline",
            RequestOutcome::Shutdown => "shutdown",
        }
    }

    /// How a request whose context is done ended; `tree` is the layer's root.
    fn of(ctx: &Context, tree: &Context) -> RequestOutcome {
        if ctx.err() == Some(ctxkit::Error::DeadlineExceeded) {
            return RequestOutcome::Deadline;
        }
        if tree.is_done() && ctx.origin() == tree.origin() {
            return RequestOutcome::Shutdown;
        }
        let Some(cause) = ctx.cause() else {
            return RequestOutcome::Completed;
        };
        if cause.is::<ShutdownCause>() {
            return RequestOutcome::Shutdown;
        }
        match cause.downcast_ref::<ServerCause>() {
            Some(ServerCause::ClientGone) => RequestOutcome::ClientGone,
            Some(ServerCause::Shutdown) => RequestOutcome::Shutdown,
            None => RequestOutcome::Completed,
        }
    }
}

impl fmt::Display for RequestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `connect-timeout-ms` header of the Connect protocol.
pub const CONNECT_TIMEOUT_MS: HeaderName = HeaderName::from_static("connect-timeout-ms");

/// The `grpc-timeout` header.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

#[derive(Clone, Debug)]
struct Config {
    /// The layer's own root, derived from the one it was given with `with_cancel`: the
    /// requests' parent, and what the live page lists (a snapshot finds contexts through
    /// cancellation links, which `Context::background()` has none of).
    root: Context,
    max_timeout: Option<Duration>,
    connect_timeout_ms: bool,
    ms_header: Option<HeaderName>,
    grace: Option<Duration>,
    slack: Duration,
    malformed_grpc: MalformedTimeout,
    malformed_ms: MalformedTimeout,
    min_budget: Option<Duration>,
    /// The two-phase shutdown of [`ServerLayer::with_shutdown`], whose hard context is `root`'s
    /// parent.
    shutdown: Option<Shutdown>,
    /// Shared by every clone of the layer and its services.
    stats: Arc<Counters>,
    /// The requests that ended last, for the live page. Shared like `stats`.
    recent: Arc<Recent>,
}

/// What [`ServerLayer`] does with a deadline header whose value it cannot parse (see
/// [`codec`](crate::codec) for the grammar).
///
/// The defaults: [`Reject`](MalformedTimeout::Reject) for `grpc-timeout`, as grpc-go's server
/// does (its HTTP/2 transport, `operateHeaders` in `internal/transport/http2_server.go`,
/// answers a value `decodeTimeout` refuses with status `INTERNAL`, "malformed grpc-timeout",
/// without calling the handler); [`Ignore`](MalformedTimeout::Ignore) for millisecond headers
/// (`connect-timeout-ms`, [`ServerLayer::timeout_ms_header`]), which proxies and ad-hoc
/// clients write by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedTimeout {
    /// Serve the request as if the header were absent, and log a `warn` event naming the
    /// header and the value. At most one such event a second per layer: the next one counts
    /// those left out.
    Ignore,
    /// Answer at once, without calling the handler: HTTP `400 Bad Request` with a plain-text
    /// body, or for gRPC a trailers-only `INVALID_ARGUMENT`; the message names the header and
    /// its value (escaped, and cut to 40 bytes).
    Reject,
}

/// Counts of what [`ServerLayer`] answered or skipped on its own; see [`ServerLayer::stats`].
#[derive(Debug)]
struct Counters {
    short_budget: AtomicU64,
    malformed_rejected: AtomicU64,
    malformed_ignored: AtomicU64,
    warn: WarnLimit,
}

/// Lets one `warn` event through a second. Relaxed atomics throughout: the counts are
/// statistics, and a race between two threads at the turn of a second costs at most one
/// event more or fewer, never a lost count of any consequence.
#[derive(Debug)]
struct WarnLimit {
    start: Instant,
    /// Milliseconds since `start` before which no event is let through.
    next_ms: AtomicU64,
    /// Events held back since the last one let through.
    held: AtomicU64,
}

impl WarnLimit {
    /// `Some(held back since the last one)` when an event may be logged now.
    fn allow(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(1000),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// What [`ServerLayer`] has answered or skipped on its own so far, across all its clones and
/// services (statistics: each count is exact, but they are read one at a time).
#[derive(Clone, Debug)]
pub struct ServerStats {
    counters: Arc<Counters>,
}

impl ServerStats {
    /// Requests answered at once for arriving with less time left than
    /// [`ServerLayer::min_budget`].
    pub fn short_budget(&self) -> u64 {
        self.counters.short_budget.load(Ordering::Relaxed)
    }

    /// Requests answered at once for a malformed deadline header
    /// ([`MalformedTimeout::Reject`]).
    pub fn malformed_rejected(&self) -> u64 {
        self.counters.malformed_rejected.load(Ordering::Relaxed)
    }

    /// Malformed deadline header values served as if absent ([`MalformedTimeout::Ignore`]).
    pub fn malformed_ignored(&self) -> u64 {
        self.counters.malformed_ignored.load(Ordering::Relaxed)
    }
}

/// The default [`ServerLayer::deadline_slack`].
const DEFAULT_SLACK: Duration = Duration::from_millis(5);

/// A [`tower::Layer`](tower_layer::Layer) that gives each request a [`Context`] derived from a
/// server-wide root, with the deadline the client sent.
///
/// Handlers read the context with [`RequestContextExt::context`](crate::RequestContextExt::context)
/// (on `http::Request`, its `Parts` and `tonic::Request`); with the `axum` feature,
/// `RequestContext` is an extractor. It is stored in the request's extensions under a type
/// private to this crate, so a `Context` the application puts there itself (axum's
/// `Extension(root)`) neither hides it nor is hidden by it.
///
/// # Lifecycle of a request's context
/// 1. Made in `call` as a child of the layer's root context, with the deadline read from the
///    request's headers (the smallest of them, clamped to the server's maximum).
/// 2. Stored in the request's extensions (under a type private to this crate), where
///    handlers find it.
/// 3. Done, with the first of these that happens:
///    - the deadline passes: `DeadlineExceeded` (the core's timer does it);
///    - the response future is dropped before it finished (client disconnect, HTTP/2
///      `RST_STREAM`): `Canceled`, cause [`ServerCause::ClientGone`];
///    - the response body has been sent to the end, or dropped: `Canceled`, cause
///      plain [`Error::Canceled`](ctxkit::Error::Canceled) (as Go's `net/http` does when
///      `ServeHTTP` returns; no cause is allocated on this, the common path) or
///      [`ServerCause::ClientGone`];
///    - the handler answered with a response that has no body to send: an empty body, or
///      one the protocol omits (the response to `HEAD`, a 2xx to `CONNECT`, any 1xx, 204
///      or 304): `Canceled`, cause plain [`Error::Canceled`](ctxkit::Error::Canceled), as
///      soon as the handler answered. The server drops an omitted body unsent, which is
///      never taken for the client going away;
///    - the root is cancelled (server shutdown): its cause, e.g. [`ServerCause::Shutdown`].
///
/// A client that goes away when its deadline is (nearly) due has gone because of it. Its own
/// deadline fires first: the server learns of it a network transit later, at a time when the
/// server's copy of the deadline (which started a transit later too) has not quite passed.
/// So a client that goes away less than [`ServerLayer::deadline_slack`] (default 5 ms) before
/// the deadline does not cancel the context: the deadline timer ends it with
/// `DeadlineExceeded` moments later, which is what happened.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ctxkit::Context;
/// use ctxkit_tower::{ServerCause, ServerLayer};
///
/// let (root, shutdown) = Context::background().with_cancel();
/// let layer = ServerLayer::new(root)
///     .max_timeout(Duration::from_secs(30))
///     .timeout_ms_header("x-timeout-ms")
///     .grace(Duration::from_millis(100));
/// // let svc = tower::ServiceBuilder::new().layer(layer).service(app);
/// // ... on SIGTERM:
/// shutdown.cancel_with_cause(ServerCause::Shutdown);
/// # drop(layer);
/// ```
#[derive(Clone, Debug)]
pub struct ServerLayer {
    config: Arc<Config>,
}

impl ServerLayer {
    /// A layer whose request contexts are children of `root`: cancelling `root` cancels every
    /// request in flight (Go's `http.Server.BaseContext`). Reads `grpc-timeout` only; no
    /// maximum; no grace answer.
    pub fn new(root: Context) -> ServerLayer {
        // Dropping the handle does not cancel: the layer's root is done when `root` is.
        let (root, _handle) = root.with_cancel();
        ServerLayer {
            config: Arc::new(Config {
                root,
                recent: Arc::new(Recent::new()),
                max_timeout: None,
                connect_timeout_ms: false,
                ms_header: None,
                grace: None,
                slack: DEFAULT_SLACK,
                malformed_grpc: MalformedTimeout::Reject,
                malformed_ms: MalformedTimeout::Ignore,
                min_budget: None,
                shutdown: None,
                stats: Arc::new(Counters {
                    short_budget: AtomicU64::new(0),
                    malformed_rejected: AtomicU64::new(0),
                    malformed_ignored: AtomicU64::new(0),
                    warn: WarnLimit {
                        start: Instant::now(),
                        next_ms: AtomicU64::new(0),
                        held: AtomicU64::new(0),
                    },
                }),
            }),
        }
    }

    /// A layer on a two-phase [`Shutdown`]: its request contexts are children of the
    /// shutdown's [hard](Shutdown::hard) context, and each request is counted as a unit of
    /// the shutdown's work ([`Shutdown::enter`]) until its response has been sent (or its
    /// client went away). Then:
    ///
    /// - once the shutdown [begins](Shutdown::begin) (draining), a new request is answered at
    ///   once, without calling the handler: `503 Service Unavailable` with
    ///   `connection: close` (HTTP/1), or a trailers-only `UNAVAILABLE` (gRPC), which clients
    ///   retry elsewhere. Requests in flight keep running, their contexts untouched;
    /// - when the grace period ends, the requests still in flight are cancelled with the
    ///   shutdown's cause, [`ShutdownCause::GraceEnded`]: their
    ///   [`origin`](ctxkit::Context::origin) says so, and their outcome on the request span
    ///   and the live page is [`RequestOutcome::Shutdown`];
    /// - [`Shutdown::wait`] or [`Shutdown::done`] then reports how many requests finished
    ///   during the drain and how many were cut off. A request cut off stays counted until
    ///   the layer and every service it made are dropped, so the report counts it as cut off
    ///   however soon after the cut its handler returns.
    ///
    /// The other settings are those of [`ServerLayer::new`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, Shutdown};
    /// use ctxkit_tower::ServerLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let shutdown = Shutdown::new(&Context::background());
    /// let layer = ServerLayer::with_shutdown(&shutdown).timeout_ms_header("x-timeout-ms");
    /// // let app = layer.layer(router); serve it ...
    /// // On SIGTERM (or `shutdown.on_signals(grace)`, feature `signals` of ctxkit):
    /// shutdown.begin(Duration::from_secs(10));
    /// let report = shutdown.done().await; // every request finished, or 10 s passed
    /// println!("finished {}, cut off {}", report.finished(), report.cut_off());
    /// # drop(layer);
    /// # }
    /// ```
    pub fn with_shutdown(shutdown: &Shutdown) -> ServerLayer {
        let mut layer = ServerLayer::new(shutdown.hard().clone());
        layer.config_mut().shutdown = Some(shutdown.clone());
        layer
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// No request gets a deadline later than `max` from its arrival, even one that sent no
    /// timeout.
    pub fn max_timeout(mut self, max: Duration) -> ServerLayer {
        self.config_mut().max_timeout = Some(max);
        self
    }

    /// Also read the Connect protocol's `connect-timeout-ms` header.
    pub fn connect_timeout_ms(mut self, enabled: bool) -> ServerLayer {
        self.config_mut().connect_timeout_ms = enabled;
        self
    }

    /// Also read a timeout in milliseconds (1–10 ASCII digits) from the header `name`.
    ///
    /// # Panics
    /// If `name` is not a valid header name.
    pub fn timeout_ms_header(mut self, name: &str) -> ServerLayer {
        let name = HeaderName::try_from(name).expect("a valid header name");
        self.config_mut().ms_header = Some(name);
        self
    }

    /// When a handler has not answered `grace` after its deadline, drop it and answer
    /// `504 Gateway Timeout` (HTTP) or `grpc-status: 4` `DEADLINE_EXCEEDED` (gRPC). Without
    /// this, the handler decides what to answer. The wait uses tokio's timer.
    pub fn grace(mut self, grace: Duration) -> ServerLayer {
        self.config_mut().grace = Some(grace);
        self
    }
}

impl ServerLayer {
    /// A client that goes away less than `slack` before the request's deadline is taken to
    /// have gone because of it: the context then ends with `DeadlineExceeded` at the deadline
    /// instead of `Canceled` at once (see the [lifecycle](ServerLayer#lifecycle-of-a-requests-context)). Default: 5 ms; use about
    /// the one-way network latency.
    pub fn deadline_slack(mut self, slack: Duration) -> ServerLayer {
        self.config_mut().slack = slack;
        self
    }
}

impl ServerLayer {
    /// What to do with a `grpc-timeout` value that is not 1–8 digits and a unit. Default:
    /// [`MalformedTimeout::Reject`], as grpc-go does.
    pub fn malformed_grpc_timeout(mut self, policy: MalformedTimeout) -> ServerLayer {
        self.config_mut().malformed_grpc = policy;
        self
    }

    /// What to do with a malformed value of a millisecond header (`connect-timeout-ms`, the
    /// header of [`timeout_ms_header`](ServerLayer::timeout_ms_header)). Default:
    /// [`MalformedTimeout::Ignore`].
    pub fn malformed_timeout_ms(mut self, policy: MalformedTimeout) -> ServerLayer {
        self.config_mut().malformed_ms = policy;
        self
    }

    /// A request whose client left it less than `budget` is answered at once, without calling
    /// the handler: `504 Gateway Timeout`, or gRPC `DEADLINE_EXCEEDED`; and counted
    /// ([`ServerStats::short_budget`]). Work that cannot finish in time is not started, and
    /// the caller learns so while it still has time to do something else.
    ///
    /// The time left is the one the client sent (its deadline headers), not
    /// [`max_timeout`](ServerLayer::max_timeout); requests without a deadline always run.
    ///
    /// # A chain: A → B → C
    ///
    /// A calls B with 300 ms left; B calls C. B's [`ClientLayer`](crate::ClientLayer) keeps a
    /// headroom of 50 ms ([`ClientLayer::headroom`](crate::ClientLayer::headroom)), so C is
    /// told the time B has left less 50 ms, and B keeps 50 ms to use C's answer (or its
    /// absence) and still answer A in time. C needs 200 ms for its work, so its layer has
    /// `min_budget(200 ms)`. If B spends 100 ms before calling C, C is told about 150 ms:
    /// too little, so C answers `DEADLINE_EXCEEDED` at once, without running its handler,
    /// and B has about 200 ms left to answer A with a fallback, instead of learning of the
    /// failure only at its own deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::Context;
    /// use ctxkit_tower::{ClientLayer, ServerLayer};
    ///
    /// // In C:
    /// let c = ServerLayer::new(Context::background()).min_budget(Duration::from_millis(200));
    /// // In B, for its calls to C:
    /// let b_to_c = ClientLayer::new().headroom(Duration::from_millis(50));
    /// # drop((c, b_to_c));
    /// ```
    pub fn min_budget(mut self, budget: Duration) -> ServerLayer {
        self.config_mut().min_budget = Some(budget);
        self
    }

    /// The counts of what this layer (and every service it made) answered or skipped on its
    /// own: requests turned away by [`min_budget`](ServerLayer::min_budget), malformed
    /// deadline headers rejected or ignored.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            counters: Arc::clone(&self.config.stats),
        }
    }

    /// A page that shows the requests in flight under this layer, with the contexts derived
    /// from them (downstream calls included), and the last
    /// [`RECENT`](crate::live::RECENT) requests that ended, with their outcome and origin:
    /// see [`LivePage`](crate::live::LivePage). From the first call on, the layer (every
    /// clone, every service it made) keeps the list of recent requests.
    pub fn live_page(&self) -> crate::live::LivePage {
        self.config.recent.enable();
        crate::live::LivePage::with_recent(&self.config.root, Arc::clone(&self.config.recent))
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> ServerService<S> {
        ServerService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service made by [`ServerLayer`].
#[derive(Clone, Debug)]
pub struct ServerService<S> {
    inner: S,
    config: Arc<Config>,
}

/// A deadline header whose value the layer rejects.
#[derive(Debug)]
struct Malformed {
    header: HeaderName,
    value: HeaderValue,
    error: codec::TimeoutError,
}

/// How much of a bad header value a message quotes.
const QUOTED_BYTES: usize = 40;

impl Malformed {
    /// "malformed grpc-timeout header "1x": timeout unit is not one of H M S m u n": the
    /// value cut to [`QUOTED_BYTES`] and escaped to printable ASCII.
    fn message(&self) -> String {
        let bytes = self.value.as_bytes();
        let quoted = &bytes[..bytes.len().min(QUOTED_BYTES)];
        let cut = if bytes.len() > QUOTED_BYTES {
            "..."
        } else {
            ""
        };
        format!(
            "malformed {} header \"{}{cut}\": {}",
            self.header,
            quoted.escape_ascii(),
            self.error
        )
    }
}

impl Config {
    /// The smallest valid timeout the headers carry (`Ok(None)`: none), or the first
    /// malformed value of a header whose policy is to reject it. Malformed values of the
    /// other headers are skipped, with a rate-limited `warn` event.
    fn sent_timeout(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(Duration, HeaderName)>, Malformed> {
        let mut timeout: Option<(Duration, HeaderName)> = None;
        let mut consider = |name: &HeaderName,
                            decode: fn(&[u8]) -> Result<Duration, codec::TimeoutError>,
                            policy: MalformedTimeout| {
            for value in headers.get_all(name) {
                match decode(value.as_bytes()) {
                    Ok(t) => {
                        if timeout.as_ref().is_none_or(|(old, _)| t < *old) {
                            timeout = Some((t, name.clone()));
                        }
                    }
                    Err(error) => {
                        let bad = Malformed {
                            header: name.clone(),
                            value: value.clone(),
                            error,
                        };
                        match policy {
                            MalformedTimeout::Reject => return Err(bad),
                            MalformedTimeout::Ignore => self.ignored(&bad),
                        }
                    }
                }
            }
            Ok(())
        };
        consider(
            &GRPC_TIMEOUT,
            codec::decode_grpc_timeout,
            self.malformed_grpc,
        )?;
        if self.connect_timeout_ms {
            consider(
                &CONNECT_TIMEOUT_MS,
                codec::decode_timeout_ms,
                self.malformed_ms,
            )?;
        }
        if let Some(name) = &self.ms_header {
            consider(name, codec::decode_timeout_ms, self.malformed_ms)?;
        }
        Ok(timeout)
    }

    /// Counts a malformed value served as absent, and logs it when the rate limit allows.
    #[cold]
    fn ignored(&self, bad: &Malformed) {
        self.stats.malformed_ignored.fetch_add(1, Ordering::Relaxed);
        if let Some(held) = self.stats.warn.allow() {
            tracing::warn!(
                header = %bad.header,
                held_back = held,
                "ignoring a {}; served without it", bad.message()
            );
        }
    }
}

/// Whether the message is gRPC (`content-type: application/grpc...`).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ServerService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body,
{
    type Response = Response<ServerBody<ResB>>;
    type Error = S::Error;
    type Future = ServerFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let config = &*self.config;
        let grpc = is_grpc(req.headers());
        let work = match &config.shutdown {
            Some(shutdown) => match shutdown.enter() {
                Some(work) => Some(work),
                None => {
                    let close = req.version() <= http::Version::HTTP_11;
                    return ServerFuture::answer(Answer::Draining { close }, grpc);
                }
            },
            None => None,
        };
        let sent = match config.sent_timeout(req.headers()) {
            Ok(sent) => sent,
            Err(bad) => {
                config
                    .stats
                    .malformed_rejected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(header = %bad.header, "rejecting a request: {}", bad.message());
                return ServerFuture::answer(Answer::Malformed(bad.message()), grpc);
            }
        };
        if let (Some(budget), Some((left, _))) = (config.min_budget, &sent) {
            let left = *left;
            if left < budget {
                config.stats.short_budget.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    ?left,
                    ?budget,
                    "answering at once: the request arrived with less time than its minimum budget"
                );
                return ServerFuture::answer(Answer::ShortBudget, grpc);
            }
        }
        let timeout = match (sent, config.max_timeout) {
            (Some((t, header)), Some(max)) if t <= max => Some((t, DeadlineSource::Header(header))),
            (Some(_), Some(max)) | (None, Some(max)) => Some((max, DeadlineSource::MaxTimeout)),
            (Some((t, header)), None) => Some((t, DeadlineSource::Header(header))),
            (None, None) => None,
        };
        let name = crate::name::request_name(req.method(), req.uri(), grpc);
        let span = tracing::info_span!(
            "request",
            name = %name,
            outcome = tracing::field::Empty,
            origin = tracing::field::Empty,
        );
        // Named before the request's own context is derived, so that the name shows on its
        // entry in a snapshot and in the origins of cancellations that begin there.
        let parent = config.root.with_name(name);
        let (ctx, handle) = match timeout {
            Some((timeout, source)) => parent.with_timeout_cause(timeout, source),
            None => parent.with_cancel(),
        };
        #[cfg(feature = "opentelemetry")]
        let ctx = crate::otel::extract(&ctx, req.headers());
        let grace = match (config.grace, ctx.deadline()) {
            (Some(grace), Some(deadline)) => deadline
                .checked_add(grace)
                .map(|at| Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(at)))),
            _ => None,
        };
        let method = BodylessMethod::of(req.method());
        crate::ext::set(req.extensions_mut(), ctx.clone());
        let inner = span.in_scope(|| self.inner.call(req));
        ServerFuture {
            inner: Some(inner),
            guard: Some(RequestGuard {
                ctx,
                handle,
                work,
                slack: config.slack,
                span: span.clone(),
                started: Instant::now(),
                config: Arc::clone(&self.config),
            }),
            span,
            grace,
            grpc,
            method,
            answer: None,
        }
    }
}

/// What the layer answers on its own, without calling the handler.
#[derive(Debug)]
enum Answer {
    /// A deadline header it rejects: HTTP 400 or gRPC `INVALID_ARGUMENT`, with this message.
    Malformed(String),
    /// Less time left than the minimum budget: HTTP 504 or gRPC `DEADLINE_EXCEEDED`.
    ShortBudget,
    /// The layer's shutdown is draining: HTTP 503 (closing an HTTP/1 connection when
    /// `close`) or gRPC `UNAVAILABLE`.
    Draining { close: bool },
}

/// Cancels a request's context when dropped, unless its deadline already passed, and then
/// records how the request ended: on its span and in the layer's list of recent requests.
#[derive(Debug)]
struct RequestGuard {
    ctx: Context,
    handle: CancelHandle,
    /// The request, counted in the layer's [`Shutdown`], if it has one.
    work: Option<WorkGuard>,
    slack: Duration,
    span: tracing::Span,
    started: Instant,
    config: Arc<Config>,
}

impl RequestGuard {
    /// Cancels with `cause`, or with plain `Canceled` for `None`.
    fn cancel(&self, cause: Option<ServerCause>) {
        if self.ctx.is_done() {
            return;
        }
        // Past the deadline, the timer is about to say DeadlineExceeded: that is the truth.
        // A client leaving just before it left because of it (see ServerLayer's docs).
        let slack = match cause {
            Some(ServerCause::ClientGone) => self.slack,
            _ => Duration::ZERO,
        };
        if self.ctx.remaining().is_some_and(|left| left <= slack) {
            return;
        }
        match cause {
            Some(cause) => self.handle.cancel_with_cause(cause),
            None => self.handle.cancel(),
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.cancel(Some(ServerCause::ClientGone));
        // Uncounted here. A request the end of the grace period cut off was counted as cut
        // off as the grace period ended, whenever its handler returns.
        drop(self.work.take());
        let wanted = !self.span.is_disabled() || self.config.recent.is_enabled();
        if !wanted {
            return;
        }
        let end = Ending {
            span: std::mem::replace(&mut self.span, tracing::Span::none()),
            started: self.started,
            config: Arc::clone(&self.config),
        };
        if self.ctx.is_done() {
            end.record(&self.ctx);
        } else {
            // The client left within the slack before the deadline, which ends the context
            // moments from now: record it then.
            let ctx = self.ctx.clone();
            drop(self.ctx.on_cancel(move || end.record(&ctx)));
        }
    }
}

/// What is needed to record how a request ended, once its context is done.
struct Ending {
    span: tracing::Span,
    started: Instant,
    config: Arc<Config>,
}

impl Ending {
    /// Records the outcome and origin of the done `ctx`.
    #[cold]
    fn record(self, ctx: &Context) {
        let outcome = RequestOutcome::of(ctx, &self.config.root);
        let origin = ctx.origin();
        if !self.span.is_disabled() {
            self.span.record("outcome", outcome.as_str());
            if let Some(origin) = &origin {
                self.span.record("origin", tracing::field::display(origin));
            }
        }
        if self.config.recent.is_enabled() {
            self.config.recent.push(Finished {
                name: ctx.name().map(Box::from),
                outcome,
                duration: self.started.elapsed(),
                ended: Instant::now(),
                err: ctx.err(),
                origin: origin.map(|o| o.to_string().into_boxed_str()),
            });
        }
    }
}

pin_project! {
    /// The response future of [`ServerService`].
    ///
    /// Dropping it before it completes cancels the request's context with `Canceled`
    /// ([`ServerCause::ClientGone`]).
    #[must_use = "futures do nothing unless polled"]
    pub struct ServerFuture<F> {
        #[pin]
        inner: Option<F>,
        guard: Option<RequestGuard>,
        // The request's span, entered while the handler runs.
        span: tracing::Span,
        grace: Option<Pin<Box<tokio::time::Sleep>>>,
        grpc: bool,
        method: BodylessMethod,
        answer: Option<Answer>,
    }
}

impl<F> ServerFuture<F> {
    /// A future that answers `answer` without a handler.
    fn answer(answer: Answer, grpc: bool) -> Self {
        ServerFuture {
            inner: None,
            guard: None,
            span: tracing::Span::none(),
            grace: None,
            grpc,
            method: BodylessMethod::Other,
            answer: Some(answer),
        }
    }
}

/// The request methods whose responses can go without a body (RFC 9110, 9.3.2 and 9.3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodylessMethod {
    /// `HEAD`: no response has content.
    Head,
    /// `CONNECT`: a 2xx response has none (the connection becomes a tunnel).
    Connect,
    /// Any other: only the status decides.
    Other,
}

impl BodylessMethod {
    fn of(method: &Method) -> BodylessMethod {
        if method == Method::HEAD {
            BodylessMethod::Head
        } else if method == Method::CONNECT {
            BodylessMethod::Connect
        } else {
            BodylessMethod::Other
        }
    }

    /// Whether the protocol sends the response to this request without its body: a response
    /// to `HEAD`, a 2xx to `CONNECT`, and every 1xx, 204 and 304 (RFC 9110, 6.4.1). The server
    /// (hyper over HTTP/1.1) drops such a body unpolled, or a router (axum, for `HEAD`)
    /// swaps it for an empty one; either way it is never sent.
    fn omits_body(self, status: StatusCode) -> bool {
        match self {
            BodylessMethod::Head => true,
            BodylessMethod::Connect if status.is_success() => true,
            _ => {
                status.is_informational()
                    || status == StatusCode::NO_CONTENT
                    || status == StatusCode::NOT_MODIFIED
            }
        }
    }
}

impl<F> fmt::Debug for ServerFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFuture").finish_non_exhaustive()
    }
}

impl<F, B: Body, E> Future for ServerFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ServerBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(answer) = this.answer.take() {
            return Poll::Ready(Ok(answer_response(*this.grpc, answer)));
        }
        if let Some(inner) = this.inner.as_mut().as_pin_mut() {
            let polled = this.span.in_scope(|| inner.poll(cx));
            if let Poll::Ready(result) = polled {
                this.inner.set(None);
                let guard = this.guard.take();
                return Poll::Ready(match result {
                    Ok(res) => {
                        // An empty body is sent with the headers, and a body the protocol
                        // omits is never sent: either way the request is over once its
                        // response head is ready. A dropped body is then not a sign of the
                        // client leaving (the server drops an omitted body unpolled: that is
                        // how it omits it), so the guard must not stay in the body.
                        let guard = guard.filter(|g| {
                            let over =
                                res.body().is_end_stream() || this.method.omits_body(res.status());
                            if over {
                                g.cancel(None);
                            }
                            !over
                        });
                        Ok(res.map(|body| ServerBody {
                            inner: Some(body),
                            guard,
                            message: None,
                        }))
                    }
                    Err(err) => {
                        if let Some(g) = guard {
                            g.cancel(None); // the handler failed: its request is over
                        }
                        Err(err)
                    }
                });
            }
        }
        match this.grace {
            Some(grace) => {
                ready!(grace.as_mut().poll(cx));
                this.inner.set(None); // drop the handler
                let guard = this.guard.take();
                tracing::debug!(
                    grpc = *this.grpc,
                    "handler did not answer within the grace period after its deadline"
                );
                drop(guard);
                Poll::Ready(Ok(deadline_response(*this.grpc)))
            }
            None => Poll::Pending,
        }
    }
}

/// `504 Gateway Timeout`, or gRPC's trailers-only `DEADLINE_EXCEEDED`.
fn deadline_response<B>(grpc: bool) -> Response<ServerBody<B>> {
    answer_response(grpc, Answer::ShortBudget)
}

/// The response for what the layer answers on its own: HTTP with a status and a plain-text
/// body, or a gRPC trailers-only response (HTTP 200, the status in the headers, as a gRPC
/// client expects it).
fn answer_response<B>(grpc: bool, answer: Answer) -> Response<ServerBody<B>> {
    let close = matches!(answer, Answer::Draining { close: true });
    let (http_status, grpc_status, message) = match answer {
        Answer::ShortBudget => (
            StatusCode::GATEWAY_TIMEOUT,
            "4",
            String::from("context deadline exceeded"),
        ),
        Answer::Malformed(message) => (StatusCode::BAD_REQUEST, "3", message),
        Answer::Draining { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "14",
            String::from("server shutting down: not taking new requests"),
        ),
    };
    let mut res = Response::new(ServerBody {
        inner: None,
        guard: None,
        message: None,
    });
    let headers = res.headers_mut();
    if grpc {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static(grpc_status));
        let encoded = percent_encode(&message);
        let value =
            HeaderValue::try_from(encoded).expect("percent-encoding leaves printable ASCII");
        headers.insert("grpc-message", value);
    } else {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if close {
            // HTTP/1: the client opens a new connection for its next request, which a
            // load balancer can send to another server.
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        *res.status_mut() = http_status;
        res.body_mut().message = Some(message);
    }
    res
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn percent_encode(message: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pin_project! {
    /// The response body of [`ServerService`]: the handler's body, which cancels the request's
    /// context once it has been sent to the end (plain `Canceled`) or dropped
    /// ([`ServerCause::ClientGone`]). Empty when the layer answered for a late handler.
    pub struct ServerBody<B> {
        #[pin]
        inner: Option<B>,
        guard: Option<RequestGuard>,
        // The text of a response the layer made itself, sent as one frame.
        message: Option<String>,
    }
}

impl<B> fmt::Debug for ServerBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBody").finish_non_exhaustive()
    }
}

impl<B> Body for ServerBody<B>
where
    B: Body,
    B::Data: From<String>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let Some(mut inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(this.message.take().map(|m| Ok(Frame::data(m.into()))));
        };
        let frame = ready!(inner.as_mut().poll_frame(cx));
        let finished = match &frame {
            None | Some(Err(_)) => true,
            Some(Ok(_)) => inner.is_end_stream(),
        };
        if finished {
            if let Some(guard) = this.guard.take() {
                guard.cancel(None);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(b) => b.is_end_stream(),
            None => self.message.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, &self.message) {
            (Some(b), _) => b.size_hint(),
            (None, Some(m)) => SizeHint::with_exact(m.len() as u64),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}
