//! A server with slow handlers and the live page mounted, for the page's tests.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Query;
use ctxkit::{CancelHandle, Context};
use ctxkit_tower::{RequestContext, ServerLayer};
use http_body_util::{BodyExt, Full};

use super::{http_client, serve, TestServer};

/// A name a handler gives a context from its input: markup that must show as text.
pub const SCRIPT: &str =
    "<script>alert(1)</script><img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">";

/// A path that reaches the server as it is (quotes pass the `http` crate's URI parser, `<`
/// does not): it would end an HTML attribute if printed unescaped.
pub const QUOTED_PATH: &str = "/q'\"onmouseover=alert(1)";

/// Serves, behind a `ServerLayer` (under `x-timeout-ms` deadlines):
/// - `GET /slow/{id}`: waits until its context is done;
/// - `GET /lookup?q=...`: names a context of its own `lookup {q}`, and waits;
/// - `/debug/contexts` and `/debug/contexts.json`: the live page;
/// - any other path: waits until its context is done.
///
/// Returns the server and the handle that shuts it down (cancels its root).
pub async fn live_server() -> (TestServer, CancelHandle) {
    let (root, shutdown) = Context::background().with_cancel();
    let layer = ServerLayer::new(root).timeout_ms_header("x-timeout-ms");
    let page = layer.live_page();
    let wait = |RequestContext(ctx): RequestContext| async move {
        ctx.done().await;
        "done"
    };
    let router =
        axum::Router::new()
            .route("/slow/{id}", axum::routing::get(wait))
            .route(
                "/lookup",
                axum::routing::get(
                    |RequestContext(ctx): RequestContext,
                     Query(q): Query<HashMap<String, String>>| async move {
                        let name = format!("lookup {}", q.get("q").map_or("", String::as_str));
                        let (lookup, _h) = ctx.with_name(name).with_cancel();
                        lookup.done().await;
                        "done"
                    },
                ),
            )
            .route_service("/debug/contexts", page.clone())
            .route_service("/debug/contexts.json", page)
            .fallback(wait);
    (serve(router, layer).await, shutdown)
}

/// Starts a GET of `path` that stays in flight (the task ends when the server answers).
pub fn start(server: &TestServer, path: &str, timeout_ms: Option<u64>) {
    let mut req = http::Request::get(server.url(path))
        .body(Full::default())
        .unwrap();
    if let Some(ms) = timeout_ms {
        req.headers_mut()
            .insert("x-timeout-ms", ms.to_string().parse().unwrap());
    }
    let client = http_client(false);
    tokio::spawn(async move {
        let _ = client.request(req).await;
    });
}

/// The status, headers and body of a GET of `path`.
pub async fn fetch(server: &TestServer, path: &str) -> (http::response::Parts, String) {
    let req = http::Request::get(server.url(path))
        .body(Full::default())
        .unwrap();
    let res = http_client(false).request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts, String::from_utf8(body.to_vec()).unwrap())
}

/// The live page's JSON, once `ready` holds for it (at most 5 s).
pub async fn json_when(
    server: &TestServer,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let (_, body) = fetch(server, "/debug/contexts.json").await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        if ready(&json) {
            return json;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the page did not get there in 5 s: {json:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The names of the entries at `depth` that are not done.
pub fn live_names(json: &serde_json::Value, depth: u64) -> Vec<String> {
    json["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["depth"] == depth && e["err"].is_null())
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect()
}
