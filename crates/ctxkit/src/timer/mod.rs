//! Timer queues: the deadlines of the process, and what fires them.
//!
//! A queue knows nothing of contexts: it holds `Weak` references to anything [`Timed`] and
//! calls [`Timed::expire`] when its deadline comes, as Go's `time.AfterFunc` knows nothing of
//! the contexts that use it.
//!
//! Every deadline lives in exactly one [`TimerQueue`]: the process-wide real-time queue,
//! served by one lazily started thread (`ctxkit-timer`), or the queue of a manual clock,
//! served by [`TimerQueue::advance`]. A queue is a set of shards, each a binary heap ordered
//! by deadline under its own lock, so insert and pop are O(log n). The real-time queue has
//! one shard per CPU, and a thread always inserts into the same shard, so threads that make
//! deadlines at once do not contend (Go keeps one timer heap per P for the same reason).
//!
//! # Invariants
//! - **T1 (weak entries)**: the queue holds only a `Weak` reference to what it expires, so a
//!   timer never keeps a dropped context alive.
//! - **T2 (lazy removal)**: an entry leaves its shard when it comes due, or after its owner
//!   is dropped. A cancelled context keeps its entry while it is held (its expiry finds it
//!   done and does nothing), so a cancel touches no shard. A dropped context does not search
//!   the heap: it counts itself dead in its shard ([`TimerQueue::forget`]; it remembers its
//!   shard, [`Timed::shard`]). If its entry is the last of the heap's array, that entry and
//!   the dead ones before it are removed at once (`shard.rs`); otherwise, when dead entries
//!   outnumber live ones, the shard is rebuilt without them. An entry is dead when the count
//!   of strong references its `Weak` shares with its owner is zero: one load, no reference
//!   taken, so nothing is dropped under a shard's lock. So removal is amortised O(1) and a
//!   shard never holds more than about twice as many entries as there are contexts with
//!   timers alive.
//! - **T3 (never early)**: an entry fires only once the queue's clock reads at or past its
//!   deadline.
//! - **T4 (no lock held while firing, no user code on the timer thread)**: due entries are
//!   taken out under the shards' locks and fired after releasing them, so a cancellation (and
//!   its `on_cancel` callbacks) may create or drop timers freely. The real-time thread fires
//!   with [`Callbacks::Pool`]: everything that runs user code (waking, callbacks, drops of
//!   values, causes and contexts) goes to the callback pool, so no user code can kill the
//!   thread or make it wait, on itself or on anything else.
//! - **T5 (abandoned clocks)**: contexts keep their manual clock's queue alive, but only the
//!   clock's handles can move its time. When the last handle is dropped the queue is
//!   abandoned ([`TimerQueue::abandon`]): its entries are dropped and told
//!   ([`Timed::abandoned`]), so a callback waiting on a deadline that can never fire is not
//!   leaked ([S19](crate::guarantees#s19)).
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
mod timed;

use shard::{Entry, Shard};
use timed::MAX_SHARDS;
pub(crate) use timed::{thread_shard, Timed};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::callback::{self, Callbacks, Panic};
use crate::sync::{lock, AtomicBool, AtomicI64, Condvar, Mutex, Ordering};
use crate::time::{self, Nanos, NO_DEADLINE};

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
pub(crate) struct TimerQueue<T> {
    shards: Box<[Shard<T>]>,
    /// `Some` for a manual clock: its current reading. `None`: real time.
    manual_now: Option<AtomicI64>,
    /// Set when a manual clock's queue is abandoned: nothing can move its time any more, so
    /// its deadlines will never fire (T5).
    abandoned: AtomicBool,
    /// Real time: the deadline the timer thread sleeps until ([`NO_DEADLINE`]: none, or the
    /// thread is not started). An insert of an earlier deadline wakes the thread (T6).
    next_wake: AtomicI64,
    sleep: Mutex<Sleep>,
    /// Wakes the real-time thread when an earlier deadline arrives.
    wakeup: Condvar,
}

