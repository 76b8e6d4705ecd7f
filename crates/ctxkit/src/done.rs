//! Waiting for a context to be done: the [`Done`] future and blocking waits.
//!
//! Both forms use the node's waker list; a blocked thread waits through a waker that unparks it. No
//! runtime is needed ([S17](crate::guarantees#s17)): whoever cancels wakes the waiters, and
//! deadlines are fired by the timer thread.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::tree::Node;
use crate::Error;

/// A future that completes with the context's [`Error`] once it is done (Go's `<-ctx.Done()`).
///
/// Made by [`Context::done`](crate::Context::done). It works on any executor and needs no
/// runtime. It never completes for a context that can never be done.
///
/// # Cancel safety
///
/// Dropping a `Done` before it completes unregisters its waker; nothing else is lost.
///
/// # Examples
///
/// ```
/// use ctxkit::{Context, Error};
///
/// let (ctx, handle) = Context::background().with_cancel();
/// std::thread::spawn(move || handle.cancel());
/// let err = futures::executor::block_on(ctx.done());
/// assert_eq!(err, Error::Canceled);
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Done {
    node: Option<Arc<Node>>,
    /// The waker registered with the node and its key there, once polled.
    registered: Option<(usize, Waker)>,
}

impl Done {
    pub(crate) fn new(node: Option<Arc<Node>>) -> Done {
        Done {
            node: node.filter(|n| n.can_be_done()),
            registered: None,
        }
    }

    /// The error, if the context is done; never blocks. One atomic load.
    ///
    /// ```
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// let done = ctx.done();
    /// assert_eq!(done.err(), None);
    /// handle.cancel();
    /// assert_eq!(done.err(), Some(ctxkit::Error::Canceled));
    /// ```
    #[inline]
    pub fn err(&self) -> Option<Error> {
        self.node.as_ref().and_then(|n| n.err())
    }

    /// Blocks the calling thread until the context is done (parks it; no spinning).
    ///
    /// ```
    /// let (ctx, handle) = ctxkit::Context::background().with_timeout(std::time::Duration::from_millis(5));
    /// assert_eq!(ctx.done().wait(), ctxkit::Error::DeadlineExceeded);
    /// # drop(handle);
    /// ```
    pub fn wait(mut self) -> Error {
        self.wait_until(None)
            .expect("a wait without a time limit ends only when the context is done")
    }

    /// Blocks until the context is done or `limit` passes (`None` on time out).
    pub(crate) fn wait_until(&mut self, limit: Option<Instant>) -> Option<Error> {
        let waker = thread_waker();
        let mut cx = TaskContext::from_waker(&waker);
        loop {
            if let Poll::Ready(err) = Pin::new(&mut *self).poll(&mut cx) {
                return Some(err);
            }
            match limit {
                None => std::thread::park(),
                Some(limit) => {
                    let now = Instant::now();
                    if now >= limit {
                        return None;
                    }
                    std::thread::park_timeout(limit - now);
                }
            }
        }
    }

    /// Blocks until the context is done or `timeout` passes (`None` on time out).
    pub(crate) fn wait_timeout(mut self, timeout: Duration) -> Option<Error> {
        // A limit past the end of `Instant` is no limit.
        match Instant::now().checked_add(timeout) {
            Some(limit) => self.wait_until(Some(limit)),
            None => self.wait_until(None),
        }
    }
}

impl Future for Done {
    type Output = Error;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Error> {
        let this = self.get_mut();
        let Some(node) = &this.node else {
            return Poll::Pending; // never done (S1)
        };
        // Hot path: one load, and a pointer comparison when re-polled by the same task.
        if let Some(err) = node.err() {
            this.registered = None; // the node dropped its wakers when it was done
            return Poll::Ready(err);
        }
        if let Some((_, waker)) = &this.registered {
            if waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        this.register(cx.waker())
    }
}

impl Done {
    #[cold]
    fn register(&mut self, waker: &Waker) -> Poll<Error> {
        let node = self.node.as_ref().expect("checked by poll");
        let mut key = self.registered.as_ref().map(|(k, _)| *k);
        if node.register_waker(&mut key, waker) {
            self.registered = key.map(|k| (k, waker.clone()));
            Poll::Pending
        } else {
            self.registered = None;
            Poll::Ready(node.err().expect("register_waker refuses only when done"))
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let (Some(node), Some((key, _))) = (&self.node, &self.registered) {
            node.unregister_waker(*key);
        }
    }
}

impl fmt::Debug for Done {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Done").field("err", &self.err()).finish()
    }
}

/// Unparks a blocked thread.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// The calling thread's waker, made once per thread.
fn thread_waker() -> Waker {
    thread_local! {
        static WAKER: Waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    }
    WAKER
        .try_with(Waker::clone)
        .unwrap_or_else(|_| Waker::from(Arc::new(ThreadWaker(std::thread::current()))))
}
