//! An application's own `Context` in the request extensions (axum's `Extension(app_root)`)
//! neither hides the request's context nor is hidden by it: `RequestContext`,
//! `request.context()` and tonic's `request.context()` give the request's context, with the
//! client's deadline, wherever the application's layer sits. Loopback only.

mod common;

use std::time::Duration;

use axum::Extension;
use bytes::Bytes;
use common::*;
use ctxkit::{Context, Error};
use ctxkit_tower::{ClientLayer, RequestContext, RequestContextExt, ServerLayer};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_layer::Layer;

/// A value only the application's root carries.
#[derive(Debug)]
struct AppRoot(&'static str);

fn app_root() -> Context {
    Context::background().with(AppRoot("app"))
}

/// Answers what the handler found: the request context's time left (ms, or "none") and
/// whether `Extension<Context>` is still the application's root.
async fn handler(
    RequestContext(ctx): RequestContext,
    Extension(app): Extension<Context>,
    req: http::Request<axum::body::Body>,
) -> String {
    let from_request = req.context();
    let left = |c: &Context| {
        c.remaining()
            .map_or("none".to_owned(), |d| d.as_millis().to_string())
    };
    format!(
        "{}|{}|{}|{}",
        left(&ctx),
        left(&from_request),
        app.get::<AppRoot>().map_or("lost", |a| a.0),
        app.deadline().is_some(),
    )
}

async fn ask(server: &TestServer) -> String {
    let client = ClientLayer::new()
        .timeout_ms_header("x-timeout-ms")
        .layer(http_client(false));
    let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(5));
    let req = http::Request::get(server.url("/"))
        .body(Full::<Bytes>::default())
        .unwrap()
        .with_context(ctx);
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn check(answer: &str, case: &str) {
    let parts: Vec<&str> = answer.split('|').collect();
    let [extractor, request, app, app_deadline] = parts[..] else {
        panic!("{case}: {answer:?}");
    };
    for (what, left) in [
        ("RequestContext", extractor),
        ("request.context()", request),
    ] {
        let left: u64 = left
            .parse()
            .unwrap_or_else(|_| panic!("{case}: {what} has no deadline: {answer:?}"));
        assert!((4000..=5000).contains(&left), "{case}: {what}: {left} ms");
    }
    assert_eq!(app, "app", "{case}: the application's Extension<Context>");
    assert_eq!(
        app_deadline, "false",
        "{case}: the application's root is untouched"
    );
}

#[tokio::test]
async fn an_app_extension_context_inside_the_router_hides_nothing() {
    let router = axum::Router::new()
        .route("/", axum::routing::get(handler))
        .layer(Extension(app_root()));
    let layer = ServerLayer::new(Context::background()).timeout_ms_header("x-timeout-ms");
    let server = serve(router, layer).await;
    check(&ask(&server).await, "ServerLayer around the router");
}

#[tokio::test]
async fn an_app_extension_context_on_either_side_of_the_layer_hides_nothing() {
    let layer = || ServerLayer::new(Context::background()).timeout_ms_header("x-timeout-ms");
    // The application's layer outside ServerLayer (added last): it runs first.
    let outer = axum::Router::new()
        .route("/", axum::routing::get(handler))
        .layer(layer())
        .layer(Extension(app_root()));
    let server = serve_service(outer).await;
    check(&ask(&server).await, "Extension outside ServerLayer");
    // And inside it (added first): it runs after ServerLayer, as the case did.
    let inner = axum::Router::new()
        .route("/", axum::routing::get(handler))
        .layer(Extension(app_root()))
        .layer(layer());
    let server = serve_service(inner).await;
    check(&ask(&server).await, "Extension inside ServerLayer");
}

/// tonic's `request.context()` on a gRPC server whose router has the application's
/// `Extension(Context)`: the handler sees the client's deadline, and its context ends with
/// `DeadlineExceeded`, which only the request's context (not the application's root) does.
#[tokio::test]
async fn tonic_request_context_is_the_requests_beside_an_app_extension() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let worker = ProbeWorker {
        seen: tx,
        delay: Duration::ZERO,
        next: None,
    };
    let router = tonic::service::Routes::new(common::pb::worker_server::WorkerServer::new(worker))
        .into_axum_router()
        .layer(Extension(app_root()));
    let server = serve(router, ServerLayer::new(Context::background())).await;
    let mut client = grpc_client(server.addr).await;
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(300));
    let req = tonic::Request::new(common::pb::WorkRequest { millis: 10_000 }).with_context(ctx);
    let status = client.work(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    let s = next_seen(&mut seen).await;
    let left = s.remaining.expect("the handler sees the client's deadline");
    assert!(left > Duration::from_millis(200) && left <= Duration::from_millis(300));
    assert!(
        s.ctx.get::<AppRoot>().is_none(),
        "not the application's root"
    );
    let (err, _) = done_within(&s.ctx, Duration::from_secs(1)).await.unwrap();
    assert_eq!(err, Error::DeadlineExceeded);
}
