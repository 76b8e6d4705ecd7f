//! Deadlines: time as nanoseconds, the timer queues that fire deadlines, and [`ManualClock`].
//!
//! Every deadline lives in exactly one [`TimerQueue`]: the process-wide real-time queue, served
//! by one lazily started thread (`ctxkit-timer`), or the queue of a [`ManualClock`], served by
//! [`ManualClock::advance`]. A queue is a set of shards, each a binary heap ordered by
//! deadline under its own lock, so insert and pop are O(log n). The real-time queue has one
//! shard per CPU, and a thread always inserts into the same shard, so threads that make
//! deadlines at once do not contend (Go keeps one timer heap per P for the same reason).
//!
//! # Invariants
//! - **T1 (weak entries)**: the queue holds only a `Weak` reference to a context's node, so a
//!   timer never keeps a dropped context alive.
//! - **T2 (lazy removal)**: a cancelled or dropped context does not search the heap; it counts
//!   itself dead in its shard ([`TimerQueue::forget`]; the node remembers its shard). If its
//!   entry is the last of the heap's array, that entry and the dead ones before it are
//!   removed at once (`shard.rs`); otherwise, when dead entries outnumber live ones, the
//!   shard is rebuilt without them. So removal is amortised O(1) and a shard never holds
//!   more than about twice its live timers.
//! - **T3 (never early)**: an entry fires only once the queue's clock reads at or past its
//!   deadline.
//! - **T4 (no lock held while firing)**: due entries are taken out under the shards' locks
//!   and fired after releasing them, so a cancellation (and its `on_cancel` callbacks) may
//!   create or drop timers freely.
//! - **T5 (abandoned clocks)**: contexts keep their manual clock's queue alive, but only
//!   [`ManualClock`] handles can move its time. When the last handle is dropped the queue is
//!   abandoned: its entries are dropped and nodes pinned for their deadlines are let go, so a
//!   callback waiting on a deadline that can never fire is not leaked (API S19).
//! - **T6 (no lost wake-up)**: the timer thread sleeps until `next_wake`. An insert pushes its
//!   entry under its shard's lock and then reads `next_wake`, waking the thread if its entry
//!   is earlier. The thread stores `next_wake` and then looks at every shard again under its
//!   lock. So either the insert reads the thread's new `next_wake` (the thread's store
//!   happened before the insert took the shard's lock) or the thread's second look finds the
//!   entry: an entry is never left behind a sleep that ends after it is due. A loom model
//!   checks it (module `model` below; without the second look it fails).
//! - **T7 (manual time)**: a manual clock's queue has one shard. `advance` moves the clock
//!   and takes the due entries under that shard's lock, and an insert compares its deadline
//!   with the clock under the same lock, so a deadline made during an `advance` is either
//!   taken by it or reported due to its maker.

mod shard;

use shard::{Entry, Shard};

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::node::{Callbacks, Node};
use crate::sync::{lock, AtomicBool, AtomicI64, Condvar, Mutex, Ordering};

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

/// The most shards a queue has.
const MAX_SHARDS: usize = 64;

/// The calling thread's shard number, fixed for the thread's life: threads are numbered in
/// the order they first make a deadline, so threads started together get different shards.
/// A queue with `n` shards uses shard `number % n`; a node keeps the number to find its
/// entry's shard when it is cancelled or dropped (T2).
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

/// What one look of the real-time thread found to do next.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    /// Fire the entries taken.
    Fire,
    /// Look again at once.
    Again,
    /// Sleep until this deadline, unless woken.
    Sleep(Nanos),
}

/// What the real-time thread sleeps on.
#[derive(Default)]
struct Sleep {
    /// Whether the thread that serves the real-time queue is running.
    serving: bool,
    /// Set by an insert earlier than the thread's `next_wake`; cleared by the thread.
    woken: bool,
}

/// Shards of deadlines and what is waiting on them. See the module's invariants.
pub(crate) struct TimerQueue {
    shards: Box<[Shard]>,
    /// `Some` for a manual clock: its current reading. `None`: real time.
    manual_now: Option<AtomicI64>,
    /// Set when the last [`ManualClock`] handle of this queue is dropped: nothing can move
    /// its time any more, so its deadlines will never fire (T5).
    abandoned: AtomicBool,
    /// Real time: the deadline the timer thread sleeps until ([`NO_DEADLINE`]: none, or the
    /// thread is not started). An insert of an earlier deadline wakes the thread (T6).
    next_wake: AtomicI64,
    sleep: Mutex<Sleep>,
    /// Wakes the real-time thread when an earlier deadline arrives.
    wakeup: Condvar,
}

