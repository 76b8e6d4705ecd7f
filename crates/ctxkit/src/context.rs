//! The [`Context`] handle: how contexts are made, observed, waited on and displayed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::callback::{fire_all_resuming, AfterFunc, Reg};
use crate::done::Done;
use crate::error::{BoxError, Cause};
use crate::handle::CancelHandle;
use crate::node::{Callbacks, Kind, Node};
use crate::timer::{self, ManualClock, Nanos, TimerQueue, NO_DEADLINE};
use crate::values::{self, Key, KeyId, Label, Layer};
use crate::Error;

/// The key under which [`Context::with_clock`] stores its clock's timer queue, as an
/// ordinary value.
static CLOCK: Key<Arc<TimerQueue>> = Key::new("clock");

/// Carries cancellation, a deadline and request-scoped values across API boundaries and
/// between threads and tasks — Go's `context.Context`.
///
/// A context is immutable: deriving (`with_cancel`, `with_timeout`, `with_value`, …) makes a
/// new child and leaves the parent as it was. Cancelling a context cancels every context
/// derived from it. Cloning is cheap (reference counts) and clones are the same context.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, Error, Key};
///
/// static USER: Key<&str> = Key::new("user");
///
/// let root = Context::background().with_value(&USER, "gopher");
/// let (ctx, handle) = root.with_timeout(Duration::from_secs(5));
/// let worker = {
///     let ctx = ctx.clone();
///     std::thread::spawn(move || {
///         assert_eq!(ctx.value(&USER), Some(&"gopher"));
///         ctx.wait() // blocks until cancelled or the deadline passes
///     })
/// };
/// handle.cancel();
/// assert_eq!(worker.join().unwrap(), Error::Canceled);
/// ```
#[derive(Clone, Default)]
pub struct Context {
    /// The nearest node: decides err, cause, deadline, waiting. `None`: never done.
    node: Option<Arc<Node>>,
    /// The nearest value layer: decides value lookups. `None`: no values.
    layer: Option<Arc<Layer>>,
}

// Two thin pointers: 16 B on 64-bit targets. A program that holds many children of one parent
// holds a `Context` for each, so every word here is paid once per child (the wide fan-out's
// bytes per child).
const _: () = assert!(std::mem::size_of::<Context>() == 2 * std::mem::size_of::<usize>());

// ---------------------------------------------------------------------------------------
// Roots
// ---------------------------------------------------------------------------------------

impl Context {
    /// The root of every context tree: never done, no deadline, no values (Go's
    /// `context.Background()`). Does not allocate.
    ///
    /// ```
    /// let ctx = ctxkit::Context::background();
    /// assert_eq!(ctx.err(), None);
    /// assert_eq!(ctx.to_string(), "context.Background");
    /// ```
    pub fn background() -> Context {
        Context {
            node: None,
            layer: None,
        }
    }

