//! Task groups for threads: [`Group`], Go's `golang.org/x/sync/errgroup`.
//!
//! A group runs closures on threads of their own, under a context derived for the group.
//! The first task to fail cancels that context, so that its siblings stop;
//! [`Group::wait`] returns that error once every task has finished. [`Group::spawn_scoped`]
//! runs closures that borrow from the caller's stack, on a `std::thread::scope`.
//!
//! # Any error type, and the cause siblings see
//!
//! `E` only has to be `Debug + Send + 'static`: `std::io::Error`,
//! `Box<dyn Error + Send + Sync>`, `anyhow::Error`, `String`, your own. `wait` returns the
//! first error itself, moved out, never cloned. The group's context is cancelled with a cause
//! made from that error when it happens, chosen by the constructor:
//!
//! | constructor | the cause siblings see |
//! |---|---|
//! | [`Group::new`] | a [`TaskError`] holding the error's `Debug` text |
//! | [`Group::with_cause`]`(&parent, \|e\| e.to_string())` | the error's `Display` text |
//! | [`Group::with_cause`]`(&parent, E::clone)` | a clone of the error: `cause().downcast_ref::<E>()` finds it |
//!
//! [`Group::wait_errors`] returns every error, in the order the tasks failed, instead of
//! the first alone.
//!
//! # What a done group no longer starts
//!
//! Once the group's context is done (a task failed, the parent was cancelled, or `wait`
//! returned), no task that has not started yet is started: a `spawn` or `try_spawn` does not
//! run its task, and tasks waiting for a slot under [`Group::set_limit`] are dropped unrun.
//! A failing task cancels the context *before* its slot is given to a waiting task, so the
//! limit never lets a task start after a sibling failed. Waiting tasks get slots in the order
//! they were spawned.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::Scope;

use crate::origin::{Began, OriginKind};
use crate::{CancelHandle, Context};

pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// A cause, as `CancelHandle::cancel_with_cause` takes it.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Makes the group's cause from its first error.
type Describe<E> = Box<dyn Fn(&E) -> BoxError + Send + Sync>;

/// A task waiting for a slot: called once, under the state lock, with `true` when the slot is
/// given to it, `false` when the group is done and it must not start. Returns whether the
/// task was still there to take it (a slot given to a task that is gone goes to the next).
pub(crate) type Waiter = Box<dyn FnOnce(bool) -> bool + Send>;

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

/// The [`cause`](Context::cause) of a group's context made by [`Group::new`] (or
/// `ctxkit::tokio::Group::new`) when a task returned an error: that error's `Debug` text.
///
/// The error itself is returned by the group's `wait`. For the `Display` text or a typed
/// cause, make the group with [`Group::with_cause`].
///
/// # Examples
///
/// ```
/// use ctxkit::{Context, Group, TaskError};
///
/// let (group, ctx) = Group::<String>::new(&Context::background());
/// group.spawn(|| Err("disk full".to_string()));
/// assert_eq!(group.wait(), Err("disk full".to_string()));
/// let cause = ctx.cause().unwrap();
/// assert_eq!(cause.downcast_ref::<TaskError>().unwrap().message(), r#""disk full""#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskError {
    message: String,
}

