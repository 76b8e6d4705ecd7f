//! Shutdown in two phases: stop taking new work, let the work in flight finish within a
//! grace period, then cut off what is left, and say what was cut off.
//!
//! ```
//! use std::time::Duration;
//! use ctxkit::{Context, Shutdown};
//!
//! let shutdown = Shutdown::new(&Context::background());
//! // A server takes work while it is not draining, and counts each unit.
//! let work = shutdown.enter().expect("not draining yet");
//! let hard = shutdown.hard().clone();
//! let worker = std::thread::spawn(move || {
//!     let _work = work; // uncounted when dropped
//!     // ... stop early if `hard` is done ...
//!     std::thread::sleep(Duration::from_millis(10));
//!     hard.is_done()
//! });
//! shutdown.begin(Duration::from_secs(5)); // SIGTERM: drain for at most 5 s
//! assert!(shutdown.draining().is_done());
//! assert!(shutdown.enter().is_none(), "no new work while draining");
//! let report = shutdown.wait();
//! assert!(report.drained());
//! assert_eq!((report.finished(), report.cut_off()), (1, 0));
//! assert!(!worker.join().unwrap(), "finished within the grace period");
//! ```
//!
//! With the `signals` feature, `Shutdown::on_signals` begins it on SIGINT or SIGTERM and
//! ends the grace period at once on a second signal.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{AfterFunc, CancelHandle, Context};

/// Why the work of a [`Shutdown`] was told to stop: the cause of its contexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownCause {
    /// Shutdown began: the draining context's cause. Stop taking new work.
    Draining,
    /// The grace period ended with work still in flight: the hard context's cause.
    GraceEnded,
}

impl fmt::Display for ShutdownCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShutdownCause::Draining => "shutting down: draining",
            ShutdownCause::GraceEnded => "shutting down: the grace period ended",
        })
    }
}

impl std::error::Error for ShutdownCause {}

/// A two-phase shutdown: a [draining](Shutdown::draining) context, done as soon as shutdown
/// begins (stop taking new work); a [hard](Shutdown::hard) context, done when the grace
/// period ends (abort what is left); a count of the work in flight ([`Shutdown::enter`]);
/// and [`wait`](Shutdown::wait), which returns as soon as the counted work has all finished
/// or the grace period has ended, saying which.
///
/// Cloning gives another handle to the same shutdown. Both contexts are children of the
/// context it was made from: cancelling that one cancels them (a [`wait`](Shutdown::wait)
/// then reports the work still counted as cut off). The count of work cut off is taken
/// before the hard context is cancelled when the grace period ends or [`force`] ends it;
/// when the parent cancels it instead, the count is taken just after, so a unit that
/// finishes the moment it sees the cancellation may count as finished.
///
/// [`force`]: Shutdown::force
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    draining: (Context, CancelHandle),
    hard: (Context, CancelHandle),
    /// Done once no counted work is left while draining, or once the hard context is done
    /// and `cut_off` is written.
    over: (Context, CancelHandle),
    counter: Arc<Counter>,
    /// Keeps the callback that counts the cut when the hard context is done registered.
    _on_hard: AfterFunc,
    begun: Mutex<Option<Begun>>,
}

/// The units of work in flight, shared with the callbacks that end the grace period (which
/// must not hold the [`Shutdown`] itself: it holds them).
struct Counter {
    /// Units in flight, with [`DRAINING`] and [`CUT`].
    count: AtomicUsize,
    /// The units in flight at the cut; [`NOT_CUT`] until then.
    cut_off: AtomicUsize,
}

/// [`Counter::count`]: shutdown has begun, new work is refused.
const DRAINING: usize = 1 << (usize::BITS - 1);
/// [`Counter::count`]: the grace period has ended; the units in flight then were cut off.
const CUT: usize = 1 << (usize::BITS - 2);
/// [`Counter::count`]: the number of units.
const UNITS: usize = !(DRAINING | CUT);
/// [`Counter::cut_off`] before the cut.
const NOT_CUT: usize = usize::MAX;