    /// Like [`background`](Context::background), for code that does not yet know which
    /// context to use (Go's `context.TODO()`). Does not allocate (after the first call in a
    /// process).
    ///
    /// ```
    /// let ctx = ctxkit::Context::todo();
    /// assert!(!ctx.is_done());
    /// assert_eq!(ctx.to_string(), "context.TODO");
    /// ```
    pub fn todo() -> Context {
        static TODO: OnceLock<Arc<Node>> = OnceLock::new();
        let node = TODO.get_or_init(|| Node::never_done(Kind::Todo, Context::background()));
        Context {
            node: Some(Arc::clone(node)),
            layer: None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Deriving children
// ---------------------------------------------------------------------------------------

impl Context {
    fn with_node(&self, node: Arc<Node>) -> (Context, CancelHandle) {
        let ctx = Context {
            node: Some(Arc::clone(&node)),
            layer: self.layer.clone(),
        };
        (ctx, CancelHandle::new(node))
    }

    /// A child that is cancelled when the returned handle cancels or when this context is
    /// done, whichever comes first (Go's `WithCancel`, API S4).
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    /// let (ctx, handle) = Context::background().with_cancel();
    /// handle.cancel();
    /// assert_eq!(ctx.err(), Some(Error::Canceled));
    /// assert_eq!(ctx.to_string(), "context.Background.WithCancel");
    /// ```
    pub fn with_cancel(&self) -> (Context, CancelHandle) {
        let node = Node::child(Kind::Cancel, self.deadline_nanos(), self, None, None);
        self.with_node(node)
    }

    /// A child that is also cancelled, with [`Error::DeadlineExceeded`], when `deadline`
    /// passes (Go's `WithDeadline`, API S10–S14). A deadline later than this context's gives
    /// a plain cancellable child; a deadline already past gives a child that is done.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ctxkit::{Context, Error};
    /// let (ctx, _handle) = Context::background().with_deadline(Instant::now() - Duration::from_secs(1));
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// ```
    pub fn with_deadline(&self, deadline: Instant) -> (Context, CancelHandle) {
        self.deadline_child(timer::to_nanos(deadline), None, None)
    }

    /// A child cancelled after `timeout`, measured on this context's clock (Go's
    /// `WithTimeout`). `Duration::MAX` and other timeouts past the end of time mean no
    /// deadline (API S13).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, Error};
    /// let (ctx, _handle) = Context::background().with_timeout(Duration::from_millis(10));
    /// assert_eq!(ctx.wait(), Error::DeadlineExceeded);
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> (Context, CancelHandle) {
        let now = self.now_nanos();
        self.deadline_child(timer::add_duration(now, timeout), None, Some(now))
    }

    /// [`with_deadline`](Context::with_deadline), with `cause` as the
    /// [`cause`](Context::cause) when the deadline passes (Go's `WithDeadlineCause`).
    ///
    /// ```
    /// use std::time::Instant;
    /// use ctxkit::{Context, Error};
    /// let (ctx, _h) = Context::background().with_deadline_cause(Instant::now(), "too slow");
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "too slow");
    /// ```
    pub fn with_deadline_cause(
        &self,
        deadline: Instant,
        cause: impl Into<BoxError>,
    ) -> (Context, CancelHandle) {
        let cause = Cause::custom(cause.into());
        self.deadline_child(timer::to_nanos(deadline), Some(cause), None)
    }

    /// [`with_timeout`](Context::with_timeout), with `cause` as the cause when the deadline
    /// passes (Go's `WithTimeoutCause`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (ctx, _h) = ctxkit::Context::background()
    ///     .with_timeout_cause(Duration::from_millis(1), "lookup took too long");
    /// ctx.wait();
    /// assert_eq!(ctx.cause().unwrap().to_string(), "lookup took too long");
    /// ```
    pub fn with_timeout_cause(
        &self,
        timeout: Duration,
        cause: impl Into<BoxError>,
    ) -> (Context, CancelHandle) {
        let now = self.now_nanos();
        let at = timer::add_duration(now, timeout);
        self.deadline_child(at, Some(Cause::custom(cause.into())), Some(now))
    }

    /// A child with its own deadline `at`. `now` is the clock reading `at` was computed from,
    /// if any: reading the clock again would cost as much as the rest of the call.
    fn deadline_child(
        &self,
        at: Nanos,
        cause: Option<Cause>,
        now: Option<Nanos>,
    ) -> (Context, CancelHandle) {
        let inherited = self.deadline_nanos();
        if at == NO_DEADLINE || inherited < at {
            return self.with_cancel(); // API S12, S13
        }
        let node = Node::child(Kind::Deadline, at, self, None, cause);
        if !node.is_done() {
            let queue = self.timer_queue();
            if at <= now.unwrap_or_else(|| queue.now()) || !queue.insert(at, &node) {
                node.expire(Callbacks::Inline); // API S13
            }
        }
        self.with_node(node)
    }

    /// A child carrying `value` under `key` (Go's `WithValue`). Use values for request-scoped
    /// data that crosses API boundaries, not to pass optional parameters.
    ///
    /// ```
    /// use ctxkit::{Context, Key};
    /// static TRACE_ID: Key<String> = Key::new("trace_id");
    /// let ctx = Context::background().with_value(&TRACE_ID, "4bf92f35".to_string());
    /// assert_eq!(ctx.value(&TRACE_ID).map(String::as_str), Some("4bf92f35"));
    /// ```
    pub fn with_value<T: Send + Sync + 'static>(&self, key: &'static Key<T>, value: T) -> Context {
        let label = Label::Value(key.name());
        self.with_layer(values::with_value(self, KeyId::of_key(key), label, value))
    }

    /// A child carrying `value`, keyed by its type `T`; read it with [`get`](Context::get).
    ///
    /// ```
    /// #[derive(Debug, PartialEq)]
    /// struct Tenant(u32);
    /// let ctx = ctxkit::Context::background().with(Tenant(7));
    /// assert_eq!(ctx.get::<Tenant>(), Some(&Tenant(7)));
    /// ```
    pub fn with<T: Send + Sync + 'static>(&self, value: T) -> Context {
        let label = Label::Value(std::any::type_name::<T>());
        self.with_layer(values::with_value(
            self,
            KeyId::of_type::<T>(),
            label,
            value,
        ))
    }

