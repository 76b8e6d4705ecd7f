//! The client layer and the reqwest extension: what they send, and what they report.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use ctxkit::{Context, Error};
use ctxkit_tower::{ClientLayer, ContextError, RequestContextExt, ServerLayer};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_layer::Layer;

/// Echoes the timeout headers it got, as `grpc-timeout|x-timeout-ms`.
fn echo_headers() -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|req: http::Request<Full<Bytes>>| async move {
        let get = |name| {
            req.headers()
                .get(name)
                .map_or("-".to_owned(), |v: &http::HeaderValue| {
                    v.to_str().unwrap().to_owned()
                })
        };
        let text = format!("{}|{}", get("grpc-timeout"), get("x-timeout-ms"));
        Ok(http::Response::new(Full::new(Bytes::from(text))))
    })
}

async fn sent_headers(grpc: bool, ctx: Option<Context>, preset: Option<&str>) -> String {
    let svc = ClientLayer::new()
        .timeout_ms_header("x-timeout-ms")
        .layer(echo_headers());
    let mut req = http::Request::new(Full::default());
    if grpc {
        req.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
    }
    if let Some(preset) = preset {
        req.headers_mut()
            .insert("grpc-timeout", preset.parse().unwrap());
    }
    if let Some(ctx) = ctx {
        req.set_context(ctx);
    }
    let res = svc.oneshot(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn the_time_left_is_sent_in_the_right_header_rounded_up() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(2));
    let grpc = sent_headers(true, Some(ctx.clone()), None).await;
    let (timeout, ms) = grpc.split_once('|').unwrap();
    assert_eq!(ms, "-", "gRPC calls get grpc-timeout only");
    let sent = ctxkit_tower::codec::decode_grpc_timeout(timeout.as_bytes()).unwrap();
    assert!(sent <= Duration::from_secs(2) && sent > Duration::from_millis(1900));
    assert!(
        timeout.ends_with('u'),
        "{timeout}: the finest unit that fits 8 digits"
    );

    let http = sent_headers(false, Some(ctx.clone()), None).await;
    let (timeout, ms) = http.split_once('|').unwrap();
    assert_eq!(timeout, "-", "plain HTTP gets the configured header only");
    let ms: u64 = ms.parse().unwrap();
    assert!((1900..=2000).contains(&ms));

    // A shorter grpc-timeout already on the request is kept; a longer one is replaced.
    let kept = sent_headers(true, Some(ctx.clone()), Some("10m")).await;
    assert_eq!(kept, "10m|-");
    let replaced = sent_headers(true, Some(ctx), Some("1H")).await;
    assert_ne!(replaced, "1H|-");

    // No context, or no deadline: nothing is added.
    assert_eq!(sent_headers(true, None, None).await, "-|-");
    assert_eq!(
        sent_headers(false, Some(Context::background()), None).await,
        "-|-"
    );
}

/// A context given to the service is the context of every request that carries none; a
/// request's own context comes first.
#[tokio::test]
async fn a_context_given_to_the_service_is_used_for_requests_without_one() {
    let client = ClientLayer::new()
        .timeout_ms_header("x-timeout-ms")
        .layer(echo_headers());
    let (bound, cancel) = Context::background().with_timeout(Duration::from_secs(2));
    let sent = |res: http::Response<_>| async move {
        let body = BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        text.split_once('|').unwrap().1.parse::<u64>().unwrap()
    };

    let res = client
        .clone()
        .with_context(bound.clone())
        .oneshot(http::Request::new(Full::default()))
        .await
        .unwrap();
    assert!(
        (1900..=2000).contains(&sent(res).await),
        "the service's deadline"
    );

    let (own, _h) = Context::background().with_timeout(Duration::from_secs(5));
    let req = http::Request::new(Full::default()).with_context(own);
    let res = client
        .clone()
        .with_context(bound.clone())
        .oneshot(req)
        .await
        .unwrap();
    assert!(
        (4900..=5000).contains(&sent(res).await),
        "the request's own deadline"
    );

    cancel.cancel();
    let err = client
        .with_context(bound)
        .oneshot(http::Request::new(Full::default()))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<ContextError>().expect("a ContextError");
    assert_eq!(err.err(), Error::Canceled);
}

