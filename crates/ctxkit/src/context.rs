//! The [`Context`] handle: how contexts are made, observed, waited on and displayed.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::callback::{fire_all_resuming, AfterFunc, Callbacks, Flavor, Reg};
use crate::done::Done;
use crate::error::{BoxError, Cause};
use crate::handle::CancelHandle;
use crate::key::{Key, KeyId};
use crate::manual_clock::ManualClock;
use crate::origin::Origin;
use crate::time::{self, Nanos, NO_DEADLINE};
use crate::timer::Timed;
use crate::tree::{self, Birth, Kind, Label, Node, Pair};
use crate::Error;

/// Carries cancellation, a deadline and request-scoped values across API boundaries and
/// between threads and tasks — Go's `context.Context`.
///
/// A context is immutable: deriving (`with_cancel`, `with_timeout`, `with_value`, …) makes a
/// new child and leaves the parent as it was. Cancelling a context cancels every context
/// derived from it. Cloning is cheap and clones are the same context: a context is two
/// words, and a clone adds a reference count to each of its cancellation node and its own
/// values, where it has them. A context made by `with_cancel`, `with_timeout` or
/// `without_cancel` has no values of its own (it reads its parent's), so its clone adds one.
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
    /// The nearest node (err, cause, deadline, waiting; `None`: never done) and the nearest
    /// value layer (`None`: no values).
    pair: Pair,
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
            pair: Pair::default(),
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
        let node = TODO.get_or_init(|| {
            Node::never_done(
                Kind::Todo,
                Pair::default(),
                Birth {
                    site: None,
                    born: time::coarse_now(),
                },
            )
        });
        Context::from_node(Arc::clone(node), None)
    }
}

// ---------------------------------------------------------------------------------------
// Deriving children
// ---------------------------------------------------------------------------------------

impl Context {
    fn from_node(node: Arc<Node>, layer: Option<Arc<tree::Layer>>) -> Context {
        Context {
            pair: Pair {
                node: Some(node),
                layer,
            },
        }
    }

    /// The context of a new node, with its parent's values, and its handle. The node's
    /// parent holds the values, so the context does not (N12).
    ///
    /// Inlined into the caller with the public function that calls it: the node comes back
    /// from the derivation in a register and the pair is built where it is used. Returned
    /// from a function, the pair (three words) would go through memory, written a word at a
    /// time and read back at once by the caller, a load that cannot be served from the
    /// pending stores and waits for them (BENCHMARKS.md, "A new context handed back in
    /// registers").
    #[inline(always)]
    fn with_node(node: Arc<Node>) -> (Context, CancelHandle) {
        let ctx = Context::from_node(Arc::clone(&node), None);
        (ctx, CancelHandle::new(node))
    }

    /// A child that is cancelled when the returned handle cancels or when this context is
    /// done, whichever comes first (Go's `WithCancel`, [S4](crate::guarantees#s4)).
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    /// let (ctx, handle) = Context::background().with_cancel();
    /// handle.cancel();
    /// assert_eq!(ctx.err(), Some(Error::Canceled));
    /// assert_eq!(ctx.to_string(), "context.Background.WithCancel");
    /// ```
    #[track_caller]
    #[inline]
    pub fn with_cancel(&self) -> (Context, CancelHandle) {
        Context::with_node(self.cancel_child(Birth::here()))
    }

    #[inline]
    fn cancel_child(&self, birth: Birth) -> Arc<Node> {
        Node::cancel_child(&self.pair, birth) // N12, N13
    }

    /// A child that is also cancelled, with [`Error::DeadlineExceeded`], when `deadline` passes
    /// (Go's `WithDeadline`, [S10–S14](crate::guarantees#s10)). A deadline later than this
    /// context's gives a plain cancellable child; a deadline already past gives a child that is
    /// done.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ctxkit::{Context, Error};
    /// let (ctx, _handle) = Context::background().with_deadline(Instant::now() - Duration::from_secs(1));
    /// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    /// ```
    #[track_caller]
    #[inline]
    pub fn with_deadline(&self, deadline: Instant) -> (Context, CancelHandle) {
        let queue = self.pair.timer_queue();
        let node = self.deadline_child(queue, time::to_nanos(deadline), None, None, Birth::here());
        Context::with_node(node)
    }