    fn with_layer(&self, layer: Arc<Layer>) -> Context {
        Context {
            node: self.node.clone(),
            layer: Some(layer),
        }
    }

    /// A child with this context's values (and clock) that is never done and has no
    /// deadline: cancelling this context does not reach it (Go's `WithoutCancel`, API S16).
    ///
    /// ```
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// let detached = ctx.without_cancel();
    /// handle.cancel();
    /// assert!(!detached.is_done());
    /// ```
    pub fn without_cancel(&self) -> Context {
        Context {
            node: Some(Node::never_done(Kind::WithoutCancel, self.clone())),
            layer: self.layer.clone(),
        }
    }

    /// A context done as soon as `self` or `other` is done (or its handle cancels), taking
    /// the err and cause of whichever finished first. Its deadline is the earlier of the two;
    /// values are looked up in `self`, then `other`; time is measured on `self`'s clock (API
    /// S24).
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    /// let (request, _r) = Context::background().with_cancel();
    /// let (server, shutdown) = Context::background().with_cancel();
    /// let (ctx, _h) = request.merge(&server);
    /// shutdown.cancel();
    /// assert_eq!(ctx.err(), Some(Error::Canceled));
    /// ```
    pub fn merge(&self, other: &Context) -> (Context, CancelHandle) {
        let deadline = self.deadline_nanos().min(other.deadline_nanos());
        let node = Node::child(Kind::Merge, deadline, self, Some(other), None);
        let ctx = Context {
            node: Some(Arc::clone(&node)),
            layer: values::merge(self, other, KeyId::of_key(&CLOCK)),
        };
        (ctx, CancelHandle::new(node))
    }

    /// A child whose deadlines, and those of every context derived from it, are measured on
    /// `clock` (API S25). For tests: see [`ManualClock`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = ctxkit::ManualClock::new();
    /// let (ctx, _h) = ctxkit::Context::background().with_clock(&clock).with_timeout(Duration::from_secs(1));
    /// clock.advance(Duration::from_secs(1));
    /// assert!(ctx.is_done());
    /// ```
    pub fn with_clock(&self, clock: &ManualClock) -> Context {
        self.with_timer_queue(Arc::clone(clock.queue()))
    }

    /// A child whose deadlines go to `queue` (a manual clock's, or a model's).
    pub(crate) fn with_timer_queue(&self, queue: Arc<TimerQueue>) -> Context {
        let key = KeyId::of_key(&CLOCK);
        self.with_layer(values::with_value(self, key, Label::Clock, queue))
    }
}

// ---------------------------------------------------------------------------------------
// Observing
// ---------------------------------------------------------------------------------------

