//! futures integration (feature `futures`): contexts as combinators, on any executor.
//!
//! - [`ContextFutureExt::with_context`]: a future that ends with `Err(ctxkit::Error)` once a
//!   context is done (the inner future is dropped with it).
//! - [`ContextStreamExt::until_done`]: a stream that ends once a context is done.
//! - [`JoinGroup`]: errgroup's rule for futures driven concurrently inside one task: the
//!   first `Err` cancels the group's context (with that error as its cause) and is returned
//!   once every future has finished. No spawning, no runtime, so the futures may borrow and
//!   need not be `Send`.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use ctxkit::futures::{ContextFutureExt, ContextStreamExt};
//! use futures::StreamExt;
//!
//! futures::executor::block_on(async {
//!     let (ctx, handle) = ctxkit::Context::background().with_cancel();
//!     let ticks = futures::stream::iter(0..).until_done(&ctx);
//!     let first: Vec<u32> = ticks.take(3).collect().await;
//!     assert_eq!(first, [0, 1, 2]);
//!
//!     handle.cancel();
//!     let late = async { 7 }.with_context(&ctx).await;
//!     assert_eq!(late, Err(ctxkit::Error::Canceled));
//! # let _ = Duration::ZERO;
//! });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use ::futures_core::stream::FusedStream;
use ::futures_core::Stream;
use ::futures_util::stream::{FuturesUnordered, StreamExt as _};
use ::pin_project_lite::pin_project;

use crate::{CancelHandle, Context, Done, Error};

/// Adds [`with_context`](ContextFutureExt::with_context) to every future.
pub trait ContextFutureExt: Future + Sized {
    /// Runs this future until it finishes (`Ok(output)`) or `ctx` is done (`Err(error)`,
    /// and this future is dropped with the returned one). If `ctx` is done already, this
    /// future is not polled. The same as [`Context::run`], as a named, `Unpin`-if-possible
    /// type.
    ///
    /// ```
    /// use ctxkit::futures::ContextFutureExt;
    /// use std::time::Duration;
    /// let (ctx, _h) = ctxkit::Context::background().with_timeout(Duration::from_millis(5));
    /// let slow = std::future::pending::<()>().with_context(&ctx);
    /// assert_eq!(futures::executor::block_on(slow), Err(ctxkit::Error::DeadlineExceeded));
    /// ```
    fn with_context(self, ctx: &Context) -> WithContext<Self> {
        WithContext {
            fut: self,
            done: ctx.done(),
        }
    }
}

impl<F: Future> ContextFutureExt for F {}

pin_project! {
    /// A future cut short when a context is done. Made by
    /// [`ContextFutureExt::with_context`].
    ///
    /// # Cancel safety
    ///
    /// As cancel safe as the inner future: dropping this drops it.
    ///
    /// # Examples
    ///
    /// ```
    /// use ctxkit::futures::ContextFutureExt;
    /// let ctx = ctxkit::Context::background();
    /// assert_eq!(futures::executor::block_on(async { 1 }.with_context(&ctx)), Ok(1));
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct WithContext<F> {
        #[pin]
        fut: F,
        done: Done,
    }
}

impl<F: Future> Future for WithContext<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The context first: once it is done, the inner future is not polled again.
        if let Poll::Ready(err) = Pin::new(this.done).poll(cx) {
            return Poll::Ready(Err(err));
        }
        this.fut.poll(cx).map(Ok)
    }
}

impl<F> fmt::Debug for WithContext<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithContext")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Adds [`until_done`](ContextStreamExt::until_done) to every stream.
pub trait ContextStreamExt: Stream + Sized {
    /// Yields this stream's items until it ends or `ctx` is done, whichever comes first;
    /// then ends (and yields `None` from then on). An item that is ready when the context is
    /// done is not yielded. [`UntilDone::err`] tells whether the context ended it.
    ///
    /// ```
    /// use ctxkit::futures::ContextStreamExt;
    /// use futures::StreamExt;
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// handle.cancel();
    /// let mut s = futures::stream::iter([1, 2, 3]).until_done(&ctx);
    /// assert_eq!(futures::executor::block_on(s.next()), None);
    /// assert_eq!(s.err(), Some(ctxkit::Error::Canceled));
    /// ```
    fn until_done(self, ctx: &Context) -> UntilDone<Self> {
        UntilDone {
            stream: self,
            done: ctx.done(),
            stopped: None,
        }
    }
}

impl<S: Stream> ContextStreamExt for S {}

pin_project! {
    /// A stream that ends when a context is done. Made by
    /// [`ContextStreamExt::until_done`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ctxkit::futures::ContextStreamExt;
    /// use futures::StreamExt;
    /// let ctx = ctxkit::Context::background();
    /// let all: Vec<i32> = futures::executor::block_on(futures::stream::iter([1, 2]).until_done(&ctx).collect());
    /// assert_eq!(all, [1, 2]);
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct UntilDone<S> {
        #[pin]
        stream: S,
        done: Done,
        stopped: Option<Error>,
    }
}

impl<S> UntilDone<S> {
    /// Why the context ended the stream; `None` while it runs, or if it ended on its own.
    ///
    /// ```
    /// use ctxkit::futures::ContextStreamExt;
    /// let s = futures::stream::iter([1]).until_done(&ctxkit::Context::background());
    /// assert_eq!(s.err(), None);
    /// ```
    pub fn err(&self) -> Option<Error> {
        self.stopped
    }
}

impl<S: Stream> Stream for UntilDone<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        if this.stopped.is_some() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(err) = Pin::new(this.done).poll(cx) {
            *this.stopped = Some(err);
            return Poll::Ready(None);
        }
        this.stream.poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.stopped {
            Some(_) => (0, Some(0)),
            None => (0, self.stream.size_hint().1),
        }
    }
}

