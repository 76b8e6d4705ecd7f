//! Interop with an implementation nobody here wrote: Python's `grpcio`, as a client of the
//! demo server and as a server behind our client layer.
//!
//! Needs the venv made by `tests/interop/setup.sh` (at `$CTXKIT_GRPCIO_VENV`, else
//! `grpcio-venv` in cargo's target directory); without it each test prints why and passes, unless
//! `CTXKIT_GRPCIO_REQUIRED=1` (as CI sets), which makes a missing venv a failure.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::demo::Demo;
use common::pb::WorkRequest;
use ctxkit::Context;
use ctxkit_tower::RequestContextExt;
use serde_json::Value;

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The venv's python, or `None` (with a message) when the venv is absent.
fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("CTXKIT_GRPCIO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // `<target dir>/tmp`'s parent: the target directory, wherever it is.
            let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            tmp.parent().unwrap_or(&tmp).join("grpcio-venv")
        });
    match std::fs::canonicalize(&venv) {
        // Canonical: python finds its venv from the path it was started by.
        Ok(venv) if venv.join("bin/python").exists() => Some(venv.join("bin/python")),
        _ => {
            if std::env::var_os("CTXKIT_GRPCIO_REQUIRED").is_some_and(|v| v == "1") {
                panic!(
                    "CTXKIT_GRPCIO_REQUIRED=1 but there is no venv at {}",
                    venv.display()
                );
            }
            println!(
                "SKIPPED: grpcio interop test: no venv at {} (create it with \
             `bash crates/ctxkit-tower/tests/interop/setup.sh`)",
                venv.display()
            );
            None
        }
    }
}

/// Runs `client.py ADDR MODE` and returns its JSON line.
fn grpcio_client(python: &PathBuf, addr: &str, mode: &str) -> Value {
    let out = Command::new(python)
        .arg(interop_dir().join("client.py"))
        .args([addr, mode])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn grpcio_client_against_the_demo_server() {
    let Some(python) = python() else { return };
    let demo = Demo::start();

    let reply = grpcio_client(&python, &demo.addr, "complete");
    assert_eq!(reply["code"], "OK");
    assert_eq!(reply["completed"], true);
    let left = reply["deadline_remaining_ms"].as_i64().unwrap();
    assert!((4000..=5000).contains(&left), "its 5 s timeout: {reply}");
    let line = demo.next_line();
    assert_eq!(line["outcome"], "completed");

    // Its timeout becomes the handler's deadline.
    let reply = grpcio_client(&python, &demo.addr, "deadline");
    assert_eq!(reply["code"], "DEADLINE_EXCEEDED");
    let line = demo.next_line();
    assert_eq!(line["proto"], "grpc");
    assert_eq!(line["outcome"], "deadline_exceeded", "{line}");
    let left = line["deadline_remaining_ms"].as_i64().unwrap();
    assert!((100..=200).contains(&left), "{line}");

    // Its cancel cancels the handler.
    let reply = grpcio_client(&python, &demo.addr, "cancel");
    assert_eq!(reply["code"], "CANCELLED");
    let line = demo.next_line();
    assert_eq!(line["outcome"], "canceled", "{line}");
    assert_eq!(line["deadline_remaining_ms"], Value::Null);
    let elapsed = line["elapsed_ms"].as_f64().unwrap();
    assert!((150.0..1500.0).contains(&elapsed), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_server_behind_our_client_layer() {
    let Some(python) = python() else { return };
    let mut server = Command::new(&python)
        .arg(interop_dir().join("server.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr: std::net::SocketAddr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .parse()
        .unwrap();
    let mut client = common::grpc_client(addr).await;

    // It sees our deadline in context.time_remaining().
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(300));
    let req = tonic::Request::new(WorkRequest { millis: 0 }).with_context(ctx);
    let reply = client.work(req).await.unwrap().into_inner();
    assert!(reply.completed);
    assert!(
        (200..=300).contains(&reply.deadline_remaining_ms),
        "{reply:?}"
    );

    // No deadline: none.
    let reply = client.work(WorkRequest { millis: 0 }).await.unwrap();
    assert_eq!(reply.get_ref().deadline_remaining_ms, -1);

    // Cancelling our context ends its call.
    let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(10));
    let mut c = client.clone();
    let call = tokio::spawn(async move {
        let req = tonic::Request::new(WorkRequest { millis: 10_000 }).with_context(ctx);
        c.work(req).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Cancelled);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], "terminated", "{event}");
    let left = event["remaining_ms"].as_i64().unwrap();
    assert!((9000..=10_000).contains(&left), "{event}");
    let waited = event["waited_ms"].as_f64().unwrap();
    assert!((150.0..2000.0).contains(&waited), "{event}");

    // Our deadline passing ends its call too; we report DEADLINE_EXCEEDED.
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(100));
    let req = tonic::Request::new(WorkRequest { millis: 10_000 }).with_context(ctx);
    let status = client.work(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);

    drop(server.stdin.take().map(|mut stdin| stdin.flush()));
    let _ = server.kill();
    let _ = server.wait();
}