impl Counter {
    /// Ends the grace period in the count, once: the units in flight now are cut off, and
    /// none leaving from now on ends the drain. Called before the hard context is cancelled,
    /// so that work that sees it done and finishes at once is counted as cut off.
    fn cut(&self) {
        let before = self.count.fetch_or(CUT | DRAINING, Ordering::AcqRel);
        if before & CUT == 0 {
            self.cut_off.store(before & UNITS, Ordering::Release);
        }
    }
}

/// What [`Shutdown::begin`] saw.
struct Begun {
    in_flight: usize,
    /// The grace period's end: cancels the hard context. Stopped once drained.
    grace: AfterFunc,
}

/// The cause `over` is cancelled with when the counted work has all finished.
#[derive(Debug)]
struct Drained;

impl fmt::Display for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every unit of work finished")
    }
}

impl std::error::Error for Drained {}

/// Counts one unit of work of a [`Shutdown`] until dropped. Made by [`Shutdown::enter`].
#[must_use = "the work is uncounted as soon as the guard is dropped"]
pub struct WorkGuard {
    inner: Arc<Inner>,
}

/// How a [`Shutdown`] ended: returned by [`Shutdown::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    drained: bool,
    in_flight: usize,
    cut_off: usize,
}

impl Shutdown {
    /// A shutdown not yet begun, whose contexts are children of `parent`.
    pub fn new(parent: &Context) -> Shutdown {
        let draining = parent.with_cancel();
        let hard = parent.with_cancel();
        // Not a child of `hard`: a waiter must not see the wait over before `cut_off` is
        // written, and the callback below ends it after writing.
        let over = Context::background().with_cancel();
        let counter = Arc::new(Counter {
            count: AtomicUsize::new(0),
            cut_off: AtomicUsize::new(NOT_CUT),
        });
        // The grace period ends here when the hard context is cancelled from above (the
        // parent); `begin` and `force` cut the count before they cancel it.
        let on_hard = {
            let counter = Arc::clone(&counter);
            let over = over.1.clone();
            hard.0.on_cancel(move || {
                counter.cut();
                over.cancel();
            })
        };
        Shutdown {
            inner: Arc::new(Inner {
                draining,
                hard,
                over,
                counter,
                _on_hard: on_hard,
                begun: Mutex::new(None),
            }),
        }
    }

    /// Done as soon as shutdown begins (cause [`ShutdownCause::Draining`]): stop taking new
    /// work. Also done once [`hard`](Shutdown::hard) is.
    pub fn draining(&self) -> &Context {
        &self.inner.draining.0
    }

    /// Done when the grace period ends with work still in flight (cause
    /// [`ShutdownCause::GraceEnded`]): abort what is left. Derive the contexts of the work
    /// from it (a server merges it with each request's context).
    pub fn hard(&self) -> &Context {
        &self.inner.hard.0
    }

    /// Counts one unit of work, until the guard is dropped; `None` once shutdown has begun
    /// (new work is refused).
    pub fn enter(&self) -> Option<WorkGuard> {
        let before = self.inner.counter.count.fetch_add(1, Ordering::AcqRel);
        if before & (DRAINING | CUT) != 0 {
            self.inner.leave(); // refused: uncount it again, as a guard would
            return None;
        }
        Some(WorkGuard {
            inner: Arc::clone(&self.inner),
        })
    }

    /// Units of work counted now.
    pub fn in_flight(&self) -> usize {
        self.inner.counter.count.load(Ordering::Acquire) & UNITS
    }

    /// Begins the shutdown: the draining context is done at once, new work is refused, and
    /// the hard context is done `grace` from now unless all counted work has finished
    /// before. Called again (a second signal), ends the grace period at once.
    pub fn begin(&self, grace: Duration) {
        let mut begun = self.inner.begun.lock().unwrap_or_else(|e| e.into_inner());
        if begun.is_some() {
            drop(begun);
            self.force();
            return;
        }
        // The grace period is a deadline of its own; its callback outlives the context
        // (S19), which nothing else holds.
        let (timer, _handle) = self.inner.hard.0.with_timeout(grace);
        let hard = self.inner.hard.1.clone();
        let counter = Arc::clone(&self.inner.counter);
        let grace = timer.after_func(move || {
            counter.cut();
            hard.cancel_with_cause(ShutdownCause::GraceEnded);
        });
        let before = self
            .inner
            .counter
            .count
            .fetch_or(DRAINING, Ordering::AcqRel);
        *begun = Some(Begun {
            in_flight: before & UNITS,
            grace,
        });
        drop(begun);
        self.inner
            .draining
            .1
            .cancel_with_cause(ShutdownCause::Draining);
        if before & (UNITS | CUT) == 0 {
            self.inner.drained(); // nothing in flight
        }
    }

