//! Deadlines and cancellation travel from client to server, over HTTP/1.1, HTTP/2 and gRPC,
//! through a chain of services, and across processes. Loopback only.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ctxkit::{Context, Error};
use ctxkit_tower::{ClientLayer, ContextError, RequestContextExt, ServerCause, ServerLayer};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_layer::Layer;

fn layer() -> ServerLayer {
    ServerLayer::new(Context::background())
        .timeout_ms_header("x-timeout-ms")
        .grace(Duration::from_millis(50))
}

fn get(url: &str, ctx: Option<&Context>) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::get(url).body(Full::default()).unwrap();
    if let Some(ctx) = ctx {
        req.set_context(ctx.clone());
    }
    req
}

#[tokio::test]
async fn grpc_deadline_reaches_handler_and_spawned_task() {
    let (server, mut seen) = grpc_server(layer(), Duration::ZERO, None).await;
    let mut client = grpc_client(server.addr).await;
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(100));
    let call = tokio::spawn(async move {
        let req = tonic::Request::new(common::pb::WorkRequest { millis: 10_000 });
        client.work(req.with_context(ctx)).await
    });
    let s = next_seen(&mut seen).await;
    let left = s.remaining.expect("the handler has a deadline");
    assert!(
        left >= Duration::from_millis(50) && left <= Duration::from_millis(100),
        "handler saw {left:?}"
    );
    let (err, _) = done_within(&s.ctx, Duration::from_secs(1)).await.unwrap();
    assert_eq!(err, Error::DeadlineExceeded);
    assert_eq!(s.ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(s.spawned.await.unwrap(), Error::DeadlineExceeded);
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test]
async fn http_deadline_reaches_handler_and_client_gets_deadline_exceeded() {
    let (server, mut seen) = http_server(layer()).await;
    let client = ClientLayer::new()
        .timeout_ms_header("x-timeout-ms")
        .layer(http_client(false));
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(100));
    let call = tokio::spawn(client.oneshot(get(&server.url("/wait"), Some(&ctx))));
    let s = next_seen(&mut seen).await;
    let left = s.remaining.unwrap();
    assert!(left >= Duration::from_millis(50) && left <= Duration::from_millis(100));
    assert_eq!(
        done_within(&s.ctx, Duration::from_secs(1)).await.unwrap().0,
        Error::DeadlineExceeded
    );
    assert_eq!(s.spawned.await.unwrap(), Error::DeadlineExceeded);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        err.downcast_ref::<ContextError>().map(ContextError::err),
        Some(Error::DeadlineExceeded),
        "{err}"
    );
}

/// A handler that ignores its deadline is answered for after the grace period.
#[tokio::test]
async fn late_handlers_get_504_or_grpc_deadline_exceeded_after_the_grace_period() {
    let router = axum::Router::new().route(
        "/stuck",
        axum::routing::any(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late"
        }),
    );
    let server = serve(router, layer()).await;
    let client = http_client(false);

    let start = Instant::now();
    let mut req = get(&server.url("/stuck"), None);
    req.headers_mut()
        .insert("x-timeout-ms", "100".parse().unwrap());
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::GATEWAY_TIMEOUT);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_secs(2),
        "{took:?}"
    );

    let mut req = get(&server.url("/stuck"), None);
    req.headers_mut()
        .insert("grpc-timeout", "100m".parse().unwrap());
    req.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "4");
}

async fn client_gives_up_over_http(http2: bool) {
    let (server, mut seen) = http_server(layer()).await;
    let client = ClientLayer::new()
        .timeout_ms_header("x-timeout-ms")
        .layer(http_client(http2));
    let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(10));
    let call = tokio::spawn(
        client
            .clone()
            .oneshot(get(&server.url("/wait"), Some(&ctx))),
    );
    let s = next_seen(&mut seen).await;
    assert!(s.remaining.unwrap() > Duration::from_secs(9));
    tokio::time::sleep(Duration::from_millis(100).saturating_sub(s.at.elapsed())).await;
    cancel.cancel();
    let (err, took) = done_within(&s.ctx, Duration::from_millis(50))
        .await
        .expect("the server context is done within 50 ms of the client giving up");
    assert_eq!(err, Error::Canceled, "took {took:?}");
    assert!(s.ctx.cause().unwrap().is::<ServerCause>());
    assert_eq!(s.spawned.await.unwrap(), Error::Canceled);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        err.downcast_ref::<ContextError>().map(ContextError::err),
        Some(Error::Canceled)
    );

    // The connection (HTTP/2) or a new one (HTTP/1.1) serves the next request.
    let res = client.oneshot(get(&server.url("/ok"), None)).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    if http2 {
        assert_eq!(server.connections(), 1, "HTTP/2: one connection for both");
    }
}

