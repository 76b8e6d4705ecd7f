//! Helpers shared by more than one test file; a helper that one file alone uses stays in
//! that file.
//!
//! A test file at the top of `tests/` declares `mod common;`; a test binary made of a
//! directory (`tests/semantics/main.rs`) declares `#[path = "../common/mod.rs"] mod common;`.
//! Each binary uses a different subset of what is here, hence `allow(dead_code)`.
//!
//! `tests/loom.rs` includes this module too, compiled under `--cfg loom`: everything here
//! uses std's own threads and atomics (never loom's), which a loom model may use freely as
//! long as nothing it checks depends on them.
//!
//! The counting global allocator is in `counting_alloc.rs` beside this file, and is not
//! declared here: a binary that installs it includes it on its own.
#![allow(dead_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context as TaskCx, Poll};
use std::thread;
use std::time::{Duration, Instant};

use ctxkit::{Cause, Error, Key};

// ---------------------------------------------------------------------------------------
// Time limits
// ---------------------------------------------------------------------------------------

/// How long a test waits for something that should happen promptly (a callback to run, a
/// waiter to wake, a deadline of a few milliseconds to fire) before it fails. Far beyond any
/// ordinary delay, even on a loaded machine or under valgrind; short enough that a lost
/// wake-up fails the test instead of hanging it.
pub const LONG: Duration = Duration::from_secs(10);

/// How long [`within`] lets its work run before reporting a deadlock. Longer than [`LONG`]
/// on purpose: work that itself waits up to `LONG` for something (a callback, a thread)
/// then fails with its own message rather than being reported as a deadlock.
pub const DEADLOCK_AFTER: Duration = Duration::from_secs(20);

/// A deadline that never passes during a test, but is a real deadline (timer entry and all).
pub const HOUR: Duration = Duration::from_secs(3600);

/// Runs `f` on its own thread; fails the test if it has not finished within
/// [`DEADLOCK_AFTER`] (a deadlock) or if it panicked.
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(DEADLOCK_AFTER) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: not finished after {DEADLOCK_AFTER:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// Polls `cond` every millisecond until it holds, for up to [`LONG`]; returns whether it
/// held in the end.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < LONG {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// Runs one test of this test binary alone, in a child process with the environment
/// variable `env` set, and fails unless it ran there and passed. For a test that must not
/// share its process with the others: one that may stop a thread the whole process shares,
/// one that needs the first reading of time in a fresh process, one whose stack overflow
/// would abort every test of the binary. `module` is the caller's `module_path!()` and
/// `name` the test's function name; the test itself does its work only when `env` is set.
pub fn run_alone_in_child_process(module: &str, name: &str, env: &str) {
    // A test's path leaves out the crate's name: `semantics::depth` holds `depth::NAME`.
    let path = match module.split_once("::") {
        Some((_, inner)) => format!("{inner}::{name}"),
        None => name.to_string(),
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &path,
            "--include-ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(env, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{path} failed in its child process ({}):\n{text}",
        out.status
    );
    assert!(
        text.contains("test result: ok. 1 passed"),
        "{path} did not run in its child process:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------
// Futures
// ---------------------------------------------------------------------------------------

/// Polls a future once with a waker that does nothing.
pub fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let waker = futures::task::noop_waker();
    let mut cx = TaskCx::from_waker(&waker);
    Pin::new(fut).poll(&mut cx)
}

// ---------------------------------------------------------------------------------------
// Values that report their drop
// ---------------------------------------------------------------------------------------

/// Sets its flag when dropped: proves that a value (or a closure or future owning it) was
/// freed. The flag is a std atomic, so it may be dropped on any thread (the callback pool,
/// an executor's worker).
pub struct DropFlag(pub Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A `DropFlag` and the flag it sets.
pub fn drop_flag() -> (DropFlag, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(false));
    (DropFlag(Arc::clone(&flag)), flag)
}

/// A key for a `DropFlag` stored in a context: the flag is set once the context (the value
/// layer and everything derived from it) is freed.
pub static PAYLOAD: Key<DropFlag> = Key::new("payload");

// ---------------------------------------------------------------------------------------
// Values and causes
// ---------------------------------------------------------------------------------------

pub static USER: Key<&'static str> = Key::new("user");
pub static REQUEST: Key<u64> = Key::new("request");

/// A value stored by type (`with`/`get`).
#[derive(Debug, PartialEq)]
pub struct Tenant(pub u32);

/// A user error used as a cause; it displays as `oops: NAME`, so that a test can tell it
/// from a cause given as plain text.
#[derive(Debug, Clone, PartialEq)]
pub struct Oops(pub &'static str);

impl fmt::Display for Oops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oops: {}", self.0)
    }
}

impl std::error::Error for Oops {}

/// The name inside an `Oops` cause, if the cause is one.
pub fn oops(cause: &Cause) -> Option<&'static str> {
    cause.downcast_ref::<Oops>().map(|o| o.0)
}

/// The sentinel a cause is, if it is one.
pub fn sentinel(cause: &Cause) -> Option<Error> {
    cause.downcast_ref::<Error>().copied()
}

/// A user error used as a cause; it displays as its name alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Named(pub &'static str);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Named {}

/// The error of a failing task in a group, telling which task it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed(pub u32);

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} failed", self.0)
    }
}

impl std::error::Error for Failed {}

// ---------------------------------------------------------------------------------------
// Concurrency limits
// ---------------------------------------------------------------------------------------

/// Counts the tasks running at once and remembers the highest count.
#[derive(Default)]
pub struct Concurrency {
    pub now: AtomicUsize,
    pub max: AtomicUsize,
}

impl Concurrency {
    /// A task on a thread of its own: counted while it sleeps for `pause`.
    pub fn run(&self, pause: Duration) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        thread::sleep(pause);
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    /// A tokio task: counted while it sleeps for `pause` on tokio's timer.
    pub async fn run_async(&self, pause: Duration) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(pause).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// Randomness and settings
// ---------------------------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*), so that runs are reproducible from their seed.
pub struct Rng(u64);

impl Rng {
    /// Any seed, 0 included; nearby seeds give unrelated sequences.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The number in the environment variable `name`, or `default` when it is unset or not a
/// number.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