impl<T: Timed> TimerQueue<T> {
    fn new(manual_now: Option<Nanos>, shards: usize) -> TimerQueue<T> {
        TimerQueue {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            manual_now: manual_now.map(AtomicI64::new),
            abandoned: AtomicBool::new(false),
            next_wake: AtomicI64::new(NO_DEADLINE),
            sleep: Mutex::new(Sleep::default()),
            wakeup: Condvar::new(),
        }
    }

    /// A real-time queue: one shard per CPU, served by a thread started on first use.
    pub(crate) fn real_time() -> TimerQueue<T> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        TimerQueue::new(None, cpus.clamp(1, MAX_SHARDS))
    }

    /// A manual clock's queue, reading `now` until [`advance`](Self::advance)d: one shard
    /// (T7).
    pub(crate) fn manual(now: Nanos) -> TimerQueue<T> {
        TimerQueue::new(Some(now), 1)
    }

    /// Whether this queue's deadlines can still fire (T5).
    pub(crate) fn can_fire(&self) -> bool {
        !self.abandoned.load(Ordering::SeqCst)
    }

    /// Nothing can move this manual clock any more: its deadlines will never fire, so its
    /// entries are dropped and told (T5).
    pub(crate) fn abandon(&self) {
        let shard = &self.shards[0]; // one shard (T7)
        let entries = {
            let mut heap = lock(&shard.heap);
            self.abandoned.store(true, Ordering::SeqCst);
            let entries = heap.take_all();
            shard.changed(&heap);
            entries
        };
        for entry in entries {
            if let Some(timed) = entry.timed.upgrade() {
                timed.abandoned();
            }
        }
    }

    /// This queue's clock reading.
    /// Whether this queue runs on the real clock (not a manual one).
    pub(crate) fn is_real_time(&self) -> bool {
        self.manual_now.is_none()
    }

    pub(crate) fn now(&self) -> Nanos {
        match &self.manual_now {
            Some(now) => now.load(Ordering::Acquire),
            None => time::now(),
        }
    }

    fn shard(&self, number: u8) -> &Shard<T> {
        &self.shards[number as usize % self.shards.len()]
    }

    /// Schedules `timed` to expire at `at`, in the shard it was made for. Returns `false`,
    /// scheduling nothing, if `at` is already due on a manual clock (T7); the caller expires
    /// it.
    pub(crate) fn insert(self: &Arc<Self>, at: Nanos, timed: &Arc<T>) -> bool {
        let shard = self.shard(timed.shard());
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
                timed: Arc::downgrade(timed),
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
    fn wake(self: &Arc<Self>, at: Nanos) {
        if self.next_wake.fetch_min(at, Ordering::SeqCst) <= at {
            return; // an insert as early as this one has woken the thread already (T6)
        }
        let mut sleep = lock(&self.sleep);
        sleep.woken = true;
        if !sleep.serving {
            let queue = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("ctxkit-timer".into())
                .spawn(move || Serving(queue).0.serve_real_time());
            match spawned {
                Ok(_) => sleep.serving = true,
                Err(err) => {
                    // Every later insert tries again; the entries wait in their shards.
                    self.next_wake.store(NO_DEADLINE, Ordering::SeqCst);
                    eprintln!("ctxkit: cannot start the timer thread ({err}); will retry");
                }
            }
        }
        self.wakeup.notify_one();
    }

    /// Counts the entry made for shard `number` with deadline `at` as dead: its owner is
    /// being dropped (T2).
    pub(crate) fn forget(&self, number: u8, at: Nanos) {
        self.shard(number).forget(at);
    }

    /// Moves a manual clock forward by `by` (saturating) and expires, before returning, every
    /// entry now due (T7). If an `on_cancel` callback panics, the other entries still expire
    /// and the first panic is resumed afterwards.
    pub(crate) fn advance(&self, by: Duration) {
        let mut due = Vec::new();
        {
            let shard = &self.shards[0]; // one shard (T7)
            let mut heap = lock(&shard.heap);
            let now = self.manual_now.as_ref().expect("a manual clock");
            let next = time::add_duration(now.load(Ordering::Acquire), by).min(NO_DEADLINE - 1);
            now.store(next, Ordering::Release);
            shard.take_due(&mut heap, next, &mut due);
        }
        if let Some(panic) = Self::fire(&mut due, Callbacks::Inline) {
            std::panic::resume_unwind(panic);
        }
    }

    /// Takes every entry due at `now` out of every shard; returns the earliest deadline left.
    fn take_due(&self, now: Nanos, due: &mut Vec<Weak<T>>) -> Nanos {
        let earliest = |s: &Shard<T>| s.take_due(&mut lock(&s.heap), now, due);
        self.shards
            .iter()
            .map(earliest)
            .min()
            .unwrap_or(NO_DEADLINE)
    }

    /// The earliest deadline in any shard.
    fn earliest(&self) -> Nanos {
        let first = |s: &Shard<T>| lock(&s.heap).earliest();
        self.shards.iter().map(first).min().unwrap_or(NO_DEADLINE)
    }

    /// Expires every due entry. A panic of an `on_cancel` callback does not stop the others
    /// ([S21](crate::guarantees#s21)): the first one is returned once all have fired.
    fn fire(due: &mut Vec<Weak<T>>, callbacks: Callbacks) -> Option<Panic> {
        let mut first = None;
        for timed in due.drain(..) {
            if let Some(timed) = timed.upgrade() {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| timed.expire(callbacks))) {
                    first.get_or_insert(panic);
                }
            }
        }
        first
    }

    /// One look of the `ctxkit-timer` thread at its queue: takes the entries due at `now`
    /// into `due`, or, if none is due, publishes the deadline it will sleep until and then
    /// looks at every shard again (T6).
    fn look(&self, now: Nanos, due: &mut Vec<Weak<T>>) -> Look {
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
                    // T4: with `Callbacks::Pool`, expiring runs no user code on this thread;
                    // the waiters of the whole pass are woken from the pool at once.
                    drop(Self::fire(&mut due, Callbacks::Pool));
                    callback::flush_wakes();
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
                        let wait = self.wakeup.wait_timeout(sleep, time::remaining(next, now));
                        wait.unwrap_or_else(|e| e.into_inner()).0
                    }
                };
            }
        }
    }

    /// How many entries the queue holds, dead ones included.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.heap).len()).sum()
    }
}

