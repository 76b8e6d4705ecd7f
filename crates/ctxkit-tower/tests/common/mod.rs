//! Test servers and clients on 127.0.0.1, and a gRPC worker that reports what its handler saw.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ctxkit::{Context, Error};
use ctxkit_tower::{ClientLayer, ClientService, RequestContextExt, ServerLayer};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{mpsc, oneshot};
use tower_layer::Layer;

pub mod demo;
pub mod live;

pub mod pb {
    include!("../../proto/gen/ctxkit.demo.v1.rs");
}

use pb::worker_client::WorkerClient;
use pb::worker_server::{Worker, WorkerServer};
use pb::{WorkReply, WorkRequest};

/// A server on an ephemeral loopback port, stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Serves `router` behind `layer`, HTTP/1.1 and HTTP/2 (h2c) on one port.
pub async fn serve(router: axum::Router, layer: ServerLayer) -> TestServer {
    serve_service(layer.layer(router)).await
}

/// Serves `svc`, HTTP/1.1 and HTTP/2 (h2c) on one port.
pub async fn serve_service<S, B>(svc: S) -> TestServer
where
    S: tower_service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    let task = tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            stream.set_nodelay(true).unwrap();
            let svc = TowerToHyperService::new(svc.clone());
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    TestServer {
        addr,
        connections,
        task,
    }
}

/// What a handler saw.
pub struct Seen {
    pub ctx: Context,
    /// The deadline left when the handler started.
    pub remaining: Option<Duration>,
    /// When the handler started.
    pub at: Instant,
    /// The error a task spawned by the handler (with a clone of the context) saw.
    pub spawned: oneshot::Receiver<Error>,
}

/// Records a handler's context and spawns a task that waits on a clone of it.
pub fn record(ctx: &Context, tx: &mpsc::UnboundedSender<Seen>) {
    let (done_tx, done_rx) = oneshot::channel();
    let child = ctx.clone();
    tokio::spawn(async move {
        let _ = done_tx.send(child.done().await);
    });
    let _ = tx.send(Seen {
        ctx: ctx.clone(),
        remaining: ctx.remaining(),
        at: Instant::now(),
        spawned: done_rx,
    });
}

pub type GrpcClient = WorkerClient<ClientService<tonic::transport::Channel>>;

/// A gRPC client on one HTTP/2 connection to `addr`, behind [`ClientLayer`].
pub async fn grpc_client(addr: SocketAddr) -> GrpcClient {
    grpc_client_with(addr, ClientLayer::new()).await
}

/// A gRPC client on one HTTP/2 connection to `addr`, behind `layer`.
pub async fn grpc_client_with(addr: SocketAddr, layer: ClientLayer) -> GrpcClient {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    WorkerClient::new(layer.layer(channel))
}

/// A worker that records its context, optionally waits, optionally calls the next service
/// with its own context, then works `millis` (stopping when its context is done).
#[derive(Clone)]
pub struct ProbeWorker {
    pub seen: mpsc::UnboundedSender<Seen>,
    pub delay: Duration,
    pub next: Option<GrpcClient>,
}

#[tonic::async_trait]
impl Worker for ProbeWorker {
    async fn work(
        &self,
        request: tonic::Request<WorkRequest>,
    ) -> Result<tonic::Response<WorkReply>, tonic::Status> {
        let ctx = request.context();
        record(&ctx, &self.seen);
        let remaining = ctx.remaining();
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Some(next) = &self.next {
            let mut next = next.clone();
            let req = tonic::Request::new(request.into_inner()).with_context(ctx.clone());
            return next.work(req).await;
        }
        let millis = request.get_ref().millis;
        match ctx
            .run(tokio::time::sleep(Duration::from_millis(millis)))
            .await
        {
            Ok(()) => Ok(tonic::Response::new(WorkReply {
                completed: true,
                deadline_remaining_ms: remaining.map_or(-1, |r| r.as_millis() as i64),
            })),
            Err(Error::DeadlineExceeded) => Err(tonic::Status::deadline_exceeded("deadline")),
            Err(Error::Canceled) => Err(tonic::Status::cancelled("canceled")),
        }
    }
}

/// A gRPC server running a [`ProbeWorker`]; returns it and what its handlers see.
pub async fn grpc_server(
    layer: ServerLayer,
    delay: Duration,
    next: Option<GrpcClient>,
) -> (TestServer, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let worker = ProbeWorker {
        seen: tx,
        delay,
        next,
    };
    let router = tonic::service::Routes::new(WorkerServer::new(worker)).into_axum_router();
    (serve(router, layer).await, rx)
}

/// An HTTP server whose `GET /wait` records its context and waits until it is done, and
/// `GET /ok` answers at once.
pub async fn http_server(layer: ServerLayer) -> (TestServer, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = axum::Router::new()
        .route(
            "/wait",
            axum::routing::get(
                |ctxkit_tower::RequestContext(ctx): ctxkit_tower::RequestContext| async move {
                    record(&ctx, &tx);
                    ctx.done().await;
                    "done"
                },
            ),
        )
        .route("/ok", axum::routing::get(|| async { "ok" }));
    (serve(router, layer).await, rx)
}

pub type HttpClient = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// A hyper client, HTTP/1.1 or HTTP/2 only.
pub fn http_client(http2: bool) -> HttpClient {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http()
}

/// Waits for the next handler to start.
pub async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a handler started within 5 s")
        .expect("the server is running")
}

/// Waits (at most `limit`) for `ctx` to be done; returns its error and how long it took.
pub async fn done_within(ctx: &Context, limit: Duration) -> Option<(Error, Duration)> {
    let start = Instant::now();
    tokio::time::timeout(limit, ctx.done())
        .await
        .ok()
        .map(|e| (e, start.elapsed()))
}
