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
//!
//! Counting costs no read-modify-write on the allocating thread's path, so that the figures
//! of a benchmark are the allocator's and the code's, not the counter's (Go's runtime, which
//! the benchmarks compare with, keeps its allocation statistics per processor the same way).
//! Each thread writes its counts into a slot of its own, with a plain load and store: it is
//! the slot's only writer. The process's counts are the sum of every slot. Threads beyond
//! the [`SLOTS`] first ones, and threads in their teardown (when the thread-local is gone),
//! share the last slot and count into it with read-modify-writes.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// The counting allocator: forwards every call to `System` and counts it.
pub struct Counting;

/// How many slots there are; the last is shared.
const SLOTS: usize = 256;
const SHARED: usize = SLOTS - 1;

/// One thread's counts, on a cache line of its own so that threads do not share lines.
#[repr(align(128))]
struct Slot {
    allocs: AtomicI64,
    bytes: AtomicI64,
}

static COUNTS: [Slot; SLOTS] = [const {
    Slot {
        allocs: AtomicI64::new(0),
        bytes: AtomicI64::new(0),
    }
}; SLOTS];
/// The next slot to hand to a thread that allocates for the first time.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
    /// This thread's slot; `SLOTS` until it has one.
    static MINE: Cell<usize> = const { Cell::new(SLOTS) };
}

/// Allocations (`alloc`, `alloc_zeroed`, `realloc`) made so far by the calling thread.
pub fn thread_allocs() -> u64 {
    THREAD_ALLOCS.try_with(Cell::get).unwrap_or(0)
}

/// Allocations made so far by every thread of the process.
pub fn total_allocs() -> u64 {
    COUNTS
        .iter()
        .map(|s| s.allocs.load(Ordering::Relaxed))
        .sum::<i64>() as u64
}

/// Bytes currently allocated by every thread of the process (allocated minus freed since
/// the process started).
pub fn live_bytes() -> isize {
    COUNTS
        .iter()
        .map(|s| s.bytes.load(Ordering::Relaxed))
        .sum::<i64>() as isize
}

/// The calling thread's slot, handed out on its first allocation.
fn slot() -> usize {
    // `try_with`: during the thread's teardown the slot may be gone; the shared slot counts
    // instead, rather than a panic inside the allocator.
    MINE.try_with(|mine| {
        if mine.get() == SLOTS {
            mine.set(NEXT.fetch_add(1, Ordering::Relaxed).min(SHARED));
        }
        mine.get()
    })
    .unwrap_or(SHARED)
}

/// Adds `allocs` allocations and `bytes` bytes to the calling thread's counts.
fn count(allocs: i64, bytes: i64) {
    let i = slot();
    let add = |counter: &AtomicI64, n: i64| {
        if i == SHARED {
            counter.fetch_add(n, Ordering::Relaxed);
        } else {
            // The slot's only writer: a load and a store are exact.
            counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    };
    add(&COUNTS[i].allocs, allocs);
    add(&COUNTS[i].bytes, bytes);
    if allocs != 0 {
        let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + allocs as u64));
    }
}

// SAFETY: every method forwards its arguments to `System` unchanged and returns what `System`
// returned, so `Counting` upholds `GlobalAlloc`'s contract exactly as `System` does. The
// counting around each call never allocates and never calls back into the allocator: it
// touches only static atomics and const-initialised thread-local `Cell`s, which need no lazy
// initialisation and have no destructor (and `try_with` never panics).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            count(1, layout.size() as i64);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            count(1, layout.size() as i64);
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            count(1, new_size as i64 - layout.size() as i64);
        }
        new
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        count(0, -(layout.size() as i64));
    }
}
