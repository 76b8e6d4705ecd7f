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
    fn remaining_saturates_at_zero() {
        assert_eq!(remaining(10, 4), Duration::from_nanos(6));
        assert_eq!(remaining(4, 10), Duration::ZERO);
        assert_eq!(
            remaining(NO_DEADLINE, Nanos::MIN + 1),
            Duration::from_nanos(i64::MAX as u64)
        );
    }
}