impl TaskError {
    /// The failed task's error, as its `Debug` shows it.
    ///
    /// ```
    /// # use ctxkit::{Context, Group, TaskError};
    /// let (group, ctx) = Group::new(&Context::background());
    /// group.spawn(|| Err(std::fmt::Error));
    /// let _ = group.wait();
    /// assert_eq!(ctx.cause().unwrap().downcast_ref::<TaskError>().unwrap().message(), "Error");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

/// How a task ended.
pub(crate) enum Outcome<E> {
    Done(Result<(), E>),
    Panicked(Panic),
}

/// Whether a task may start now.
pub(crate) enum Admission {
    /// It holds a slot: start it.
    Slot,
    /// It waits for a slot; its [`Waiter`] is queued.
    Queued,
    /// The group is done: drop it unrun.
    Refused,
}

/// What the tasks of a group share, whatever runs them (threads here, tokio tasks in
/// `ctxkit::tokio`).
///
/// # Invariants
/// - **E1 (counted before started)**: a task holds a slot (is counted in `running`) before
///   it starts, and gives it up only after it has recorded its outcome, so `wait` cannot
///   return while a task may still record an error.
/// - **E2 (first failure decides, and cancels before its slot is handed on)**: whether a
///   failure is the first is decided under the state lock; only the first failure cancels,
///   outside the lock (`on_cancel` callbacks run inside `cancel`, and they may use the
///   group), and only then is its slot released ([`Shared::release`]). So the context's cause
///   is made from the error `wait` returns (unless the parent was done first: the parent's
///   cause wins, as in Go), and no waiting task is handed a slot after a failure.
/// - **E3 (no start once done)**: slots are handed out only under the state lock and only
///   while the context is not done; the `on_cancel` callback registered by [`Shared::new`]
///   refuses every queued waiter under the same lock once it is done. A waiter is queued
///   only under the lock while not done, so every waiter is either handed a slot before the
///   context was done or refused. A task has started once it holds a slot: a `spawn` that
///   returned having taken one runs its task, as Go's `g.Go` does, even if the context is
///   done before the task's first instruction.
/// - **E4 (in spawn order)**: a free slot goes to the oldest waiter; a new task takes a free
///   slot directly only when no one waits.
pub(crate) struct Shared<E> {
    ctx: Context,
    handle: CancelHandle,
    describe: Describe<E>,
    state: Mutex<State<E>>,
    /// Signalled when a slot frees, a waiter is answered, or a task finishes.
    changed: Condvar,
}

pub(crate) struct State<E> {
    /// Slots held: tasks counted and not yet finished (E1).
    running: usize,
    /// At most this many may run at once.
    limit: usize,
    /// Every error, in the order the tasks failed.
    errors: Vec<E>,
    panic: Option<Panic>,
    /// A task has failed (E2).
    failed: bool,
    /// Tasks waiting for a slot, oldest first (E4).
    queue: VecDeque<Waiter>,
    /// Threads blocked on `changed`. Notifying a condition variable costs a system call even
    /// when no one waits; a task's completion notifies only when someone does.
    sleepers: usize,
}

impl<E> Shared<E> {
    /// Cancels the group's context with [`Error::Canceled`](crate::Error::Canceled), unless it
    /// is done already.
    pub(crate) fn cancel(&self) {
        self.handle.cancel();
    }
}

impl<E: Send + 'static> Shared<E> {
    pub(crate) fn new(parent: &Context, describe: Describe<E>) -> Arc<Shared<E>> {
        let (ctx, handle) = parent.with_cancel();
        let shared = Arc::new(Shared {
            ctx,
            handle,
            describe,
            state: Mutex::new(State {
                running: 0,
                limit: usize::MAX,
                errors: Vec::new(),
                panic: None,
                failed: false,
                queue: VecDeque::new(),
                sleepers: 0,
            }),
            changed: Condvar::new(),
        });
        // E3: once done, the waiters are refused. Weak: the registration lasts until the
        // context is done (at the latest when the last handle drops), and must not keep the
        // group alive until then.
        let weak: Weak<Shared<E>> = Arc::downgrade(&shared);
        let _registration = shared.ctx.on_cancel(move || {
            if let Some(shared) = weak.upgrade() {
                shared.refuse_waiters();
            }
        });
        shared
    }

    /// The cause for `new`: the error's `Debug` text.
    pub(crate) fn debug_text() -> Describe<E>
    where
        E: fmt::Debug,
    {
        Box::new(|e: &E| {
            Box::new(TaskError {
                message: format!("{e:?}"),
            }) as BoxError
        })
    }

    /// The cause for `with_cause`.
    pub(crate) fn describe_with<C, F>(f: F) -> Describe<E>
    where
        F: Fn(&E) -> C + Send + Sync + 'static,
        C: Into<BoxError>,
    {
        Box::new(move |e: &E| f(e).into())
    }

