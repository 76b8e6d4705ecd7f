//! What a timer queue expires, and which shard of the queue an entry goes to (T2).

use std::cell::Cell;
use std::sync::Arc;

use crate::callback::Callbacks;
use crate::sync::Ordering;

/// What a timer queue expires: a context's node, in the crate.
pub(crate) trait Timed: Send + Sync + Sized + 'static {
    /// The shard number it was made for ([`thread_shard`] when it was made, T2).
    fn shard(&self) -> u8;
    /// Its deadline has come (T3). `callbacks` says where its `on_cancel` callbacks run, and
    /// for [`Callbacks::Pool`] (the timer thread), that no user code may run here: not even
    /// the drop of `self`, which may be the last reference.
    fn expire(self: Arc<Self>, callbacks: Callbacks);
    /// Its queue was abandoned: the deadline will never come (T5).
    fn abandoned(&self);
}

/// The most shards a queue has.
pub(super) const MAX_SHARDS: usize = 64;

/// The calling thread's shard number, fixed for the thread's life: threads are numbered in
/// the order they first make a deadline, so threads started together get different shards.
/// A queue with `n` shards uses shard `number % n`; an entry's owner keeps the number to find
/// its shard when it is dropped (T2).
pub(crate) fn thread_shard() -> u8 {
    thread_local! {
        static SHARD: Cell<Option<u8>> = const { Cell::new(None) };
    }
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let pick = || (NEXT.fetch_add(1, Ordering::Relaxed) % MAX_SHARDS) as u8;
    SHARD
        .try_with(|s| match s.get() {
            Some(n) => n,
            None => {
                let n = pick();
                s.set(Some(n));
                n
            }
        })
        .unwrap_or(0) // thread teardown: any shard will do
}
