//! Deadlines: time as nanoseconds, the timer queues that fire deadlines, and [`ManualClock`].
//!
//! Every deadline lives in exactly one [`TimerQueue`]: the process-wide real-time queue, served
//! by one lazily started thread (`ctxkit-timer`), or the queue of a [`ManualClock`], served by
//! [`ManualClock::advance`]. A queue is a binary heap ordered by deadline, so insert and pop are
//! O(log n).
//!
//! # Invariants
//! - **T1 (weak entries)**: the queue holds only a `Weak` reference to a context's node, so a
//!   timer never keeps a dropped context alive.
//! - **T2 (lazy removal)**: a cancelled or dropped context does not search the heap; it counts
//!   itself dead ([`TimerQueue::forget`]). When dead entries outnumber live ones the heap is
//!   rebuilt without them, so removal is amortised O(1) and the heap never holds more than
//!   about twice the live timers.
//! - **T3 (never early)**: an entry fires only once the queue's clock reads at or past its
//!   deadline.
//! - **T4 (no lock held while firing)**: due entries are taken out under the queue's lock and
//!   fired after releasing it, so a cancellation (and its `on_cancel` callbacks) may create or
//!   drop timers freely.
//! - **T5 (abandoned clocks)**: contexts keep their manual clock's queue alive, but only
//!   [`ManualClock`] handles can move its time. When the last handle is dropped the queue is
//!   abandoned: its entries are dropped and nodes pinned for their deadlines are let go, so a
//!   callback waiting on a deadline that can never fire is not leaked (API S19).

use std::any::Any;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::node::{Callbacks, Node};
use crate::sync::lock_std as lock;

/// A point in time as nanoseconds since the process epoch (the first time ctxkit read the
/// clock). `i64` covers ±292 years around the epoch.
pub(crate) type Nanos = i64;

/// The deadline of a context that has none (also: any deadline past the 292 years [`Nanos`]
/// can express, which API S13 treats as "no deadline within the life of the process").
pub(crate) const NO_DEADLINE: Nanos = Nanos::MAX;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Converts an instant to [`Nanos`], saturating at the ends of the range.
pub(crate) fn to_nanos(t: Instant) -> Nanos {
    let epoch = epoch();
    match t.checked_duration_since(epoch) {
        Some(after) => after.as_nanos().try_into().unwrap_or(NO_DEADLINE),
        None => {
            let before: i128 = (epoch - t).as_nanos().try_into().unwrap_or(i128::MAX);
            (-before).max(Nanos::MIN as i128 + 1) as Nanos
        }
    }
}

/// Converts [`Nanos`] back to an instant. `n` came from [`to_nanos`], so it is representable.
pub(crate) fn from_nanos(n: Nanos) -> Instant {
    let epoch = epoch();
    if n >= 0 {
        epoch + Duration::from_nanos(n as u64)
    } else {
        epoch - Duration::from_nanos(n.unsigned_abs())
    }
}

/// `now + d` in [`Nanos`], or [`NO_DEADLINE`] when it does not fit (API S13).
pub(crate) fn add_duration(now: Nanos, d: Duration) -> Nanos {
    // A span [`Nanos`] cannot hold is past the life of the process, wherever `now` is.
    let Ok(d) = i64::try_from(d.as_nanos()) else {
        return NO_DEADLINE;
    };
    now.checked_add(d).unwrap_or(NO_DEADLINE)
}

/// The time left from `now` to `deadline`, zero if it has passed.
pub(crate) fn remaining(deadline: Nanos, now: Nanos) -> Duration {
    Duration::from_nanos(deadline.saturating_sub(now).max(0) as u64)
}

/// One pending deadline. Ordered so that `BinaryHeap` (a max-heap) pops the earliest first.
struct Entry {
    at: Nanos,
    node: Weak<Node>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.at.cmp(&self.at)
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Entry>,
    /// Whether the thread that serves the real-time queue is running.
    serving: bool,
}

/// A heap of deadlines and what is waiting on it. See the module's invariants.
pub(crate) struct TimerQueue {
    heap: Mutex<Heap>,
    /// Wakes the real-time thread when an earlier deadline arrives.
    wakeup: Condvar,
    /// `Some` for a manual clock: its current reading. `None`: real time.
    manual_now: Option<AtomicI64>,
    /// Set when the last [`ManualClock`] handle of this queue is dropped: nothing can move
    /// its time any more, so its deadlines will never fire (T5).
    abandoned: AtomicBool,
    /// Entries whose context was cancelled or dropped since the last rebuild (T2). Counted
    /// without the lock, so that cancelling a deadline context takes no lock here. An
    /// estimate: an entry popped after being counted is not subtracted, which only makes the
    /// next rebuild come a little early.
    dead: AtomicUsize,
    /// The heap's length as of its last change (read without the lock by `forget`).
    len: AtomicUsize,
}