    pub(crate) fn ctx(&self) -> &Context {
        &self.ctx
    }

    fn state(&self) -> MutexGuard<'_, State<E>> {
        // No code of ours panics under this lock; a poisoned lock holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks on `changed`, counted in `sleepers`.
    fn sleep<'a>(&'a self, mut state: MutexGuard<'a, State<E>>) -> MutexGuard<'a, State<E>> {
        state.sleepers += 1;
        let mut state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        state.sleepers -= 1;
        state
    }

    /// Wakes the threads blocked on `changed`, if any; `state` is released first.
    fn wake(&self, state: MutexGuard<'_, State<E>>) {
        let sleepers = state.sleepers;
        drop(state);
        if sleepers > 0 {
            self.changed.notify_all();
        }
    }

    pub(crate) fn set_limit(&self, n: usize) {
        assert!(n > 0, "a group's limit must be at least 1");
        let mut state = self.state();
        state.limit = n;
        // A higher limit frees slots for the oldest waiters (E4), while not done (E3).
        while state.running < state.limit && !self.ctx.is_done() {
            let Some(waiter) = state.queue.pop_front() else {
                break;
            };
            if waiter(true) {
                state.running += 1;
            }
        }
        self.wake(state);
    }

    pub(crate) fn clear_limit(&self) {
        self.set_limit(usize::MAX);
    }

    /// Takes a slot if one is free and no one waits (E4), unless the group is done (E3).
    #[inline]
    pub(crate) fn try_start(&self) -> bool {
        let mut state = self.state();
        if state.running >= state.limit || !state.queue.is_empty() || self.ctx.is_done() {
            return false;
        }
        state.running += 1;
        true
    }

    /// Takes a free slot, or queues the waiter `make()` returns, or refuses once done.
    pub(crate) fn admit(&self, make: impl FnOnce() -> Waiter) -> Admission {
        let mut state = self.state();
        if self.ctx.is_done() {
            return Admission::Refused;
        }
        if state.running < state.limit && state.queue.is_empty() {
            state.running += 1;
            return Admission::Slot;
        }
        state.queue.push_back(make());
        Admission::Queued
    }

    /// Once done: answers every waiter `false` (E3).
    fn refuse_waiters(&self) {
        let mut state = self.state();
        for waiter in std::mem::take(&mut state.queue) {
            waiter(false);
        }
        self.wake(state);
    }

    /// Gives up a slot: to the oldest waiter that is still there, if the group is not done
    /// and under its limit (E2, E3, E4), else back to the group.
    pub(crate) fn release(&self) {
        let mut state = self.state();
        let mut handed = false;
        if state.running <= state.limit && !self.ctx.is_done() {
            while let Some(waiter) = state.queue.pop_front() {
                if waiter(true) {
                    handed = true;
                    break;
                }
            }
        }
        if !handed {
            state.running -= 1;
        }
        // Who can be waiting for this: the spawner given the slot, or `wait` once no task
        // runs (a spawner waiting in line is answered through the queue, not by a count).
        if handed || state.running == 0 {
            self.wake(state);
        }
    }

