//! A response whose body the protocol omits (to `HEAD`, and every 204 and 304) ends the
//! request's context as a complete response does, never as a client that went away: over
//! HTTP/1.1 and HTTP/2, with the layer around the router or inside it. Loopback only.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use ctxkit::{Context, Error};
use ctxkit_tower::{RequestContext, ServerCause, ServerLayer};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

/// A router whose `/status/{code}` records its context and answers `code` with a body, which
/// the protocol drops for `HEAD`, 204 and 304.
fn router(seen: mpsc::UnboundedSender<Seen>) -> axum::Router {
    axum::Router::new().route(
        "/status/{code}",
        axum::routing::get(
            move |RequestContext(ctx): RequestContext,
                  axum::extract::Path(code): axum::extract::Path<u16>| {
                let seen = seen.clone();
                async move {
                    record(&ctx, &seen);
                    (
                        StatusCode::from_u16(code).unwrap(),
                        "a body the protocol may omit",
                    )
                }
            },
        ),
    )
}

/// Where the layer sits: around the router (it sees the handler's body), or inside it
/// (`Router::layer`: axum replaces the body of a `HEAD` response after the layer).
#[derive(Clone, Copy, Debug)]
enum Placement {
    AroundRouter,
    InsideRouter,
}

async fn server(placement: Placement) -> (TestServer, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let layer = ServerLayer::new(Context::background()).timeout_ms_header("x-timeout-ms");
    let server = match placement {
        Placement::AroundRouter => serve(router(tx), layer).await,
        Placement::InsideRouter => serve_service(router(tx).layer(layer)).await,
    };
    (server, rx)
}

/// Sends `method /status/{status}` and checks that the handler's context ends with plain
/// `Canceled` (the response is complete), not with [`ServerCause::ClientGone`].
async fn check(placement: Placement, http2: bool, method: Method, status: u16) {
    let (server, mut seen) = server(placement).await;
    let client = http_client(http2);
    let req = http::Request::builder()
        .method(method.clone())
        .uri(server.url(&format!("/status/{status}")))
        .header("x-timeout-ms", "10000")
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let case = format!(
        "{placement:?}, HTTP/{}, {method} {status}",
        if http2 { 2 } else { 1 }
    );
    assert_eq!(res.status().as_u16(), status, "{case}");
    if http2 {
        assert_eq!(res.version(), http::Version::HTTP_2, "{case}");
    }
    let body = res.into_body().collect().await.unwrap().to_bytes();
    // hyper's HTTP/1.1 server drops the body unpolled; its HTTP/2 server sends what it is
    // given (the context has ended by then either way).
    if !http2 && (method == Method::HEAD || status == 204 || status == 304) {
        assert!(body.is_empty(), "{case}: the protocol omits the body");
    }
    let s = next_seen(&mut seen).await;
    let (err, _) = done_within(&s.ctx, Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("{case}: the context ends with the response"));
    assert_eq!(err, Error::Canceled, "{case}");
    let cause = s.ctx.cause().expect("a done context has a cause");
    assert!(
        cause.downcast_ref::<ServerCause>().is_none(),
        "{case}: the cause is {cause}, as if the client had gone"
    );
    assert_eq!(
        cause.downcast_ref::<Error>(),
        Some(&Error::Canceled),
        "{case}"
    );
    assert_eq!(s.spawned.await.unwrap(), Error::Canceled, "{case}");
}

async fn check_all(http2: bool) {
    for placement in [Placement::AroundRouter, Placement::InsideRouter] {
        check(placement, http2, Method::HEAD, 200).await;
        check(placement, http2, Method::GET, 204).await;
        check(placement, http2, Method::GET, 304).await;
        check(placement, http2, Method::HEAD, 304).await;
        // The control: a body that is sent ends the context the same way.
        check(placement, http2, Method::GET, 200).await;
    }
}

#[tokio::test]
async fn head_204_and_304_are_complete_responses_over_http1() {
    check_all(false).await;
}

#[tokio::test]
async fn head_204_and_304_are_complete_responses_over_http2() {
    check_all(true).await;
}

/// A handler's own service (no router) answers `HEAD` with a body: hyper drops it unpolled.
#[tokio::test]
async fn a_head_body_dropped_by_hyper_is_not_a_client_gone() {
    use tower_layer::Layer;
    let (tx, mut seen) = mpsc::unbounded_channel();
    let handler = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let tx = tx.clone();
        async move {
            use ctxkit_tower::RequestContextExt;
            record(&req.context(), &tx);
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
                b"a body hyper drops for HEAD",
            ))))
        }
    });
    let server = serve_service(ServerLayer::new(Context::background()).layer(handler)).await;
    for http2 in [false, true] {
        let req = http::Request::head(server.url("/"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let res = http_client(http2).request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let s = next_seen(&mut seen).await;
        let (err, _) = done_within(&s.ctx, Duration::from_secs(2)).await.unwrap();
        assert_eq!(err, Error::Canceled);
        assert!(
            s.ctx
                .cause()
                .unwrap()
                .downcast_ref::<ServerCause>()
                .is_none(),
            "HTTP/{}: {}",
            if http2 { 2 } else { 1 },
            s.ctx.cause().unwrap()
        );
    }
}