/// A service that answers only after the deadline, with what tonic's server answers when
/// its own timeout fires: `grpc-status: 1` (CANCELLED).
fn late_cancelled(
    trailers_only: bool,
) -> impl tower::Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<
        http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>,
    >,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_req: http::Request<Full<Bytes>>| async move {
        // Blocks the poll past the deadline, so the response and the deadline coincide.
        std::thread::sleep(Duration::from_millis(80));
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "1".parse().unwrap());
        let mut res = if trailers_only {
            let mut res =
                http::Response::new(Full::<Bytes>::default().map_err(|e| match e {}).boxed());
            *res.headers_mut() = trailers;
            res
        } else {
            let frame = Ok(http_body::Frame::trailers(trailers));
            let body = http_body_util::StreamBody::new(tokio_stream::once(frame));
            http::Response::new(body.boxed())
        };
        res.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        Ok(res)
    })
}

#[tokio::test]
async fn cancelled_after_the_deadline_becomes_deadline_exceeded() {
    for trailers_only in [true, false] {
        let svc = ClientLayer::new().layer(late_cancelled(trailers_only));
        let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(50));
        let mut req = http::Request::new(Full::default());
        req.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        req.set_context(ctx);
        let res = svc.oneshot(req).await.unwrap();
        let status = if trailers_only {
            res.headers()["grpc-status"].clone()
        } else {
            let collected = res.into_body().collect().await.unwrap();
            collected.trailers().unwrap()["grpc-status"].clone()
        };
        assert_eq!(status, "4", "trailers only: {trailers_only}");
    }
}

#[tokio::test]
async fn grpc_calls_fail_with_tonic_statuses_that_say_why() {
    let svc = ClientLayer::new().layer(echo_headers());
    let (ctx, cancel) = Context::background().with_name("checkout").with_cancel();
    cancel.cancel();
    let line = line!() - 1;
    let mut req = http::Request::new(Full::default());
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    req.set_context(ctx);
    let err = svc.clone().oneshot(req).await.unwrap_err();
    let status = err
        .downcast_ref::<tonic::Status>()
        .expect("a tonic::Status");
    assert_eq!(status.code(), tonic::Code::Cancelled);
    let message = status.message();
    assert!(
        message.starts_with(&format!("canceled by cancel() at tests/client.rs:{line}:"))
            || message.contains(&format!("ctxkit-tower/tests/client.rs:{line}:")),
        "{message}"
    );
    assert!(message.ends_with(r#" in "checkout""#), "{message}");

    // A cause is named in the message, and the ContextError ends the chain of sources.
    #[derive(Debug)]
    struct UserLeft;
    impl std::fmt::Display for UserLeft {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the user left the checkout")
        }
    }
    impl std::error::Error for UserLeft {}
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel_with_cause(UserLeft);
    let mut req = http::Request::new(Full::default());
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let err = svc.oneshot(req.with_context(ctx)).await.unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(status.code(), tonic::Code::Cancelled);
    assert!(
        status.message().ends_with(": the user left the checkout"),
        "{}",
        status.message()
    );
    let context_error = source_chain(&*err)
        .find_map(|e| e.downcast_ref::<ContextError>())
        .expect("a ContextError among the sources");
    assert_eq!(context_error.err(), Error::Canceled);
    assert!(context_error.cause().unwrap().is::<UserLeft>());
}

/// `err` and its sources, in order.
fn source_chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// A plain-HTTP call cut short over loopback: the error says what the context says.
#[tokio::test]
async fn http_calls_cut_short_fail_with_the_contexts_err_cause_and_origin() {
    let (server, mut seen) = http_server(server_layer()).await;
    let client = ClientLayer::new()
        .timeout_ms_header("x-timeout-ms")
        .layer(common::http_client(false));
    let (ctx, cancel) = Context::background()
        .with_name("GET /checkout")
        .with_cancel();
    let req = http::Request::get(server.url("/wait"))
        .body(Full::<Bytes>::default())
        .unwrap()
        .with_context(ctx);
    let call = tokio::spawn(client.clone().oneshot(req));
    let s = next_seen(&mut seen).await;
    cancel.cancel_with_cause(ctxkit_tower::ServerCause::Shutdown);
    let line = line!() - 1;
    let err = call.await.unwrap().unwrap_err();
    let err = err.downcast_ref::<ContextError>().expect("a ContextError");
    assert_eq!(err.err(), Error::Canceled);
    assert_eq!(
        err.cause()
            .unwrap()
            .downcast_ref::<ctxkit_tower::ServerCause>(),
        Some(&ctxkit_tower::ServerCause::Shutdown)
    );
    let origin = err.origin().unwrap();
    assert_eq!(origin.location().unwrap().line(), line);
    assert_eq!(origin.context_name(), Some("GET /checkout"));
    assert_eq!(err.to_string(), origin.to_string());
    assert!(err.to_string().ends_with(": server shutting down"), "{err}");
    assert!(
        std::error::Error::source(err).is_none(),
        "aborted, not failed"
    );
    let (server_err, _) = done_within(&s.ctx, Duration::from_secs(1)).await.unwrap();
    assert_eq!(server_err, Error::Canceled);

    // A deadline: the origin says where it was set and its budget.
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(100));
    let line = line!() - 1;
    let req = http::Request::get(server.url("/wait"))
        .body(Full::<Bytes>::default())
        .unwrap()
        .with_context(ctx);
    let err = client.oneshot(req).await.unwrap_err();
    let err = err.downcast_ref::<ContextError>().expect("a ContextError");
    assert_eq!(err.err(), Error::DeadlineExceeded);
    assert!(err.cause().unwrap().is::<Error>());
    let text = err.to_string();
    assert!(
        text.starts_with("deadline exceeded: set at ")
            && text.contains(&format!("client.rs:{line}:"))
            && text.contains("(100ms)"),
        "{text}"
    );
}

