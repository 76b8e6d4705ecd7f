//! tokio integration (feature `tokio`): [`Group`], errgroup for tokio tasks, and [`spawn`], a
//! task that stops when its context is done.
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
//! Nothing here needs a runtime for timers: deadlines fire on ctxkit's own timer thread.
//! [`spawn`], [`Group::spawn`] and [`Group::try_spawn`] spawn on the current runtime, so they
//! must be called from within one (they panic otherwise, as `tokio::spawn` does).

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use ::tokio::sync::Notify;
use ::tokio::task::JoinHandle;

use crate::group::{Outcome, Panic, Shared as Core};
use crate::{Context, Error};

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

/// What the tasks of an async group share.
struct Shared<E> {
    core: Core<E>,
    /// Tasks spawned and not finished, whether they hold a slot yet or not.
    tasks: AtomicUsize,
    /// Notified (one waiter per freed slot) when a slot frees up.
    slot_freed: Notify,
    /// Notified (every waiter) when `tasks` drops to zero.
    idle: Notify,
}

/// Runs futures as tokio tasks and collects the first error, cancelling the group's
/// context when one fails — Go's `errgroup.Group` for tokio.
///
/// The rules are those of [`ctxkit::Group`](crate::Group):
/// - the context returned by [`new`](Group::new) is a child of the parent, cancelled by the
///   first task that returns `Err` (with that error as its [`cause`](Context::cause)) or
///   panics (with a [`Panicked`](crate::Panicked) cause), and by [`wait`](Group::wait);
/// - [`wait`](Group::wait) completes once every task has finished, with the first error, or
///   resumes the first panic;
/// - tasks are not stopped by force: they observe the context (`ctx.done()` in a
///   `tokio::select!`, or [`Context::run`]) and return;
/// - dropping the group (or the `wait` future) before it completes cancels the context; the
///   tasks finish on their own and their errors are not seen.
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
/// group.spawn(async { Err(std::fmt::Error) });
/// let sibling = ctx.clone();
/// group.spawn(async move {
///     tokio::select! {
///         _ = sibling.done() => Ok(()), // a sibling failed: give up
///         _ = tokio::time::sleep(Duration::from_secs(60)) => Ok(()),
///     }
/// });
/// assert_eq!(group.wait().await, Err(std::fmt::Error));
/// assert!(ctx.cause().unwrap().is::<std::fmt::Error>());
/// # }
/// ```
pub struct Group<E> {
    shared: Arc<Shared<E>>,
}

