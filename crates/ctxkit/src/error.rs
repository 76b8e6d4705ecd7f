//! Why a context is done: the [`Error`] sentinel and the richer [`Cause`].

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// The reason a context is done, as Go's `ctx.Err()` reports it ([S3](crate::guarantees#s3),
/// [S6](crate::guarantees#s6)).
///
/// It displays exactly as Go's sentinel errors do.
///
/// # Examples
///
/// ```
/// use ctxkit::{Context, Error};
///
/// let (ctx, handle) = Context::background().with_cancel();
/// assert_eq!(ctx.err(), None);
/// handle.cancel();
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// assert_eq!(Error::Canceled.to_string(), "context canceled");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The context was cancelled (Go's `context.Canceled`).
    Canceled,
    /// The context's deadline passed (Go's `context.DeadlineExceeded`).
    DeadlineExceeded,
}

impl Error {
    /// True for [`Error::DeadlineExceeded`], as Go's `DeadlineExceeded.Timeout()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ctxkit::Error;
    /// assert!(Error::DeadlineExceeded.is_timeout());
    /// assert!(!Error::Canceled.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::DeadlineExceeded)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Canceled => "context canceled",
            Error::DeadlineExceeded => "context deadline exceeded",
        })
    }
}

impl StdError for Error {}

/// `DeadlineExceeded` becomes [`std::io::ErrorKind::TimedOut`]; `Canceled` becomes
/// [`std::io::ErrorKind::Other`] (never `Interrupted`, which std's I/O loops retry).
///
/// ```
/// use ctxkit::Error;
/// let e: std::io::Error = Error::DeadlineExceeded.into();
/// assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
/// ```
impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        let kind = match err {
            Error::DeadlineExceeded => std::io::ErrorKind::TimedOut,
            Error::Canceled => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, err)
    }
}

/// A boxed error, the form every `*_cause` method accepts.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// The first cause that reached a context (Go's `context.Cause`, [S7–S9](crate::guarantees#s7)).
///
/// Either one of the two [`Error`] sentinels or the error given to
/// [`CancelHandle::cancel_with_cause`](crate::CancelHandle::cancel_with_cause) or a
/// `with_*_cause` constructor. Cloning is cheap: a custom cause is shared, not copied.
///
/// # Examples
///
/// ```
/// use ctxkit::{Context, Error};
///
/// #[derive(Debug)]
/// struct Shutdown;
/// impl std::fmt::Display for Shutdown {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("shutting down") }
/// }
/// impl std::error::Error for Shutdown {}
///
/// let (ctx, handle) = Context::background().with_cancel();
/// handle.cancel_with_cause(Shutdown);
/// let cause = ctx.cause().unwrap();
/// assert!(cause.is::<Shutdown>());
/// assert_eq!(cause.to_string(), "shutting down");
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// ```
#[derive(Clone)]
pub struct Cause(CauseRepr);

#[derive(Clone)]
enum CauseRepr {
    Sentinel(Error),
    Custom(Arc<dyn StdError + Send + Sync>),
}

impl Cause {
    pub(crate) fn sentinel(err: Error) -> Cause {
        Cause(CauseRepr::Sentinel(err))
    }

    /// Wraps a user's error. A boxed [`Error`] stays a sentinel, so `is::<Error>()` holds.
    pub(crate) fn custom(err: BoxError) -> Cause {
        match err.downcast::<Error>() {
            Ok(sentinel) => Cause::sentinel(*sentinel),
            Err(other) => Cause(CauseRepr::Custom(Arc::from(other))),
        }
    }

    /// True when this cause is just the sentinel `err` (stored as no cause at all).
    pub(crate) fn is_sentinel(&self, err: Error) -> bool {
        matches!(self.0, CauseRepr::Sentinel(e) if e == err)
    }

    fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        match &self.0 {
            CauseRepr::Sentinel(e) => e,
            CauseRepr::Custom(e) => &**e,
        }
    }

    /// The cause as `E`, if it is one.
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    /// let (ctx, h) = Context::background().with_cancel();
    /// h.cancel();
    /// assert_eq!(ctx.cause().unwrap().downcast_ref::<Error>(), Some(&Error::Canceled));
    /// ```
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        let err: &(dyn StdError + 'static) = self.as_error();
        err.downcast_ref::<E>()
    }

    /// True when the cause is an `E`.
    ///
    /// ```
    /// use ctxkit::{Context, Error};
    /// let (ctx, h) = Context::background().with_cancel();
    /// h.cancel();
    /// assert!(ctx.cause().unwrap().is::<Error>());
    /// ```
    pub fn is<E: StdError + 'static>(&self) -> bool {
        self.downcast_ref::<E>().is_some()
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_error(), f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_error(), f)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.as_error().source()
    }
}

impl From<Error> for Cause {
    fn from(err: Error) -> Cause {
        Cause::sentinel(err)
    }
}