fn server_layer() -> ServerLayer {
    ServerLayer::new(Context::background()).timeout_ms_header("x-timeout-ms")
}

/// The reqwest extension of one reqwest major version: sends the deadline, aborts on cancel,
/// fails fast when done, reports the deadline.
macro_rules! reqwest_test {
    ($name:ident, $reqwest:ident, $($ext:ident)::+) => {
        #[tokio::test]
        async fn $name() {
            use $($ext)::+::{RequestBuilderExt, SendError};
            let (server, mut seen) = http_server(server_layer()).await;
            let client = $reqwest::Client::new();

            let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(10));
            let call = {
                let (client, url, ctx) = (client.clone(), server.url("/wait"), ctx.clone());
                tokio::spawn(async move {
                    client
                        .get(url)
                        .context(&ctx)
                        .timeout_ms_header("x-timeout-ms")
                        .send()
                        .await
                })
            };
            let s = next_seen(&mut seen).await;
            let left = s.remaining.unwrap();
            assert!(left > Duration::from_secs(9) && left <= Duration::from_secs(10));
            cancel.cancel();
            let (err, _) = done_within(&s.ctx, Duration::from_millis(50))
                .await
                .expect("the server sees the abort within 50 ms");
            assert_eq!(err, Error::Canceled);
            match call.await.unwrap() {
                Err(SendError::Context(e)) => {
                    assert_eq!(e.err(), Error::Canceled);
                    assert!(e.cause().unwrap().is::<Error>());
                    let at = e.origin().unwrap().location().unwrap();
                    assert!(at.file().ends_with("client.rs"), "{at}");
                    assert!(std::error::Error::source(&e).is_none());
                }
                other => panic!("{other:?}"),
            }

            // Done already: fails fast.
            let err = client
                .get(server.url("/ok"))
                .context(&ctx)
                .send()
                .await
                .unwrap_err();
            assert_eq!(err.context_error().map(ContextError::err), Some(Error::Canceled));

            // Deadline.
            let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(100));
            let err = client
                .get(server.url("/wait"))
                .context(&ctx)
                .timeout_ms_header("x-timeout-ms")
                .send()
                .await
                .unwrap_err();
            let e = err.context_error().expect("the context's error");
            assert_eq!(e.err(), Error::DeadlineExceeded);
            let text = e.to_string();
            assert!(text.starts_with("deadline exceeded: set at ") && text.contains("(100ms)"), "{text}");
            let s = next_seen(&mut seen).await;
            assert_eq!(
                done_within(&s.ctx, Duration::from_secs(1)).await.unwrap().0,
                Error::DeadlineExceeded
            );

            // And a plain request completes.
            let res = client
                .get(server.url("/ok"))
                .context(&Context::background())
                .send()
                .await
                .unwrap();
            assert_eq!(res.text().await.unwrap(), "ok");
        }
    };
}