    /// Records how a task that holds a slot ended, cancels on the first failure, then
    /// releases its slot (E2).
    /// `spawned_at`: the `spawn` of the task, the origin of the group's cancellation if this
    /// is its first failure ([S27](crate::guarantees#s27)).
    pub(crate) fn finish(&self, outcome: Outcome<E>, spawned_at: &'static Location<'static>) {
        if let Outcome::Done(Ok(())) = outcome {
            // Nothing to record: the common case takes the lock once.
            self.release();
            return;
        }
        let first = {
            let mut state = self.state();
            let first = !state.failed;
            match outcome {
                Outcome::Done(Ok(())) => None,
                Outcome::Done(Err(e)) => {
                    state.failed = true;
                    let cause = first.then(|| self.describe(&e));
                    state.errors.push(e);
                    cause
                }
                Outcome::Panicked(payload) => {
                    state.failed = true;
                    let cause = first.then(|| Box::new(Panicked::new(&payload)) as BoxError);
                    state.panic.get_or_insert(payload);
                    cause
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
        self.release();
    }

    /// The cause for the first error. A panic of a user's cause function must not escape
    /// here (the task would never give its slot back): it becomes a [`Panicked`] cause.
    fn describe(&self, e: &E) -> BoxError {
        catch_unwind(AssertUnwindSafe(|| (self.describe)(e)))
            .unwrap_or_else(|payload| Box::new(Panicked::new(&payload)))
    }

    /// Blocks until no task holds a slot.
    fn wait_idle(&self) {
        let mut state = self.state();
        while state.running > 0 {
            state = self.sleep(state);
        }
    }

    /// Once no task runs: cancels the context, resumes the first panic or returns every
    /// error, in the order they happened. The errors are handed out once: a later call finds
    /// none.
    pub(crate) fn conclude(&self) -> Vec<E> {
        let (errors, panic) = {
            let mut state = self.state();
            (std::mem::take(&mut state.errors), state.panic.take())
        };
        self.handle.cancel();
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
        errors
    }

    /// The first error of [`conclude`](Self::conclude).
    pub(crate) fn conclude_first(&self) -> Result<(), E> {
        self.conclude().into_iter().next().map_or(Ok(()), Err)
    }

    /// The body of a task's thread: runs `f`, catching a panic, and records the outcome.
    fn run(&self, f: impl FnOnce() -> Result<(), E>, spawned_at: &'static Location<'static>) {
        let outcome = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(result) => Outcome::Done(result),
            Err(payload) => Outcome::Panicked(payload),
        };
        self.finish(outcome, spawned_at);
    }

    /// Takes a slot for a blocking spawner: at once if free, else after waiting in line.
    /// Returns false, holding no slot, once the group is done (E3).
    fn start(&self) -> bool {
        if self.try_start() {
            return true;
        }
        const WAITING: u8 = 0;
        const GRANTED: u8 = 1;
        const REFUSED: u8 = 2;
        let answer = Arc::new(AtomicU8::new(WAITING));
        let told = Arc::clone(&answer);
        let waiter: Waiter = Box::new(move |granted| {
            // Relaxed: written and read under the state lock.
            told.store(if granted { GRANTED } else { REFUSED }, Ordering::Relaxed);
            true
        });
        match self.admit(|| waiter) {
            Admission::Slot => return true,
            Admission::Refused => return false,
            Admission::Queued => {}
        }
        let mut state = self.state();
        loop {
            match answer.load(Ordering::Relaxed) {
                GRANTED => return true,
                REFUSED => return false,
                _ => state = self.sleep(state),
            }
        }
    }
}

/// Runs closures on threads of their own and collects the first error, cancelling the
/// group's context when one fails — Go's `errgroup.Group` with `errgroup.WithContext`.
///
/// - The context returned by [`new`](Group::new) is a child of the parent; it is cancelled
///   by the first task that returns `Err` (with a cause made from that error, see the
///   [module docs](crate::group)) or panics (with a [`Panicked`] cause), by
///   [`wait`](Group::wait) when it returns, and when every handle of the group is dropped.
/// - [`wait`](Group::wait) blocks until every task has finished, then returns the first
///   error (moved, never cloned), or resumes the first panic.
/// - [`set_limit`](Group::set_limit) caps how many tasks run at once;
///   [`spawn`](Group::spawn) then blocks while the group is full and
///   [`try_spawn`](Group::try_spawn) declines.
/// - Once its context is done, the group starts no task any more (see the
///   [module docs](crate::group)).
/// - `Group` is a cheap handle: clones share one group, and a task can take a clone along to
///   spawn siblings. Dropping every clone without waiting cancels the context and does not
///   wait: the threads finish on their own, and their errors are not seen.
///
/// Tasks that must borrow from the caller use [`Group::spawn_scoped`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, Group};
///
/// let (group, ctx) = Group::new(&Context::background());
/// group.spawn(|| Err(std::io::Error::other("backend down")));
/// let sibling = ctx.clone();
/// group.spawn(move || {
///     // A long job that gives up once a sibling failed.
///     sibling.wait_timeout(Duration::from_secs(60));
///     Ok(())
/// });
/// let err = group.wait().unwrap_err();
/// assert_eq!(err.to_string(), "backend down");
/// assert!(ctx.cause().unwrap().to_string().contains("backend down"));
/// ```
pub struct Group<E> {
    handle: Arc<GroupHandle<E>>,
}

/// Shared by the clones of one [`Group`]: cancels the context when the last one drops.
/// Running tasks hold the [`Shared`] part only, not this.
struct GroupHandle<E> {
    shared: Arc<Shared<E>>,
}

impl<E> Drop for GroupHandle<E> {
    fn drop(&mut self) {
        // Cancelling again after `wait` changes nothing (S8).
        self.shared.cancel();
    }
}

impl<E: Send + 'static> Group<E> {
    /// A new, empty group, and its context: a child of `parent` (Go's
    /// `errgroup.WithContext`). Pass the context to the tasks.
    ///
    /// The first error cancels the context with a [`TaskError`] cause holding the error's
    /// `Debug` text. To choose the cause, such as the `Display` text or, for a `Clone` error,
    /// the error itself (found by `cause().downcast_ref::<E>()`), use
    /// [`with_cause`](Group::with_cause).
    ///
    /// ```
    /// let parent = ctxkit::Context::background();
    /// let (group, ctx) = ctxkit::Group::<std::io::Error>::new(&parent);
    /// assert!(!ctx.is_done());
    /// assert!(group.wait().is_ok());
    /// assert!(ctx.is_done()); // wait cancels the group's context
    /// ```
    pub fn new(parent: &Context) -> (Group<E>, Context)
    where
        E: fmt::Debug,
    {
        Group::from_shared(Shared::new(parent, Shared::debug_text()))
    }

    /// As [`new`](Group::new), with the cause of the first error made by `cause`: its
    /// `Display` text (`|e| e.to_string()`), or for a `Clone` error type the error itself
    /// (`E::clone`), which siblings then find with `ctx.cause().unwrap().downcast_ref::<E>()`.
    /// `wait` still returns the original error. Should `cause` panic, the cause is a
    /// [`Panicked`] with its message.
    ///
    /// ```
    /// use ctxkit::{Context, Group};
    ///
    /// #[derive(Clone, Debug, PartialEq)]
    /// struct NotFound(u32);
    /// impl std::fmt::Display for NotFound {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{} not found", self.0) }
    /// }
    /// impl std::error::Error for NotFound {}
    ///
    /// // A typed cause, for a Clone error.
    /// let (group, ctx) = Group::with_cause(&Context::background(), NotFound::clone);
    /// group.spawn(|| Err(NotFound(404)));
    /// assert_eq!(group.wait(), Err(NotFound(404)));
    /// assert_eq!(ctx.cause().unwrap().downcast_ref(), Some(&NotFound(404)));
    ///
    /// // The Display text, for any error that has one.
    /// let (group, ctx) = Group::with_cause(&Context::background(), |e: &std::io::Error| e.to_string());
    /// group.spawn(|| Err(std::io::Error::other("no route")));
    /// assert!(group.wait().is_err());
    /// assert_eq!(ctx.cause().unwrap().to_string(), "no route");
    /// ```
    pub fn with_cause<C, F>(parent: &Context, cause: F) -> (Group<E>, Context)
    where
        F: Fn(&E) -> C + Send + Sync + 'static,
        C: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Group::from_shared(Shared::new(parent, Shared::describe_with(cause)))
    }