    /// Ends the grace period now: the hard context is done. Begins the shutdown first if it
    /// had not begun.
    pub fn force(&self) {
        if self
            .inner
            .begun
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            self.begin(Duration::ZERO);
        }
        self.inner.counter.cut();
        self.inner
            .hard
            .1
            .cancel_with_cause(ShutdownCause::GraceEnded);
    }

    /// Blocks until the counted work has all finished after shutdown began, or the hard
    /// context is done, and says which. Does not begin the shutdown.
    pub fn wait(&self) -> ShutdownReport {
        self.inner.over.0.wait();
        self.report()
    }

    /// [`wait`](Shutdown::wait), as a future, on any executor.
    pub async fn done(&self) -> ShutdownReport {
        self.inner.over.0.done().await;
        self.report()
    }

    fn report(&self) -> ShutdownReport {
        let in_flight = self
            .inner
            .begun
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |b| b.in_flight);
        let drained = self.inner.over.0.cause().is_some_and(|c| c.is::<Drained>());
        let cut_off = match self.inner.counter.cut_off.load(Ordering::Acquire) {
            _ if drained => 0,
            NOT_CUT => 0, // drained (the wait ends before the hard context only then)
            left => left,
        };
        ShutdownReport {
            drained,
            in_flight,
            cut_off,
        }
    }
}

#[cfg(all(unix, feature = "signals"))]
impl Shutdown {
    /// Begins this shutdown on SIGINT or SIGTERM, with `grace` as its grace period; a second
    /// signal ends the grace period at once ([`force`](Shutdown::force)). A thread,
    /// `ctxkit-signals`, waits for the signals for as long as the process runs; the
    /// signals' default action (ending the process) no longer applies.
    ///
    /// # Errors
    ///
    /// If the signal handlers cannot be registered or the thread cannot be started.
    #[cfg_attr(docsrs, doc(cfg(all(unix, feature = "signals"))))]
    pub fn on_signals(&self, grace: Duration) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let shutdown = self.clone();
        std::thread::Builder::new()
            .name("ctxkit-signals".into())
            .spawn(move || {
                for _ in signals.forever() {
                    shutdown.begin(grace); // the second time: `force`
                }
            })?;
        Ok(())
    }
}

impl Inner {
    /// Uncounts a unit of work; the last one out while draining ends the wait.
    fn leave(&self) {
        // Draining, not cut, and this was the last unit.
        if self.counter.count.fetch_sub(1, Ordering::AcqRel) == DRAINING | 1 {
            self.drained();
        }
    }

    /// The last unit of work finished while draining: the wait is over, and the grace
    /// period will not end in a cut.
    fn drained(&self) {
        self.over.1.cancel_with_cause(Drained);
        if let Some(begun) = &*self.begun.lock().unwrap_or_else(|e| e.into_inner()) {
            begun.grace.stop();
        }
    }
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.inner.leave();
    }
}

impl ShutdownReport {
    /// Whether every unit of work counted when shutdown began finished within the grace
    /// period.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Units of work in flight when shutdown began that finished before [`wait`] returned.
    ///
    /// [`wait`]: Shutdown::wait
    pub fn finished(&self) -> usize {
        self.in_flight.saturating_sub(self.cut_off)
    }

    /// Units of work still counted when the grace period ended: cut off.
    pub fn cut_off(&self) -> usize {
        self.cut_off
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("draining", &self.draining().is_done())
            .field("hard", &self.hard().is_done())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl fmt::Debug for WorkGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkGuard").finish_non_exhaustive()
    }
}