reqwest_test!(
    reqwest_0_13_sends_the_deadline_and_cancelling_aborts_the_request,
    reqwest,
    ctxkit_tower
);
reqwest_test!(
    reqwest_0_12_sends_the_deadline_and_cancelling_aborts_the_request,
    reqwest_0_12,
    ctxkit_tower::reqwest_0_12
);

/// An inner failure once the deadline has passed (tonic's own `TimeoutExpired`, a reset) is
/// reported as the deadline.
#[tokio::test]
async fn failures_after_the_deadline_become_deadline_exceeded() {
    #[derive(Debug)]
    struct TimeoutExpired;
    impl std::fmt::Display for TimeoutExpired {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("timeout expired")
        }
    }
    impl std::error::Error for TimeoutExpired {}

    for grpc in [true, false] {
        let inner = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
            std::thread::sleep(Duration::from_millis(80)); // past the deadline, in one poll
            Err::<http::Response<Full<Bytes>>, _>(TimeoutExpired)
        });
        let svc = ClientLayer::new().layer(inner);
        let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(50));
        let mut req = http::Request::new(Full::default());
        if grpc {
            req.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
        }
        let err = svc.oneshot(req.with_context(ctx)).await.unwrap_err();
        if grpc {
            let status = err.downcast_ref::<tonic::Status>().unwrap();
            assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        }
        // The ContextError (the error itself, or the end of the Status's sources) gives
        // back the inner failure as its source.
        let context_error = source_chain(&*err)
            .find_map(|e| e.downcast_ref::<ContextError>())
            .expect("a ContextError");
        assert_eq!(context_error.err(), Error::DeadlineExceeded);
        let source = std::error::Error::source(context_error).expect("the inner failure");
        assert!(source.is::<TimeoutExpired>(), "{source:?}");
    }

    // Before the deadline, the inner error is passed on as it is.
    let inner = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
        Err::<http::Response<Full<Bytes>>, _>(TimeoutExpired)
    });
    let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(5));
    let err = ClientLayer::new()
        .layer(inner)
        .oneshot(http::Request::new(Full::default()).with_context(ctx))
        .await
        .unwrap_err();
    assert!(err.is::<TimeoutExpired>());
}

/// When something was dropped, once it is.
type DropTime = std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>;

/// A call's stream that never ends, as a response body: no frame, ever. It notes when it is
/// dropped (dropping a real one resets the stream).
struct Endless(DropTime);

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Pending
    }
}

impl Drop for Endless {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(std::time::Instant::now());
    }
}

/// Checks that `dropped` is not set yet, then that it is set `slack` after `failed`: a stream
/// kept open for the slack past its deadline, then reset.
async fn assert_kept_for(dropped: &DropTime, failed: std::time::Instant, slack: Duration) {
    assert!(
        dropped.lock().unwrap().is_none(),
        "the stream was reset at the deadline"
    );
    tokio::time::sleep(slack * 4).await;
    let at = dropped
        .lock()
        .unwrap()
        .expect("the stream is dropped after the slack");
    assert!(
        at.duration_since(failed) >= slack,
        "{:?}",
        at.duration_since(failed)
    );
}

/// The inner service [`OwnTimer::channel`] gives.
type Channel = tower::util::BoxCloneService<
    http::Request<Full<Bytes>>,
    http::Response<Full<Bytes>>,
    std::io::Error,
>;