#[tokio::test]
async fn client_gives_up_over_http1() {
    client_gives_up_over_http(false).await;
}

#[tokio::test]
async fn client_gives_up_over_http2() {
    client_gives_up_over_http(true).await;
}

#[tokio::test]
async fn client_gives_up_over_grpc_and_the_connection_serves_the_next_call() {
    let (server, mut seen) = grpc_server(layer(), Duration::ZERO, None).await;
    let client = grpc_client(server.addr).await;
    let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(10));
    let mut c = client.clone();
    let call = tokio::spawn(async move {
        let req = tonic::Request::new(common::pb::WorkRequest { millis: 10_000 });
        c.work(req.with_context(ctx)).await
    });
    let s = next_seen(&mut seen).await;
    assert!(s.remaining.unwrap() > Duration::from_secs(9));
    tokio::time::sleep(Duration::from_millis(100).saturating_sub(s.at.elapsed())).await;
    cancel.cancel();
    let (err, _) = done_within(&s.ctx, Duration::from_millis(50))
        .await
        .expect("RST_STREAM reaches the server context within 50 ms");
    assert_eq!(err, Error::Canceled);
    assert_eq!(s.spawned.await.unwrap(), Error::Canceled);
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Cancelled);

    let mut c = client.clone();
    let reply = c.work(common::pb::WorkRequest { millis: 1 }).await.unwrap();
    assert!(reply.get_ref().completed);
    assert_eq!(reply.get_ref().deadline_remaining_ms, -1);
    assert_eq!(server.connections(), 1, "the same HTTP/2 connection");
}

#[tokio::test]
async fn a_done_context_fails_fast_without_sending() {
    let (server, _seen) = http_server(layer()).await;
    let client = ClientLayer::new().layer(http_client(false));
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let err = client
        .oneshot(get(&server.url("/ok"), Some(&ctx)))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<ContextError>().map(ContextError::err),
        Some(Error::Canceled)
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(server.connections(), 0, "nothing was sent");
}

#[tokio::test]
async fn server_shutdown_cancels_requests_in_flight_with_a_cause() {
    let (root, shutdown) = Context::background().with_cancel();
    let (server, mut seen) = http_server(ServerLayer::new(root)).await;
    let client = http_client(false);
    let call = tokio::spawn(client.request(get(&server.url("/wait"), None)));
    let s = next_seen(&mut seen).await;
    assert_eq!(s.remaining, None);
    shutdown.cancel_with_cause(ServerCause::Shutdown);
    assert_eq!(s.ctx.err(), Some(Error::Canceled));
    assert_eq!(
        s.ctx.cause().unwrap().downcast_ref::<ServerCause>(),
        Some(&ServerCause::Shutdown)
    );
    let res = call.await.unwrap().unwrap();
    assert_eq!(res.status(), http::StatusCode::OK);
}

#[tokio::test]
async fn the_server_context_ends_when_the_response_is_sent() {
    let (server, mut seen) = http_server(layer()).await;
    let client = http_client(false);
    let (ctx, cancel) = Context::background().with_cancel();
    let mut req = get(&server.url("/wait"), None);
    req.headers_mut()
        .insert("x-timeout-ms", "5000".parse().unwrap());
    let call = tokio::spawn(client.request(req));
    let s = next_seen(&mut seen).await;
    drop((ctx, cancel));
    // Only the handler's return can end it now: it returns when the context is done, so
    // check the other direction with a handler that returns at once.
    assert_eq!(s.ctx.err(), None);
    drop(call);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        "/quick",
        axum::routing::get(
            |ctxkit_tower::RequestContext(ctx): ctxkit_tower::RequestContext| async move {
                record(&ctx, &tx);
                "quick"
            },
        ),
    );
    let quick = serve(router, layer()).await;
    let res = http_client(false)
        .request(get(&quick.url("/quick"), None))
        .await
        .unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "quick");
    let s = next_seen(&mut rx).await;
    let (err, _) = done_within(&s.ctx, Duration::from_secs(1)).await.unwrap();
    assert_eq!(err, Error::Canceled);
    assert_eq!(
        s.ctx.cause().unwrap().downcast_ref::<Error>(),
        Some(&Error::Canceled)
    );
}

