//! The locks and atomics of the cancellation tree and the timer queues, swapped for loom's
//! under `cfg(loom)` so that the model tests (`tests/loom.rs`, and the timer's model in
//! `timer/mod.rs`) explore every interleaving of the core's races.
//!
//! Reference counts (`Arc`, `Weak`) stay std's: loom has no `Weak`, and the counts are not
//! where the core's races are. The callback pool uses std directly and is not part of the
//! models.

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU8, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU8, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};

/// Locks `m`, ignoring poison: no code of ours panics while holding a lock of the tree, and
/// user code never runs under one (`tree/mod.rs`, N6).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`lock`], and whether the lock was taken by another thread when this one came (the
/// signal that gives a contended node lanes, `tree/lanes.rs`). Under loom, always `false`:
/// loom's `try_lock` leaves its model in a state that fails later locks of the same mutex
/// (tokio-rs/loom issue 376), and under loom every link counts as contended anyway.
#[inline]
pub(crate) fn lock_noting_contention<T>(m: &Mutex<T>) -> (MutexGuard<'_, T>, bool) {
    #[cfg(not(loom))]
    if let Ok(guard) = m.try_lock() {
        return (guard, false);
    }
    (lock(m), !cfg!(loom))
}

/// The contents of a mutex nobody else can reach (`&mut`): no atomic operation.
pub(crate) fn get_mut<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|e| e.into_inner())
}

/// [`lock`] for the std mutexes that loom never sees (the callback pool, waiting for walks).
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lets another thread run while this one waits for a store it knows is coming (an origin
/// being written right after the swap that made a node done, `tree/provenance.rs`): loom's
/// yield inside a model, so that the model schedules the writer.
pub(crate) fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
