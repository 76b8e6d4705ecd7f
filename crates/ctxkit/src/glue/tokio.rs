//! tokio integration (feature `tokio`): [`Group`], errgroup for tokio tasks, [`spawn`], a
//! task that stops when its context is done, and [`with_tokio_clock`], deadlines measured on
//! tokio's clock.
//!
//! A context is a plain future source, so it also goes straight into `tokio::select!`:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use ctxkit::Context;
//!
//! let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(10));
//! let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(1);
//! let stopped = tokio::select! {
//!     err = ctx.done() => err,           // Go's `case <-ctx.Done():`
//!     Some(job) = rx.recv() => unreachable!("no job {job}"),
//! };
//! assert_eq!(stopped, ctxkit::Error::DeadlineExceeded);
//! # drop(tx);
//! # }
//! ```
//!
//! Nothing here needs a runtime for timers: deadlines fire on ctxkit's own timer thread, on
//! real time. [`spawn`], [`Group::spawn`] and [`Group::try_spawn`] spawn on the current
//! runtime, so they must be called from within one (they panic otherwise, as `tokio::spawn`
//! does).
//!
//! # Paused time: deadlines on tokio's clock
//!
//! ctxkit's deadlines ignore tokio's clock: under `#[tokio::test(start_paused = true)]`,
//! `tokio::time::advance` or auto-advance do not make them fire. A context made by
//! [`with_tokio_clock`] measures its deadlines, and those of every context derived from it,
//! on tokio's clock instead, so paused time drives them as it drives `tokio::time::sleep`:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! use std::time::Duration;
//! use ctxkit::Context;
//!
//! let root = ctxkit::tokio::with_tokio_clock(&Context::background());
//! let (ctx, _cancel) = root.with_timeout(Duration::from_secs(30));
//! let real = std::time::Instant::now();
//! tokio::select! {
//!     err = ctx.done() => assert!(err.is_timeout()), // fires first, on tokio's time
//!     _ = tokio::time::sleep(Duration::from_secs(60)) => unreachable!(),
//! }
//! assert!(real.elapsed() < Duration::from_secs(30)); // no real waiting
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use std::time::Duration;

use ::tokio::sync::{oneshot, Notify};
use ::tokio::task::{AbortHandle, JoinHandle};

use crate::group::{Admission, Outcome, Panic, Shared as Core, Waiter};
use crate::{Context, Error, ManualClock};

/// Spawns `fut` on the current tokio runtime, to run until it finishes or `ctx` is done,
/// whichever comes first. When `ctx` is done first the future is dropped at its next wake-up
/// and the handle yields `Ok(Err(error))`; if `ctx` is done already, `fut` is never polled.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::spawn`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use ctxkit::{Context, Error};
///
/// let (ctx, handle) = Context::background().with_cancel();
/// let task = ctxkit::tokio::spawn(&ctx, std::future::pending::<()>());
/// handle.cancel();
/// assert_eq!(task.await.unwrap(), Err(Error::Canceled));
///
/// let quick = ctxkit::tokio::spawn(&Context::background(), async { 42 });
/// assert_eq!(quick.await.unwrap(), Ok(42));
/// # }
/// ```
pub fn spawn<F>(ctx: &Context, fut: F) -> JoinHandle<Result<F::Output, Error>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let ctx = ctx.clone();
    ::tokio::spawn(async move { ctx.run(fut).await })
}

/// How often, in tokio's time, a tokio clock catches up with tokio's time.
const TOKIO_CLOCK_STEP: Duration = Duration::from_millis(1);

