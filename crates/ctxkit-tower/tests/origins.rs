//! Request and call contexts carry names, their origins say why they ended (the client went
//! away, the server shut down, a deadline header), and the request's span records both.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ctxkit::inspect::Snapshot;
use ctxkit::{Context, Error, OriginKind};
use ctxkit_tower::{ClientLayer, DeadlineSource, RequestContextExt, ServerCause, ServerLayer};
use http_body_util::Full;
use tower::ServiceExt;
use tower_layer::Layer;

fn get(url: &str, timeout_ms: Option<u64>) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::get(url).body(Full::default()).unwrap();
    if let Some(ms) = timeout_ms {
        req.headers_mut()
            .insert("x-timeout-ms", ms.to_string().parse().unwrap());
    }
    req
}

fn layer(root: Context) -> ServerLayer {
    ServerLayer::new(root).timeout_ms_header("x-timeout-ms")
}

#[tokio::test]
async fn http_requests_are_named_method_and_path_without_the_query() {
    let (server, mut seen) = http_server(layer(Context::background())).await;
    let call = tokio::spawn(http_client(false).request(get(&server.url("/wait?secret=1"), None)));
    let s = next_seen(&mut seen).await;
    assert_eq!(s.ctx.name(), Some("GET /wait"));
    assert_eq!(Snapshot::of(&s.ctx).entries()[0].name(), Some("GET /wait"));
    call.abort();
}

#[tokio::test]
async fn names_keep_what_the_network_sent_and_are_capped() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let router = axum::Router::new().fallback(
        move |ctxkit_tower::RequestContext(ctx): ctxkit_tower::RequestContext| async move {
            record(&ctx, &tx);
            "seen"
        },
    );
    let server = serve(router, layer(Context::background())).await;
    let client = http_client(false);

    let quoted = "/a'\"{}|\\^b";
    client
        .request(get(&server.url(quoted), None))
        .await
        .unwrap();
    assert_eq!(
        next_seen(&mut seen).await.ctx.name(),
        Some(&*format!("GET {quoted}"))
    );

    let long = format!("/{}", "x".repeat(10_000));
    client.request(get(&server.url(&long), None)).await.unwrap();
    let s = next_seen(&mut seen).await;
    let name = s.ctx.name().unwrap();
    assert!(name.len() <= 256, "{}", name.len());
    assert!(
        name.starts_with("GET /xxx") && name.ends_with('…'),
        "{name}"
    );
}

#[tokio::test]
async fn grpc_requests_and_calls_are_named_by_the_method_path() {
    // A → B: A's handler calls B under its own context, through the client layer.
    let (b, mut seen_b) = grpc_server(
        ServerLayer::new(Context::background()),
        Duration::from_millis(300),
        None,
    )
    .await;
    let b_client = grpc_client(b.addr).await;
    let (root_a, _h) = Context::background().with_cancel();
    let (a, mut seen_a) = grpc_server(
        ServerLayer::new(root_a.clone()),
        Duration::ZERO,
        Some(b_client),
    )
    .await;
    let mut client = grpc_client(a.addr).await;
    let call =
        tokio::spawn(async move { client.work(common::pb::WorkRequest { millis: 1 }).await });
    let at_a = next_seen(&mut seen_a).await;
    let at_b = next_seen(&mut seen_b).await;
    let method = "/ctxkit.demo.v1.Worker/Work";
    assert_eq!(at_a.ctx.name(), Some(method));
    assert_eq!(at_b.ctx.name(), Some(method));
    // While B works, A's tree shows the call under the request.
    let snapshot = Snapshot::of(&root_a);
    let lines: Vec<(usize, Option<&str>, &str)> = snapshot
        .entries()
        .iter()
        .map(|e| (e.depth(), e.name(), e.kind()))
        .collect();
    let request = lines
        .iter()
        .position(|&(_, name, kind)| name == Some(method) && kind == "WithCancel")
        .unwrap_or_else(|| panic!("{snapshot}"));
    let (depth, name, _) = lines[request + 1];
    assert_eq!(
        (depth, name),
        (lines[request].0 + 1, Some(method)),
        "{snapshot}"
    );
    let created = snapshot.entries()[request + 1].created_at().unwrap();
    assert!(created.file().ends_with("client.rs"), "{snapshot}");
    call.await.unwrap().unwrap();
}

