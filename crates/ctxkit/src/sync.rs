//! The synchronisation types of the cancellation tree, swapped for loom's under `cfg(loom)`
//! so that the model tests in `tests/loom.rs` explore every interleaving of the core's races.
//!
//! Reference counts (`Arc`, `Weak`) stay std's: loom has no `Weak`, and the counts are not
//! where the core's races are. The timer thread and the callback pool use std directly; they
//! are not part of the models.

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicU32, AtomicU8, Ordering},
    Mutex, MutexGuard,
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicU32, AtomicU8, Ordering},
    Mutex, MutexGuard,
};

/// Locks `m`, ignoring poison: no code of ours panics while holding a lock of the tree, and
/// user callbacks never run under one (`node.rs`, N6).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`lock`] for the std mutexes of the timer queues and the callback pool.
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