    /// A child cancelled after `timeout`, measured on this context's clock (Go's
    /// `WithTimeout`). `Duration::MAX` and other timeouts past the end of time mean no
    /// deadline ([S13](crate::guarantees#s13)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, Error};
    /// let (ctx, _handle) = Context::background().with_timeout(Duration::from_millis(10));
    /// assert_eq!(ctx.wait(), Error::DeadlineExceeded);
    /// ```
    #[track_caller]
    #[inline]
    pub fn with_timeout(&self, timeout: Duration) -> (Context, CancelHandle) {
        let queue = self.pair.timer_queue();
        let now = queue.now();
        let at = time::add_duration(now, timeout);
        Context::with_node(self.deadline_child(queue, at, None, Some(now), Birth::here()))
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
    #[track_caller]
    #[inline]
    pub fn with_deadline_cause(
        &self,
        deadline: Instant,
        cause: impl Into<BoxError>,
    ) -> (Context, CancelHandle) {
        let cause = Cause::custom(cause.into());
        let queue = self.pair.timer_queue();
        let node = self.deadline_child(
            queue,
            time::to_nanos(deadline),
            Some(cause),
            None,
            Birth::here(),
        );
        Context::with_node(node)
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
    #[track_caller]
    #[inline]
    pub fn with_timeout_cause(
        &self,
        timeout: Duration,
        cause: impl Into<BoxError>,
    ) -> (Context, CancelHandle) {
        let queue = self.pair.timer_queue();
        let now = queue.now();
        let at = time::add_duration(now, timeout);
        let cause = Some(Cause::custom(cause.into()));
        Context::with_node(self.deadline_child(queue, at, cause, Some(now), Birth::here()))
    }

    /// A child with its own deadline `at`, on `queue` (this context's clock's, looked up once
    /// by the caller). `now` is the clock reading `at` was computed from, if any: reading the
    /// clock again would cost as much as the rest of the call.
    fn deadline_child(
        &self,
        queue: &Arc<tree::Queue>,
        at: Nanos,
        cause: Option<Cause>,
        now: Option<Nanos>,
        mut birth: Birth,
    ) -> Arc<Node> {
        let inherited = self.pair.deadline();
        if at == NO_DEADLINE || inherited < at {
            return self.cancel_child(birth); // S12, S13
        }
        if let (Some(now), true) = (now, queue.is_real_time()) {
            // The exact reading: an origin shows the deadline's budget to the millisecond.
            birth.born = time::to_coarse(now);
        }
        let node = Node::child_of(Kind::Deadline, at, &self.pair, None, cause, birth); // N12
        if node.is_done() {
            node.unqueued(); // born done (S5): no entry made (T2)
        } else if at <= now.unwrap_or_else(|| queue.now()) || !queue.insert(at, &node) {
            Arc::clone(&node).expire(Callbacks::Inline); // S13
        }
        node
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
        let label = Label::Key(key.name());
        self.with_layer(tree::with_value(
            &self.pair,
            KeyId::of_key(key),
            label,
            value,
        ))
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
        let key = KeyId::of_type::<T>();
        self.with_layer(tree::with_value(&self.pair, key, Label::Type, value))
    }

    fn with_layer(&self, layer: Arc<tree::Layer>) -> Context {
        Context {
            pair: Pair {
                node: self.pair.node.clone(),
                layer: Some(layer),
            },
        }
    }

    /// A child that shares this context's cancellation, deadline and values and carries the
    /// name `name`, for people reading it: [`name`](Context::name) reads it back, and
    /// Display shows it as `.WithName("…")` ([S28](crate::guarantees#s28)). A name is
    /// inherited like a value. Allocates at most once: the layer. An owned name of up to 54
    /// bytes is copied into the layer and its `String` freed at once, so that a name made
    /// per request or per call keeps no allocation of its own alive; a longer one is moved
    /// in, not copied.
    ///
    /// ```
    /// let (ctx, _h) = ctxkit::Context::background().with_cancel();
    /// let request = ctx.with_name("GET /orders");
    /// let (call, _c) = request.with_timeout(std::time::Duration::from_secs(1));
    /// assert_eq!(call.name(), Some("GET /orders"));
    /// assert_eq!(request.to_string(), r#"context.Background.WithCancel.WithName("GET /orders")"#);
    /// ```
    pub fn with_name(&self, name: impl Into<Cow<'static, str>>) -> Context {
        self.with_layer(tree::with_name(&self.pair, tree::Name::new(name.into())))
    }

    /// A child named `name` that is listed under this context in the live tree
    /// ([S30](crate::guarantees#s30)) and is done exactly when this context is done: what
    /// `self.with_name(name).with_cancel().0` makes, in one call that makes no handle. For a
    /// piece of work that should show where it runs (a call to another service, a query)
    /// without being cancellable on its own.
    ///
    /// It allocates the name's layer and the node, as that pair of calls does, and touches
    /// fewer reference counts: there is no handle to make and drop, and no intermediate
    /// context.
    ///
    /// ```
    /// use ctxkit::{inspect::Snapshot, Context};
    /// let (request, cancel) = Context::background().with_cancel();
    /// let call = request.named_child("GET /orders");
    /// assert_eq!(call.name(), Some("GET /orders"));
    /// assert_eq!(Snapshot::of(&request).entries()[1].name(), Some("GET /orders"));
    /// cancel.cancel();
    /// assert!(call.is_done());
    /// ```
    #[track_caller]
    pub fn named_child(&self, name: impl Into<Cow<'static, str>>) -> Context {
        let birth = Birth::here();
        let layer = tree::with_name(&self.pair, tree::Name::new(name.into()));
        let named = Pair {
            node: self.pair.node.clone(),
            layer: Some(layer),
        };
        let deadline = named.deadline();
        let node = Node::child(Kind::Cancel, deadline, named, birth);
        Context::from_node(node, None) // the name is its node's parent's layer (N12)
    }

    /// A child with this context's values (and clock) that is never done and has no deadline:
    /// cancelling this context does not reach it (Go's `WithoutCancel`,
    /// [S16](crate::guarantees#s16)).
    ///
    /// ```
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// let detached = ctx.without_cancel();
    /// handle.cancel();
    /// assert!(!detached.is_done());
    /// ```
    #[track_caller]
    pub fn without_cancel(&self) -> Context {
        let node = Node::never_done(Kind::WithoutCancel, self.pair.as_parent(), Birth::here());
        Context::from_node(node, None) // N12
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
    #[track_caller]
    #[inline]
    pub fn merge(&self, other: &Context) -> (Context, CancelHandle) {
        // Two words back in registers, the pair built here (see `with_node`).
        let (node, layer) = self.merged(other, Birth::here());
        (
            Context::from_node(Arc::clone(&node), layer),
            CancelHandle::new(node),
        )
    }

    /// The node of a merge of this context and `other`, and the layer of its values if it
    /// holds one itself.
    fn merged(&self, other: &Context, birth: Birth) -> (Arc<Node>, Option<Arc<tree::Layer>>) {
        let (a, b) = (&self.pair, &other.pair);
        let deadline = a.deadline().min(b.deadline());
        let node = Node::child_of(Kind::Merge, deadline, a, Some(b), None, birth);
        // `None` when the merge has `a`'s values alone: its node's parent holds them (N12).
        let layer = tree::merge_layers(a, b, tree::clock_key())
            .filter(|l| !a.nearest_layer().is_some_and(|own| Arc::ptr_eq(own, l)));
        (node, layer)
    }

    /// A child whose deadlines, and those of every context derived from it, are measured on
    /// `clock` ([S25](crate::guarantees#s25)). For tests: see [`ManualClock`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = ctxkit::ManualClock::new();
    /// let (ctx, _h) = ctxkit::Context::background().with_clock(&clock).with_timeout(Duration::from_secs(1));
    /// clock.advance(Duration::from_secs(1));
    /// assert!(ctx.is_done());
    /// ```
    pub fn with_clock(&self, clock: &ManualClock) -> Context {
        let pair = self.pair.with_timer_queue(Arc::clone(clock.queue()));
        Context { pair }
    }
}

// ---------------------------------------------------------------------------------------
// Observing
// ---------------------------------------------------------------------------------------

impl Context {
    /// `None` while the context is not done; then why it is done, forever (Go's `Err`,
    /// [S3](crate::guarantees#s3)). One atomic load.
    ///
    /// ```
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// assert_eq!(ctx.err(), None);
    /// handle.cancel();
    /// assert_eq!(ctx.err(), Some(ctxkit::Error::Canceled));
    /// ```
    #[inline]
    pub fn err(&self) -> Option<Error> {
        self.pair.node.as_ref().and_then(|n| n.err())
    }

    /// The first cause that reached this context, once it is done (Go's `context.Cause`,
    /// [S7–S9](crate::guarantees#s7)).
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    /// let (ctx, handle) = Context::background().with_cancel();
    /// assert!(ctx.cause().is_none());
    /// handle.cancel();
    /// assert!(ctx.cause().unwrap().is::<Error>());
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        self.pair.node.as_ref().and_then(|n| n.cause())
    }

    /// Where the cancellation that made this context done began: what started it, the call
    /// site, the thread, the name of the context it began at
    /// ([S26–S29](crate::guarantees#s26)). `None` while the context is not done. Every
    /// context one cancellation reached reports an equal origin, and it never changes.
    ///
    /// ```
    /// use ctxkit::{Context, OriginKind};
    /// let (request, handle) = Context::background().with_name("GET /orders").with_cancel();
    /// let (call, _c) = request.with_cancel();
    /// assert!(call.origin().is_none());
    /// handle.cancel(); // charged to this line
    /// let origin = call.origin().unwrap();
    /// assert_eq!(origin.kind(), OriginKind::Cancel);
    /// assert_eq!(origin.location().unwrap().line(), line!() - 3);
    /// assert_eq!(origin.context_name(), Some("GET /orders"));
    /// assert_eq!(Some(origin), request.origin());
    /// ```
    pub fn origin(&self) -> Option<Origin> {
        self.pair.node.as_ref().and_then(|n| n.origin())
    }

    /// Whether the context is done: `err().is_some()`. One atomic load.
    ///
    /// ```
    /// assert!(!ctxkit::Context::background().is_done());
    /// ```
    #[inline]
    pub fn is_done(&self) -> bool {
        self.pair.node.as_ref().is_some_and(|n| n.is_done())
    }

    /// The earliest deadline of this context and its ancestors ([S10](crate::guarantees#s10)).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let at = Instant::now() + Duration::from_secs(60);
    /// let (ctx, _h) = ctxkit::Context::background().with_deadline(at);
    /// assert_eq!(ctx.deadline(), Some(at));
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        match self.pair.deadline() {
            NO_DEADLINE => None,
            at => Some(time::from_nanos(at)),
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
        match self.pair.deadline() {
            NO_DEADLINE => None,
            at => Some(time::remaining(at, self.pair.now())),
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
        time::from_nanos(self.pair.now())
    }

    /// The value set for `key` by the nearest [`with_value`](Context::with_value) above this
    /// context (Go's `Value`, [S15](crate::guarantees#s15)). Cost does not grow with the depth of
    /// the chain.
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

    /// The nearest name given by [`with_name`](Context::with_name) to this context or above
    /// it; `None` if none was ([S28](crate::guarantees#s28)).
    ///
    /// ```
    /// let ctx = ctxkit::Context::background();
    /// assert_eq!(ctx.name(), None);
    /// let named = ctx.with_name("worker").with_name(format!("job {}", 7));
    /// assert_eq!(named.name(), Some("job 7"));
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.find::<tree::Name>(tree::name_key())
            .map(tree::Name::as_str)
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
        self.pair.find(key)?.downcast_ref()
    }
}

// ---------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------

impl Context {
    /// A future that completes with the [`Error`] once this context is done (Go's
    /// `<-ctx.Done()`), on any executor, without a runtime ([S17](crate::guarantees#s17)).
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
        Done::new(self.pair.node.clone())
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

    /// Runs `fut` until it finishes (`Ok`) or this context is done (`Err`, and `fut` is dropped)
    /// ([S18](crate::guarantees#s18)). If the context is done already, `fut` is not polled.
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
    /// Runs `f` once, on another thread, after this context is done (Go's `context.AfterFunc`,
    /// [S19](crate::guarantees#s19)). If the context is done already, `f` starts at once. The
    /// registration outlives the returned value and the context's clones, for as long as something
    /// can still make the context done; after that `f` is dropped unrun.
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
        self.register(Reg::new(Box::new(f), Flavor::AfterFunc))
    }

    /// Runs `f` once, synchronously, on the thread that cancels this context, before its `cancel()`
    /// returns — or at once, on this thread, if it is done already ([S20](crate::guarantees#s20)).
    /// When `f` runs the context already reports done; no lock is held, so `f` may use any context.
    /// If `f` panics, the other callbacks still run and the panic resumes in the thread that
    /// cancelled once they have.
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
        self.register(Reg::new(Box::new(f), Flavor::OnCancel))
    }

