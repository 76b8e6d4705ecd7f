//! Blocking `std::net` I/O under a context (no feature): the context's remaining time
//! becomes the socket's timeouts, a done context fails at once, and a cancel interrupts
//! a blocked read or write.
//!
//! - [`connect`]: `TcpStream::connect` within the context's remaining time.
//! - [`set_timeouts`]: applies the remaining time to a stream's read and write timeouts,
//!   for code that takes a plain `TcpStream`.
//! - [`ContextStream`]: a `TcpStream` whose every `read` and `write` is bounded by the
//!   context, and which is shut down when the context is cancelled, so that a thread
//!   blocked on it wakes up.
//!
//! Errors follow [`From<Error> for io::Error`](crate::Error): a deadline surfaces as
//! [`io::ErrorKind::TimedOut`], a cancel as [`io::ErrorKind::Other`] wrapping
//! [`Error::Canceled`] (never `Interrupted`, which std's loops would retry).
//!
//! # Examples
//!
//! ```
//! use std::io::{ErrorKind, Read};
//! use std::net::TcpListener;
//! use std::time::Duration;
//!
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts, never answers
//! let (ctx, _h) = ctxkit::Context::background().with_timeout(Duration::from_millis(50));
//! let mut conn = ctxkit::net::ContextStream::connect(&ctx, listener.local_addr().unwrap()).unwrap();
//! let err = conn.read(&mut [0; 16]).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::TimedOut);
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::{AfterFunc, Context, Error};

/// Fails with the context's error if it is done, else gives the time left (`None`: no
/// deadline). A deadline that has passed but not yet fired counts as done.
fn time_left(ctx: &Context) -> io::Result<Option<Duration>> {
    if let Some(err) = ctx.err() {
        return Err(err.into());
    }
    match ctx.remaining() {
        Some(Duration::ZERO) => Err(Error::DeadlineExceeded.into()),
        left => Ok(left),
    }
}

