//! Deadlines and cancellation across services, over HTTP and gRPC: [`ctxkit`] contexts for
//! tower, hyper, tonic, axum and reqwest — what Go's `net/http` and grpc-go do with
//! `context.Context`.
//!
//! - **Server**: [`ServerLayer`] gives each request a [`Context`] derived from a server-wide
//!   root, with the deadline the client sent (`grpc-timeout`, and optionally
//!   `connect-timeout-ms` or a milliseconds header of your choice). The context is cancelled
//!   when the client goes away (the response future is dropped, e.g. on an HTTP/2
//!   `RST_STREAM`), when the response has been sent, when the deadline passes, or when the
//!   server shuts down. Handlers read it with [`RequestContextExt::context`] (tonic and http
//!   requests) or the `RequestContext` extractor (axum, feature `axum`).
//! - **Client**: [`ClientLayer`] (tonic channels, hyper clients) and `RequestBuilderExt`
//!   (reqwest, feature `reqwest`) send the context's remaining time to the server and abort
//!   the call when the context is done. A request carries its context
//!   ([`RequestContextExt::with_context`]), or the client service is given it
//!   ([`ClientService::with_context`]), which spares `http` the extension map it allocates
//!   for a request's first extension.
//! - **Codec**: [`codec`] parses and writes `grpc-timeout` and millisecond headers, strictly.
//!
//! ```
//! use std::time::Duration;
//! use ctxkit::Context;
//! use ctxkit_tower::{ClientLayer, RequestContextExt, ServerLayer};
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Server: the handler sees the client's deadline.
//! let handler = tower::service_fn(|req: http::Request<String>| async move {
//!     let left = req.context().remaining().unwrap();
//!     Ok::<_, std::convert::Infallible>(http::Response::new(format!("{}", left.as_millis())))
//! });
//! let server = ServerLayer::new(Context::background()).layer(handler);
//!
//! // Client: the request carries a context with 250 ms left.
//! let mut client = ClientLayer::new().layer(server);
//! let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(250));
//! let req = http::Request::builder()
//!     .header("content-type", "application/grpc")
//!     .body(String::new())
//!     .unwrap()
//!     .with_context(ctx);
//! let res = client.call(req).await.unwrap();
//! assert!(res.headers().is_empty());
//! # }
//! ```
//!
//! # A server and a client
//!
//! An axum server (HTTP/1.1 and HTTP/2) whose handlers stop when the client gives up, its
//! deadline passes, or the server shuts down:
//!
//! ```no_run
//! use axum::{http::StatusCode, routing::get, Router};
//! use ctxkit::Context;
//! use ctxkit_tower::{RequestContext, ServerCause, ServerLayer};
//!
//! # async fn slow_work() -> &'static str { "done" }
//! # async fn f() {
//! let (root, shutdown) = Context::background().with_cancel();
//! let app = Router::new()
//!     .route("/work", get(|RequestContext(ctx): RequestContext| async move {
//!         ctx.run(slow_work()).await.map_err(|_| StatusCode::GATEWAY_TIMEOUT)
//!     }))
//!     .layer(ServerLayer::new(root).timeout_ms_header("x-timeout-ms"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async move {
//!         tokio::signal::ctrl_c().await.unwrap();
//!         shutdown.cancel_with_cause(ServerCause::Shutdown); // cancels requests in flight
//!     })
//!     .await
//!     .unwrap();
//! # }
//! ```
//!
//! A tonic server takes the layer the same way: `Server::builder().layer(ServerLayer::new(root))`,
//! and handlers call `request.context()` ([`RequestContextExt`]).
//!
//! A tonic client whose calls carry the context's deadline and stop when it is cancelled:
//!
//! ```no_run
//! # mod pb { include!("../proto/gen/ctxkit.demo.v1.rs"); }
//! use std::time::Duration;
//! use ctxkit::Context;
//! use ctxkit_tower::{ClientLayer, RequestContextExt};
//! use pb::{worker_client::WorkerClient, WorkRequest};
//! use tower_layer::Layer;
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect().await?;
//! let mut client = WorkerClient::new(ClientLayer::new().layer(channel));
//! let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(500));
//! let req = tonic::Request::new(WorkRequest { millis: 100 }).with_context(ctx);
//! let reply = client.work(req).await?; // the server sees grpc-timeout: ~500 ms
//! # Ok(()) }
//! ```
//!
//! # Features and supported versions
//!
//! One feature per supported major version of each integration: the plain name is the current
//! major version, `name-0_NN` the previous one where it is supported. Both may be on in one
//! build (two crates of a program may each need one).
//!
//! | Feature | Crate and versions | Enables |
//! |---|---|---|
//! | `tonic` (default) | tonic 0.14 | a done context fails a gRPC call with a `tonic::Status`; [`RequestContextExt`] for `tonic::Request` |
//! | `tonic-0_13` | tonic 0.13 | the same for tonic 0.13 |
//! | `axum` | axum 0.8 | the `RequestContext` extractor |
//! | `reqwest` | reqwest 0.13 | `RequestBuilderExt` for reqwest request builders |
//! | `reqwest-0_12` | reqwest 0.12 | the same for reqwest 0.12, in `reqwest_0_12` (and at the crate root when `reqwest` is off) |
//! | `opentelemetry` | opentelemetry 0.33, opentelemetry-http 0.33 | the W3C trace context (with the global propagator) is extracted into the request context on the server and injected from it on the client |
//!
//! The layers themselves work with any server or client built on `http` 1 and
//! `tower-service` 0.3: hyper 1 (and hyper-util 0.1), axum 0.8, tonic 0.13 and 0.14. Only the
//! current opentelemetry is supported: `TraceContext` holds that
//! version's `Context`, so an older one would need a type of its own.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod axum;
mod client;
pub mod codec;
mod error;
mod ext;
pub mod live;
mod name;
#[cfg(feature = "opentelemetry")]
mod otel;
#[cfg(any(feature = "reqwest", feature = "reqwest-0_12"))]
mod reqwest;
mod server;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use crate::axum::RequestContext;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use crate::reqwest::current::{ContextRequestBuilder, RequestBuilderExt, SendError};
#[cfg(feature = "reqwest-0_12")]
pub use crate::reqwest::reqwest_0_12;
// With reqwest 0.12 alone, its items are at the crate root too, where code written for
// either version looks for them.
#[cfg(all(feature = "reqwest-0_12", not(feature = "reqwest")))]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-0_12")))]
pub use crate::reqwest::reqwest_0_12::{ContextRequestBuilder, RequestBuilderExt, SendError};
pub use client::{BoxError, ClientBody, ClientFuture, ClientLayer, ClientService};
pub use ctxkit::Context;
pub use error::ContextError;
pub use ext::RequestContextExt;
pub use live::LivePage;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub use otel::TraceContext;
pub use server::{
    DeadlineSource, MalformedTimeout, RequestOutcome, ServerBody, ServerCause, ServerFuture,
    ServerLayer, ServerService, ServerStats, CONNECT_TIMEOUT_MS, GRPC_TIMEOUT,
};
