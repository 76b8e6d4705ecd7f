//! `ServerLayer::with_shutdown` over loopback: new requests turned away while draining (HTTP
//! 503 over HTTP/1.1 and HTTP/2, gRPC `UNAVAILABLE`), requests in flight left to finish, and
//! those still running at the end of the grace period cut off with the shutdown as their
//! cause, origin and outcome.

mod common;

use std::time::Duration;

use bytes::Bytes;
use ctxkit::{Context, Error, Shutdown, ShutdownCause};
use ctxkit_tower::{RequestContext, ServerLayer};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;

use common::pb::WorkRequest;

/// `GET /sleep?ms=N` sleeps N ms unless its context ends first; `/debug/contexts.json` is the
/// layer's live page.
async fn http_server(layer: ServerLayer) -> common::TestServer {
    #[derive(serde::Deserialize)]
    struct Q {
        ms: u64,
    }
    let live = layer.live_page();
    let router = axum::Router::new()
        .route(
            "/sleep",
            axum::routing::get(
                |RequestContext(ctx): RequestContext, q: axum::extract::Query<Q>| async move {
                    match ctx
                        .run(tokio::time::sleep(Duration::from_millis(q.ms)))
                        .await
                    {
                        Ok(()) => (http::StatusCode::OK, "slept".to_owned()),
                        Err(_) => (
                            http::StatusCode::SERVICE_UNAVAILABLE,
                            format!("cut off: {}", ctx.cause().unwrap()),
                        ),
                    }
                },
            ),
        )
        .route_service("/debug/contexts.json", live);
    common::serve(router, layer).await
}

async fn get(
    client: &common::HttpClient,
    server: &common::TestServer,
    path: &str,
) -> (http::response::Parts, String) {
    let req = http::Request::get(server.url(path))
        .body(Full::<Bytes>::default())
        .unwrap();
    let (parts, body) = client.request(req).await.unwrap().into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts, String::from_utf8(body.to_vec()).unwrap())
}

/// Waits (at most 5 s) until `shutdown` counts `n` requests in flight.
async fn in_flight(shutdown: &Shutdown, n: usize) {
    let start = std::time::Instant::now();
    while shutdown.in_flight() != n {
        assert!(start.elapsed() < Duration::from_secs(5), "{shutdown:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_finish_while_new_ones_get_503() {
    let shutdown = Shutdown::new(&Context::background());
    let server = http_server(ServerLayer::with_shutdown(&shutdown)).await;
    let http1 = common::http_client(false);
    let http2 = common::http_client(true);
    let (c1, c2) = (http1.clone(), http2.clone());
    let url = server.url("/sleep?ms=300");
    let slow: Vec<_> = [c1, c2]
        .into_iter()
        .map(|client| {
            let req = http::Request::get(&url)
                .body(Full::<Bytes>::default())
                .unwrap();
            tokio::spawn(async move {
                let res = client.request(req).await.unwrap();
                let status = res.status();
                (status, res.into_body().collect().await.unwrap().to_bytes())
            })
        })
        .collect();
    in_flight(&shutdown, 2).await;
    shutdown.begin(Duration::from_secs(5));

    // HTTP/1.1: 503, and the connection is closed so the next request goes elsewhere.
    let (parts, text) = get(&http1, &server, "/sleep?ms=1").await;
    assert_eq!(parts.status, 503, "{text}");
    assert_eq!(parts.headers["connection"], "close");
    assert_eq!(text, "server shutting down: not taking new requests");
    // HTTP/2: 503 on the same connection (no connection header in HTTP/2).
    let (parts, text) = get(&http2, &server, "/sleep?ms=1").await;
    assert_eq!(parts.status, 503);
    assert_eq!(parts.version, http::Version::HTTP_2);
    assert!(parts.headers.get("connection").is_none());
    assert_eq!(text, "server shutting down: not taking new requests");

    let report = tokio::time::timeout(Duration::from_secs(5), shutdown.done())
        .await
        .expect("drained well within the grace period");
    assert!(report.drained());
    assert_eq!((report.finished(), report.cut_off()), (2, 0));
    for call in slow {
        let (status, body) = call.await.unwrap();
        assert_eq!((status, &body[..]), (http::StatusCode::OK, &b"slept"[..]));
    }
    assert!(!shutdown.hard().is_done());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_the_grace_period_cuts_off_the_rest_with_the_shutdown_as_cause() {
    let shutdown = Shutdown::new(&Context::background());
    let layer = ServerLayer::with_shutdown(&shutdown);
    let page = layer.live_page();
    let server = http_server(layer).await;
    let client = common::http_client(false);
    let (c, url) = (client.clone(), server.url("/sleep?ms=30000"));
    let slow = tokio::spawn(async move {
        let req = http::Request::get(url)
            .body(Full::<Bytes>::default())
            .unwrap();
        let res = c.request(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    });
    in_flight(&shutdown, 1).await;
    let begun = std::time::Instant::now();
    shutdown.begin(Duration::from_millis(200));
    let report = tokio::time::timeout(Duration::from_secs(5), shutdown.done())
        .await
        .unwrap();
    assert!(begun.elapsed() >= Duration::from_millis(200));
    assert!(!report.drained());
    assert_eq!((report.finished(), report.cut_off()), (0, 1));
    let (status, text) = slow.await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(text, "cut off: shutting down: the grace period ended");
    // Still counted as cut off once its handler has answered.
    assert_eq!(shutdown.wait().cut_off(), 1);

    // The request's outcome on the live page is `shutdown`, with the origin that says why.
    // (Read from the page in-process: the server turns new requests away.)
    let req = http::Request::get("/debug/contexts.json")
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = page.oneshot(req).await.unwrap();
    let json: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    let recent = json["recent"].as_array().unwrap();
    let cut = recent
        .iter()
        .find(|r| r["name"] == "GET /sleep")
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(cut["outcome"], "shutdown", "{cut}");
    assert_eq!(cut["err"], "context canceled", "{cut}");
    let origin = cut["origin"].as_str().unwrap();
    assert!(
        origin.ends_with("shutting down: the grace period ended"),
        "{origin}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_get_unavailable_while_draining_and_cut_off_calls_know_why() {
    let shutdown = Shutdown::new(&Context::background());
    let (server, mut seen) =
        common::grpc_server(ServerLayer::with_shutdown(&shutdown), Duration::ZERO, None).await;
    let mut client = common::grpc_client(server.addr).await;
    let mut c = client.clone();
    let slow = tokio::spawn(async move { c.work(WorkRequest { millis: 30_000 }).await });
    let handler = common::next_seen(&mut seen).await;
    shutdown.begin(Duration::from_millis(200));

    let status = client.work(WorkRequest { millis: 1 }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        status.message(),
        "server shutting down: not taking new requests"
    );

    let status = slow.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
    assert_eq!(handler.ctx.err(), Some(Error::Canceled));
    let cause = handler.ctx.cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<ShutdownCause>(),
        Some(&ShutdownCause::GraceEnded)
    );
    let origin = handler.ctx.origin().unwrap().to_string();
    assert!(
        origin.ends_with("shutting down: the grace period ended"),
        "{origin}"
    );
    let report = shutdown.wait();
    assert_eq!((report.drained(), report.cut_off()), (false, 1));
}