#[tokio::test]
async fn malformed_and_conflicting_timeouts() {
    let (server, mut seen) = http_server(
        ServerLayer::new(Context::background())
            .malformed_grpc_timeout(ctxkit_tower::MalformedTimeout::Ignore)
            .connect_timeout_ms(true)
            .timeout_ms_header("x-timeout-ms")
            .max_timeout(Duration::from_secs(2)),
    )
    .await;
    let client = http_client(false);
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers<'_>, (u64, u64)); 6] = [
        (&[], (1900, 2000)),                               // the server maximum
        (&[("grpc-timeout", "123456789n")], (1900, 2000)), // malformed: ignored
        (&[("grpc-timeout", "1H")], (1900, 2000)),         // clamped
        (
            &[("grpc-timeout", "900m"), ("connect-timeout-ms", "500")],
            (400, 500),
        ),
        (
            &[("x-timeout-ms", "300"), ("grpc-timeout", "bogus")],
            (200, 300),
        ),
        (
            &[("x-timeout-ms", "99999999999"), ("grpc-timeout", "1S")],
            (900, 1000),
        ),
    ];
    for (headers, want) in cases {
        let mut req = get(&server.url("/wait"), None);
        for (k, v) in headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let call = tokio::spawn(client.request(req));
        let s = next_seen(&mut seen).await;
        let left = s.remaining.map(|d| d.as_millis() as u64);
        let (lo, hi) = want;
        assert!(
            left.is_some_and(|l| l >= lo && l <= hi),
            "{headers:?}: {left:?}"
        );
        call.abort();
    }
}

/// A → B → C: C's deadline is A's less the time B spent; cancelling at A reaches C.
#[tokio::test]
async fn deadlines_and_cancellation_cross_a_chain_of_three_services() {
    let (c, mut c_seen) = grpc_server(layer(), Duration::ZERO, None).await;
    let to_c = grpc_client(c.addr).await;
    let b_delay = Duration::from_millis(30);
    let (b, mut b_seen) = grpc_server(layer(), b_delay, Some(to_c)).await;
    let mut to_b = grpc_client(b.addr).await;

    let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(5));
    let a_deadline = ctx.deadline().unwrap();
    let sent = std::time::Instant::now();
    let call = tokio::spawn(async move {
        let req = tonic::Request::new(common::pb::WorkRequest { millis: 60_000 });
        to_b.work(req.with_context(ctx)).await
    });
    let at_b = next_seen(&mut b_seen).await;
    let at_c = next_seen(&mut c_seen).await;
    let b_deadline = at_b.ctx.deadline().unwrap();
    let c_deadline = at_c.ctx.deadline().unwrap();
    // A server starts the time it is sent when the request arrives, so its deadline is its
    // caller's plus the request's time in transit, never more (grpc-timeout rounds up to the
    // microsecond at most): B's request left A after `sent`, and C's left B once B's
    // handler had waited `b_delay`.
    let slack = Duration::from_millis(1);
    let transit_to_b = at_b.at - sent;
    let transit_to_c = at_c.at.saturating_duration_since(at_b.at + b_delay);
    assert!(
        b_deadline <= a_deadline + transit_to_b + slack,
        "{:?} after A's",
        b_deadline.saturating_duration_since(a_deadline)
    );
    assert!(
        c_deadline <= b_deadline + transit_to_c + slack,
        "{:?} after B's",
        c_deadline.saturating_duration_since(b_deadline)
    );
    // C's time left is A's less what B spent (its delay), give or take scheduling.
    let (left_b, left_c) = (at_b.remaining.unwrap(), at_c.remaining.unwrap());
    assert!(
        left_c + b_delay <= left_b + slack,
        "B {left_b:?}, C {left_c:?}"
    );
    assert!(left_c > Duration::from_secs(4), "C {left_c:?}");

    cancel.cancel();
    let (err, took) = done_within(&at_c.ctx, Duration::from_millis(200))
        .await
        .expect("cancelling at A reaches C");
    assert_eq!(err, Error::Canceled, "after {took:?}");
    assert_eq!(at_b.ctx.err(), Some(Error::Canceled));
    assert_eq!(
        call.await.unwrap().unwrap_err().code(),
        tonic::Code::Cancelled
    );
}