/// A child of `ctx` whose deadlines, and those of every context derived from it, are
/// measured on tokio's clock (`tokio::time::Instant`): paused time
/// (`#[tokio::test(start_paused = true)]`), `tokio::time::advance` and auto-advance move
/// them as they move `tokio::time::sleep`.
///
/// It is a [`ManualClock`] (`ctx.with_clock(..)`, [S25](crate::guarantees#s25)) driven by a
/// tokio task that moves it to tokio's time every millisecond of tokio's time, tokio's own
/// timer resolution; so a deadline fires within that step of its due time on tokio's clock,
/// and `remaining()` reads the clock as of its last step. The task runs as long as the
/// returned context or a context derived from it is alive; once they are all dropped, it
/// stops. Meant for tests: on real time it wakes every millisecond, where ctxkit's own
/// timer wakes only for deadlines.
///
/// `deadline()` is an `Instant` on the clock, which starts at the real time of this call and
/// then follows tokio's time.
///
/// # Panics
///
/// Outside a tokio runtime with its time driver enabled, as `tokio::time::sleep`.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::time::Duration;
/// use ctxkit::{Context, Error};
///
/// let root = ctxkit::tokio::with_tokio_clock(&Context::background());
/// let (ctx, _cancel) = root.with_timeout(Duration::from_millis(300));
/// tokio::time::advance(Duration::from_millis(299)).await;
/// assert_eq!(ctx.err(), None);
/// tokio::time::advance(Duration::from_millis(2)).await;
/// tokio::task::yield_now().await; // let the clock's task take its step
/// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
/// # }
/// ```
pub fn with_tokio_clock(ctx: &Context) -> Context {
    let clock = ManualClock::new();
    // Both origins taken now, not when the task is first polled: tokio's time may move
    // before that.
    let origins = (::tokio::time::Instant::now(), clock.now());
    let driver = ::tokio::spawn(drive_clock(clock.clone(), origins));
    ctx.with_clock(&clock)
        .with(TokioClockDriver(driver.abort_handle()))
}

/// Moves `clock` to tokio's time, one step at a time, until aborted.
async fn drive_clock(clock: ManualClock, origins: (::tokio::time::Instant, std::time::Instant)) {
    let (tokio_start, clock_start) = origins;
    let mut step = ::tokio::time::interval(TOKIO_CLOCK_STEP);
    // After a jump of tokio's time, one step catches up, not one per missed tick.
    step.set_missed_tick_behavior(::tokio::time::MissedTickBehavior::Delay);
    loop {
        step.tick().await;
        let target = clock_start + tokio_start.elapsed();
        let now = clock.now();
        if target > now {
            clock.advance(target - now);
        }
    }
}

/// Held (as a value) by the contexts of [`with_tokio_clock`]: stops the clock's task once
/// the last of them is dropped, which drops the clock.
struct TokioClockDriver(AbortHandle);

impl Drop for TokioClockDriver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the tasks of an async group share.
struct Shared<E> {
    core: Arc<Core<E>>,
    /// Tasks spawned and not finished, whether they hold a slot yet or not.
    tasks: AtomicUsize,
    /// Notified (every waiter) when `tasks` drops to zero.
    idle: Notify,
}

/// Runs futures as tokio tasks and collects the first error, cancelling the group's
/// context when one fails — Go's `errgroup.Group` for tokio.
///
/// The rules are those of [`ctxkit::Group`](crate::Group) (see [`crate::group`]):
/// - any `Debug + Send + 'static` error type; the context returned by [`new`](Group::new) is
///   a child of the parent, cancelled by the first task that returns `Err` (with a cause made
///   from that error) or panics (with a [`Panicked`](crate::Panicked) cause), by
///   [`wait`](Group::wait), and when every handle of the group is dropped;
/// - [`wait`](Group::wait) completes once every task has finished, including tasks spawned
///   while it waits, with the first error (moved), or resumes the first panic;
///   [`wait_errors`](Group::wait_errors) gives every error, in the order they happened;
/// - tasks are not stopped by force: they observe the context (`ctx.done()` in a
///   `tokio::select!`, or [`Context::run`]) and return;
/// - once the context is done, no task that has not started is started: tasks waiting for
///   a slot are dropped without being polled, and `spawn` on a done group spawns nothing.
///
/// `Group` is a cheap handle: clones share one group, and a task can spawn siblings through
/// its clone. [`spawn_value`](Group::spawn_value) gives a task's value back through its
/// `JoinHandle`, with no shared state.
///
/// With a [limit](Group::set_limit), [`spawn`](Group::spawn) does not block the caller: a task
/// over the limit waits, without being polled, until a slot frees (in spawn order).
/// [`spawn_wait`](Group::spawn_wait) waits for the slot before spawning instead, as Go's
/// `g.Go` blocks, and [`try_spawn`](Group::try_spawn) declines.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use ctxkit::Context;
///
/// let (group, ctx) = ctxkit::tokio::Group::new(&Context::background());
/// group.spawn(async { Err(std::io::Error::other("backend down")) });
/// let sibling = ctx.clone();
/// group.spawn(async move {
///     // `?` on the context's error: io::Error has a `From<ctxkit::Error>`.
///     sibling.run(tokio::time::sleep(Duration::from_secs(60))).await?;
///     Ok(())
/// });
/// assert_eq!(group.wait().await.unwrap_err().to_string(), "backend down");
/// assert!(ctx.cause().unwrap().to_string().contains("backend down"));
/// # }
/// ```
pub struct Group<E> {
    handle: Arc<GroupHandle<E>>,
}

