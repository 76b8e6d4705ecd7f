//! The demo server: HTTP/1.1 and gRPC (HTTP/2 cleartext) on one port, every request under a
//! ctxkit context that carries the client's deadline.
//!
//! ```text
//! cargo run -p ctxkit-tower --example demo_server -- --addr 127.0.0.1:50051
//! curl -H 'x-timeout-ms: 100' '127.0.0.1:50051/work?ms=500'   # 504 after 100 ms
//! ```
//!
//! Prints `listening on ADDR`, then one JSON line per finished request:
//! `{"proto":"http","deadline_remaining_ms":99,"outcome":"deadline_exceeded","elapsed_ms":100.4}`.
//!
//! - `GET /work?ms=N` works N ms in small steps, stopping when the request's context is done,
//!   and answers `200 {"completed":true,"deadline_remaining_ms":...}`.
//! - `GET /chain?ms=N` calls this server's own `/work?ms=N` through a
//!   [`ClientLayer`](ctxkit_tower::ClientLayer) and answers with its reply: the call shows
//!   under its request on the live page.
//! - gRPC `ctxkit.demo.v1.Worker/Work` (`proto/demo.proto`) does the same.
//! - `GET /debug/contexts`: the live page of the requests in flight and the last 100 that
//!   ended (HTML, refreshing itself); `GET /debug/contexts.json`: the same as JSON.
//! - Deadlines: `grpc-timeout`, `connect-timeout-ms`, `x-timeout-ms` (the smallest wins).
//! - SIGTERM or ctrl-c: a two-phase shutdown ([`ServerLayer::with_shutdown`]). New requests
//!   get `503` (gRPC `UNAVAILABLE`) while the requests in flight run on for at most
//!   `--grace-ms` (default 5000); those still running then are cancelled (their answer:
//!   `503`, gRPC `CANCELLED`). A second signal ends the grace period at once. The server
//!   then prints one JSON line, `{"drained":false,"finished":3,"cut_off":2}` (whether every
//!   request finished in time, how many did, how many were cut off), and exits 0.
//!
//! To build this code in a project of your own, add these dependencies to its `Cargo.toml`
//! (the versions this repository's `Cargo.lock` has), and put the code generated from
//! `proto/demo.proto` (`proto/gen/ctxkit.demo.v1.rs` here, made with tonic-build) where the
//! `include!` below finds it:
//!
//! ```toml
//! [dependencies]
//! ctxkit = { version = "0.1", features = ["signals"] }
//! ctxkit-tower = { version = "0.1", features = ["axum"] }
//! axum = { version = "0.8.9", default-features = false, features = ["query"] }
//! bytes = "1"
//! http = "1.5.0"
//! http-body-util = "0.1"
//! hyper-util = { version = "0.1.21", features = ["client-legacy", "http1", "server-auto", "server-graceful", "service", "tokio"] }
//! prost = "0.13.5"
//! serde = { version = "1.0.229", features = ["derive"] }
//! tokio = { version = "1.54.1", features = ["macros", "net", "rt-multi-thread", "signal", "time"] }
//! tonic = { version = "0.13.1", default-features = false, features = ["codegen", "prost", "router"] }
//! tower = { version = "0.5", features = ["util"] }
//! tower-layer = "0.3.3"
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::response::IntoResponse;
use ctxkit::{Context, Error, Shutdown};
use ctxkit_tower::{ClientLayer, RequestContext, RequestContextExt, ServerLayer};
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_layer::Layer;

mod pb {
    include!("../proto/gen/ctxkit.demo.v1.rs");
}

use pb::worker_server::{Worker, WorkerServer};
use pb::{WorkReply, WorkRequest};

/// How long a handler may run past its deadline before the layer answers for it.
const GRACE: Duration = Duration::from_millis(50);

/// One step of simulated work.
const STEP: Duration = Duration::from_millis(2);

/// Does `ms` milliseconds of work in small steps, in a task of its own (as real handlers
/// often do), stopping when `ctx` is done. Logs the JSON line when the task ends, even if the
/// handler that awaited it was dropped. Returns whether the work completed, and the deadline
/// left at entry.
async fn work(proto: &'static str, ctx: Context, ms: u64) -> (bool, Option<u128>) {
    let start = Instant::now();
    let remaining = ctx.remaining().map(|d| d.as_millis());
    let task = tokio::spawn(async move {
        let end = start + Duration::from_millis(ms);
        let completed = loop {
            let now = Instant::now();
            if now >= end {
                break true;
            }
            if ctx
                .run(tokio::time::sleep(STEP.min(end - now)))
                .await
                .is_err()
            {
                break false;
            }
        };
        let outcome = match (completed, ctx.err()) {
            (true, _) => "completed",
            (false, Some(Error::DeadlineExceeded)) => "deadline_exceeded",
            (false, _) => "canceled",
        };
        let remaining = remaining.map_or("null".to_owned(), |r| r.to_string());
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        println!(
            r#"{{"proto":"{proto}","deadline_remaining_ms":{remaining},"outcome":"{outcome}","elapsed_ms":{elapsed:.3}}}"#
        );
        completed
    });
    (task.await.unwrap_or(false), remaining)
}

#[derive(serde::Deserialize)]
struct WorkQuery {
    ms: u64,
}

