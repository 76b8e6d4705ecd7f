//! The synchronisation types of the cancellation tree, swapped for loom's under `cfg(loom)`
//! so that the model tests in `tests/loom.rs` explore every interleaving of the core's races.
//!
//! Reference counts (`Arc`, `Weak`) stay std's: loom has no `Weak`, and the counts are not
//! where the core's races are. The timer queues use these types too, so that the wake-up
//! protocol between inserts and the timer thread has a model (`timer/mod.rs`, T6); the
//! callback pool uses std directly and is not part of the models.

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
/// user callbacks never run under one (`node.rs`, N6).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The contents of a mutex nobody else can reach (`&mut`): no atomic operation.
pub(crate) fn get_mut<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|e| e.into_inner())
}

/// [`lock`] for the std mutexes of the callback pool and of waiting for walks.
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Blocks while `busy()` holds, until a [`walks_ended`] call makes it false (`node.rs`, N1b).
///
/// The protocol: a waiter counts itself in `WAITERS` before its first look at `busy`, and a
/// walk clears its bits before reading `WAITERS`. All four steps are `SeqCst`, so either the
/// walk sees the waiter and notifies it under the mutex, or the waiter sees the bits cleared.
#[cfg(not(loom))]
pub(crate) fn wait_while(busy: impl Fn() -> bool) {
    if !busy() {
        return;
    }
    WAITERS.fetch_add(1, Ordering::SeqCst);
    let (mutex, condvar) = &COMPLETION;
    let mut guard = lock_std(mutex);
    while busy() {
        guard = condvar.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
    drop(guard);
    WAITERS.fetch_sub(1, Ordering::SeqCst);
}

/// Wakes the threads in [`wait_while`], if any; cheap when there are none.
#[cfg(not(loom))]
pub(crate) fn walks_ended() {
    if WAITERS.load(Ordering::SeqCst) > 0 {
        let (mutex, condvar) = &COMPLETION;
        let _guard = lock_std(mutex);
        condvar.notify_all();
    }
}

#[cfg(not(loom))]
static WAITERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
#[cfg(not(loom))]
static COMPLETION: (std::sync::Mutex<()>, std::sync::Condvar) =
    (std::sync::Mutex::new(()), std::sync::Condvar::new());

/// Under loom, waiting is a yielding loop: loom runs every model thread on one OS thread.
#[cfg(loom)]
pub(crate) fn wait_while(busy: impl Fn() -> bool) {
    while busy() {
        loom::thread::yield_now();
    }
}

#[cfg(loom)]
pub(crate) fn walks_ended() {}