/// Shared by the clones of one [`Group`]: cancels the context when the last one drops.
/// Tasks hold the [`Shared`] part only, not this.
struct GroupHandle<E> {
    shared: Arc<Shared<E>>,
}

impl<E> Drop for GroupHandle<E> {
    fn drop(&mut self) {
        self.shared.core.cancel();
    }
}

impl<E: Send + 'static> Group<E> {
    /// A new, empty group, and its context: a child of `parent`.
    ///
    /// The first error cancels the context with a [`TaskError`](crate::TaskError) cause
    /// holding the error's `Debug` text; [`with_cause`](Group::with_cause) chooses another
    /// (the `Display` text, or for a `Clone` error the error itself, typed).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (group, ctx) = ctxkit::tokio::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// assert_eq!(group.wait().await, Ok(()));
    /// assert!(ctx.is_done());
    /// # }
    /// ```
    pub fn new(parent: &Context) -> (Group<E>, Context)
    where
        E: fmt::Debug,
    {
        Group::from_core(Core::new(parent, Core::debug_text()))
    }

    /// As [`new`](Group::new), with the cause of the first error made by `cause`, as
    /// [`ctxkit::Group::with_cause`](crate::Group::with_cause): `|e| e.to_string()` for the
    /// `Display` text, `E::clone` for a typed cause that `downcast_ref::<E>()` finds.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (group, ctx) = ctxkit::tokio::Group::with_cause(&ctxkit::Context::background(), std::fmt::Error::clone);
    /// group.spawn(async { Err(std::fmt::Error) });
    /// assert_eq!(group.wait().await, Err(std::fmt::Error));
    /// assert!(ctx.cause().unwrap().is::<std::fmt::Error>());
    /// # }
    /// ```
    pub fn with_cause<C, F>(parent: &Context, cause: F) -> (Group<E>, Context)
    where
        F: Fn(&E) -> C + Send + Sync + 'static,
        C: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        Group::from_core(Core::new(parent, Core::describe_with(cause)))
    }

    fn from_core(core: Arc<Core<E>>) -> (Group<E>, Context) {
        let ctx = core.ctx().clone();
        let shared = Arc::new(Shared {
            core,
            tasks: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        let handle = Arc::new(GroupHandle { shared });
        (Group { handle }, ctx)
    }

    fn shared(&self) -> &Arc<Shared<E>> {
        &self.handle.shared
    }

    /// The group's context, as returned by [`new`](Group::new).
    ///
    /// ```
    /// let (group, ctx) = ctxkit::tokio::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// assert_eq!(group.context().to_string(), ctx.to_string());
    /// ```
    pub fn context(&self) -> &Context {
        self.shared().core.ctx()
    }

    /// Spawns `fut` as a tokio task on the current runtime. Over the
    /// [limit](Group::set_limit), the task waits for a free slot before `fut` is first
    /// polled, and is dropped unpolled if the group's context is done first. On a done
    /// group, spawns nothing.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (group, _ctx) = ctxkit::tokio::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.set_limit(2);
    /// for _ in 0..10 {
    ///     let sibling = group.clone();
    ///     group.spawn(async move {
    ///         sibling.spawn(async { Ok(()) }); // tasks may spawn tasks
    ///         Ok(())
    ///     }); // never more than 2 running
    /// }
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let at = Location::caller();
        if let Some(ticket) = self.admit() {
            drop(self.start_task(fut, ticket, at));
        }
    }

    /// As [`spawn`](Group::spawn), for a task that returns a value: its `JoinHandle` yields
    /// `Some(value)` when the task returned `Ok(value)`, and `None` when it failed (its
    /// error goes to [`wait`](Group::wait), as for any task), panicked, or never started
    /// because the group was done. The first-error rule is unchanged.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (group, _ctx) = ctxkit::tokio::Group::<std::io::Error>::new(&ctxkit::Context::background());
    /// let handles: Vec<_> = (1..=3u32).map(|i| group.spawn_value(async move { Ok(i * 10) })).collect();
    /// group.wait().await.unwrap();
    /// let mut sum = 0;
    /// for h in handles {
    ///     sum += h.await.unwrap().unwrap();
    /// }
    /// assert_eq!(sum, 60);
    /// # }
    /// ```
    #[track_caller]
    pub fn spawn_value<T, F>(&self, fut: F) -> JoinHandle<Option<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let at = Location::caller();
        match self.admit() {
            Some(ticket) => self.start_task(fut, ticket, at),
            None => {
                drop(fut);
                ::tokio::spawn(async { None })
            }
        }
    }

    /// Waits until the group is under its [limit](Group::set_limit), then spawns `fut`: Go's
    /// blocking `g.Go`, for a producer that must not run ahead of its workers. If the
    /// group's context is done first, completes without spawning.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes spawns nothing and takes no slot.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (group, _ctx) = ctxkit::tokio::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.set_limit(1);
    /// for _ in 0..3 {
    ///     group.spawn_wait(async { Ok(()) }).await; // returns once a slot was free
    /// }
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    #[track_caller]
    pub fn spawn_wait<F>(&self, fut: F) -> impl Future<Output = ()> + Send + '_
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        // Taken here: `#[track_caller]` does not reach into an `async` body.
        let at = Location::caller();
        async move {
            let Some(ticket) = self.admit() else {
                return;
            };
            if let Some(mut ticket) = ticket {
                if !ticket.granted().await {
                    return;
                }
            }
            drop(self.start_task(fut, None, at));
        }
    }

    /// Spawns `fut` if the group is under its [limit](Group::set_limit), no task waits for
    /// a slot, and the context is not done, and returns true; else returns false and drops
    /// `fut` (Go's `g.TryGo`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (group, _ctx) = ctxkit::tokio::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.set_limit(1);
    /// assert!(group.try_spawn(async { Ok(()) }));
    /// assert!(!group.try_spawn(async { Ok(()) })); // the first has not run yet
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    #[track_caller]
    pub fn try_spawn<F>(&self, fut: F) -> bool
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        if !self.shared().core.try_start() {
            return false;
        }
        drop(self.start_task(fut, None, Location::caller()));
        true
    }

    /// A slot for a new task (`Some(None)`), or its place in line (`Some(Some(ticket))`), or
    /// `None` when the group is done.
    #[inline]
    fn admit(&self) -> Option<Option<Ticket<E>>> {
        let core = &self.shared().core;
        if core.try_start() {
            return Some(None);
        }
        let (tx, rx) = oneshot::channel();
        let waiter = move || Box::new(move |granted| tx.send(granted).is_ok()) as Waiter;
        match core.admit(waiter) {
            Admission::Slot => Some(None),
            Admission::Refused => None,
            Admission::Queued => Some(Some(Ticket {
                rx: Some(rx),
                core: Arc::clone(core),
            })),
        }
    }

    /// Spawns the task: it holds a slot when `ticket` is `None`, else it waits for one.
    fn start_task<T, F>(
        &self,
        fut: F,
        ticket: Option<Ticket<E>>,
        spawned_at: &'static Location<'static>,
    ) -> JoinHandle<Option<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        // Counted before it can finish, so `wait` cannot miss it (E1 in `group.rs`). Relaxed:
        // the decrement that ends `wait` is the one that synchronizes.
        self.shared().tasks.fetch_add(1, Ordering::Relaxed);
        let mut guard = TaskGuard {
            shared: Some(Arc::clone(self.shared())),
            has_slot: ticket.is_none(),
            spawned_at,
        };
        ::tokio::spawn(async move {
            if let Some(mut ticket) = ticket {
                if !ticket.granted().await {
                    return None; // the group is done: dropped unpolled (E3)
                }
                guard.has_slot = true;
                if guard.core().ctx().is_done() {
                    guard.end(None); // done since the slot was given: not started (E3)
                    return None;
                }
            }
            let (outcome, value) = match CatchUnwind(pin!(fut)).await {
                Ok(Ok(value)) => (Outcome::Done(Ok(())), Some(value)),
                Ok(Err(e)) => (Outcome::Done(Err(e)), None),
                Err(payload) => (Outcome::Panicked(payload), None),
            };
            guard.end(Some(outcome));
            value
        })
    }

    /// Lets at most `n` tasks run at once (Go's `g.SetLimit`). Tasks already running are
    /// not affected; a higher limit starts waiting tasks at once.
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    ///
    /// ```
    /// let (group, _ctx) = ctxkit::tokio::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.set_limit(8);
    /// ```
    pub fn set_limit(&self, n: usize) {
        self.shared().core.set_limit(n);
    }

    /// Removes the [limit](Group::set_limit).
    ///
    /// ```
    /// let (group, _ctx) = ctxkit::tokio::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.set_limit(1);
    /// group.clear_limit();
    /// ```
    pub fn clear_limit(&self) {
        self.shared().core.clear_limit();
    }

    /// Completes once every task has finished (including tasks spawned while it waits),
    /// cancels the group's context, and returns the first error (Go's `g.Wait`); resumes the
    /// first panic of a task instead, if any. With no task, completes at once.
    ///
    /// The error is moved out: it is returned once, to the first `wait` (or
    /// [`wait_errors`](Group::wait_errors)) that completes after it; any other gets
    /// `Ok(())`. A task must not wait on its own group: it would wait for itself.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future changes nothing; the tasks go on and the group can
    /// be waited on again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (group, _ctx) = ctxkit::tokio::Group::new(&ctxkit::Context::background());
    /// group.spawn(async { Ok(()) });
    /// group.spawn(async { Err(std::fmt::Error) });
    /// assert_eq!(group.wait().await, Err(std::fmt::Error));
    /// # }
    /// ```
    pub async fn wait(&self) -> Result<(), E> {
        self.wait_idle().await;
        self.shared().core.conclude_first()
    }

    /// As [`wait`](Group::wait), but returns every error, in the order the tasks failed
    /// (empty when every task succeeded).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (group, _ctx) = ctxkit::tokio::Group::<String>::new(&ctxkit::Context::background());
    /// for name in ["a", "b"] {
    ///     group.spawn(async move { Err(format!("{name} failed")) });
    /// }
    /// assert_eq!(group.wait_errors().await, ["a failed", "b failed"]);
    /// # }
    /// ```
    pub async fn wait_errors(&self) -> Vec<E> {
        self.wait_idle().await;
        self.shared().core.conclude()
    }

    async fn wait_idle(&self) {
        let shared = self.shared();
        loop {
            let mut idle = pin!(shared.idle.notified());
            // Registered before the check, so the last task's notification is not missed.
            idle.as_mut().enable();
            // Acquire: pairs with the Release decrement of the last task, after which every
            // outcome is recorded.
            if shared.tasks.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
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

/// A task's place in line for a slot. Dropped before its answer is read (the task or the
/// `spawn_wait` future was dropped), it passes a slot it was given on to the next in line.
struct Ticket<E: Send + 'static> {
    rx: Option<oneshot::Receiver<bool>>,
    core: Arc<Core<E>>,
}

impl<E: Send + 'static> Ticket<E> {
    /// Whether the slot was given (true) or the group is done (false).
    async fn granted(&mut self) -> bool {
        let rx = self.rx.as_mut().expect("asked once");
        let granted = rx.await.unwrap_or(false);
        self.rx = None;
        granted
    }
}