async fn http_work(
    RequestContext(ctx): RequestContext,
    Query(q): Query<WorkQuery>,
) -> impl IntoResponse {
    let (completed, remaining) = work("http", ctx.clone(), q.ms).await;
    let remaining = remaining.map_or("null".to_owned(), |r| r.to_string());
    let status = match (completed, ctx.err()) {
        (true, _) => StatusCode::OK,
        (false, Some(Error::DeadlineExceeded)) => StatusCode::GATEWAY_TIMEOUT,
        (false, _) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = format!(r#"{{"completed":{completed},"deadline_remaining_ms":{remaining}}}"#);
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
}

/// A client of this server, for `/chain`.
type SelfClient = ctxkit_tower::ClientService<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
>;

#[derive(Clone)]
struct Chain {
    client: SelfClient,
    addr: SocketAddr,
}

async fn http_chain(
    axum::extract::State(chain): axum::extract::State<Chain>,
    RequestContext(ctx): RequestContext,
    Query(q): Query<WorkQuery>,
) -> impl IntoResponse {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = http::Request::get(format!("http://{}/work?ms={}", chain.addr, q.ms))
        .body(http_body_util::Empty::new())
        .expect("a valid request")
        .with_context(ctx);
    let res = match chain.client.oneshot(req).await {
        Ok(res) => res,
        Err(err) => return (StatusCode::BAD_GATEWAY, err.to_string()),
    };
    let status = res.status();
    match res.into_body().collect().await {
        Ok(body) => (
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ),
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()),
    }
}

struct DemoWorker;

#[tonic::async_trait]
impl Worker for DemoWorker {
    async fn work(
        &self,
        request: tonic::Request<WorkRequest>,
    ) -> Result<tonic::Response<WorkReply>, tonic::Status> {
        let ctx = request.context();
        let (completed, remaining) = work("grpc", ctx.clone(), request.get_ref().millis).await;
        match (completed, ctx.err()) {
            (true, _) => Ok(tonic::Response::new(WorkReply {
                completed: true,
                deadline_remaining_ms: remaining.map_or(-1, |r| r as i64),
            })),
            (false, Some(Error::DeadlineExceeded)) => Err(tonic::Status::deadline_exceeded(
                "context deadline exceeded",
            )),
            (false, _) => Err(tonic::Status::cancelled(match ctx.cause() {
                Some(cause) => format!("context canceled: {cause}"),
                None => "context canceled".to_owned(),
            })),
        }
    }
}

/// The command line: `--addr HOST:PORT` and `--grace-ms N`.
struct Args {
    addr: SocketAddr,
    grace: Duration,
}

const USAGE: &str = "usage: demo_server [--addr HOST:PORT] [--grace-ms N]";

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:50051".to_owned();
    let mut grace_ms = "5000".to_owned();
    while let Some(arg) = args.next() {
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            value
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| panic!("{name} needs a value; {USAGE}"))
        };
        match name.as_str() {
            "--addr" => addr = value(),
            "--grace-ms" => grace_ms = value(),
            other => panic!("unknown argument {other:?}; {USAGE}"),
        }
    }
    Args {
        addr: addr.parse().expect("--addr takes HOST:PORT"),
        grace: Duration::from_millis(grace_ms.parse().expect("--grace-ms takes milliseconds")),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = parse_args();
    let listener = TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");

    // SIGTERM or SIGINT begins the shutdown; a second one ends its grace period at once.
    let shutdown = Shutdown::new(&Context::background());
    shutdown.on_signals(args.grace)?;
    let layer = ServerLayer::with_shutdown(&shutdown)
        .connect_timeout_ms(true)
        .timeout_ms_header("x-timeout-ms")
        .grace(GRACE);
    let live = layer.live_page();
    let chain = Chain {
        client: ClientLayer::new()
            .timeout_ms_header("x-timeout-ms")
            .layer(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()),
        addr,
    };
    let grpc = tonic::service::Routes::new(WorkerServer::new(DemoWorker)).into_axum_router();
    let app = axum::Router::new()
        .route("/work", axum::routing::get(http_work))
        .route("/chain", axum::routing::get(http_chain).with_state(chain))
        .route_service("/debug/contexts", live.clone())
        .route_service("/debug/contexts.json", live)
        .merge(grpc);
    let app = layer.layer(app);

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    // Connections are still accepted while draining: their requests are answered 503 at
    // once, which tells a client to go elsewhere sooner than a refused connection would.
    let done = shutdown.done();
    tokio::pin!(done);
    let report = loop {
        tokio::select! {
            conn = listener.accept() => {
                let Ok((stream, _)) = conn else { continue };
                let _ = stream.set_nodelay(true);
                let svc = TowerToHyperService::new(app.clone());
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            report = &mut done => break report,
        }
    };
    drop(listener); // stop accepting
                    // The requests cut off are answering now: let their answers out, and close the
                    // connections.
    if tokio::time::timeout(Duration::from_secs(2), graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("connections still open 2 s after the shutdown; exiting");
    }
    println!(
        r#"{{"drained":{},"finished":{},"cut_off":{}}}"#,
        report.drained(),
        report.finished(),
        report.cut_off()
    );
    Ok(())
}
