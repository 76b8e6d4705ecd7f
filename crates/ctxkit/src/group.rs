//! Task groups for threads: [`Group`], Go's `golang.org/x/sync/errgroup`.
//!
//! A group runs closures on threads of their own, under a context derived for the group.
//! The first task to fail cancels that context, with its error as the
//! [`cause`](Context::cause), so that its siblings stop; [`Group::wait`] returns that error
//! once every task has finished. [`Group::spawn_scoped`] runs closures that borrow from the
//! caller's stack, on a `std::thread::scope`.
//!
//! # Errors are cloned once
//!
//! The first error is both the context's cause (which siblings read through
//! `ctx.cause().unwrap().downcast_ref::<E>()`) and what `wait` returns, so `E` is `Clone`: the
//! cause is a clone, `wait` returns the original. An error type that is not `Clone` (such as
//! `std::io::Error`) goes in an `Arc`: use `Group<Arc<io::Error>>` and
//! `.map_err(Arc::new)`; the cause then downcasts to `Arc<io::Error>`.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, Location};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Scope;

use crate::origin::{Began, OriginKind};
use crate::{CancelHandle, Context};

pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// The [`cause`](Context::cause) of a group's context when one of its tasks panicked.
///
/// The panic itself is resumed by the group's `wait`; siblings see this cause.
///
/// # Examples
///
/// ```
/// use ctxkit::{Context, Group, Panicked};
///
/// let (group, ctx) = Group::<std::fmt::Error>::new(&Context::background());
/// group.spawn(|| panic!("bad input"));
/// ctx.wait();
/// let cause = ctx.cause().unwrap();
/// assert_eq!(cause.downcast_ref::<Panicked>().unwrap().message(), "bad input");
/// assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| group.wait())).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panicked {
    message: String,
}

impl Panicked {
    pub(crate) fn new(payload: &Panic) -> Panicked {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_owned()
        };
        Panicked { message }
    }

    /// The panic's message, when it was a string (as `panic!` makes it); else `Box<dyn Any>`.
    ///
    /// ```
    /// # use ctxkit::{Context, Group, Panicked};
    /// let (group, ctx) = Group::<std::fmt::Error>::new(&Context::background());
    /// group.spawn(|| panic!("code {}", 7));
    /// ctx.wait();
    /// let cause = ctx.cause().unwrap();
    /// assert_eq!(cause.downcast_ref::<Panicked>().unwrap().message(), "code 7");
    /// # let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| group.wait()));
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a task panicked: {}", self.message)
    }
}

impl std::error::Error for Panicked {}

/// How a task ended.
pub(crate) enum Outcome<E> {
    Done(Result<(), E>),
    Panicked(Panic),
}

/// What the tasks of a group share, whatever runs them (threads here, tokio tasks in
/// `ctxkit::tokio`).
///
/// # Invariants
/// - **E1 (counted before started)**: a task is counted in `running` before its thread
///   starts and uncounted only after it has recorded its outcome, so `wait` cannot return
///   while a task may still record an error, and when it returns every task's closure has
///   been consumed (its captures dropped).
/// - **E2 (first failure decides)**: whether a failure is the first is decided under the
///   state lock, and only the first failure cancels (outside the lock: `on_cancel` callbacks
///   run inside `cancel`, and they may use the group). So the context's cause is the error
///   `wait` returns, unless the parent was done first (the parent's cause wins, as in Go).
pub(crate) struct Shared<E> {
    ctx: Context,
    handle: CancelHandle,
    state: Mutex<State<E>>,
    /// Signalled whenever a task finishes: frees a slot and may end `wait`.
    finished: Condvar,
}

pub(crate) struct State<E> {
    /// Tasks counted and not yet finished (E1).
    pub(crate) running: usize,
    /// At most this many may run at once.
    pub(crate) limit: usize,
    error: Option<E>,
    panic: Option<Panic>,
    /// A task has failed (E2).
    failed: bool,
}

impl<E> Shared<E> {
    /// Cancels the group's context with [`Error::Canceled`](crate::Error::Canceled), unless it
    /// is done already.
    pub(crate) fn cancel(&self) {
        self.handle.cancel();
    }
}