    fn register(&self, reg: Arc<Reg>) -> AfterFunc {
        if let Some(node) = self.pair.cancel_node() {
            if let Err(reg) = node.register(Arc::clone(&reg)) {
                fire_all_resuming(vec![reg]);
            }
        }
        AfterFunc::new(reg)
    }
}

// ---------------------------------------------------------------------------------------
// Crate-internal access
// ---------------------------------------------------------------------------------------

impl Context {
    /// The context as the tree holds it.
    pub(crate) fn pair(&self) -> &Pair {
        &self.pair
    }
}

/// The timer entries of contexts with deadlines (`timer/mod.rs`, T2), seen from the queue of a
/// manual clock.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Duration;

    use crate::{Context, Error, ManualClock};

    /// T2: a cancel leaves a context's timer entry in its queue; the entry goes when it comes
    /// due, firing nothing, or once the context is dropped, and the queue never holds more
    /// than about twice as many entries as there are contexts with timers alive.
    #[test]
    fn a_cancelled_contexts_timer_entry_goes_when_due_or_with_the_context() {
        let clock = ManualClock::new();
        let root = Context::background().with_clock(&clock);
        let queue = clock.queue();
        let mut held: Vec<_> = (0..1000)
            .map(|i| root.with_timeout(Duration::from_secs(10 + i)))
            .collect();
        assert_eq!(queue.len(), 1000);
        for (_, handle) in &held {
            handle.cancel();
        }
        assert_eq!(queue.len(), 1000, "a cancel touches no timer queue");

        clock.advance(Duration::from_secs(109)); // the first 100 come due
        assert_eq!(queue.len(), 900);
        assert!(held
            .iter()
            .all(|(ctx, _)| ctx.err() == Some(Error::Canceled)));
        held.drain(..100);
        assert_eq!(queue.len(), 900, "their entries went when they came due");

        // Dropped oldest first: never the last entry of the heap's array, so the shard is
        // rebuilt as the dead entries come to outnumber the live ones.
        while !held.is_empty() {
            held.remove(0);
            let entries = queue.len();
            assert!(
                entries <= 2 * held.len() + 64,
                "{entries} entries, {} alive",
                held.len()
            );
        }
        assert_eq!(queue.len(), 0, "the last drop trims what is left");
    }

    #[derive(Debug, Clone)]
    enum TimerOp {
        /// A context with a timeout of this many seconds.
        Make(u64),
        /// Cancel the context at this index (modulo the number held).
        Cancel(usize),
        /// Drop the context at this index.
        Drop(usize),
        /// Move the clock this many seconds.
        Advance(u64),
    }

    fn timer_op() -> impl proptest::strategy::Strategy<Value = TimerOp> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (1..100u64).prop_map(TimerOp::Make),
            2 => any::<usize>().prop_map(TimerOp::Cancel),
            3 => any::<usize>().prop_map(TimerOp::Drop),
            1 => (0..30u64).prop_map(TimerOp::Advance),
        ]
    }

    proptest::proptest! {
        /// T2 and T3 under any mix of makes, cancels, drops and advances: each held context is
        /// done exactly when it was cancelled or its deadline passed, with the matching err;
        /// the queue holds at most about twice as many entries as contexts are held; and once
        /// all are dropped and the clock has passed every deadline, it holds none.
        #[test]
        fn timer_entries_stay_within_twice_the_held_contexts(
            ops in proptest::collection::vec(timer_op(), 0..400)
        ) {
            let clock = ManualClock::new();
            let root = Context::background().with_clock(&clock);
            let queue = clock.queue();
            // Each held context, its handle, its deadline and whether it was cancelled.
            let mut held = Vec::new();
            for op in ops {
                match op {
                    TimerOp::Make(secs) => {
                        let (ctx, handle) = root.with_timeout(Duration::from_secs(secs));
                        held.push((ctx, handle, clock.now() + Duration::from_secs(secs), false));
                    }
                    TimerOp::Cancel(i) if !held.is_empty() => {
                        let n = held.len();
                        let (ctx, handle, _, cancelled) = &mut held[i % n];
                        *cancelled |= !ctx.is_done();
                        handle.cancel();
                    }
                    TimerOp::Drop(i) if !held.is_empty() => {
                        let n = held.len();
                        held.swap_remove(i % n);
                    }
                    TimerOp::Advance(secs) => clock.advance(Duration::from_secs(secs)),
                    _ => {}
                }
                for (ctx, _, deadline, cancelled) in &held {
                    let expected = if *cancelled {
                        Some(Error::Canceled)
                    } else if *deadline <= clock.now() {
                        Some(Error::DeadlineExceeded)
                    } else {
                        None
                    };
                    proptest::prop_assert_eq!(ctx.err(), expected);
                }
                let entries = queue.len();
                proptest::prop_assert!(
                    entries <= 2 * held.len() + 64,
                    "{} entries, {} contexts held", entries, held.len()
                );
            }
            drop(held);
            clock.advance(Duration::from_secs(100));
            proptest::prop_assert_eq!(queue.len(), 0);
        }
    }
}