    fn from_shared(shared: Arc<Shared<E>>) -> (Group<E>, Context) {
        let ctx = shared.ctx().clone();
        let handle = Arc::new(GroupHandle { shared });
        (Group { handle }, ctx)
    }

    fn shared(&self) -> &Arc<Shared<E>> {
        &self.handle.shared
    }

    /// The group's context, as returned by [`new`](Group::new).
    ///
    /// ```
    /// let (group, ctx) = ctxkit::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// assert_eq!(group.context().to_string(), ctx.to_string());
    /// ```
    pub fn context(&self) -> &Context {
        self.shared().ctx()
    }

    /// Runs `f` on a new thread (Go's `g.Go`). If the group is at its
    /// [limit](Group::set_limit), blocks until a task finishes. If the group's context is
    /// done (before or while this waits), drops `f` without running it.
    ///
    /// A task can spawn siblings through a clone of the group. With a limit, a task that
    /// spawns blocks while the group is full, itself included: with a limit of 1 it would
    /// wait forever (as in Go); use [`try_spawn`](Group::try_spawn) there.
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
    ///     let g = group.clone();
    ///     group.spawn(move || {
    ///         // A task spawning a sibling.
    ///         g.spawn(move || { tx.send(i).unwrap(); Ok(()) });
    ///         Ok(())
    ///     });
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
        if self.shared().start() {
            self.start_thread(f);
        }
    }

    /// Runs `f` on a new thread if the group is under its [limit](Group::set_limit), no
    /// task waits for a slot, and the context is not done, and returns true; else returns
    /// false and drops `f` (Go's `g.TryGo`).
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
        if !self.shared().try_start() {
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
        let shared = Arc::clone(self.shared());
        let at = Location::caller();
        let spawned = std::thread::Builder::new().spawn(move || shared.run(f, at));
        if let Err(err) = spawned {
            self.shared().release();
            panic!("ctxkit::Group: cannot start a thread: {err}");
        }
    }

    /// Lets at most `n` tasks run at once (Go's `g.SetLimit`). Tasks already running are
    /// not affected; a lower limit applies to the next spawns; a higher one starts waiting
    /// tasks at once.
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
        self.shared().set_limit(n);
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
        self.shared().clear_limit();
    }

    /// Blocks until every task has finished (including tasks spawned while it waits),
    /// cancels the group's context, and returns the first error (Go's `g.Wait`). If a task
    /// panicked, resumes the first panic instead. With no task, returns `Ok(())` at once.
    ///
    /// The error is moved out: it is returned once, to the first `wait` (or
    /// [`wait_errors`](Group::wait_errors)) that returns after it; any other returns
    /// `Ok(())`. A task must not wait on its own group: it would wait for itself.
    ///
    /// ```
    /// let (group, ctx) = ctxkit::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.spawn(|| Err(std::fmt::Error));
    /// group.spawn(|| Ok(()));
    /// assert_eq!(group.wait(), Err(std::fmt::Error));
    /// assert!(ctx.is_done());
    /// ```
    pub fn wait(&self) -> Result<(), E> {
        self.shared().wait_idle();
        self.shared().conclude_first()
    }

    /// As [`wait`](Group::wait), but returns every error, in the order the tasks failed
    /// (empty when every task succeeded). Tasks that fail after the first usually fail
    /// because the first cancelled the context: their errors come after it.
    ///
    /// ```
    /// let (group, _ctx) = ctxkit::Group::<String>::new(&ctxkit::Context::background());
    /// group.set_limit(1);
    /// group.spawn(|| Err("first".to_string()));
    /// group.spawn(|| Err("never started: the group is done".to_string()));
    /// assert_eq!(group.wait_errors(), vec!["first".to_string()]);
    /// ```
    pub fn wait_errors(&self) -> Vec<E> {
        self.shared().wait_idle();
        self.shared().conclude()
    }

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
        if self.shared().start() {
            self.start_scoped(scope, f);
        }
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
        if !self.shared().try_start() {
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
        let shared = &**self.shared();
        let at = Location::caller();
        let spawned = std::thread::Builder::new().spawn_scoped(scope, move || shared.run(f, at));
        if let Err(err) = spawned {
            shared.release();
            panic!("ctxkit::Group: cannot start a thread: {err}");
        }
    }
}

impl<E> Clone for Group<E> {
    /// Another handle to the same group: one more reference count.
    fn clone(&self) -> Self {
        Group {
            handle: Arc::clone(&self.handle),
        }
    }
}

impl<E> fmt::Debug for Group<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group").finish_non_exhaustive()
    }
}
