//! The demo server, run as its own process: HTTP/1.1 and gRPC on one port, one JSON line per
//! finished request, graceful shutdown on SIGTERM.

mod common;

use common::demo::Demo;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::pb::worker_client::WorkerClient;
use common::pb::WorkRequest;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

async fn http_get(addr: &str, path: &str, timeout_ms: Option<u64>) -> (u16, Value) {
    let client = common::http_client(false);
    let mut req = http::Request::get(format!("http://{addr}{path}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    if let Some(ms) = timeout_ms {
        req.headers_mut()
            .insert("x-timeout-ms", ms.to_string().parse().unwrap());
    }
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn check_line(line: &Value, proto: &str, outcome: &str) {
    assert_eq!(line["proto"], proto, "{line}");
    assert_eq!(line["outcome"], outcome, "{line}");
    assert!(line["elapsed_ms"].as_f64().is_some(), "{line}");
    let keys: Vec<_> = line.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys.len(),
        4,
        "exactly proto, deadline_remaining_ms, outcome, elapsed_ms: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_work_completes_or_stops_at_the_deadline() {
    let demo = Demo::start();
    let (status, body) = http_get(&demo.addr, "/work?ms=20", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["completed"], true);
    assert_eq!(body["deadline_remaining_ms"], Value::Null);
    let line = demo.next_line();
    check_line(&line, "http", "completed");
    assert_eq!(line["deadline_remaining_ms"], Value::Null);
    assert!(line["elapsed_ms"].as_f64().unwrap() >= 20.0);

    let (status, body) = http_get(&demo.addr, "/work?ms=5000", Some(100)).await;
    assert_eq!(status, 504);
    assert_eq!(body["completed"], false);
    let line = demo.next_line();
    check_line(&line, "http", "deadline_exceeded");
    let left = line["deadline_remaining_ms"].as_i64().unwrap();
    assert!((50..=100).contains(&left), "{line}");
    let elapsed = line["elapsed_ms"].as_f64().unwrap();
    assert!((50.0..1000.0).contains(&elapsed), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_work_sees_the_deadline_and_the_cancel() {
    let demo = Demo::start();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", demo.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = WorkerClient::new(channel);

    let reply = client.work(WorkRequest { millis: 10 }).await.unwrap();
    assert!(reply.get_ref().completed);
    assert_eq!(reply.get_ref().deadline_remaining_ms, -1);
    check_line(&demo.next_line(), "grpc", "completed");

    let mut req = tonic::Request::new(WorkRequest { millis: 5000 });
    req.set_timeout(Duration::from_millis(100));
    let status = client.work(req).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{status:?}"
    );
    let line = demo.next_line();
    check_line(&line, "grpc", "deadline_exceeded");
    let left = line["deadline_remaining_ms"].as_i64().unwrap();
    assert!((50..=100).contains(&left), "{line}");

    // The client gives up: the handler's context is cancelled.
    let mut c = client.clone();
    let call = tokio::spawn(async move { c.work(WorkRequest { millis: 5000 }).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    call.abort();
    let line = demo.next_line();
    check_line(&line, "grpc", "canceled");
    assert!(line["elapsed_ms"].as_f64().unwrap() < 1000.0, "{line}");

    // The same connection still works.
    let reply = client.work(WorkRequest { millis: 1 }).await.unwrap();
    assert!(reply.get_ref().completed);
    check_line(&demo.next_line(), "grpc", "completed");
}

/// Sends SIGTERM to the demo server.
fn sigterm(demo: &Demo) {
    let pid = demo.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
}

/// Waits (at most 5 s) for the demo server to exit, and checks that it exited 0.
fn exits_successfully(demo: &mut Demo) {
    let start = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = demo.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the server exits once its requests are done"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(exit.success(), "{exit:?}");
    // No longer accepting.
    assert!(std::net::TcpStream::connect(&demo.addr).is_err());
}

/// The status, `connection` header and text of a `GET` on a connection of its own.
async fn http_get_text(addr: &str, path: &str) -> (u16, Option<String>, String) {
    let client = common::http_client(false);
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let connection = res
        .headers()
        .get("connection")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        connection,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_no_grace_cancels_requests_in_flight_and_exits() {
    let mut demo = Demo::start_with(&["--grace-ms", "0"]);
    let addr = demo.addr.clone();
    let call = tokio::spawn(async move { http_get(&addr, "/work?ms=10000", None).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    sigterm(&demo);
    let line = demo.next_line();
    check_line(&line, "http", "canceled");
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(body["completed"], false);
    let summary = demo.next_line();
    assert_eq!(
        summary,
        serde_json::json!({"drained": false, "finished": 0, "cut_off": 1})
    );
    exits_successfully(&mut demo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_for_the_grace_period_then_cuts_off_the_rest() {
    const GRACE_MS: u64 = 1500;
    let mut demo = Demo::start_with(&["--grace-ms", &GRACE_MS.to_string()]);
    let started = std::time::Instant::now();
    // Three requests that end within the grace period, two that would run far past it.
    let calls: Vec<_> = [300, 300, 300, 20_000, 20_000]
        .into_iter()
        .map(|ms| {
            let addr = demo.addr.clone();
            tokio::spawn(
                async move { (ms, http_get(&addr, &format!("/work?ms={ms}"), None).await) },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    sigterm(&demo);
    let signalled = std::time::Instant::now();

    // While draining, a new request is turned away without running its handler.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, connection, text) = http_get_text(&demo.addr, "/work?ms=1").await;
    assert_eq!(status, 503, "{text}");
    assert_eq!(connection.as_deref(), Some("close"));
    assert!(text.contains("shutting down"), "{text}");

    let mut lines = Vec::new();
    let summary = loop {
        let line = demo.next_line();
        if line.get("drained").is_some() {
            break line;
        }
        lines.push(line);
    };
    assert_eq!(
        summary,
        serde_json::json!({"drained": false, "finished": 3, "cut_off": 2}),
        "{lines:?}"
    );
    // One line per request that ran: the 503 ran no handler.
    let outcomes: Vec<_> = lines
        .iter()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.len(), 5, "{lines:?}");
    assert_eq!(
        outcomes.iter().filter(|o| **o == "completed").count(),
        3,
        "{lines:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "canceled").count(),
        2,
        "{lines:?}"
    );

    for call in calls {
        let (ms, (status, body)) = call.await.unwrap();
        if ms < GRACE_MS {
            assert_eq!((status, &body["completed"]), (200, &true.into()), "{body}");
        } else {
            // Cut off at the end of the grace period, not before.
            assert_eq!((status, &body["completed"]), (503, &false.into()), "{body}");
            let waited = signalled.elapsed();
            assert!(waited >= Duration::from_millis(GRACE_MS), "{waited:?}");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    exits_successfully(&mut demo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_requests_and_their_downstream_calls() {
    let demo = Demo::start();
    let addr = demo.addr.clone();
    let chain = tokio::spawn(async move { http_get(&addr, "/chain?ms=3000", None).await });
    let start = std::time::Instant::now();
    let json = loop {
        let (status, json) = http_get(&demo.addr, "/debug/contexts.json", None).await;
        assert_eq!(status, 200);
        let names: Vec<(u64, String)> = json["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| Some((e["depth"].as_u64()?, e["name"].as_str()?.to_owned())))
            .collect();
        let has = |depth, name: &str| names.iter().any(|(d, n)| *d == depth && n == name);
        // The chain's request, its call under it, and the call arriving as a request.
        if has(1, "GET /chain") && has(2, "GET /work") && has(1, "GET /work") {
            break json;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{json:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(json["recent"].is_array());
    let client = common::http_client(false);
    let req = http::Request::get(format!("http://{}/debug/contexts", demo.addr))
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let html = res.into_body().collect().await.unwrap().to_bytes();
    let html = String::from_utf8(html.to_vec()).unwrap();
    assert!(html.contains("GET /chain") && html.contains("Live contexts"));
    let (status, body) = chain.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["completed"], true);
}
