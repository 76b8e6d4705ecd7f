//! A counting global allocator for tests and benchmarks (never for the library): it forwards
//! every call to `System` and counts allocations per thread and in total, and the net bytes
//! still allocated.
//!
//! ```ignore
//! #[path = "common/counting_alloc.rs"]
//! mod counting_alloc;
//! use counting_alloc::Counting;
//!
//! #[global_allocator]
//! static GLOBAL: Counting = Counting;
//! ```
//!
//! An allocation is a call to `alloc`, `alloc_zeroed` or `realloc`. The per-thread count is
//! what tests running in parallel use (the library's own threads, such as the timer thread,
//! do not disturb it); the totals see every thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

/// The counting allocator: `#[global_allocator] static GLOBAL: Counting = Counting;`.
pub struct Counting;

thread_local! {
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
}

static TOTAL_ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

/// Allocations made by the calling thread so far.
pub fn thread_allocs() -> u64 {
    THREAD_ALLOCS.try_with(Cell::get).unwrap_or(0)
}

/// Allocations made by every thread of the process so far.
pub fn total_allocs() -> u64 {
    TOTAL_ALLOCS.load(Ordering::Relaxed)
}

/// Bytes allocated and not yet freed, over every thread (requested sizes: the allocator's
/// own overhead per block is not counted).
pub fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

fn count_alloc(bytes: isize) {
    // `try_with`: the thread-local may already be gone while the thread exits.
    let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
    TOTAL_ALLOCS.fetch_add(1, Ordering::Relaxed);
    LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged, with the same arguments, and its
// result is returned as is; the counting only touches atomics and a const-initialised
// thread-local without a destructor, so it never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size() as isize);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size() as isize);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout);
    }
}