impl Context {
    /// `None` while the context is not done; then why it is done, forever (Go's `Err`, API
    /// S3). One atomic load.
    ///
    /// ```
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// assert_eq!(ctx.err(), None);
    /// handle.cancel();
    /// assert_eq!(ctx.err(), Some(ctxkit::Error::Canceled));
    /// ```
    #[inline]
    pub fn err(&self) -> Option<Error> {
        self.node.as_ref().and_then(|n| n.err())
    }

    /// The first cause that reached this context, once it is done (Go's `context.Cause`, API
    /// S7–S9).
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    /// let (ctx, handle) = Context::background().with_cancel();
    /// assert!(ctx.cause().is_none());
    /// handle.cancel();
    /// assert!(ctx.cause().unwrap().is::<Error>());
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        self.node.as_ref().and_then(|n| n.cause())
    }

    /// Whether the context is done: `err().is_some()`. One atomic load.
    ///
    /// ```
    /// assert!(!ctxkit::Context::background().is_done());
    /// ```
    #[inline]
    pub fn is_done(&self) -> bool {
        self.node.as_ref().is_some_and(|n| n.is_done())
    }

    /// The earliest deadline of this context and its ancestors (API S10).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let at = Instant::now() + Duration::from_secs(60);
    /// let (ctx, _h) = ctxkit::Context::background().with_deadline(at);
    /// assert_eq!(ctx.deadline(), Some(at));
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        match self.deadline_nanos() {
            NO_DEADLINE => None,
            at => Some(timer::from_nanos(at)),
        }
    }

    /// The time left until [`deadline`](Context::deadline) on this context's clock, zero once
    /// it has passed; `None` without a deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (ctx, _h) = ctxkit::Context::background().with_timeout(Duration::from_secs(60));
    /// assert!(ctx.remaining().unwrap() <= Duration::from_secs(60));
    /// ```
    pub fn remaining(&self) -> Option<Duration> {
        match self.deadline_nanos() {
            NO_DEADLINE => None,
            at => Some(timer::remaining(at, self.now_nanos())),
        }
    }

    /// The current time on this context's clock: a [`ManualClock`]'s reading under
    /// [`with_clock`](Context::with_clock), else `Instant::now()`.
    ///
    /// ```
    /// let clock = ctxkit::ManualClock::new();
    /// assert_eq!(ctxkit::Context::background().with_clock(&clock).now(), clock.now());
    /// ```
    pub fn now(&self) -> Instant {
        timer::from_nanos(self.now_nanos())
    }

    /// The value set for `key` by the nearest [`with_value`](Context::with_value) above this
    /// context (Go's `Value`, API S15). Cost does not grow with the depth of the chain.
    ///
    /// ```
    /// use ctxkit::{Context, Key};
    /// static LANG: Key<&str> = Key::new("lang");
    /// let ctx = Context::background().with_value(&LANG, "en").with_value(&LANG, "fr");
    /// assert_eq!(ctx.value(&LANG), Some(&"fr"));
    /// ```
    pub fn value<T: Send + Sync + 'static>(&self, key: &'static Key<T>) -> Option<&T> {
        self.find(KeyId::of_key(key))
    }

    /// The value set by the nearest [`with::<T>`](Context::with) above this context.
    ///
    /// ```
    /// let ctx = ctxkit::Context::background().with(3u8);
    /// assert_eq!(ctx.get::<u8>(), Some(&3));
    /// assert_eq!(ctx.get::<u16>(), None);
    /// ```
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.find(KeyId::of_type::<T>())
    }

    fn find<T: 'static>(&self, key: KeyId) -> Option<&T> {
        self.layer.as_deref()?.find(key)?.downcast_ref()
    }
}

// ---------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------

impl Context {
    /// A future that completes with the [`Error`] once this context is done (Go's
    /// `<-ctx.Done()`), on any executor, without a runtime (API S17).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// let (ctx, _h) = ctxkit::Context::background().with_timeout(Duration::from_millis(5));
    /// tokio::select! {
    ///     err = ctx.done() => println!("stopped: {err}"),
    ///     _ = tokio::time::sleep(Duration::from_secs(10)) => unreachable!(),
    /// }
    /// # }
    /// ```
    pub fn done(&self) -> Done {
        Done::new(self.node.clone())
    }