/// A stand-in for a gRPC channel with a timer of its own for the deadline it is sent (tonic's
/// has one for `grpc-timeout`): one call, which holds a stream until [`OwnTimer::fire`], then
/// fails and drops the stream, as tonic's channel does.
struct OwnTimer {
    /// When the call's stream was dropped.
    dropped: DropTime,
    /// The `grpc-timeout` the call was sent.
    sent: std::sync::Arc<std::sync::Mutex<Option<http::HeaderValue>>>,
    fire: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OwnTimer {
    /// The channel, as an inner service, and its probe.
    fn channel() -> (Channel, OwnTimer) {
        use std::sync::{Arc, Mutex};
        let probe = OwnTimer {
            dropped: Arc::new(Mutex::new(None)),
            sent: Arc::new(Mutex::new(None)),
            fire: None,
        };
        let (fire, fired) = tokio::sync::oneshot::channel::<()>();
        let fired = Arc::new(Mutex::new(Some(fired)));
        let (dropped, sent) = (Arc::clone(&probe.dropped), Arc::clone(&probe.sent));
        let inner = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
            *sent.lock().unwrap() = req.headers().get("grpc-timeout").cloned();
            let stream = Endless(Arc::clone(&dropped));
            let fired = fired.lock().unwrap().take().expect("one call");
            async move {
                let _stream = stream;
                let _ = fired.await; // the channel's own timer
                Err::<http::Response<Full<Bytes>>, _>(std::io::Error::other("timeout expired"))
            }
        });
        (
            tower::util::BoxCloneService::new(inner),
            OwnTimer {
                fire: Some(fire),
                ..probe
            },
        )
    }

    /// Sends a gRPC call with `ctx` through `svc`, and polls it once (it is pending).
    async fn start<S>(svc: &mut S, ctx: Context) -> std::pin::Pin<Box<S::Future>>
    where
        S: tower::Service<http::Request<Full<Bytes>>>,
        S::Error: std::fmt::Debug,
    {
        use std::future::Future;
        let mut req = http::Request::new(Full::default());
        req.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        let mut call = Box::pin(svc.ready().await.unwrap().call(req.with_context(ctx)));
        std::future::poll_fn(|cx| {
            assert!(call.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        call
    }

    /// Fires the channel's timer and awaits `call`, which must fail with a `tonic::Status`:
    /// that status, and when the call failed.
    async fn fire_and_fail<F, T>(
        &mut self,
        call: std::pin::Pin<Box<F>>,
    ) -> (tonic::Status, std::time::Instant)
    where
        F: std::future::Future<Output = Result<T, ctxkit_tower::BoxError>>,
        T: std::fmt::Debug,
    {
        self.fire.take().expect("fired once").send(()).unwrap();
        let failed = std::time::Instant::now();
        let err = call.await.unwrap_err();
        let status = err.downcast_ref::<tonic::Status>().unwrap().clone();
        (status, failed)
    }
}

/// An inner service with a timer of its own for the deadline it was sent (tonic's channel has
/// one for `grpc-timeout`) fails the call when that timer fires, and drops the call's stream as
/// it does. Once the deadline has passed, the call is not polled again, whichever timer fired
/// first: its stream stays open for the slack.
#[tokio::test]
async fn a_call_is_not_polled_once_its_deadline_has_passed() {
    let (inner, mut channel) = OwnTimer::channel();
    let slack = Duration::from_millis(50);
    let mut svc = ClientLayer::new().deadline_slack(slack).layer(inner);
    let clock = ctxkit::ManualClock::new();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_millis(100));
    let call = OwnTimer::start(&mut svc, ctx).await;

    // The deadline passes, and the inner timer fires with it.
    clock.advance(Duration::from_millis(100));
    let (status, failed) = channel.fire_and_fail(call).await;
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert_kept_for(&channel.dropped, failed, slack).await;
}

/// A streaming gRPC response whose body never ends, from a stand-in channel: the body notes
/// when it is dropped (dropping a real one resets its stream).
fn streaming_channel() -> (
    impl tower::Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<Endless>,
            Error = std::io::Error,
            Future = impl Send,
        > + Clone,
    DropTime,
) {
    let dropped = DropTime::default();
    let probe = std::sync::Arc::clone(&dropped);
    let inner = tower::service_fn(move |_req: http::Request<Full<Bytes>>| {
        let body = Endless(std::sync::Arc::clone(&dropped));
        async move { Ok::<_, std::io::Error>(http::Response::new(body)) }
    });
    (inner, probe)
}

/// A gRPC request carrying `ctx`.
fn grpc_request(ctx: Context) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::new(Full::default());
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    req.with_context(ctx)
}

/// A streaming response whose headers came before the deadline: when the deadline fires its
/// body fails with `DEADLINE_EXCEEDED` and is not read again, and a reader who then drops it
/// at once does not reset the stream before the slack is over.
#[tokio::test]
async fn a_response_body_is_kept_open_for_the_slack_past_its_deadline() {
    let (inner, dropped) = streaming_channel();
    let slack = Duration::from_millis(50);
    let svc = ClientLayer::new().deadline_slack(slack).layer(inner);
    let clock = ctxkit::ManualClock::new();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_millis(100));
    let mut body = svc.oneshot(grpc_request(ctx)).await.unwrap().into_body();
    std::future::poll_fn(|cx| {
        assert!(http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx).is_pending());
        std::task::Poll::Ready(())
    })
    .await;

    clock.advance(Duration::from_millis(100));
    let failed = std::time::Instant::now();
    let err = body.frame().await.expect("an error frame").unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(body.get_ref().is_none(), "the body went to the timer");
    assert!(body.frame().await.is_none(), "and is not read again");
    drop(body); // the reader gives up at once
    assert_kept_for(&dropped, failed, slack).await;
}

