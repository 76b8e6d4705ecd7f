//! The numbered promises of the API contract (S1–S25) under ordinary use, one module per
//! topic. Each test is named after the promise it checks and cites its rule (`// API Sn`).

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
mod resources;
mod roots;
mod types;
mod values;
mod waiting;