impl<E> Shared<E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(parent: &Context) -> Shared<E> {
        let (ctx, handle) = parent.with_cancel();
        Shared {
            ctx,
            handle,
            state: Mutex::new(State {
                running: 0,
                limit: usize::MAX,
                error: None,
                panic: None,
                failed: false,
            }),
            finished: Condvar::new(),
        }
    }

    pub(crate) fn ctx(&self) -> &Context {
        &self.ctx
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State<E>> {
        // No code of ours panics under this lock; a poisoned lock holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_limit(&self, n: usize) {
        assert!(n > 0, "a group's limit must be at least 1");
        self.state().limit = n;
        // A higher limit may free slots for blocked spawners.
        self.finished.notify_all();
    }

    pub(crate) fn clear_limit(&self) {
        self.set_limit(usize::MAX);
    }

    /// Counts a task in if a slot is free, else returns false.
    pub(crate) fn try_start(&self) -> bool {
        let mut state = self.state();
        if state.running >= state.limit {
            return false;
        }
        state.running += 1;
        true
    }

    /// Counts a task in, blocking this thread until a slot is free.
    fn start(&self) {
        let mut state = self.state();
        while state.running >= state.limit {
            state = self.finished.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.running += 1;
    }

    /// Records how a counted task ended, cancels on the first failure (E2), then uncounts
    /// it (E1).
    /// `spawned_at`: the `spawn` of the task, the origin of the group's cancellation if this
    /// is its first failure ([S27](crate::guarantees#s27)).
    pub(crate) fn finish(&self, outcome: Outcome<E>, spawned_at: &'static Location<'static>) {
        let first = {
            let mut state = self.state();
            let first = !state.failed;
            match outcome {
                Outcome::Done(Ok(())) => None,
                Outcome::Done(Err(e)) => {
                    state.failed = true;
                    let cause = first.then(|| e.clone());
                    state.error.get_or_insert(e);
                    cause.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                }
                Outcome::Panicked(payload) => {
                    state.failed = true;
                    let cause = first.then(|| Panicked::new(&payload));
                    state.panic.get_or_insert(payload);
                    cause.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                }
            }
        };
        if let Some(cause) = first {
            let began = Began {
                kind: OriginKind::Group,
                at: spawned_at,
            };
            self.handle.cancel_with_cause_as(cause, began);
        }
        self.state().running -= 1;
        self.finished.notify_all();
    }

    /// Uncounts a task that never started (its thread could not be spawned).
    fn unstart(&self) {
        self.state().running -= 1;
        self.finished.notify_all();
    }

    /// Blocks until no task runs.
    fn wait_idle(&self) {
        let mut state = self.state();
        while state.running > 0 {
            state = self.finished.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Once no task runs: cancels the context, resumes the first panic or returns the first
    /// error.
    pub(crate) fn conclude(&self) -> Result<(), E> {
        let (error, panic) = {
            let mut state = self.state();
            debug_assert_eq!(state.running, 0);
            (state.error.take(), state.panic.take())
        };
        self.handle.cancel();
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
        error.map_or(Ok(()), Err)
    }

    /// The body of a task's thread: runs `f`, catching a panic, and records the outcome.
    fn run(&self, f: impl FnOnce() -> Result<(), E>, spawned_at: &'static Location<'static>) {
        let outcome = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(result) => Outcome::Done(result),
            Err(payload) => Outcome::Panicked(payload),
        };
        self.finish(outcome, spawned_at);
    }
}

/// Runs closures on threads of their own and collects the first error, cancelling the
/// group's context when one fails — Go's `errgroup.Group` with `errgroup.WithContext`.
///
/// - The context returned by [`new`](Group::new) is a child of the parent; it is cancelled
///   by the first task that returns `Err` (with that error as its
///   [`cause`](Context::cause)) or panics (with a [`Panicked`] cause), and by
///   [`wait`](Group::wait) when it returns.
/// - [`wait`](Group::wait) blocks until every task has finished, then returns the first
///   error, or resumes the first panic.
/// - [`set_limit`](Group::set_limit) caps how many tasks run at once;
///   [`spawn`](Group::spawn) then blocks while the group is full and
///   [`try_spawn`](Group::try_spawn) declines.
/// - Dropping a group without waiting cancels its context and does not wait: the threads
///   finish on their own, and their errors are not seen.
///
/// `E` is cloned once, for the cause (see the [module docs](crate::group)). Tasks that must
/// borrow from the caller use [`Group::spawn_scoped`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, Group};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct NotFound(u32);
/// impl std::fmt::Display for NotFound {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{} not found", self.0) }
/// }
/// impl std::error::Error for NotFound {}
///
/// let (group, ctx) = Group::new(&Context::background());
/// group.spawn(|| Err(NotFound(404)));
/// let sibling = ctx.clone();
/// group.spawn(move || {
///     // A long job that gives up once a sibling failed.
///     sibling.wait_timeout(Duration::from_secs(60));
///     Ok(())
/// });
/// assert_eq!(group.wait(), Err(NotFound(404)));
/// assert_eq!(ctx.cause().unwrap().downcast_ref(), Some(&NotFound(404)));
/// ```
pub struct Group<E> {
    shared: Arc<Shared<E>>,
}

impl<E> Group<E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    /// A new, empty group, and its context: a child of `parent` (Go's
    /// `errgroup.WithContext`). Pass the context to the tasks.
    ///
    /// ```
    /// let parent = ctxkit::Context::background();
    /// let (group, ctx) = ctxkit::Group::<std::fmt::Error>::new(&parent);
    /// assert!(!ctx.is_done());
    /// assert_eq!(group.wait(), Ok(()));
    /// assert!(ctx.is_done()); // wait cancels the group's context
    /// ```
    pub fn new(parent: &Context) -> (Group<E>, Context) {
        let shared = Arc::new(Shared::new(parent));
        let ctx = shared.ctx().clone();
        (Group { shared }, ctx)
    }

    /// The group's context, as returned by [`new`](Group::new).
    ///
    /// ```
    /// let (group, ctx) = ctxkit::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// assert_eq!(group.context().to_string(), ctx.to_string());
    /// ```
    pub fn context(&self) -> &Context {
        self.shared.ctx()
    }

    /// Runs `f` on a new thread (Go's `g.Go`). If the group is at its
    /// [limit](Group::set_limit), blocks until a task finishes.
    ///
    /// # Panics
    ///
    /// If the operating system cannot start a thread.
    ///
    /// ```
    /// let (group, _ctx) = ctxkit::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// for i in 0..3 {
    ///     let tx = tx.clone();
    ///     group.spawn(move || { tx.send(i).unwrap(); Ok(()) });
    /// }
    /// group.wait().unwrap();
    /// drop(tx);
    /// assert_eq!(rx.iter().sum::<i32>(), 3);
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce() -> Result<(), E> + Send + 'static,
    {
        self.shared.start();
        self.start_thread(f);
    }

    /// Runs `f` on a new thread if the group is under its [limit](Group::set_limit), and
    /// returns true; else returns false and drops `f` (Go's `g.TryGo`).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let (group, _ctx) = ctxkit::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.set_limit(1);
    /// let (release, gate) = mpsc::channel::<()>();
    /// assert!(group.try_spawn(move || { let _ = gate.recv(); Ok(()) }));
    /// assert!(!group.try_spawn(|| Ok(()))); // full
    /// drop(release);
    /// group.wait().unwrap();
    /// ```
    #[track_caller]
    pub fn try_spawn<F>(&self, f: F) -> bool
    where
        F: FnOnce() -> Result<(), E> + Send + 'static,
    {
        if !self.shared.try_start() {
            return false;
        }
        self.start_thread(f);
        true
    }

    #[track_caller]
    fn start_thread<F>(&self, f: F)
    where
        F: FnOnce() -> Result<(), E> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let at = Location::caller();
        let spawned = std::thread::Builder::new().spawn(move || shared.run(f, at));
        if let Err(err) = spawned {
            self.shared.unstart();
            panic!("ctxkit::Group: cannot start a thread: {err}");
        }
    }

    /// Lets at most `n` tasks run at once (Go's `g.SetLimit`). Tasks already running are
    /// not affected; a lower limit applies to the next spawns.
    ///
    /// # Panics
    ///
    /// If `n` is zero: no task could ever run.
    ///
    /// ```
    /// let (group, _ctx) = ctxkit::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.set_limit(4);
    /// for _ in 0..16 {
    ///     group.spawn(|| Ok(())); // at most 4 threads at a time
    /// }
    /// group.wait().unwrap();
    /// ```
    pub fn set_limit(&self, n: usize) {
        self.shared.set_limit(n);
    }

    /// Removes the [limit](Group::set_limit) (Go's `g.SetLimit(-1)`).
    ///
    /// ```
    /// let (group, _ctx) = ctxkit::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.set_limit(1);
    /// group.clear_limit();
    /// assert!(group.try_spawn(|| Ok(())));
    /// assert!(group.try_spawn(|| Ok(())));
    /// group.wait().unwrap();
    /// ```
    pub fn clear_limit(&self) {
        self.shared.clear_limit();
    }

    /// Blocks until every task has finished, cancels the group's context, and returns the
    /// first error (Go's `g.Wait`). If a task panicked, resumes the first panic instead.
    /// With no task, returns `Ok(())` at once.
    ///
    /// ```
    /// let (group, ctx) = ctxkit::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.spawn(|| Err(std::fmt::Error));
    /// group.spawn(|| Ok(()));
    /// assert_eq!(group.wait(), Err(std::fmt::Error));
    /// assert!(ctx.cause().unwrap().is::<std::fmt::Error>());
    /// ```
    pub fn wait(self) -> Result<(), E> {
        self.shared.wait_idle();
        self.shared.conclude()
    }
}

