//! crossbeam-channel integration (feature `crossbeam-channel`): [`done_receiver`], a
//! receiver that is ready once a context is done, for `crossbeam_channel::select!` next to
//! other channels — Go's `select { case <-ctx.Done(): ... }` for threads.
//!
//! No thread per receiver: the receiver's only sender is held by an
//! [`on_cancel`](Context::on_cancel) callback, which drops it when the context is done, so
//! the receiver becomes disconnected — ready, with `Err(RecvError)` — before `cancel()`
//! returns.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use crossbeam_channel::{select, unbounded};
//! use ctxkit::Context;
//!
//! let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(20));
//! let (jobs_tx, jobs) = unbounded::<u32>();
//! let done = ctxkit::crossbeam::done_receiver(&ctx);
//! jobs_tx.send(1).unwrap();
//! let mut handled = 0;
//! loop {
//!     select! {
//!         recv(jobs) -> job => handled += job.unwrap(),
//!         recv(done) -> _ => break, // the context is done
//!     }
//! }
//! assert_eq!(handled, 1);
//! assert_eq!(ctx.err(), Some(ctxkit::Error::DeadlineExceeded));
//! ```

use std::convert::Infallible;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use ::crossbeam_channel::{bounded, Receiver, Sender};

use crate::{AfterFunc, Context};

/// A receiver that is ready (disconnected: `recv` returns `Err(RecvError)`) once a context
/// is done. Made by [`done_receiver`].
///
/// It dereferences to a `crossbeam_channel::Receiver<Infallible>`, so it goes directly into
/// `select!` (`recv(done) -> _ => ...`) and has `recv`, `recv_timeout`, `try_recv`. No
/// message is ever received. Clones are ready together. Dropping the last clone unregisters
/// its callback from the context.
///
/// # Examples
///
/// ```
/// let (ctx, handle) = ctxkit::Context::background().with_cancel();
/// let done = ctxkit::crossbeam::done_receiver(&ctx);
/// assert!(done.try_recv().is_err() && !done.is_ready());
/// handle.cancel();
/// assert!(done.is_ready());
/// assert!(done.recv().is_err()); // does not block
/// ```
#[derive(Clone)]
pub struct DoneReceiver {
    rx: Receiver<Infallible>,
    _link: Arc<Link>,
}

/// The registration and the sender it drops.
struct Link {
    /// Where the sender lives until the callback drops it. It is not in the callback itself:
    /// a callback is dropped unrun when its context can no longer be done, and that must not
    /// make the receiver ready.
    _sender: Arc<Mutex<Option<Sender<Infallible>>>>,
    registration: AfterFunc,
}

impl Drop for Link {
    fn drop(&mut self) {
        // Frees the callback now rather than when the context ends.
        self.registration.stop();
    }
}

/// A receiver that becomes ready once `ctx` is done (ready at once if it is done already;
/// never, for a context that can never be done).
///
/// ```
/// use crossbeam_channel::{select, never};
/// let (ctx, handle) = ctxkit::Context::background().with_cancel();
/// let done = ctxkit::crossbeam::done_receiver(&ctx);
/// std::thread::spawn(move || handle.cancel());
/// let idle = never::<()>();
/// select! {
///     recv(idle) -> _ => unreachable!(),
///     recv(done) -> _ => assert!(ctx.is_done()),
/// }
/// ```
pub fn done_receiver(ctx: &Context) -> DoneReceiver {
    let (tx, rx) = bounded(0);
    let sender = Arc::new(Mutex::new(Some(tx)));
    let slot = Arc::clone(&sender);
    let registration = ctx.on_cancel(move || {
        // Dropping the only sender disconnects the receiver: it is ready.
        drop(slot.lock().unwrap_or_else(|e| e.into_inner()).take());
    });
    DoneReceiver {
        rx,
        _link: Arc::new(Link {
            _sender: sender,
            registration,
        }),
    }
}

impl DoneReceiver {
    /// True once the context is done (the receiver is disconnected).
    ///
    /// ```
    /// let done = ctxkit::crossbeam::done_receiver(&ctxkit::Context::background());
    /// assert!(!done.is_ready());
    /// ```
    pub fn is_ready(&self) -> bool {
        matches!(
            self.rx.try_recv(),
            Err(::crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    /// The channel receiver, for APIs that take one by reference.
    ///
    /// ```
    /// let done = ctxkit::crossbeam::done_receiver(&ctxkit::Context::background());
    /// let rx: &crossbeam_channel::Receiver<std::convert::Infallible> = done.receiver();
    /// assert!(rx.is_empty());
    /// ```
    pub fn receiver(&self) -> &Receiver<Infallible> {
        &self.rx
    }
}

impl Deref for DoneReceiver {
    type Target = Receiver<Infallible>;

    fn deref(&self) -> &Receiver<Infallible> {
        &self.rx
    }
}

impl fmt::Debug for DoneReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoneReceiver")
            .field("ready", &self.is_ready())
            .finish()
    }
}
