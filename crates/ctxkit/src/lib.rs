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
//! The rules every context keeps, Go's and ctxkit's own, are numbered (S1–S32) in
//! [`guarantees`]; each method's docs link the ones it keeps.
//!
//! # What is where
//! The modules are layered: each uses only the layers below it, and only `tree/` is a group
//! whose files use each other (`python3 tools/check-layers.py` checks both, from this table).
//!
//! | layer | modules | what they hold |
//! |---|---|---|
//! | 9 | `guarantees.rs` | the rules, S1–S32 (documentation only) |
//! | 8 | `glue/` | integrations with other crates, over the public API and the groups' core |
//! | 7 | `group.rs`, `display.rs`, `inspect.rs`, `shutdown.rs` | task groups ([`Group`]); how a context prints; the live tree ([`inspect::Snapshot`]); two-phase [`Shutdown`] |
//! | 6 | `context.rs` | [`Context`]: deriving, observing, waiting, callbacks |
//! | 5 | `handle.rs`, `done.rs`, `manual_clock.rs` | [`CancelHandle`], [`CancelGuard`], [`Done`], [`ManualClock`] |
//! | 4 | `tree/` | the cancellation tree and the value layers: one closed group, with its invariants (N1–N9, V1–V4) |
//! | 3 | `timer/` | timer queues, generic over what they expire (T1–T7) |
//! | 2 | `callback/`, `origin.rs` | [`AfterFunc`] registrations and the pool that runs them (C1–C3); [`Origin`], where a cancellation began |
//! | 1 | `time.rs`, `error.rs`, `key.rs`, `sync.rs`, `diagnostics.rs` | time as nanoseconds, [`Error`] and [`Cause`], [`Key`], the loom shim, leak counters |
//!
//! [`Group`] is Go's errgroup for threads; `ctxkit::tokio::Group` does the same for tokio
//! tasks and `ctxkit::futures::JoinGroup` for futures in one task. [`net`] bounds blocking
//! `std::net` I/O by a context (always on); the other integrations are optional (below).
//!
//! # Why was it cancelled?
//! [`Context::origin`] tells, for any done context, where its cancellation began: the kind
//! ([`OriginKind`]), the call site, the thread and the name of the context it began at,
//! recorded once where it began. [`inspect::Snapshot`] lists the live tree under a context,
//! with each context's kind, name, creation site, age, deadline, err and origin.
//!
//! # Cargo features
//! None is enabled by default; each adds one module or one behaviour, and one optional
//! dependency.
//! - `tokio`: `ctxkit::tokio`, a `Group` for tokio tasks and `spawn`, a task that stops
//!   when its context is done.
//! - `tokio-util`: `ctxkit::tokio_util`, a context and a `CancellationToken` that cancel each
//!   other, with no thread or task.
//! - `crossbeam-channel`: `ctxkit::crossbeam`, a receiver that is ready once a context is
//!   done, for `crossbeam_channel::select!` (Go's `case <-ctx.Done():` for threads).
//! - `futures`: `ctxkit::futures`, `.with_context(&ctx)` for futures, `.until_done(&ctx)`
//!   for streams, and `JoinGroup`.
//! - `tracing`: one `tracing` event (target `ctxkit`, level DEBUG) at the origin of each
//!   cancellation, not one per context it reaches.
//! - `diagnostics`: `ctxkit::diagnostics`, live contexts counted in all and by creation site,
//!   for leak tests.
//! - `signals` (Unix): `Shutdown::on_signals`, a shutdown begun by SIGINT or SIGTERM.
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

// Bottom to top, as in the table above.
#[cfg(feature = "diagnostics")]
#[cfg_attr(docsrs, doc(cfg(feature = "diagnostics")))]
pub mod diagnostics;
mod error;
mod key;
mod sync;
mod time;

mod callback;
mod origin;

mod timer;

mod tree;

mod done;
mod handle;
mod manual_clock;

mod context;

mod display;
pub mod group;
pub mod inspect;
mod shutdown;

mod glue;

pub mod guarantees;

pub use callback::AfterFunc;
pub use context::Context;
pub use done::Done;
pub use error::{Cause, Error};
pub use group::{Group, Panicked, TaskError};
pub use handle::{CancelGuard, CancelHandle};
pub use key::Key;
pub use manual_clock::ManualClock;
pub use origin::{Origin, OriginKind};
pub use shutdown::{Shutdown, ShutdownCause, ShutdownReport, WorkGuard};

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

/// The README's code, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