/// The deadline of a chain is the one the first client set, even when it expires in C.
#[tokio::test]
async fn a_chain_times_out_everywhere_with_deadline_exceeded() {
    let (c, mut c_seen) = grpc_server(layer(), Duration::ZERO, None).await;
    let to_c = grpc_client(c.addr).await;
    let (b, mut b_seen) = grpc_server(layer(), Duration::from_millis(10), Some(to_c)).await;
    let mut to_b = grpc_client(b.addr).await;
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(150));
    let req = tonic::Request::new(common::pb::WorkRequest { millis: 60_000 });
    let status = to_b.work(req.with_context(ctx)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    let at_b = next_seen(&mut b_seen).await;
    let at_c = next_seen(&mut c_seen).await;
    for s in [at_b, at_c] {
        let (err, _) = done_within(&s.ctx, Duration::from_millis(100))
            .await
            .unwrap();
        assert_eq!(err, Error::DeadlineExceeded);
    }
}

/// The client is another process (HTTP/1.1, or gRPC over HTTP/2); killing it cancels the
/// server's context.
async fn kill_the_client_process(grpc: bool) {
    let (server, mut seen) = if grpc {
        grpc_server(layer(), Duration::ZERO, None).await
    } else {
        http_server(layer()).await
    };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_client_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("CTXKIT_CHILD_ADDR", server.addr.to_string())
        .env("CTXKIT_CHILD_GRPC", if grpc { "1" } else { "0" })
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let s = next_seen(&mut seen).await;
    assert!(s.remaining.unwrap() > Duration::from_secs(9));
    tokio::time::sleep(Duration::from_millis(100).saturating_sub(s.at.elapsed())).await;
    child.kill().unwrap();
    let (err, took) = done_within(&s.ctx, Duration::from_millis(50))
        .await
        .expect("the server context is done within 50 ms of the client's death");
    assert_eq!(err, Error::Canceled, "{took:?}");
    assert_eq!(s.spawned.await.unwrap(), Error::Canceled);
    child.wait().unwrap();
}

#[tokio::test]
async fn killing_the_client_process_cancels_the_server_context_http1() {
    kill_the_client_process(false).await;
}

#[tokio::test]
async fn killing_the_client_process_cancels_the_server_context_grpc() {
    kill_the_client_process(true).await;
}

/// The client process of `kill_the_client_process`: calls with a 10 s deadline and waits.
#[tokio::test]
#[ignore = "run by the killing_the_client_process_* tests"]
async fn child_client_process() {
    let Ok(addr) = std::env::var("CTXKIT_CHILD_ADDR") else {
        return;
    };
    let (ctx, _h) = Context::background().with_timeout(Duration::from_secs(10));
    if std::env::var("CTXKIT_CHILD_GRPC").as_deref() == Ok("1") {
        let mut client = grpc_client(addr.parse().unwrap()).await;
        let req = tonic::Request::new(common::pb::WorkRequest { millis: 60_000 });
        let _ = client.work(req.with_context(ctx)).await;
    } else {
        let client = ClientLayer::new()
            .timeout_ms_header("x-timeout-ms")
            .layer(http_client(false));
        let url = format!("http://{addr}/wait");
        let _ = client.oneshot(get(&url, Some(&ctx))).await;
    }
}

/// tonic's own server takes the layer; its timeout (which answers CANCELLED) does not turn
/// the handler's DeadlineExceeded into Canceled, and our client reports DEADLINE_EXCEEDED.
#[tokio::test]
async fn tonic_transport_server_takes_the_layer() {
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let worker = ProbeWorker {
        seen: tx,
        delay: Duration::ZERO,
        next: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer())
            .add_service(common::pb::worker_server::WorkerServer::new(worker))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = grpc_client(addr).await;
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(100));
    let req = tonic::Request::new(common::pb::WorkRequest { millis: 10_000 });
    let status = client.work(req.with_context(ctx)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    let s = next_seen(&mut seen).await;
    let left = s.remaining.unwrap();
    assert!(left >= Duration::from_millis(50) && left <= Duration::from_millis(100));
    let (err, _) = done_within(&s.ctx, Duration::from_secs(1)).await.unwrap();
    assert_eq!(err, Error::DeadlineExceeded);
    assert_eq!(s.spawned.await.unwrap(), Error::DeadlineExceeded);
    server.abort();
}
