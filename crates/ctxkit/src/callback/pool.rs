//! The threads that run `after_func` callbacks (C2).
//!
//! A job goes to an idle worker if there is one, else to a new thread, so a callback that
//! blocks never holds up the others. Idle workers exit after [`IDLE_EXIT`].

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, OnceLock};
use std::time::Duration;

use crate::sync::lock_std;

/// A callback to run.
pub(super) type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    state: std::sync::Mutex<PoolState>,
    ready: Condvar,
}

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
}

/// How long a worker waits for a job before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(10);

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: std::sync::Mutex::new(PoolState::default()),
        ready: Condvar::new(),
    })
}

/// Runs `job` on a pool thread.
pub(super) fn execute(job: Job) {
    let pool = pool();
    let mut state = lock_std(&pool.state);
    state.jobs.push_back(job);
    // Every queued job has an idle worker of its own, or a new thread (C2).
    if state.jobs.len() <= state.idle {
        pool.ready.notify_one();
        return;
    }
    drop(state);
    let spawned = std::thread::Builder::new()
        .name("ctxkit-after-func".into())
        .spawn(move || pool.work());
    if let Err(err) = spawned {
        // Out of threads: the job stays queued for the next worker that frees up.
        eprintln!("ctxkit: cannot start an after_func thread: {err}");
    }
}

impl Pool {
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