/// Opens a TCP connection to `addr` within `ctx`'s remaining time: each address `addr`
/// resolves to is tried in turn with `TcpStream::connect_timeout`, with what is left of the
/// time. Fails at once if `ctx` is done. Name resolution itself is not bounded (std offers no
/// way to); a cancel during a connect attempt is seen when the attempt ends.
///
/// ```
/// use std::net::TcpListener;
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let (ctx, handle) = ctxkit::Context::background().with_cancel();
/// assert!(ctxkit::net::connect(&ctx, listener.local_addr().unwrap()).is_ok());
/// handle.cancel();
/// let err = ctxkit::net::connect(&ctx, listener.local_addr().unwrap()).unwrap_err();
/// assert_eq!(err.to_string(), "context canceled");
/// ```
pub fn connect(ctx: &Context, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
    time_left(ctx)?;
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        match connect_one(ctx, &addr) {
            Ok(stream) => return Ok(stream),
            Err(err) => {
                if ctx.is_done() || err.kind() == io::ErrorKind::TimedOut {
                    return Err(err);
                }
                last = Some(err);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

fn connect_one(ctx: &Context, addr: &SocketAddr) -> io::Result<TcpStream> {
    let result = match time_left(ctx)? {
        Some(left) => TcpStream::connect_timeout(addr, left),
        None => TcpStream::connect(addr),
    };
    match (result, time_left(ctx)) {
        // Done while connecting: the context's error, and the connection (if any) closed.
        (_, Err(err)) => Err(err),
        (Err(err), Ok(_)) if is_timeout(&err) => Err(Error::DeadlineExceeded.into()),
        (result, Ok(_)) => result,
    }
}

fn is_timeout(err: &io::Error) -> bool {
    // Unix reports an expired socket timeout as WouldBlock, Windows as TimedOut.
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sets `stream`'s read and write timeouts to `ctx`'s remaining time (none without a
/// deadline). Fails at once, changing nothing, if `ctx` is done or its deadline has passed.
/// The timeouts are a snapshot: call again before each blocking call, or use
/// [`ContextStream`], which does.
///
/// ```
/// use std::net::{TcpListener, TcpStream};
/// use std::time::Duration;
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
/// let (ctx, _h) = ctxkit::Context::background().with_timeout(Duration::from_secs(5));
/// ctxkit::net::set_timeouts(&ctx, &stream).unwrap();
/// assert!(stream.read_timeout().unwrap().unwrap() <= Duration::from_secs(5));
/// ```
pub fn set_timeouts(ctx: &Context, stream: &TcpStream) -> io::Result<()> {
    let left = time_left(ctx)?;
    stream.set_read_timeout(left)?;
    stream.set_write_timeout(left)
}

/// A `TcpStream` bound to a context: every `read`, `write` and `flush` fails at once once the
/// context is done, runs with the context's remaining time as its timeout, and reports an
/// expired timeout as [`io::ErrorKind::TimedOut`]. When the context is cancelled, the socket
/// is shut down (both ways) so that a blocked call returns; the call then fails with the
/// context's error.
///
/// Setting the timeout costs one system call per `read` or `write` when the context has a
/// deadline.
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use std::net::TcpListener;
/// use std::time::Duration;
///
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let (ctx, handle) = ctxkit::Context::background().with_cancel();
/// let mut conn = ctxkit::net::ContextStream::connect(&ctx, listener.local_addr().unwrap()).unwrap();
/// std::thread::spawn(move || {
///     std::thread::sleep(Duration::from_millis(20));
///     handle.cancel(); // wakes the blocked read
/// });
/// let err = conn.read(&mut [0; 16]).unwrap_err();
/// assert_eq!(err.to_string(), "context canceled");
/// ```
pub struct ContextStream {
    stream: TcpStream,
    ctx: Context,
    /// Shuts the socket down on cancel; stopped when this is dropped.
    _unlink: Unlink,
}

/// Stops a registration when dropped: frees the callback (and its clone of the socket) now,
/// not when the context ends.
struct Unlink(AfterFunc);

impl Drop for Unlink {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl ContextStream {
    /// Binds `stream` to `ctx`. Fails if the stream cannot be cloned for the cancel
    /// callback. If `ctx` is done already, the stream is shut down.
    ///
    /// ```
    /// use std::net::{TcpListener, TcpStream};
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    /// let conn = ctxkit::net::ContextStream::new(&ctxkit::Context::background(), stream).unwrap();
    /// assert!(conn.get_ref().peer_addr().is_ok());
    /// ```
    pub fn new(ctx: &Context, stream: TcpStream) -> io::Result<ContextStream> {
        let clone = stream.try_clone()?;
        let shutdown = ctx.on_cancel(move || {
            // Wakes any thread blocked on the socket; an error means it is closed already.
            let _ = clone.shutdown(Shutdown::Both);
        });
        Ok(ContextStream {
            stream,
            ctx: ctx.clone(),
            _unlink: Unlink(shutdown),
        })
    }

    /// [`connect`], then [`new`](ContextStream::new).
    ///
    /// ```
    /// use std::net::TcpListener;
    /// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let conn = ctxkit::net::ContextStream::connect(&ctxkit::Context::background(), listener.local_addr().unwrap());
    /// assert!(conn.is_ok());
    /// ```
    pub fn connect(ctx: &Context, addr: impl ToSocketAddrs) -> io::Result<ContextStream> {
        ContextStream::new(ctx, connect(ctx, addr)?)
    }

    /// The context the stream is bound to.
    ///
    /// ```
    /// # use std::net::TcpListener;
    /// # let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let conn = ctxkit::net::ContextStream::connect(&ctxkit::Context::background(), listener.local_addr().unwrap()).unwrap();
    /// assert!(!conn.context().is_done());
    /// ```
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The stream.
    ///
    /// ```
    /// # use std::net::TcpListener;
    /// # let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let conn = ctxkit::net::ContextStream::connect(&ctxkit::Context::background(), listener.local_addr().unwrap()).unwrap();
    /// assert_eq!(conn.get_ref().peer_addr().unwrap(), listener.local_addr().unwrap());
    /// ```
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// Unbinds the stream: the cancel callback is removed. The stream keeps the timeouts set
    /// by the last call (and is shut down if the context was cancelled).
    ///
    /// ```
    /// # use std::net::TcpListener;
    /// # let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let (ctx, handle) = ctxkit::Context::background().with_cancel();
    /// let conn = ctxkit::net::ContextStream::connect(&ctx, listener.local_addr().unwrap()).unwrap();
    /// let stream = conn.into_inner();
    /// handle.cancel(); // no longer reaches the stream
    /// assert!(stream.peer_addr().is_ok());
    /// ```
    pub fn into_inner(self) -> TcpStream {
        let ContextStream { stream, .. } = self; // drops the `Unlink`
        stream
    }

    /// Runs one blocking call under the context.
    fn bounded<T>(&self, call: impl FnOnce(&TcpStream) -> io::Result<T>) -> io::Result<T> {
        let left = time_left(&self.ctx)?;
        if left.is_some() {
            self.stream.set_read_timeout(left)?;
            self.stream.set_write_timeout(left)?;
        }
        let result = call(&self.stream);
        match result {
            // A successful call stands, even if the context ended meanwhile: the next fails.
            Ok(value) => Ok(value),
            Err(err) => {
                // The context's own error explains a failure after it was done (a shutdown
                // by the cancel callback, or the timeout we derived from its deadline).
                time_left(&self.ctx)?;
                if left.is_some() && is_timeout(&err) {
                    return Err(Error::DeadlineExceeded.into());
                }
                Err(err)
            }
        }
    }
}

impl Read for ContextStream {
    /// Reads under the context. A read that returns 0 because the cancel callback shut the
    /// socket down fails with the context's error instead.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.bounded(|mut s| s.read(buf))?;
        if n == 0 && !buf.is_empty() {
            // End of stream, or our own shutdown: only the context can tell.
            time_left(&self.ctx)?;
        }
        Ok(n)
    }
}

impl Write for ContextStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bounded(|mut s| s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.bounded(|mut s| s.flush())
    }
}

impl fmt::Debug for ContextStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextStream")
            .field("stream", &self.stream)
            .field("ctx", &self.ctx)
            .finish()
    }
}