impl<E> Group<E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    /// Runs `f` on a new thread of the `std::thread::scope` `scope`, so that it may borrow
    /// from the caller's stack (the group and its context included); blocks while the
    /// group is at its [limit](Group::set_limit). Otherwise as [`spawn`](Group::spawn).
    ///
    /// Make the group (and its context) before the scope, spawn inside it, and call
    /// [`wait`](Group::wait) after it: the scope has joined the threads by then, so `wait`
    /// only collects the outcome. A task can spawn siblings: `group` and `scope` are
    /// references it can take along.
    ///
    /// ```
    /// use ctxkit::{Context, Group};
    /// let words = ["alpha", "beta", "gamma"];
    /// let lens = std::sync::Mutex::new(Vec::new());
    /// let (group, ctx) = Group::<std::fmt::Error>::new(&Context::background());
    /// std::thread::scope(|s| {
    ///     for w in &words {
    ///         group.spawn_scoped(s, || {
    ///             if !ctx.is_done() {
    ///                 lens.lock().unwrap().push(w.len());
    ///             }
    ///             Ok(())
    ///         });
    ///     }
    /// });
    /// assert_eq!(group.wait(), Ok(()));
    /// assert_eq!(lens.into_inner().unwrap().iter().sum::<usize>(), 14);
    /// ```
    #[track_caller]
    pub fn spawn_scoped<'scope, 'env, F>(&'scope self, scope: &'scope Scope<'scope, 'env>, f: F)
    where
        F: FnOnce() -> Result<(), E> + Send + 'scope,
    {
        self.shared.start();
        self.start_scoped(scope, f);
    }

    /// [`try_spawn`](Group::try_spawn) on a `std::thread::scope`: runs `f` on a scoped
    /// thread if the group is under its limit.
    ///
    /// ```
    /// let (group, _ctx) = ctxkit::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// let mut hits = [0u8; 2];
    /// std::thread::scope(|s| {
    ///     for h in hits.iter_mut() {
    ///         assert!(group.try_spawn_scoped(s, move || { *h += 1; Ok(()) }));
    ///     }
    /// });
    /// group.wait().unwrap();
    /// assert_eq!(hits, [1, 1]);
    /// ```
    #[track_caller]
    pub fn try_spawn_scoped<'scope, 'env, F>(
        &'scope self,
        scope: &'scope Scope<'scope, 'env>,
        f: F,
    ) -> bool
    where
        F: FnOnce() -> Result<(), E> + Send + 'scope,
    {
        if !self.shared.try_start() {
            return false;
        }
        self.start_scoped(scope, f);
        true
    }

    #[track_caller]
    fn start_scoped<'scope, 'env, F>(&'scope self, scope: &'scope Scope<'scope, 'env>, f: F)
    where
        F: FnOnce() -> Result<(), E> + Send + 'scope,
    {
        let shared = &*self.shared;
        let at = Location::caller();
        let spawned = std::thread::Builder::new().spawn_scoped(scope, move || shared.run(f, at));
        if let Err(err) = spawned {
            self.shared.unstart();
            panic!("ctxkit::Group: cannot start a thread: {err}");
        }
    }
}

impl<E> Drop for Group<E> {
    fn drop(&mut self) {
        // Cancelling again after `wait` changes nothing (S8).
        self.shared.cancel();
    }
}

impl<E> fmt::Debug for Group<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}
