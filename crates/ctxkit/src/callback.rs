//! Callbacks that run when a context is done: [`AfterFunc`] registrations (Go's
//! `context.AfterFunc`, run on a pool thread) and `on_cancel` (run inline by the canceller).
//!
//! # Invariants
//! - **C1 (exactly once)**: a registration's `state` leaves `PENDING` once, by a
//!   compare-exchange: to `STARTED` when it fires, to `STOPPED` when [`AfterFunc::stop`] wins.
//!   Only the winner touches `f`, so `f` runs at most once, and `stop` returns true exactly
//!   when `f` will never run (API S21).
//! - **C3 (no leak)**: a registration is shared by the [`AfterFunc`] and by the nodes that can
//!   still fire it. When its context can no longer be done, those nodes are gone, and `f` is
//!   dropped with the last reference (API S19).
//! - **C2 (no thread waits on a callback)**: `after_func` callbacks run on the pool, which
//!   starts a thread whenever every worker is busy, so a callback that blocks (even on another
//!   callback) never holds up the others or the canceller (API S19).

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, OnceLock, Weak};
use std::time::Duration;

use crate::node::Node;
use crate::sync::{lock, lock_std, AtomicU8, Mutex, Ordering};

const PENDING: u8 = 0;
const STARTED: u8 = 1;
const STOPPED: u8 = 2;

type Callback = Box<dyn FnOnce() + Send + 'static>;
type Panic = Box<dyn Any + Send + 'static>;

/// One registered callback, shared by the context it waits on and the [`AfterFunc`] handle.
pub(crate) struct Reg {
    state: AtomicU8,
    /// `on_cancel`: runs on the cancelling thread. Otherwise on the pool.
    inline: bool,
    f: Mutex<Option<Callback>>,
    /// The nodes it is registered on (more than one once handed down from a dropped merge),
    /// told when the registration is stopped.
    homes: Mutex<Vec<Weak<Node>>>,
}

impl Reg {
    pub(crate) fn new(f: Callback, inline: bool) -> Arc<Reg> {
        Arc::new(Reg {
            state: AtomicU8::new(PENDING),
            inline,
            f: Mutex::new(Some(f)),
            homes: Mutex::new(Vec::new()),
        })
    }

    /// Tells the nodes that still hold this registration that it is no longer pending
    /// (stopped, or fired through another of its homes), so that a node pinned for it alone
    /// can be freed (API S22).
    fn settle_homes(&self) {
        let homes: Vec<Arc<Node>> = lock(&self.homes)
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|home| !home.is_done())
            .collect();
        homes.iter().for_each(|home| home.stopped_one());
    }

    pub(crate) fn add_home(&self, node: &Arc<Node>) {
        let mut homes = lock(&self.homes);
        homes.retain(|h| h.strong_count() > 0);
        homes.push(Arc::downgrade(node));
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) == PENDING
    }

    /// Moves `PENDING` to `to`; on success hands out `f` (C1).
    fn take(&self, from: u8, to: u8) -> Option<Option<Callback>> {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| lock(&self.f).take())
    }

    /// Starts `f` (inline or on the pool). Returns the payload if an inline `f` panicked.
    fn fire(&self) -> Option<Panic> {
        let f = self.take(PENDING, STARTED)??;
        self.settle_homes();
        if self.inline {
            catch_unwind(AssertUnwindSafe(f)).err()
        } else {
            pool().execute(f);
            None
        }
    }
}

/// Fires every registration; all run even if some panic (API S21). Returns the first panic.
pub(crate) fn fire_all(regs: Vec<Arc<Reg>>) -> Option<Panic> {
    let mut first = None;
    for reg in regs {
        if let Some(panic) = reg.fire() {
            first.get_or_insert(panic);
        }
    }
    first
}

/// Fires every registration from a pool thread (see `node::Callbacks::Pool`).
pub(crate) fn fire_all_on_pool(regs: Vec<Arc<Reg>>) {
    if regs.is_empty() {
        return;
    }
    pool().execute(Box::new(move || fire_all_resuming(regs)));
}

/// [`fire_all`], then resumes the first panic of an inline callback on this thread.
pub(crate) fn fire_all_resuming(regs: Vec<Arc<Reg>>) {
    if let Some(panic) = fire_all(regs) {
        std::panic::resume_unwind(panic);
    }
}

/// A callback registered with [`Context::after_func`](crate::Context::after_func) or
/// [`Context::on_cancel`](crate::Context::on_cancel).
///
/// Dropping it does not unregister the callback (as in Go); [`stop`](AfterFunc::stop) does.
///
/// # Examples
///
/// ```
/// use ctxkit::Context;
///
/// let (ctx, handle) = Context::background().with_cancel();
/// let registration = ctx.after_func(|| println!("never printed"));
/// assert!(registration.stop());
/// handle.cancel();
/// ```
#[must_use = "dropping an AfterFunc keeps the callback registered; keep it to be able to stop it"]
pub struct AfterFunc {
    reg: Arc<Reg>,
}

impl AfterFunc {
    pub(crate) fn new(reg: Arc<Reg>) -> AfterFunc {
        AfterFunc { reg }
    }

    /// Unregisters the callback. Returns true if this call prevented it from running (the
    /// callback is dropped unrun); false if it had already started, or `stop` was already
    /// called (API S21).
    ///
    /// ```
    /// use ctxkit::Context;
    /// let (ctx, handle) = Context::background().with_cancel();
    /// let f = ctx.on_cancel(|| {});
    /// handle.cancel(); // runs the callback before returning
    /// assert!(!f.stop());
    /// ```
    pub fn stop(&self) -> bool {
        let Some(f) = self.reg.take(PENDING, STOPPED) else {
            return false;
        };
        drop(f);
        self.reg.settle_homes();
        true
    }
}

impl fmt::Debug for AfterFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.reg.state.load(Ordering::Acquire) {
            PENDING => "pending",
            STARTED => "started",
            _ => "stopped",
        };
        f.debug_struct("AfterFunc").field("state", &state).finish()
    }
}

/// The threads that run `after_func` callbacks (C2). Idle workers exit after a while.
struct Pool {
    state: std::sync::Mutex<PoolState>,
    ready: Condvar,
}

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Callback>,
    idle: usize,
}

const IDLE_EXIT: Duration = Duration::from_secs(10);

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: std::sync::Mutex::new(PoolState::default()),
        ready: Condvar::new(),
    })
}

impl Pool {
    fn execute(&'static self, job: Callback) {
        let mut state = lock_std(&self.state);
        state.jobs.push_back(job);
        // Every queued job has an idle worker of its own, or a new thread (C2).
        if state.jobs.len() <= state.idle {
            self.ready.notify_one();
            return;
        }
        drop(state);
        let spawned = std::thread::Builder::new()
            .name("ctxkit-after-func".into())
            .spawn(move || self.work());
        if let Err(err) = spawned {
            // Out of threads: the job stays queued for the next worker that frees up.
            eprintln!("ctxkit: cannot start an after_func thread: {err}");
        }
    }

    fn work(&self) {
        let mut state = lock_std(&self.state);
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                // A panic is reported by the panic hook; the worker lives on.
                let _ = catch_unwind(AssertUnwindSafe(job));
                state = lock_std(&self.state);
                continue;
            }
            state.idle += 1;
            let (next, timeout) = self
                .ready
                .wait_timeout(state, IDLE_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.jobs.is_empty() {
                return;
            }
        }
    }
}
