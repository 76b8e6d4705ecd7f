//! W3C trace context: extracted into the request context by the server layer, injected from
//! it by the client layer and the reqwest extension, with the global propagator.

mod common;

use bytes::Bytes;
use ctxkit::Context;
use ctxkit_tower::{
    ClientLayer, RequestBuilderExt, RequestContext, RequestContextExt, ServerLayer, TraceContext,
};
use http_body_util::{BodyExt, Full};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tower::ServiceExt;
use tower_layer::Layer;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn trace_id(ctx: &Context) -> Option<String> {
    ctx.get::<TraceContext>()
        .map(|t| t.0.span().span_context().trace_id().to_string())
}

/// One test: it sets the process-wide propagator.
#[tokio::test]
async fn the_trace_context_crosses_a_server_and_a_client() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    // Downstream service: echoes the traceparent it got.
    let downstream = common::serve(
        axum::Router::new().route(
            "/echo",
            axum::routing::get(|headers: http::HeaderMap| async move {
                headers
                    .get("traceparent")
                    .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
            }),
        ),
        ServerLayer::new(Context::background()),
    )
    .await;

    // Upstream: reads the trace id from its request context, and calls downstream with it.
    let url = downstream.url("/echo");
    let upstream = common::serve(
        axum::Router::new().route(
            "/",
            axum::routing::get(move |RequestContext(ctx): RequestContext| {
                let url = url.clone();
                async move {
                    let client = ClientLayer::new().layer(common::http_client(false));
                    let req = http::Request::get(url)
                        .body(Full::<Bytes>::default())
                        .unwrap()
                        .with_context(ctx.clone());
                    let res = client.oneshot(req).await.unwrap();
                    let echoed = res.into_body().collect().await.unwrap().to_bytes();
                    format!(
                        "{}|{}",
                        trace_id(&ctx).unwrap_or_default(),
                        String::from_utf8(echoed.to_vec()).unwrap()
                    )
                }
            }),
        ),
        ServerLayer::new(Context::background()),
    )
    .await;

    let res = reqwest::Client::new()
        .get(upstream.url("/"))
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (seen, echoed) = res.split_once('|').unwrap();
    assert_eq!(seen, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        echoed.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{echoed}"
    );

    // reqwest injects the trace context of the context it is given.
    let span = SpanContext::new(
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
        SpanId::from_hex("b7ad6b7169203331").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let otel = opentelemetry::Context::new().with_remote_span_context(span);
    let ctx = Context::background().with(TraceContext(otel));
    let echoed = reqwest::Client::new()
        .get(downstream.url("/echo"))
        .context(&ctx)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        echoed,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );

    // No trace headers: nothing is stored.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let probe = common::serve(
        axum::Router::new().route(
            "/",
            axum::routing::get(move |RequestContext(ctx): RequestContext| {
                let _ = tx.send(ctx.get::<TraceContext>().is_some());
                async { "" }
            }),
        ),
        ServerLayer::new(Context::background()),
    )
    .await;
    reqwest::get(probe.url("/")).await.unwrap();
    assert_eq!(rx.recv().await, Some(false));
}
