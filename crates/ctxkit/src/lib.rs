//! Go's `context` for Rust: cancellation trees, deadlines, causes and request-scoped values,
//! for plain threads and for async code on any executor.
//!
//! ```
//! use std::time::Duration;
//! use ctxkit::{Context, Error};
//!
//! // A request gets a context with a deadline; work stops when it is done.
//! let (ctx, _handle) = Context::background().with_timeout(Duration::from_millis(20));
//! let worker = {
//!     let ctx = ctx.clone();
//!     std::thread::spawn(move || {
//!         while !ctx.is_done() {
//!             std::thread::sleep(Duration::from_millis(1)); // a step of work
//!         }
//!         ctx.err()
//!     })
//! };
//! assert_eq!(worker.join().unwrap(), Some(Error::DeadlineExceeded));
//! ```
//!
//! # What is where
//! - [`Context`]: roots, derivations, observation, waiting, callbacks (`context.rs`).
//! - The cancellation tree and its invariants: `node.rs`. Deadlines and [`ManualClock`]:
//!   `timer/`. Values and [`Key`]: `values.rs`. [`Done`] and blocking waits: `done.rs`.
//!   [`AfterFunc`] and the callback pool: `callback.rs`. [`Error`] and [`Cause`]: `error.rs`.
//!   [`CancelHandle`] and [`CancelGuard`]: `handle.rs`.
//! - Task groups, Go's errgroup: [`Group`] for threads (`group.rs`); `ctxkit::tokio::Group`
//!   for tokio tasks and `ctxkit::futures::JoinGroup` for futures in one task.
//! - Integrations, one module each in `glue/`: [`net`] (blocking `std::net` I/O under a
//!   context, always on) and the optional ones below.
//!
//! # Cargo features
//! None is enabled by default; each adds one module and one optional dependency.
//! - `tokio`: `ctxkit::tokio`, a `Group` for tokio tasks and `spawn`, a task that stops
//!   when its context is done.
//! - `tokio-util`: `ctxkit::tokio_util`, a context and a `CancellationToken` that cancel each
//!   other, with no thread or task.
//! - `crossbeam-channel`: `ctxkit::crossbeam`, a receiver that is ready once a context is
//!   done, for `crossbeam_channel::select!` (Go's `case <-ctx.Done():` for threads).
//! - `futures`: `ctxkit::futures`, `.with_context(&ctx)` for futures, `.until_done(&ctx)`
//!   for streams, and `JoinGroup`.
//!
//! # Go → ctxkit
//! | Go | ctxkit |
//! |---|---|
//! | `context.Background()`, `context.TODO()` | [`Context::background`], [`Context::todo`] |
//! | `WithCancel(ctx)` | [`ctx.with_cancel()`](Context::with_cancel) → `(Context, CancelHandle)` |
//! | `WithCancelCause(ctx)` + `cancel(err)` | [`ctx.with_cancel()`](Context::with_cancel) + [`CancelHandle::cancel_with_cause`] |
//! | `WithDeadline`, `WithTimeout` (and `*Cause`) | [`Context::with_deadline`], [`Context::with_timeout`], [`Context::with_deadline_cause`], [`Context::with_timeout_cause`] |
//! | `WithValue(ctx, key, v)`, `ctx.Value(key)` | [`Context::with_value`] / [`Context::value`] with a `static` [`Key`]; [`Context::with`] / [`Context::get`] keyed by type |
//! | `WithoutCancel(ctx)` | [`Context::without_cancel`] |
//! | `AfterFunc(ctx, f)`, `stop()` | [`Context::after_func`], [`AfterFunc::stop`] |
//! | `ctx.Err()`, `context.Cause(ctx)`, `ctx.Deadline()` | [`Context::err`], [`Context::cause`], [`Context::deadline`] |
//! | `<-ctx.Done()` | [`ctx.done().await`](Context::done) or [`ctx.wait()`](Context::wait) |
//! | `defer cancel()` | [`CancelHandle::drop_guard`] |
#![warn(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod callback;
mod context;
#[cfg(feature = "diagnostics")]
pub mod diagnostics;
mod done;
mod error;
mod glue;
pub mod group;
mod handle;
mod node;
mod sync;
mod timer;
mod values;

pub use callback::AfterFunc;
pub use context::Context;
pub use done::Done;
pub use error::{Cause, Error};
pub use group::{Group, Panicked};

#[cfg(feature = "crossbeam-channel")]
pub use glue::crossbeam;
#[cfg(feature = "futures")]
pub use glue::futures;
pub use glue::net;
#[cfg(feature = "tokio")]
pub use glue::tokio;
#[cfg(feature = "tokio-util")]
pub use glue::tokio_util;
pub use handle::{CancelGuard, CancelHandle};
pub use timer::ManualClock;
pub use values::Key;

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
