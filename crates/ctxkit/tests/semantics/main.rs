//! The numbered promises of the API contract (S1–S33) under ordinary use, one module per
//! topic. Each test is named after the promise it checks and cites its rule (`// API Sn`).
//!
//! Ordinary use includes callbacks that call back into ctxkit (cancel, derive, drop, wait,
//! advance a clock: S20 allows it), zero and past deadlines (S13) and million-level trees
//! (S23). A test whose subject is a panic in user code, or a time at the edge of `Instant` or
//! `Duration` (`Duration::MAX`, the ends of `Instant`'s range), belongs in `tests/faults.rs`.

#[path = "../common/mod.rs"]
mod common;

mod callbacks;
mod cancellation;
mod causes;
mod clock;
mod deadlines;
mod depth;
mod display;
mod merge;
mod moves;
mod names;
mod provenance;
mod resources;
mod roots;
mod snapshots;
mod types;
mod values;
mod waiting;
