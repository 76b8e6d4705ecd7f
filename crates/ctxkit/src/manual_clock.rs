//! [`ManualClock`]: time that moves only when a test says so.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::time;
use crate::tree::Queue;

/// A clock that moves only when told to, for deterministic tests of deadlines
/// ([S25](crate::guarantees#s25)).
///
/// Give it to a context with [`Context::with_clock`](crate::Context::with_clock): that context
/// and every context derived from it measure their deadlines on this clock, and
/// [`advance`](ManualClock::advance) fires, before it returns, every deadline it passes. Real
/// time passing fires nothing. Clones share one clock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ctxkit::{Context, Error, ManualClock};
///
/// let clock = ManualClock::new();
/// let root = Context::background().with_clock(&clock);
/// let (ctx, _handle) = root.with_timeout(Duration::from_secs(30));
/// assert_eq!(ctx.remaining(), Some(Duration::from_secs(30)));
///
/// clock.advance(Duration::from_secs(29));
/// assert_eq!(ctx.err(), None);
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    owner: Arc<ClockOwner>,
}

/// Shared by the clones of one [`ManualClock`]; dropping the last one abandons the queue
/// (T5): nothing can move its time any more. Contexts hold the queue, not this.
struct ClockOwner {
    queue: Arc<Queue>,
}

impl Drop for ClockOwner {
    fn drop(&mut self) {
        self.queue.abandon();
    }
}

impl ManualClock {
    /// A clock that starts at the current real time and then stands still.
    ///
    /// ```
    /// let clock = ctxkit::ManualClock::new();
    /// let t = clock.now();
    /// std::thread::sleep(std::time::Duration::from_millis(2));
    /// assert_eq!(clock.now(), t);
    /// ```
    pub fn new() -> ManualClock {
        let queue = Arc::new(Queue::manual(time::now()));
        ManualClock {
            owner: Arc::new(ClockOwner { queue }),
        }
    }

    /// The clock's current reading.
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = ctxkit::ManualClock::new();
    /// let t = clock.now();
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(clock.now() - t, Duration::from_secs(5));
    /// ```
    pub fn now(&self) -> Instant {
        time::from_nanos(self.queue().now())
    }

    /// Moves the clock forward by `by` (saturating at the end of the representable range,
    /// about 292 years past the process start) and cancels, before returning, every context
    /// whose deadline on this clock is now due. If an `on_cancel` callback panics, the other
    /// deadlines still fire and the first panic is resumed here afterwards.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ctxkit::{Context, ManualClock};
    /// let clock = ManualClock::new();
    /// let (ctx, _h) = Context::background().with_clock(&clock).with_timeout(Duration::from_millis(10));
    /// clock.advance(Duration::MAX); // huge steps are fine
    /// assert!(ctx.is_done());
    /// ```
    pub fn advance(&self, by: Duration) {
        self.queue().advance(by);
    }

    pub(crate) fn queue(&self) -> &Arc<Queue> {
        &self.owner.queue
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("pending_timers", &self.queue().len())
            .finish_non_exhaustive()
    }
}