/// Terminated once the context ended it, or once the inner stream is.
impl<S: FusedStream> FusedStream for UntilDone<S> {
    fn is_terminated(&self) -> bool {
        self.stopped.is_some() || self.stream.is_terminated()
    }
}

impl<S> fmt::Debug for UntilDone<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntilDone")
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

/// Futures driven concurrently inside one task, with errgroup's rule: the first to return
/// `Err` cancels the group's context (with that error as its [`cause`](Context::cause)), and
/// [`wait`](JoinGroup::wait) returns that error once every future has finished.
///
/// Built on `futures::stream::FuturesUnordered`: no spawning and no runtime, so it works
/// under any executor, and the futures may borrow from the caller and need not be `Send`.
/// They all have the type `F`; for futures of different types, use
/// `JoinGroup<Pin<Box<dyn Future<Output = Result<(), E>> + '_>>>` and push `Box::pin(..)`.
///
/// A panic in a future propagates out of `wait` (the others are dropped) and cancels the
/// context. Dropping the group, or the `wait` future, cancels the context and drops the
/// futures. `E` is cloned once, for the cause (see [`ctxkit::group`](crate::group)).
///
/// # Examples
///
/// ```
/// use ctxkit::futures::{ContextFutureExt, JoinGroup};
///
/// # futures::executor::block_on(async {
/// let (mut group, ctx) = JoinGroup::new(&ctxkit::Context::background());
/// for id in [1, 2, 3] {
///     let ctx = ctx.clone();
///     group.push(async move {
///         if id == 2 {
///             return Err(std::fmt::Error);
///         }
///         // The others wait for ever, unless the context is done.
///         let _ = std::future::pending::<()>().with_context(&ctx).await;
///         Ok(())
///     });
/// }
/// assert_eq!(group.wait().await, Err(std::fmt::Error));
/// assert!(ctx.cause().unwrap().is::<std::fmt::Error>());
/// # });
/// ```
pub struct JoinGroup<F> {
    futures: FuturesUnordered<F>,
    ctx: Context,
    handle: CancelHandle,
}

impl<F, E> JoinGroup<F>
where
    F: Future<Output = Result<(), E>>,
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    /// An empty group, and its context: a child of `parent`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let (group, ctx) = ctxkit::futures::JoinGroup::<std::future::Ready<Result<(), std::fmt::Error>>>::new(&ctxkit::Context::background());
    /// assert!(group.is_empty());
    /// assert_eq!(group.wait().await, Ok(()));
    /// assert!(ctx.is_done());
    /// # });
    /// ```
    pub fn new(parent: &Context) -> (JoinGroup<F>, Context) {
        let (ctx, handle) = parent.with_cancel();
        let group = JoinGroup {
            futures: FuturesUnordered::new(),
            ctx: ctx.clone(),
            handle,
        };
        (group, ctx)
    }

    /// Adds a future; it is first polled by [`wait`](JoinGroup::wait).
    ///
    /// ```
    /// let (mut group, _ctx) = ctxkit::futures::JoinGroup::new(&ctxkit::Context::background());
    /// group.push(async { Ok::<(), std::fmt::Error>(()) });
    /// assert_eq!(group.len(), 1);
    /// ```
    pub fn push(&mut self, fut: F) {
        self.futures.push(fut);
    }

    /// How many futures were pushed and have not finished.
    ///
    /// ```
    /// let (group, _ctx) = ctxkit::futures::JoinGroup::<std::future::Ready<Result<(), std::fmt::Error>>>::new(&ctxkit::Context::background());
    /// assert_eq!(group.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.futures.len()
    }

    /// True when no future is left to run.
    ///
    /// ```
    /// let (group, _ctx) = ctxkit::futures::JoinGroup::<std::future::Ready<Result<(), std::fmt::Error>>>::new(&ctxkit::Context::background());
    /// assert!(group.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.futures.is_empty()
    }

    /// The group's context, as returned by [`new`](JoinGroup::new).
    ///
    /// ```
    /// let (group, ctx) = ctxkit::futures::JoinGroup::<std::future::Ready<Result<(), std::fmt::Error>>>::new(&ctxkit::Context::background());
    /// assert_eq!(group.context().to_string(), ctx.to_string());
    /// ```
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Polls every future until all have finished, cancels the group's context, and
    /// returns the first error. The first `Err` cancels the context at once; the other
    /// futures are still polled to their end, as Go's `Wait` waits for every goroutine.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future drops the group (cancelling its context) and
    /// the futures not yet finished.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let (mut group, _ctx) = ctxkit::futures::JoinGroup::new(&ctxkit::Context::background());
    /// for fail in [false, true] {
    ///     group.push(async move { if fail { Err(std::fmt::Error) } else { Ok(()) } });
    /// }
    /// assert_eq!(group.wait().await, Err(std::fmt::Error));
    /// # });
    /// ```
    pub async fn wait(mut self) -> Result<(), E> {
        let mut first = None;
        while let Some(result) = self.futures.next().await {
            if let (Err(e), None) = (result, &first) {
                self.handle.cancel_with_cause(e.clone());
                first = Some(e);
            }
        }
        self.handle.cancel();
        first.map_or(Ok(()), Err)
    }
}

impl<F> Extend<F> for JoinGroup<F> {
    fn extend<I: IntoIterator<Item = F>>(&mut self, iter: I) {
        for fut in iter {
            self.futures.push(fut);
        }
    }
}

impl<F> Drop for JoinGroup<F> {
    fn drop(&mut self) {
        // Also on unwinding from a future's panic: the context ends with the group.
        self.handle.cancel();
    }
}

impl<F> fmt::Debug for JoinGroup<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinGroup")
            .field("len", &self.futures.len())
            .finish_non_exhaustive()
    }
}