impl TimerQueue {
    fn new(manual_now: Option<Nanos>) -> TimerQueue {
        TimerQueue {
            heap: Mutex::new(Heap::default()),
            wakeup: Condvar::new(),
            manual_now: manual_now.map(AtomicI64::new),
            abandoned: AtomicBool::new(false),
            dead: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        }
    }

    /// Whether this queue's deadlines can still fire (T5).
    pub(crate) fn can_fire(&self) -> bool {
        !self.abandoned.load(Ordering::SeqCst)
    }

    /// The last handle of a manual clock is gone: its deadlines will never fire, so the
    /// nodes pinned for them are let go (T5).
    fn abandon(&self) {
        let entries = {
            let mut heap = lock(&self.heap);
            self.abandoned.store(true, Ordering::SeqCst);
            self.len.store(0, Ordering::Relaxed);
            std::mem::take(&mut heap.entries)
        };
        for entry in entries.into_vec() {
            if let Some(node) = entry.node.upgrade() {
                node.unpin();
            }
        }
    }

    /// The process-wide real-time queue.
    pub(crate) fn real() -> &'static Arc<TimerQueue> {
        static REAL: OnceLock<Arc<TimerQueue>> = OnceLock::new();
        REAL.get_or_init(|| Arc::new(TimerQueue::new(None)))
    }

    /// This queue's clock reading.
    pub(crate) fn now(&self) -> Nanos {
        match &self.manual_now {
            Some(now) => now.load(Ordering::Acquire),
            None => to_nanos(Instant::now()),
        }
    }

    /// Schedules `node` to be cancelled with `DeadlineExceeded` at `at`.
    pub(crate) fn insert(self: &Arc<Self>, at: Nanos, node: Weak<Node>) {
        let mut heap = lock(&self.heap);
        let earliest = heap.entries.peek().map_or(true, |first| at < first.at);
        heap.entries.push(Entry { at, node });
        self.len.store(heap.entries.len(), Ordering::Relaxed);
        if self.manual_now.is_some() {
            return;
        }
        if !heap.serving {
            heap.serving = true;
            let queue = Arc::clone(self);
            std::thread::Builder::new()
                .name("ctxkit-timer".into())
                .spawn(move || queue.serve_real_time())
                .expect("ctxkit: cannot start the timer thread");
        } else if earliest {
            self.wakeup.notify_one();
        }
    }

    /// Counts one entry as dead (T2) and rebuilds the heap when most entries are dead.
    pub(crate) fn forget(&self) {
        // Relaxed: the counts only decide when to rebuild; the rebuild itself is exact.
        let dead = self.dead.fetch_add(1, Ordering::Relaxed) + 1;
        if dead < 64 || dead * 2 < self.len.load(Ordering::Relaxed) {
            return;
        }
        let mut heap = lock(&self.heap);
        // Nodes upgraded here are dropped after the lock is released: dropping the last
        // reference to a node calls `forget` again.
        let mut alive = Vec::new();
        let entries = std::mem::take(&mut heap.entries).into_vec();
        let kept: Vec<Entry> = entries
            .into_iter()
            .filter(|e| match e.node.upgrade() {
                Some(node) => {
                    let keep = !node.is_done();
                    alive.push(node);
                    keep
                }
                None => false,
            })
            .collect();
        heap.entries = BinaryHeap::from(kept);
        self.len.store(heap.entries.len(), Ordering::Relaxed);
        self.dead.store(0, Ordering::Relaxed);
        drop(heap);
        drop(alive);
    }

    /// Takes every entry due at `now` out of the heap.
    fn take_due(&self, heap: &mut Heap, now: Nanos, due: &mut Vec<Weak<Node>>) {
        while heap.entries.peek().is_some_and(|e| e.at <= now) {
            let entry = heap.entries.pop().expect("peeked");
            due.push(entry.node);
        }
        self.len.store(heap.entries.len(), Ordering::Relaxed);
    }

    /// Expires every due node. A panic of an `on_cancel` callback does not stop the others
    /// (API S21): the first one is returned once all have fired.
    fn fire(due: &mut Vec<Weak<Node>>, callbacks: Callbacks) -> Option<Box<dyn Any + Send>> {
        let mut first = None;
        for node in due.drain(..) {
            if let Some(node) = node.upgrade() {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| node.expire(callbacks))) {
                    first.get_or_insert(panic);
                }
            }
        }
        first
    }

    /// The loop of the `ctxkit-timer` thread.
    fn serve_real_time(&self) {
        let mut due = Vec::new();
        let mut heap = lock(&self.heap);
        loop {
            let now = self.now();
            self.take_due(&mut heap, now, &mut due);
            if !due.is_empty() {
                drop(heap);
                // T4. A callback's panic was reported by the panic hook; the thread goes on.
                drop(Self::fire(&mut due, Callbacks::Pool));
                heap = lock(&self.heap);
                continue;
            }
            heap = match heap.entries.peek() {
                None => self.wakeup.wait(heap).unwrap_or_else(|e| e.into_inner()),
                Some(first) => {
                    let wait = remaining(first.at, now);
                    self.wakeup
                        .wait_timeout(heap, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    fn len(&self) -> usize {
        lock(&self.heap).entries.len()
    }
}

/// A clock that moves only when told to, for deterministic tests of deadlines (API S25).
///
/// Give it to a context with [`Context::with_clock`](crate::Context::with_clock): that context
/// and every context derived from it measure their deadlines on this clock, and
/// [`advance`](ManualClock::advance) fires, before it returns, every deadline it passes. Real
/// time passing fires nothing. Clones share one clock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, Error, ManualClock};
///
/// let clock = ManualClock::new();
/// let root = Context::background().with_clock(&clock);
/// let (ctx, _handle) = root.with_timeout(Duration::from_secs(30));
/// assert_eq!(ctx.remaining(), Some(Duration::from_secs(30)));
///
/// clock.advance(Duration::from_secs(29));
/// assert_eq!(ctx.err(), None);
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    owner: Arc<ClockOwner>,
}

/// Shared by the clones of one [`ManualClock`]; dropping the last one abandons the queue
/// (T5). Contexts hold the queue, not this.
struct ClockOwner {
    queue: Arc<TimerQueue>,
}

impl Drop for ClockOwner {
    fn drop(&mut self) {
        self.queue.abandon();
    }
}

impl ManualClock {
    /// A clock that starts at the current real time and then stands still.
    ///
    /// ```
    /// let clock = ctxkit::ManualClock::new();
    /// let t = clock.now();
    /// std::thread::sleep(std::time::Duration::from_millis(2));
    /// assert_eq!(clock.now(), t);
    /// ```
    pub fn new() -> ManualClock {
        let queue = Arc::new(TimerQueue::new(Some(to_nanos(Instant::now()))));
        ManualClock {
            owner: Arc::new(ClockOwner { queue }),
        }
    }

    /// The clock's current reading.
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = ctxkit::ManualClock::new();
    /// let t = clock.now();
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(clock.now() - t, Duration::from_secs(5));
    /// ```
    pub fn now(&self) -> Instant {
        from_nanos(self.queue().now())
    }

    /// Moves the clock forward by `by` (saturating at the end of the representable range,
    /// about 292 years past the process start) and cancels, before returning, every context
    /// whose deadline on this clock is now due. If an `on_cancel` callback panics, the other
    /// deadlines still fire and the first panic is resumed here afterwards.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, ManualClock};
    /// let clock = ManualClock::new();
    /// let (ctx, _h) = Context::background().with_clock(&clock).with_timeout(Duration::from_millis(10));
    /// clock.advance(Duration::MAX); // huge steps are fine
    /// assert!(ctx.is_done());
    /// ```
    pub fn advance(&self, by: Duration) {
        let mut due = Vec::new();
        {
            let mut heap = lock(&self.queue().heap);
            let now = self.queue().manual_now.as_ref().expect("a manual clock");
            let next = add_duration(now.load(Ordering::Acquire), by).min(NO_DEADLINE - 1);
            now.store(next, Ordering::Release);
            self.queue().take_due(&mut heap, next, &mut due);
        }
        if let Some(panic) = TimerQueue::fire(&mut due, Callbacks::Inline) {
            std::panic::resume_unwind(panic);
        }
    }

    pub(crate) fn queue(&self) -> &Arc<TimerQueue> {
        &self.owner.queue
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("pending_timers", &self.queue().len())
            .finish_non_exhaustive()
    }
}