    /// Blocks the calling thread until the context is done, and returns why. Blocks forever
    /// on a context that can never be done.
    ///
    /// ```
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// std::thread::spawn(move || handle.cancel());
    /// assert_eq!(ctx.wait(), ctxkit::Error::Canceled);
    /// ```
    pub fn wait(&self) -> Error {
        self.done().wait()
    }

    /// Blocks until the context is done or `timeout` passes; `None` if the time ran out
    /// first. The timeout is real time, whatever the context's clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ctx = ctxkit::Context::background();
    /// assert_eq!(ctx.wait_timeout(Duration::from_millis(1)), None);
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Error> {
        self.done().wait_timeout(timeout)
    }

    /// Runs `fut` until it finishes (`Ok`) or this context is done (`Err`, and `fut` is
    /// dropped) (API S18). If the context is done already, `fut` is not polled.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use std::time::Duration;
    /// let (ctx, _h) = ctxkit::Context::background().with_timeout(Duration::from_millis(5));
    /// let slow = std::future::pending::<()>();
    /// assert_eq!(ctx.run(slow).await, Err(ctxkit::Error::DeadlineExceeded));
    /// assert_eq!(ctx.run(async { 7 }).await, Err(ctxkit::Error::DeadlineExceeded));
    /// # });
    /// ```
    pub async fn run<F: Future>(&self, fut: F) -> Result<F::Output, Error> {
        let mut done = self.done();
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(err) = Pin::new(&mut done).poll(cx) {
                return Poll::Ready(Err(err));
            }
            fut.as_mut().poll(cx).map(Ok)
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------

impl Context {
    /// Runs `f` once, on another thread, after this context is done (Go's
    /// `context.AfterFunc`, API S19). If the context is done already, `f` starts at once.
    /// The registration outlives the returned value and the context's clones, for as long as
    /// something can still make the context done; after that `f` is dropped unrun.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// let (tx, rx) = mpsc::channel();
    /// let _registration = ctx.after_func(move || tx.send("cleaned up").unwrap());
    /// handle.cancel();
    /// assert_eq!(rx.recv().unwrap(), "cleaned up");
    /// ```
    pub fn after_func(&self, f: impl FnOnce() + Send + 'static) -> AfterFunc {
        self.register(Reg::new(Box::new(f), false))
    }

    /// Runs `f` once, synchronously, on the thread that cancels this context, before its
    /// `cancel()` returns — or at once, on this thread, if it is done already (API S20). When
    /// `f` runs the context already reports done; no lock is held, so `f` may use any
    /// context. If `f` panics, the other callbacks still run and the panic resumes in the
    /// thread that cancelled once they have.
    ///
    /// When a deadline passes on the real clock, nobody calls `cancel()`: `f` then runs on a
    /// thread of the callback pool, so that the timer thread stays free to fire other
    /// deadlines (even one that `f` waits for). Under a [`ManualClock`], `f` runs inside
    /// [`advance`](ManualClock::advance), before it returns.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// let ran = Arc::new(AtomicBool::new(false));
    /// let flag = ran.clone();
    /// let _registration = ctx.on_cancel(move || flag.store(true, Ordering::SeqCst));
    /// handle.cancel();
    /// assert!(ran.load(Ordering::SeqCst)); // already ran
    /// ```
    pub fn on_cancel(&self, f: impl FnOnce() + Send + 'static) -> AfterFunc {
        self.register(Reg::new(Box::new(f), true))
    }

    fn register(&self, reg: Arc<Reg>) -> AfterFunc {
        if let Some(node) = self.cancel_node() {
            if let Err(reg) = node.register(Arc::clone(&reg)) {
                fire_all_resuming(vec![reg]);
            }
        }
        AfterFunc::new(reg)
    }
}

// ---------------------------------------------------------------------------------------
// Crate-internal plumbing
// ---------------------------------------------------------------------------------------

impl Context {
    pub(crate) fn from_layer(layer: Arc<Layer>) -> Context {
        Context {
            node: None,
            layer: Some(layer),
        }
    }

    pub(crate) fn is_root(&self) -> bool {
        self.node.is_none() && self.layer.is_none()
    }

    pub(crate) fn layer(&self) -> Option<&Arc<Layer>> {
        self.layer.as_ref()
    }

    /// The node through which this context can be done, if any.
    pub(crate) fn cancel_node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref().filter(|n| n.can_be_done())
    }

    /// The timer queue of this context's clock: its manual clock's, else the real-time one.
    pub(crate) fn timer_queue(&self) -> &Arc<TimerQueue> {
        match self.find(KeyId::of_key(&CLOCK)) {
            Some(queue) => queue,
            None => TimerQueue::real(),
        }
    }

    fn now_nanos(&self) -> Nanos {
        self.timer_queue().now()
    }

    fn deadline_nanos(&self) -> Nanos {
        self.node.as_ref().map_or(NO_DEADLINE, |n| n.deadline())
    }
}

// ---------------------------------------------------------------------------------------
// Display: the chain that built the context, as Go's String() prints it (API S2)
// ---------------------------------------------------------------------------------------

/// One link of a context's chain.
enum Link<'a> {
    Background,
    Node(&'a Node),
    Layer(&'a Layer),
}

impl Context {
    /// The last derivation that made this context, and the context it was derived from.
    fn last_link(&self) -> (Link<'_>, Option<&Context>) {
        fn node_link(n: &Arc<Node>) -> (Link<'_>, Option<&Context>) {
            match n.kind() {
                Kind::Todo => (Link::Node(n), None),
                _ => (Link::Node(n), Some(n.parent())),
            }
        }
        match (&self.node, &self.layer) {
            (None, None) => (Link::Background, None),
            (None, Some(layer)) => (Link::Layer(layer), layer.display_parent()),
            (Some(node), None) => node_link(node),
            (Some(node), Some(layer)) => match layer.display_parent() {
                // A layer made on top of this node is newer than it.
                Some(parent) if parent.node.as_ref().is_some_and(|p| Arc::ptr_eq(p, node)) => {
                    (Link::Layer(layer), Some(parent))
                }
                _ => node_link(node),
            },
        }
    }
}

/// Display's work list: what is left to print, so that neither a long chain nor merges nested
/// in merges recurse (API S23).
enum Piece {
    /// The whole chain that built this context.
    Chain(Context),
    /// Only the last link of this context.
    Link(Context),
    Text(&'static str),
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut work = vec![Piece::Chain(self.clone())];
        while let Some(piece) = work.pop() {
            match piece {
                Piece::Text(text) => f.write_str(text)?,
                Piece::Chain(ctx) => {
                    // Pushed tip first, so the root is printed first.
                    let mut at = Some(ctx);
                    while let Some(ctx) = at {
                        at = ctx.last_link().1.cloned();
                        work.push(Piece::Link(ctx));
                    }
                }
                Piece::Link(ctx) => match ctx.last_link().0 {
                    Link::Background => f.write_str("context.Background")?,
                    Link::Layer(layer) => layer.fmt_link(f)?,
                    Link::Node(node) => match node.kind() {
                        Kind::Todo => f.write_str("context.TODO")?,
                        Kind::Cancel => f.write_str(".WithCancel")?,
                        Kind::WithoutCancel => f.write_str(".WithoutCancel")?,
                        Kind::Deadline => {
                            let left = timer::remaining(node.deadline(), ctx.now_nanos());
                            write!(f, ".WithDeadline([{left:?}])")?
                        }
                        Kind::Merge => {
                            let other = node.merged_with().expect("a merge has two parents");
                            f.write_str(".Merge(")?;
                            work.push(Piece::Text(")"));
                            work.push(Piece::Chain(other));
                        }
                    },
                },
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("err", &self.err())
            .field("deadline", &self.deadline())
            .finish_non_exhaustive()
    }
}
