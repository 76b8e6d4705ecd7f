//! A counting global allocator for tests and examples that measure allocations.
//!
//! Not declared in `common/mod.rs`: only the binaries that install it include it, with
//!
//! ```text
//! #[path = "common/counting_alloc.rs"]
//! mod counting_alloc;
//!
//! #[global_allocator]
//! static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;
//! ```
//!
//! It counts, for the whole process, the allocations made (`total_allocs`) and the bytes
//! currently allocated (`live_bytes`), and for each thread the allocations that thread made
//! (`thread_allocs`): tests that run in parallel, and the library's own threads (timer,
//! callback pool), do not disturb a per-thread count. An allocation is `alloc`,
//! `alloc_zeroed` or `realloc`; only those that succeed are counted.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};

/// The counting allocator: forwards every call to `System` and counts it.
pub struct Counting;

static TOTAL_ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// Allocations (`alloc`, `alloc_zeroed`, `realloc`) made so far by the calling thread.
pub fn thread_allocs() -> u64 {
    THREAD_ALLOCS.try_with(Cell::get).unwrap_or(0)
}

/// Allocations made so far by every thread of the process.
pub fn total_allocs() -> u64 {
    TOTAL_ALLOCS.load(Ordering::Relaxed)
}

/// Bytes currently allocated by every thread of the process (allocated minus freed since
/// the process started).
pub fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Counts one allocation that changed the live bytes by `bytes`.
fn count(bytes: isize) {
    TOTAL_ALLOCS.fetch_add(1, Ordering::Relaxed);
    LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
    // `try_with`: during the thread's teardown the slot may be gone; the count is then lost,
    // which is harmless, rather than a panic inside the allocator.
    let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards its arguments to `System` unchanged and returns what `System`
// returned, so `Counting` upholds `GlobalAlloc`'s contract exactly as `System` does. The
// counting around each call never allocates and never calls back into the allocator: it
// touches only static atomics and a const-initialised thread-local `Cell<u64>`, which needs
// no lazy initialisation and has no destructor (and `try_with` never panics).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        new
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
}
