//! The threads that run user code handed off by the core: `after_func` callbacks (C2) and,
//! first, what an expired deadline must do outside the timer thread (waking its waiters,
//! running its `on_cancel` callbacks, dropping what it held).
//!
//! # How the pool grows
//! - Up to [`core_workers`] threads (one per CPU, at least 2) start as soon as jobs wait and
//!   no worker is idle. A burst of short jobs (a storm of deadlines with trivial callbacks)
//!   is worked off by them: it never starts a thread per job.
//! - Beyond that, a worker is added only when jobs are waiting and no job has started for
//!   [`STALL`]: every worker is blocked in a callback. So a callback that blocks, even on
//!   another callback, delays the others by at most about `STALL` each time the pool has to
//!   grow, and never forever ([S19](crate::guarantees#s19)). A watchdog thread, alive only
//!   while jobs wait, makes that check; the pool stops growing at [`MAX_WORKERS`].
//! - Urgent jobs (the aftermath of expired deadlines) are taken before callbacks, so a queue
//!   of callbacks never delays waking the waiters of a deadline.
//! - Workers exit after [`IDLE_EXIT`] without work. A thread that cannot be started is
//!   reported on stderr and tried again on the next job or watchdog tick; queued jobs wait
//!   for a worker meanwhile.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, OnceLock};
use std::time::Duration;

use crate::sync::lock_std;

/// A piece of user code to run.
pub(super) type Job = Box<dyn FnOnce() + Send + 'static>;

/// How long jobs may wait with no job starting before the pool adds a worker.
const STALL: Duration = Duration::from_millis(5);
/// The most threads the pool runs at once.
const MAX_WORKERS: usize = 1024;
/// How long a worker waits for a job before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// The workers the pool starts without waiting for a stall: one per CPU, at least 2.
fn core_workers() -> usize {
    static CORE: OnceLock<usize> = OnceLock::new();
    *CORE.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get().max(2)))
}

/// Which queue a job goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Priority {
    /// Taken first: the aftermath of an expired deadline.
    Urgent,
    /// `after_func` callbacks.
    Normal,
}

struct Pool {
    state: std::sync::Mutex<State>,
    /// Idle workers wait here.
    ready: Condvar,
    /// The watchdog waits here.
    watch: Condvar,
}

#[derive(Default)]
struct State {
    urgent: VecDeque<Job>,
    normal: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
    /// Workers alive.
    workers: usize,
    /// Jobs started so far: the watchdog's measure of progress.
    started: u64,
    /// Whether the watchdog thread runs.
    watching: bool,
}

impl State {
    fn queued(&self) -> usize {
        self.urgent.len() + self.normal.len()
    }

    fn next_job(&mut self) -> Option<Job> {
        self.urgent.pop_front().or_else(|| self.normal.pop_front())
    }
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: std::sync::Mutex::new(State::default()),
        ready: Condvar::new(),
        watch: Condvar::new(),
    })
}

/// Runs `job` on a pool thread, never on the calling one.
pub(crate) fn execute(job: Job, priority: Priority) {
    let pool = pool();
    let mut state = lock_std(&pool.state);
    match priority {
        Priority::Urgent => state.urgent.push_back(job),
        Priority::Normal => state.normal.push_back(job),
    }
    if state.queued() <= state.idle {
        pool.ready.notify_one();
    } else if state.workers < core_workers() {
        pool.start_worker(&mut state);
    }
    // Past the core workers, or when a start failed, the watchdog adds workers as needed.
    if state.queued() > state.idle && !state.watching {
        pool.start_watchdog(&mut state);
    }
}

impl Pool {
    /// Starts a worker, counted at once so that concurrent calls do not over-start.
    fn start_worker(&'static self, state: &mut State) {
        state.workers += 1;
        let spawned = std::thread::Builder::new()
            .name("ctxkit-pool".into())
            .spawn(move || self.work());
        if let Err(err) = spawned {
            state.workers -= 1;
            eprintln!("ctxkit: cannot start a callback thread ({err}); will retry");
        }
    }

    fn start_watchdog(&'static self, state: &mut State) {
        state.watching = true;
        let spawned = std::thread::Builder::new()
            .name("ctxkit-pool-watch".into())
            .spawn(move || self.watchdog());
        if let Err(err) = spawned {
            state.watching = false;
            eprintln!("ctxkit: cannot start the callback pool's watchdog ({err}); will retry");
        }
    }

    fn work(&'static self) {
        let mut state = lock_std(&self.state);
        loop {
            if let Some(job) = state.next_job() {
                state.started += 1;
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
            if timeout.timed_out() && state.queued() == 0 {
                state.workers -= 1;
                return;
            }
        }
    }

    /// Adds a worker whenever jobs wait and none has started for [`STALL`]; exits once no job
    /// waits.
    fn watchdog(&'static self) {
        let mut state = lock_std(&self.state);
        let mut seen = state.started;
        loop {
            state = self
                .watch
                .wait_timeout(state, STALL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if state.queued() == 0 {
                state.watching = false;
                return;
            }
            let stalled = state.started == seen && state.idle == 0;
            if stalled && state.workers < MAX_WORKERS {
                self.start_worker(&mut state);
            } else if state.workers == 0 {
                self.start_worker(&mut state); // a start that failed earlier
            }
            seen = state.started;
        }
    }
}