/// Owned by the `ctxkit-timer` thread. Should the thread ever end (it runs no user code, T4,
/// so only a bug of ours could end it), the next insert starts another.
struct Serving<T: Timed>(Arc<TimerQueue<T>>);

impl<T: Timed> Drop for Serving<T> {
    fn drop(&mut self) {
        lock(&self.0.sleep).serving = false;
        self.0.next_wake.store(NO_DEADLINE, Ordering::SeqCst);
    }
}

/// The model of T6 (`RUSTFLAGS="--cfg loom" cargo test -p ctxkit --release --lib`): the
/// timer thread's look racing an insert of an earlier deadline.
#[cfg(all(test, loom))]
mod model {
    use super::*;

    /// A stand-in for a context's node: the queue only needs [`Timed`].
    struct Probe;

    impl Timed for Probe {
        fn shard(&self) -> u8 {
            0
        }
        fn expire(self: Arc<Self>, _: Callbacks) {}
        fn abandoned(&self) {}
    }

    /// The thread woke for a deadline at 5 and fired it: `next_wake` still says 5, which an
    /// insert of 10 does not find worth a wake-up. The thread's look then must not plan a
    /// sleep past 10 unless the insert woke it.
    #[test]
    fn an_insert_racing_the_timer_threads_look_is_never_slept_through() {
        loom::model(|| {
            let queue = Arc::new(TimerQueue::<Probe>::new(None, 2));
            lock(&queue.sleep).serving = true; // the model plays the timer thread: none starts
            let far = Arc::new(Probe);
            assert!(queue.insert(100, &far));
            queue.next_wake.store(5, Ordering::SeqCst);
            lock(&queue.sleep).woken = false;
            let near = Arc::new(Probe);
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