impl<E> Group<E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    /// A new, empty group, and its context: a child of `parent`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (group, ctx) = ctxkit::tokio::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// assert_eq!(group.wait().await, Ok(()));
    /// assert!(ctx.is_done());
    /// # }
    /// ```
    pub fn new(parent: &Context) -> (Group<E>, Context) {
        let shared = Arc::new(Shared {
            core: Core::new(parent),
            tasks: AtomicUsize::new(0),
            slot_freed: Notify::new(),
            idle: Notify::new(),
        });
        let ctx = shared.core.ctx().clone();
        (Group { shared }, ctx)
    }

    /// The group's context, as returned by [`new`](Group::new).
    ///
    /// ```
    /// let (group, ctx) = ctxkit::tokio::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// assert_eq!(group.context().to_string(), ctx.to_string());
    /// ```
    pub fn context(&self) -> &Context {
        self.shared.core.ctx()
    }

    /// Spawns `fut` as a tokio task on the current runtime. Over the
    /// [limit](Group::set_limit), the task waits for a free slot before `fut` is first
    /// polled.
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
    ///     group.spawn(async { Ok(()) }); // never more than 2 running
    /// }
    /// group.wait().await.unwrap();
    /// # }
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let has_slot = self.shared.core.try_start();
        self.start_task(fut, has_slot);
    }

    /// Waits until the group is under its [limit](Group::set_limit), then spawns `fut`: Go's
    /// blocking `g.Go`, for a producer that must not run ahead of its workers.
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
        let at = std::panic::Location::caller();
        async move {
            acquire_slot(&self.shared).await;
            self.start_task_at(fut, true, at);
        }
    }

    /// Spawns `fut` if the group is under its [limit](Group::set_limit) and returns true;
    /// else returns false and drops `fut` (Go's `g.TryGo`).
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
        if !self.shared.core.try_start() {
            return false;
        }
        self.start_task(fut, true);
        true
    }

    #[track_caller]
    fn start_task<F>(&self, fut: F, has_slot: bool)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.start_task_at(fut, has_slot, std::panic::Location::caller());
    }

    fn start_task_at<F>(
        &self,
        fut: F,
        has_slot: bool,
        spawned_at: &'static std::panic::Location<'static>,
    ) where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        // Counted before it can finish, so `wait` cannot miss it (E1 in `group.rs`). Relaxed:
        // the decrement that ends `wait` is the one that synchronizes.
        self.shared.tasks.fetch_add(1, Ordering::Relaxed);
        let mut guard = TaskGuard {
            shared: Some(Arc::clone(&self.shared)),
            has_slot,
            spawned_at,
        };
        ::tokio::spawn(async move {
            if !guard.has_slot {
                acquire_slot(guard.shared.as_ref().expect("set until finished")).await;
                guard.has_slot = true;
            }
            let outcome = match CatchUnwind(Box::pin(fut)).await {
                Ok(result) => Outcome::Done(result),
                Err(payload) => Outcome::Panicked(payload),
            };
            guard.finish(outcome);
        });
    }

    /// Lets at most `n` tasks run at once (Go's `g.SetLimit`). Tasks already running are
    /// not affected.
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
        self.shared.core.set_limit(n);
        // A higher limit may free slots: every waiter looks again.
        self.shared.slot_freed.notify_waiters();
    }

    /// Removes the [limit](Group::set_limit).
    ///
    /// ```
    /// let (group, _ctx) = ctxkit::tokio::Group::<std::fmt::Error>::new(&ctxkit::Context::background());
    /// group.set_limit(1);
    /// group.clear_limit();
    /// ```
    pub fn clear_limit(&self) {
        self.shared.core.clear_limit();
        self.shared.slot_freed.notify_waiters();
    }

    /// Completes once every task has finished (including tasks they spawned in the
    /// meantime), cancels the group's context, and returns the first error (Go's `g.Wait`);
    /// resumes the first panic of a task instead, if any. With no task, completes at once.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future drops the group, which cancels its context and
    /// loses the tasks' errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (group, _ctx) = ctxkit::tokio::Group::new(&ctxkit::Context::background());
    /// group.spawn(async { Ok(()) });
    /// group.spawn(async { Err(std::fmt::Error) });
    /// assert_eq!(group.wait().await, Err(std::fmt::Error));
    /// # }
    /// ```
    pub async fn wait(self) -> Result<(), E> {
        loop {
            let mut idle = pin!(self.shared.idle.notified());
            // Registered before the check, so the last task's notification is not missed.
            idle.as_mut().enable();
            // Acquire: pairs with the Release decrement of the last task, after which every
            // outcome is recorded.
            if self.shared.tasks.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
        self.shared.core.conclude()
    }
}

/// Takes a slot, waiting for one to free up.
async fn acquire_slot<E>(shared: &Shared<E>)
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    loop {
        let mut freed = pin!(shared.slot_freed.notified());
        // Registered before the check: a slot freed in between wakes this waiter.
        freed.as_mut().enable();
        if shared.core.try_start() {
            return;
        }
        freed.await;
    }
}

/// Uncounts a task when it finishes, or when tokio drops it unfinished (runtime shutdown).
struct TaskGuard<E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    shared: Option<Arc<Shared<E>>>,
    has_slot: bool,
    /// The `spawn` that started the task: the group's origin if it fails first.
    spawned_at: &'static std::panic::Location<'static>,
}

impl<E> TaskGuard<E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    fn finish(&mut self, outcome: Outcome<E>) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        if self.has_slot {
            shared.core.finish(outcome, self.spawned_at);
            shared.slot_freed.notify_one();
        }
        // Release: publishes the recorded outcome to `wait`'s Acquire load.
        if shared.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.idle.notify_waiters();
        }
    }
}

impl<E> Drop for TaskGuard<E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    fn drop(&mut self) {
        self.finish(Outcome::Done(Ok(())));
    }
}

/// Polls a future, turning a panic into an output.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
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

impl<E> Drop for Group<E> {
    fn drop(&mut self) {
        self.shared.core.cancel();
    }
}

impl<E> fmt::Debug for Group<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("tasks", &self.shared.tasks.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