impl<E: Send + 'static> Drop for Ticket<E> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            // Closed first: no slot can be given after the look below.
            rx.close();
            if rx.try_recv() == Ok(true) {
                self.core.release();
            }
        }
    }
}

/// Uncounts a task when it finishes, or when tokio drops it unfinished (runtime shutdown).
struct TaskGuard<E: Send + 'static> {
    shared: Option<Arc<Shared<E>>>,
    has_slot: bool,
    /// The `spawn` that started the task: the group's origin if it fails first.
    spawned_at: &'static Location<'static>,
}

impl<E: Send + 'static> TaskGuard<E> {
    fn core(&self) -> &Core<E> {
        &self.shared.as_ref().expect("set until finished").core
    }

    /// Records the outcome of a task that ran (or releases the slot of one that did not),
    /// then uncounts it.
    fn end(&mut self, outcome: Option<Outcome<E>>) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        if self.has_slot {
            match outcome {
                Some(outcome) => shared.core.finish(outcome, self.spawned_at),
                None => shared.core.release(),
            }
        }
        // Release: publishes the recorded outcome to `wait`'s Acquire load.
        if shared.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.idle.notify_waiters();
        }
    }
}

impl<E: Send + 'static> Drop for TaskGuard<E> {
    fn drop(&mut self) {
        self.end(Some(Outcome::Done(Ok(()))));
    }
}

/// Polls a future, turning a panic into an output.
struct CatchUnwind<'a, F>(Pin<&'a mut F>);

impl<F: Future> Future for CatchUnwind<'_, F> {
    type Output = Result<F::Output, Panic>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

impl<E> fmt::Debug for Group<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("tasks", &self.handle.shared.tasks.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
