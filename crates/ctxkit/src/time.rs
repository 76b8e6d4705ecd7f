//! Time as the core counts it: [`Nanos`] since a process epoch, and the arithmetic on it that
//! never panics or overflows ([S13](crate::guarantees#s13)).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A point in time as nanoseconds since the process epoch (the first time ctxkit read the
/// clock). `i64` covers ±292 years around the epoch.
pub(crate) type Nanos = i64;

/// The deadline of a context that has none (also: any deadline past the 292 years [`Nanos`]
/// can express, which [S13](crate::guarantees#s13) treats as "no deadline within the life of
/// the process").
pub(crate) const NO_DEADLINE: Nanos = Nanos::MAX;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The real clock's reading.
pub(crate) fn now() -> Nanos {
    to_nanos(Instant::now())
}

/// Converts an instant to [`Nanos`], saturating at the ends of the range.
pub(crate) fn to_nanos(t: Instant) -> Nanos {
    let epoch = epoch();
    match t.checked_duration_since(epoch) {
        Some(after) => after.as_nanos().try_into().unwrap_or(NO_DEADLINE),
        None => {
            let before: i128 = (epoch - t).as_nanos().try_into().unwrap_or(i128::MAX);
            (-before).max(Nanos::MIN as i128 + 1) as Nanos
        }
    }
}

/// Converts [`Nanos`] back to an instant. `n` came from [`to_nanos`], so it is representable.
pub(crate) fn from_nanos(n: Nanos) -> Instant {
    let epoch = epoch();
    if n >= 0 {
        epoch + Duration::from_nanos(n as u64)
    } else {
        epoch - Duration::from_nanos(n.unsigned_abs())
    }
}

/// `now + d` in [`Nanos`], or [`NO_DEADLINE`] when it does not fit
/// ([S13](crate::guarantees#s13)).
pub(crate) fn add_duration(now: Nanos, d: Duration) -> Nanos {
    // A span [`Nanos`] cannot hold is past the life of the process, wherever `now` is.
    let Ok(d) = i64::try_from(d.as_nanos()) else {
        return NO_DEADLINE;
    };
    now.checked_add(d).unwrap_or(NO_DEADLINE)
}

/// The real clock in whole milliseconds since the epoch, plus one, wrapping every 49.7 days:
/// what a context records as its birth, to show its age ([S30](crate::guarantees#s30)).
pub(crate) fn to_coarse(n: Nanos) -> u32 {
    ((n.max(0) / 1_000_000) as u32).wrapping_add(1)
}

/// [`to_coarse`] of the real clock, within one tick of the `ctxkit-clock` thread (4 ms):
/// one relaxed load, no clock read. See [`coarse`].
#[inline]
pub(crate) fn coarse_now() -> u32 {
    coarse::now()
}

/// A clock that costs one load to read: a process-wide copy of the real clock, refreshed
/// every [`TICK`](coarse::TICK) by a thread (`ctxkit-clock`) while contexts are being made.
///
/// The thread ticks for about a second after the last time a reader found the copy stale,
/// then writes "stale" (0) and sleeps once more; if no reader refreshed the copy meanwhile,
/// it parks until one does. So a process that makes contexts pays one refresh a second and
/// a wake-up a tick; an idle process pays nothing. Without the thread (it could not be
/// started), every read refreshes: slower, never wrong.
mod coarse {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    use std::thread::Thread;
    use std::time::Duration;

    /// How often the copy is refreshed: the resolution of ages.
    pub(super) const TICK: Duration = Duration::from_millis(4);
    /// Ticks between two checks that someone still reads the copy.
    const TICKS_PER_CHECK: u32 = 250;

    /// [`to_coarse`](super::to_coarse) of the clock at the last tick; 0: stale.
    static COARSE: AtomicU32 = AtomicU32::new(0);

    #[inline]
    pub(super) fn now() -> u32 {
        match COARSE.load(Ordering::Relaxed) {
            0 => refresh(),
            t => t,
        }
    }

    #[cold]
    fn refresh() -> u32 {
        let t = super::to_coarse(super::now());
        if cfg!(loom) {
            return t; // no thread inside a model
        }
        if let Some(ticker) = ticker() {
            COARSE.store(t, Ordering::Relaxed);
            ticker.unpark();
        }
        t
    }

    fn ticker() -> Option<&'static Thread> {
        static TICKER: OnceLock<Option<Thread>> = OnceLock::new();
        TICKER
            .get_or_init(|| {
                std::thread::Builder::new()
                    .name("ctxkit-clock".into())
                    .spawn(tick)
                    .ok()
                    .map(|handle| handle.thread().clone())
            })
            .as_ref()
    }

    fn tick() {
        let store = || COARSE.store(super::to_coarse(super::now()), Ordering::Relaxed);
        loop {
            for _ in 0..TICKS_PER_CHECK {
                std::thread::sleep(TICK);
                store();
            }
            COARSE.store(0, Ordering::Relaxed);
            std::thread::sleep(TICK);
            if COARSE.load(Ordering::Relaxed) == 0 {
                std::thread::park(); // until a reader refreshes (spurious wake-ups: harmless)
            }
            store();
        }
    }
}

/// The time left from `now` to `deadline`, zero if it has passed.
pub(crate) fn remaining(deadline: Nanos, now: Nanos) -> Duration {
    Duration::from_nanos(deadline.saturating_sub(now).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_through_nanos() {
        let t = Instant::now();
        assert_eq!(from_nanos(to_nanos(t)), t);
        let earlier = t - Duration::from_secs(3);
        assert_eq!(from_nanos(to_nanos(earlier)), earlier);
    }

    #[test]
    fn durations_past_the_range_mean_no_deadline() {
        assert_eq!(add_duration(0, Duration::MAX), NO_DEADLINE);
        assert_eq!(
            add_duration(NO_DEADLINE - 1, Duration::from_secs(1)),
            NO_DEADLINE
        );
        assert_eq!(add_duration(5, Duration::from_nanos(7)), 12);
    }

    #[test]
    fn the_coarse_clock_follows_the_real_one() {
        let before = to_coarse(now());
        let read = coarse_now();
        let after = to_coarse(now());
        // Never ahead of the real clock read after it (the ticker stores the clock as it
        // was), and behind it by no more than a tick and some scheduling delay. Not bounded
        // against `before`: this thread may be descheduled between the two reads (under
        // valgrind, for many ticks) while the ticker moves the copy on.
        assert!(after.wrapping_sub(read) as i32 >= 0, "{after} {read}");
        assert!(after.wrapping_sub(read) < 1_000, "{after} {read}");
        assert!(
            (before.wrapping_sub(read) as i32) < 1_000,
            "{before} {read}"
        );
        assert_ne!(to_coarse(0), 0, "0 means stale");
    }

    #[test]
    fn remaining_saturates_at_zero() {
        assert_eq!(remaining(10, 4), Duration::from_nanos(6));
        assert_eq!(remaining(4, 10), Duration::ZERO);
        assert_eq!(
            remaining(NO_DEADLINE, Nanos::MIN + 1),
            Duration::from_nanos(i64::MAX as u64)
        );
    }
}
