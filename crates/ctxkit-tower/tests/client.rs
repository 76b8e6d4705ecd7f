//! The client layer and the reqwest extension: what they send, and what they report.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use ctxkit::{Context, Error};
use ctxkit_tower::{ClientLayer, RequestContextExt, ServerLayer};
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
async fn grpc_calls_fail_with_tonic_statuses() {
    let svc = ClientLayer::new().layer(echo_headers());
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let mut req = http::Request::new(Full::default());
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    req.set_context(ctx);
    let err = svc.oneshot(req).await.unwrap_err();
    let status = err
        .downcast_ref::<tonic::Status>()
        .expect("a tonic::Status");
    assert_eq!(status.code(), tonic::Code::Cancelled);
    assert_eq!(status.message(), "context canceled");
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
            assert!(matches!(
                call.await.unwrap(),
                Err(SendError::Context(Error::Canceled))
            ));

            // Done already: fails fast.
            let err = client
                .get(server.url("/ok"))
                .context(&ctx)
                .send()
                .await
                .unwrap_err();
            assert!(matches!(err, SendError::Context(Error::Canceled)));

            // Deadline.
            let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(100));
            let err = client
                .get(server.url("/wait"))
                .context(&ctx)
                .timeout_ms_header("x-timeout-ms")
                .send()
                .await
                .unwrap_err();
            assert!(matches!(err, SendError::Context(Error::DeadlineExceeded)));
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
        } else {
            assert_eq!(err.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
        }
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