impl TimerQueue {
    fn new(manual_now: Option<Nanos>, shards: usize) -> TimerQueue {
        TimerQueue {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            manual_now: manual_now.map(AtomicI64::new),
            abandoned: AtomicBool::new(false),
            next_wake: AtomicI64::new(NO_DEADLINE),
            sleep: Mutex::new(Sleep::default()),
            wakeup: Condvar::new(),
        }
    }

    /// Whether this queue's deadlines can still fire (T5).
    pub(crate) fn can_fire(&self) -> bool {
        !self.abandoned.load(Ordering::SeqCst)
    }

    /// The last handle of a manual clock is gone: its deadlines will never fire, so the
    /// nodes pinned for them are let go (T5).
    fn abandon(&self) {
        let shard = &self.shards[0]; // one shard (T7)
        let entries = {
            let mut heap = lock(&shard.heap);
            self.abandoned.store(true, Ordering::SeqCst);
            let entries = heap.take_all();
            shard.changed(&heap);
            entries
        };
        for entry in entries {
            if let Some(node) = entry.node.upgrade() {
                node.unpin();
            }
        }
    }

    /// The process-wide real-time queue: one shard per CPU.
    pub(crate) fn real() -> &'static Arc<TimerQueue> {
        static REAL: OnceLock<Arc<TimerQueue>> = OnceLock::new();
        REAL.get_or_init(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            Arc::new(TimerQueue::new(None, cpus.clamp(1, MAX_SHARDS)))
        })
    }

    /// This queue's clock reading.
    pub(crate) fn now(&self) -> Nanos {
        match &self.manual_now {
            Some(now) => now.load(Ordering::Acquire),
            None => to_nanos(Instant::now()),
        }
    }

    fn shard(&self, number: u8) -> &Shard {
        &self.shards[number as usize % self.shards.len()]
    }

    /// Schedules `node` to be cancelled with `DeadlineExceeded` at `at`, in the shard the
    /// node was made for. Returns `false`, scheduling nothing, if `at` is already due on a
    /// manual clock (T7); the caller expires the node.
    pub(crate) fn insert(&self, at: Nanos, node: &Arc<Node>) -> bool {
        let shard = self.shard(node.timer_shard());
        {
            let mut heap = lock(&shard.heap);
            if self
                .manual_now
                .as_ref()
                .is_some_and(|now| at <= now.load(Ordering::Acquire))
            {
                return false;
            }
            heap.push(Entry {
                at,
                node: Arc::downgrade(node),
            });
            shard.changed(&heap);
        }
        // T6: the entry is in its heap before `next_wake` is read.
        if self.manual_now.is_none() && at < self.next_wake.load(Ordering::SeqCst) {
            self.wake(at);
        }
        true
    }

    /// Wakes the real-time thread for a deadline at `at` (starting it the first time).
    /// Called on the real-time queue only.
    fn wake(&self, at: Nanos) {
        if self.next_wake.fetch_min(at, Ordering::SeqCst) <= at {
            return; // an insert as early as this one has woken the thread already (T6)
        }
        let mut sleep = lock(&self.sleep);
        sleep.woken = true;
        if !sleep.serving {
            sleep.serving = true;
            std::thread::Builder::new()
                .name("ctxkit-timer".into())
                .spawn(|| TimerQueue::real().serve_real_time())
                .expect("ctxkit: cannot start the timer thread");
        }
        self.wakeup.notify_one();
    }

    /// Counts the entry of a node made for shard `number` with deadline `at` as dead (T2).
    pub(crate) fn forget(&self, number: u8, at: Nanos) {
        self.shard(number).forget(at);
    }

    /// Takes every entry due at `now` out of every shard; returns the earliest deadline left.
    fn take_due(&self, now: Nanos, due: &mut Vec<Weak<Node>>) -> Nanos {
        let earliest = |s: &Shard| s.take_due(&mut lock(&s.heap), now, due);
        self.shards
            .iter()
            .map(earliest)
            .min()
            .unwrap_or(NO_DEADLINE)
    }

    /// The earliest deadline in any shard.
    fn earliest(&self) -> Nanos {
        let first = |s: &Shard| lock(&s.heap).earliest();
        self.shards.iter().map(first).min().unwrap_or(NO_DEADLINE)
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

    /// One look of the `ctxkit-timer` thread at its queue: takes the entries due at `now`
    /// into `due`, or, if none is due, publishes the deadline it will sleep until and then
    /// looks at every shard again (T6).
    fn look(&self, now: Nanos, due: &mut Vec<Weak<Node>>) -> Look {
        let next = self.take_due(now, due);
        if !due.is_empty() {
            return Look::Fire;
        }
        self.next_wake.store(next, Ordering::SeqCst);
        if self.earliest() < next {
            return Look::Again; // an insert raced with the store (T6)
        }
        Look::Sleep(next)
    }

    /// The loop of the `ctxkit-timer` thread.
    fn serve_real_time(&self) {
        let mut due = Vec::new();
        loop {
            let next = match self.look(self.now(), &mut due) {
                Look::Fire => {
                    // T4. A callback's panic was reported by the panic hook; the thread goes on.
                    drop(Self::fire(&mut due, Callbacks::Pool));
                    continue;
                }
                Look::Again => continue,
                Look::Sleep(next) => next,
            };
            let mut sleep = lock(&self.sleep);
            loop {
                if std::mem::take(&mut sleep.woken) {
                    break;
                }
                let now = self.now();
                if next <= now {
                    break;
                }
                sleep = match next {
                    NO_DEADLINE => self.wakeup.wait(sleep).unwrap_or_else(|e| e.into_inner()),
                    _ => {
                        let wait = self.wakeup.wait_timeout(sleep, remaining(next, now));
                        wait.unwrap_or_else(|e| e.into_inner()).0
                    }
                };
            }
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.heap).len()).sum()
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
        let queue = Arc::new(TimerQueue::new(Some(to_nanos(Instant::now())), 1)); // T7
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
            let queue = self.queue();
            let shard = &queue.shards[0]; // one shard (T7)
            let mut heap = lock(&shard.heap);
            let now = queue.manual_now.as_ref().expect("a manual clock");
            let next = add_duration(now.load(Ordering::Acquire), by).min(NO_DEADLINE - 1);
            now.store(next, Ordering::Release);
            shard.take_due(&mut heap, next, &mut due);
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

/// The model of T6 (`RUSTFLAGS="--cfg loom" cargo test -p ctxkit --release --lib`): the
/// timer thread's look racing an insert of an earlier deadline.
#[cfg(all(test, loom))]
mod model {
    use super::*;
    use crate::context::Context;
    use crate::node::Kind;

    /// A deadline node whose timer is in `queue`.
    fn deadline_node(queue: &Arc<TimerQueue>, at: Nanos) -> Arc<Node> {
        let root = Context::background().with_timer_queue(Arc::clone(queue));
        Node::child(Kind::Deadline, at, &root, None, None)
    }

    /// The thread woke for a deadline at 5 and fired it: `next_wake` still says 5, which an
    /// insert of 10 does not find worth a wake-up. The thread's look then must not plan a
    /// sleep past 10 unless the insert woke it.
    #[test]
    fn an_insert_racing_the_timer_threads_look_is_never_slept_through() {
        loom::model(|| {
            let queue = Arc::new(TimerQueue::new(None, 2));
            lock(&queue.sleep).serving = true; // the model plays the timer thread: none starts
            let far = deadline_node(&queue, 100);
            assert!(queue.insert(100, &far));
            queue.next_wake.store(5, Ordering::SeqCst);
            lock(&queue.sleep).woken = false;
            let near = deadline_node(&queue, 10);
            let inserter = {
                let (queue, near) = (Arc::clone(&queue), Arc::clone(&near));
                loom::thread::spawn(move || assert!(queue.insert(10, &near)))
            };
            let look = queue.look(0, &mut Vec::new());
            inserter.join().unwrap();
            if let Look::Sleep(until) = look {
                let woken = lock(&queue.sleep).woken;
                assert!(
                    until <= 10 || woken,
                    "slept until {until} past an entry at 10"
                );
            }
        });
    }
}