#[tokio::test]
async fn http_client_calls_are_named_like_requests() {
    let (server, mut seen) = http_server(layer(Context::background())).await;
    let client = ClientLayer::new().layer(http_client(false));
    let (root, _h) = Context::background().with_cancel();
    let call = tokio::spawn(
        client.oneshot(get(&server.url("/wait?x=1"), None).with_context(root.clone())),
    );
    let _ = next_seen(&mut seen).await;
    let snapshot = Snapshot::of(&root);
    let entries = snapshot.entries();
    assert_eq!(entries.len(), 2, "{snapshot}");
    assert_eq!(
        (entries[1].depth(), entries[1].name()),
        (1, Some("GET /wait"))
    );
    call.abort();
}

#[tokio::test]
async fn without_call_contexts_a_call_shows_nothing_and_still_ends_with_its_request() {
    let (server, mut seen) = http_server(layer(Context::background())).await;
    let client = ClientLayer::new()
        .call_contexts(false)
        .layer(http_client(false));
    let (root, cancel) = Context::background().with_cancel();
    let call =
        tokio::spawn(client.oneshot(get(&server.url("/wait"), None).with_context(root.clone())));
    let s = next_seen(&mut seen).await;
    let snapshot = Snapshot::of(&root);
    assert_eq!(snapshot.entries().len(), 1, "{snapshot}");
    cancel.cancel();
    let err = call.await.unwrap().unwrap_err();
    let err = err.downcast_ref::<ctxkit_tower::ContextError>().unwrap();
    assert_eq!(err.err(), Error::Canceled);
    assert_eq!(err.origin(), root.origin());
    done_within(&s.ctx, Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn a_client_that_went_away_is_the_origin() {
    let (server, mut seen) = http_server(layer(Context::background())).await;
    let call = tokio::spawn(http_client(false).request(get(&server.url("/wait"), None)));
    let s = next_seen(&mut seen).await;
    call.abort();
    done_within(&s.ctx, Duration::from_secs(2)).await.unwrap();
    let origin = s.ctx.origin().unwrap();
    assert_eq!(origin.kind(), OriginKind::Cancel);
    assert_eq!(origin.err(), Error::Canceled);
    assert_eq!(origin.context_name(), Some("GET /wait"));
    let text = origin.to_string();
    assert!(
        text.starts_with("canceled by cancel_with_cause() at "),
        "{text}"
    );
    assert!(
        text.ends_with(r#"in "GET /wait": client went away before the response was complete"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_shutdown_is_the_origin() {
    let (root, shutdown) = Context::background().with_name("server").with_cancel();
    let (server, mut seen) = http_server(layer(root)).await;
    let _call = tokio::spawn(http_client(false).request(get(&server.url("/wait"), None)));
    let s = next_seen(&mut seen).await;
    shutdown.cancel_with_cause(ServerCause::Shutdown);
    let line = line!() - 1;
    let origin = s.ctx.origin().unwrap();
    assert_eq!(origin.kind(), OriginKind::Cancel);
    assert_eq!(origin.location().unwrap().line(), line);
    assert!(origin.location().unwrap().file().ends_with("origins.rs"));
    assert_eq!(origin.context_name(), Some("server"));
    let text = origin.to_string();
    assert!(
        text.ends_with(r#"in "server": server shutting down"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_deadline_header_is_the_origin() {
    let (server, mut seen) =
        http_server(layer(Context::background()).max_timeout(Duration::from_secs(60))).await;
    let _call = tokio::spawn(http_client(false).request(get(&server.url("/wait"), Some(80))));
    let s = next_seen(&mut seen).await;
    let (err, _) = done_within(&s.ctx, Duration::from_secs(2)).await.unwrap();
    assert_eq!(err, Error::DeadlineExceeded);
    let origin = s.ctx.origin().unwrap();
    assert_eq!(origin.kind(), OriginKind::Deadline);
    assert_eq!(origin.context_name(), Some("GET /wait"));
    let text = origin.to_string();
    assert!(text.starts_with("deadline exceeded: set at "), "{text}");
    assert!(
        text.ends_with(
            r#"(80ms) in "GET /wait": deadline sent by the client in its x-timeout-ms header"#
        ),
        "{text}"
    );
    assert_eq!(
        s.ctx.cause().unwrap().downcast_ref::<DeadlineSource>(),
        Some(&DeadlineSource::Header(http::HeaderName::from_static(
            "x-timeout-ms"
        )))
    );

    // gRPC: the grpc-timeout header.
    let (server, mut seen) = grpc_server(
        ServerLayer::new(Context::background()),
        Duration::ZERO,
        None,
    )
    .await;
    let mut client = grpc_client(server.addr).await;
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(80));
    let _call = tokio::spawn(async move {
        let req = tonic::Request::new(common::pb::WorkRequest { millis: 10_000 });
        client.work(req.with_context(ctx)).await
    });
    let s = next_seen(&mut seen).await;
    done_within(&s.ctx, Duration::from_secs(2)).await.unwrap();
    let text = s.ctx.origin().unwrap().to_string();
    assert!(
        text.ends_with(r#"in "/ctxkit.demo.v1.Worker/Work": deadline sent by the client in its grpc-timeout header"#),
        "{text}"
    );

    // The server's maximum.
    let (server, mut seen) =
        http_server(layer(Context::background()).max_timeout(Duration::from_millis(50))).await;
    let _call = tokio::spawn(http_client(false).request(get(&server.url("/wait"), Some(10_000))));
    let s = next_seen(&mut seen).await;
    done_within(&s.ctx, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        s.ctx.cause().unwrap().downcast_ref::<DeadlineSource>(),
        Some(&DeadlineSource::MaxTimeout)
    );
    let text = s.ctx.origin().unwrap().to_string();
    assert!(
        text.ends_with("deadline of the server's max_timeout"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// tracing: a subscriber that keeps every span's fields.

/// A span's name and fields.
type SpanFields = (&'static str, BTreeMap<String, String>);

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<SpanFields>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push((attrs.metadata().name(), fields));
        tracing::span::Id::from_u64(spans.len() as u64)
    }

    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut spans = self.0.lock().unwrap();
        let (_, fields) = &mut spans[span.into_u64() as usize - 1];
        values.record(&mut Fields(fields));
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl Capture {
    /// The fields of the request span named `name`, once it has an outcome (at most 5 s).
    async fn ended(&self, name: &str) -> BTreeMap<String, String> {
        let start = Instant::now();
        loop {
            let found = self.0.lock().unwrap().iter().find_map(|(span, fields)| {
                (*span == "request"
                    && fields.get("name").map(String::as_str) == Some(name)
                    && fields.contains_key("outcome"))
                .then(|| fields.clone())
            });
            if let Some(fields) = found {
                return fields;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no outcome for {name}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test] // one thread: the subscriber below is this thread's default
async fn the_request_span_records_the_outcome_and_the_origin() {
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.clone());
    let (root, shutdown) = Context::background().with_cancel();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let router = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "ok" }))
        .fallback(
            move |ctxkit_tower::RequestContext(ctx): ctxkit_tower::RequestContext| async move {
                record(&ctx, &tx);
                ctx.done().await;
                "done"
            },
        );
    let server = serve(router, layer(root)).await;
    let client = http_client(false);

    client.request(get(&server.url("/ok"), None)).await.unwrap();
    let ok = capture.ended("GET /ok").await;
    assert_eq!(ok["outcome"], "completed");
    assert!(
        ok["origin"].starts_with("canceled by cancel() at "),
        "{ok:?}"
    );

    let call = tokio::spawn(client.request(get(&server.url("/gone"), None)));
    next_seen(&mut seen).await;
    call.abort();
    let gone = capture.ended("GET /gone").await;
    assert_eq!(gone["outcome"], "client_gone");
    assert!(
        gone["origin"].ends_with("client went away before the response was complete"),
        "{gone:?}"
    );

    let _call = tokio::spawn(client.request(get(&server.url("/late"), Some(30))));
    let late = capture.ended("GET /late").await;
    assert_eq!(late["outcome"], "deadline");
    assert!(
        late["origin"].starts_with("deadline exceeded: set at "),
        "{late:?}"
    );
    assert!(late["origin"].ends_with("x-timeout-ms header"), "{late:?}");

    let _call = tokio::spawn(client.request(get(&server.url("/down"), None)));
    next_seen(&mut seen).await;
    shutdown.cancel_with_cause(ServerCause::Shutdown);
    let down = capture.ended("GET /down").await;
    assert_eq!(down["outcome"], "shutdown");
    assert!(
        down["origin"].ends_with(": server shutting down"),
        "{down:?}"
    );
}
