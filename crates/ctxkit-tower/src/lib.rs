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
//!   requests) or the [`RequestContext`] extractor (axum, feature `axum`).
//! - **Client**: [`ClientLayer`] (tonic channels, hyper clients) and [`RequestBuilderExt`]
//!   (reqwest, feature `reqwest`) send the context's remaining time to the server and abort
//!   the call when the context is done.
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
//! # Features
//! - `tonic` (default): a done context fails a gRPC call with a `tonic::Status`;
//!   [`RequestContextExt`] for `tonic::Request`.
//! - `axum`: the [`RequestContext`] extractor.
//! - `reqwest`: [`RequestBuilderExt`].
//! - `opentelemetry`: the W3C trace context (with the global propagator) is extracted into
//!   the request context on the server and injected from it on the client.
#![warn(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

#[cfg(feature = "axum")]
mod axum;
mod client;
pub mod codec;
mod ext;
#[cfg(feature = "opentelemetry")]
mod otel;
#[cfg(feature = "reqwest")]
mod reqwest;
mod server;

#[cfg(feature = "axum")]
pub use crate::axum::RequestContext;
#[cfg(feature = "reqwest")]
pub use crate::reqwest::{ContextRequestBuilder, RequestBuilderExt, SendError};
pub use client::{BoxError, ClientBody, ClientFuture, ClientLayer, ClientService};
pub use ctxkit::Context;
pub use ext::RequestContextExt;
#[cfg(feature = "opentelemetry")]
pub use otel::TraceContext;
pub use server::{
    ServerBody, ServerCause, ServerFuture, ServerLayer, ServerService, CONNECT_TIMEOUT_MS,
    GRPC_TIMEOUT,
};
