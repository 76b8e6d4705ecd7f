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
//! # Guarantees
//! The rules every context keeps, Go's and ctxkit's own, are numbered S1–S25 in
//! [`guarantees`]; each method's docs link the ones it keeps.
//!
//! # What is where
//! The modules are layered: each uses only the layers below it (`.ci/run` checks it).
//!
//! | layer | modules | what they hold |
//! |---|---|---|
//! | 6 | `group.rs`, `glue/` | task groups ([`Group`]); integrations, over the public API |
//! | 5 | `context.rs`, `display.rs` | [`Context`]: deriving, observing, waiting, callbacks; how it prints |
//! | 4 | `handle.rs`, `done.rs`, `manual_clock.rs` | [`CancelHandle`], [`CancelGuard`], [`Done`], [`ManualClock`] |
//! | 3 | `tree/` | the cancellation tree and the value layers, one closed group (its invariants, N1–N9 and V1–V4, are in its module docs) |
//! | 2 | `callback/`, `timer/` | [`AfterFunc`] registrations and the callback pool; timer queues, generic over what they expire |
//! | 1 | `time.rs`, `error.rs`, `key.rs`, `sync.rs`, `diagnostics.rs` | time as nanoseconds, [`Error`] and [`Cause`], [`Key`], the loom shim, leak counters |
//!
//! [`Group`] is Go's errgroup for threads; `ctxkit::tokio::Group` does the same for tokio
//! tasks and `ctxkit::futures::JoinGroup` for futures in one task. [`net`] bounds blocking
//! `std::net` I/O by a context (always on); the other integrations are optional (below).
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
#![cfg_attr(docsrs, feature(doc_cfg))]

// Layer 1: no imports from the crate.
#[cfg(feature = "diagnostics")]
#[cfg_attr(docsrs, doc(cfg(feature = "diagnostics")))]
pub mod diagnostics;
mod error;
mod key;
mod sync;
mod time;
// Layer 2.
mod callback;
mod timer;
// Layer 3: one closed group.
mod tree;
// Layer 4.
mod done;
mod handle;
mod manual_clock;
// Layer 5.
mod context;
mod display;
// Layer 6.
mod glue;
pub mod group;

pub mod guarantees;

pub use callback::AfterFunc;
pub use context::Context;
pub use done::Done;
pub use error::{Cause, Error};
pub use group::{Group, Panicked};
pub use handle::{CancelGuard, CancelHandle};
pub use key::Key;
pub use manual_clock::ManualClock;

#[cfg(feature = "crossbeam-channel")]
#[cfg_attr(docsrs, doc(cfg(feature = "crossbeam-channel")))]
pub use glue::crossbeam;
#[cfg(feature = "futures")]
#[cfg_attr(docsrs, doc(cfg(feature = "futures")))]
pub use glue::futures;
pub use glue::net;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use glue::tokio;
#[cfg(feature = "tokio-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
pub use glue::tokio_util;