/// A response body whose context is cancelled fails with `Canceled` and is dropped at once,
/// which resets its stream: a cancel is not held back.
#[tokio::test]
async fn a_response_body_whose_context_is_cancelled_is_dropped_at_once() {
    let (inner, dropped) = streaming_channel();
    let svc = ClientLayer::new()
        .deadline_slack(Duration::from_secs(60))
        .layer(inner);
    let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(60));
    let res = svc.oneshot(grpc_request(ctx)).await.unwrap();
    let mut body = res.into_body();
    assert!(body.get_ref().is_some());
    cancel.cancel();
    let err = body.frame().await.expect("an error frame").unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(status.code(), tonic::Code::Cancelled);
    assert!(dropped.lock().unwrap().is_some(), "dropped when it failed");
}

/// With a headroom, a gRPC call is sent its time left less the headroom, and the channel
/// (tonic's) ends it there with a timer of its own: the call fails then with
/// `DEADLINE_EXCEEDED`, saying the time sent ran out, while its context still has the
/// headroom left, and its stream stays open for the slack, as at the context's deadline.
#[tokio::test]
async fn a_grpc_call_ends_at_the_time_sent_and_keeps_its_stream_for_the_slack() {
    let (inner, mut channel) = OwnTimer::channel();
    let slack = Duration::from_millis(50);
    let mut svc = ClientLayer::new()
        .headroom(Duration::from_millis(300))
        .deadline_slack(slack)
        .layer(inner);
    let clock = ctxkit::ManualClock::new();
    let (ctx, _h) = Context::background()
        .with_clock(&clock)
        .with_timeout(Duration::from_millis(1000));
    let call = OwnTimer::start(&mut svc, ctx.clone()).await;
    assert_eq!(channel.sent.lock().unwrap().as_ref().unwrap(), "700000u");

    // The time sent passes, and the channel's timer fires with it.
    clock.advance(Duration::from_millis(700));
    let (status, failed) = channel.fire_and_fail(call).await;
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(
        status.message().contains("time sent to the server ran out"),
        "{}",
        status.message()
    );
    assert_eq!(ctx.err(), None, "the context keeps its headroom");
    assert_kept_for(&channel.dropped, failed, slack).await;
}

/// A tonic call over loopback, cancelled with a cause while the server works: the `Status`
/// names the cause, and the `ContextError` at the end of its sources has the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_calls_cut_short_name_the_cause_in_the_status() {
    #[derive(Debug)]
    struct Superseded;
    impl std::fmt::Display for Superseded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a newer request superseded this one")
        }
    }
    impl std::error::Error for Superseded {}

    let (server, mut seen) = grpc_server(server_layer(), Duration::ZERO, None).await;
    let mut client = grpc_client(server.addr).await;
    let (ctx, cancel) = Context::background().with_name("search").with_cancel();
    let req = tonic::Request::new(pb::WorkRequest { millis: 30_000 }).with_context(ctx);
    let call = tokio::spawn(async move { client.work(req).await });
    let s = next_seen(&mut seen).await;
    cancel.cancel_with_cause(Superseded);
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Cancelled);
    let message = status.message();
    assert!(
        message.starts_with("canceled by cancel_with_cause() at ")
            && message.ends_with(r#" in "search": a newer request superseded this one"#),
        "{message}"
    );
    let context_error = source_chain(&status)
        .find_map(|e| e.downcast_ref::<ContextError>())
        .expect("a ContextError among the Status's sources");
    assert!(context_error.cause().unwrap().is::<Superseded>());
    assert_eq!(
        context_error.origin().unwrap().context_name(),
        Some("search")
    );
    let (err, _) = done_within(&s.ctx, Duration::from_secs(1)).await.unwrap();
    assert_eq!(err, Error::Canceled);
}
