//! The feature `tonic-0_13`: a tonic 0.13 server behind `ServerLayer` gives its handlers the
//! client's deadline through `request.context()`, and a tonic 0.13 client behind
//! `ClientLayer` sends it and gets tonic 0.13's `Status` when its context ends. Loopback only.

// The generated code names `tonic` and `prost`: in this test they are the 0.13 versions.
extern crate prost_0_13 as prost;
extern crate tonic_0_13 as tonic;

mod pb {
    include!("../proto/gen/tonic-0.13/ctxkit.demo.v1.rs");
}

use std::net::SocketAddr;
use std::time::Duration;

use ctxkit::{Context, Error};
use ctxkit_tower::{ClientLayer, ClientService, RequestContextExt, ServerCause, ServerLayer};
use pb::worker_client::WorkerClient;
use pb::worker_server::{Worker, WorkerServer};
use pb::{WorkReply, WorkRequest};
use tokio::sync::mpsc;
use tower_layer::Layer;

/// Sends each handler's context, then works until the context ends.
struct Probe(mpsc::UnboundedSender<Context>);

#[tonic::async_trait]
impl Worker for Probe {
    async fn work(
        &self,
        request: tonic::Request<WorkRequest>,
    ) -> Result<tonic::Response<WorkReply>, tonic::Status> {
        let ctx = request.context();
        let _ = self.0.send(ctx.clone());
        match ctx.done().await {
            Error::DeadlineExceeded => Err(tonic::Status::deadline_exceeded("deadline")),
            Error::Canceled => Err(tonic::Status::cancelled("canceled")),
        }
    }
}

async fn server() -> (SocketAddr, mpsc::UnboundedReceiver<Context>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(ServerLayer::new(Context::background()))
            .add_service(WorkerServer::new(Probe(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, rx)
}

async fn client(addr: SocketAddr) -> WorkerClient<ClientService<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    WorkerClient::new(ClientLayer::new().layer(channel))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Context>) -> Context {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a handler started within 5 s")
        .unwrap()
}

#[tokio::test]
async fn a_tonic_0_13_call_carries_its_deadline_and_ends_with_deadline_exceeded() {
    let (addr, mut seen) = server().await;
    let mut client = client(addr).await;
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(200));
    let call = tokio::spawn(async move {
        let req = tonic::Request::new(WorkRequest { millis: 10_000 }).with_context(ctx);
        client.work(req).await
    });
    let at_server = next(&mut seen).await;
    let left = at_server.remaining().expect("the handler has the deadline");
    assert!(
        left > Duration::from_millis(100) && left <= Duration::from_millis(200),
        "{left:?}"
    );
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    let err = tokio::time::timeout(Duration::from_secs(1), at_server.done())
        .await
        .unwrap();
    assert_eq!(err, Error::DeadlineExceeded);
}

#[tokio::test]
async fn cancelling_a_tonic_0_13_call_cancels_the_handler_and_gives_cancelled() {
    let (addr, mut seen) = server().await;
    let mut client = client(addr).await;
    let (ctx, cancel) = Context::background().with_timeout(Duration::from_secs(10));
    let call = tokio::spawn(async move {
        let req = tonic::Request::new(WorkRequest { millis: 10_000 }).with_context(ctx);
        client.work(req).await
    });
    let at_server = next(&mut seen).await;
    cancel.cancel();
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
    let err = tokio::time::timeout(Duration::from_secs(1), at_server.done())
        .await
        .expect("the stream reset reaches the handler");
    assert_eq!(err, Error::Canceled);
    assert_eq!(
        at_server.cause().unwrap().downcast_ref::<ServerCause>(),
        Some(&ServerCause::ClientGone)
    );
}
