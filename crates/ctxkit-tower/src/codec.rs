//! Deadline headers on the wire: `grpc-timeout` and millisecond headers such as
//! `connect-timeout-ms`.
//!
//! Both directions are total functions: decoding never panics and rejects anything outside the
//! grammar; encoding never shortens a timeout (it rounds up, as grpc-go does).

use std::fmt;
use std::time::Duration;

/// The largest value `grpc-timeout` can carry: eight digits.
const MAX_GRPC_VALUE: u64 = 99_999_999;

/// The most digits accepted in a millisecond header (the Connect protocol's limit).
const MAX_MS_DIGITS: usize = 10;

/// Why a timeout header was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutError {
    /// The value is empty.
    Empty,
    /// The value has more digits than the grammar allows (8 for `grpc-timeout`, 10 for
    /// milliseconds).
    TooManyDigits,
    /// A character that is not an ASCII digit where a digit must be.
    NotADigit,
    /// `grpc-timeout` ends in something other than `H M S m u n`, or has no unit.
    BadUnit,
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutError::Empty => "empty timeout",
            TimeoutError::TooManyDigits => "too many digits in timeout",
            TimeoutError::NotADigit => "timeout value is not ASCII digits",
            TimeoutError::BadUnit => "timeout unit is not one of H M S m u n",
        })
    }
}

impl std::error::Error for TimeoutError {}

/// Parses a `grpc-timeout` value: 1–8 ASCII digits and one unit of `H` (hours), `M`
/// (minutes), `S` (seconds), `m` (milliseconds), `u` (microseconds), `n` (nanoseconds).
/// Nothing else is accepted: no sign, no spaces, no ninth digit.
///
/// ```
/// use std::time::Duration;
/// use ctxkit_tower::codec::{decode_grpc_timeout, TimeoutError};
/// assert_eq!(decode_grpc_timeout(b"100m"), Ok(Duration::from_millis(100)));
/// assert_eq!(decode_grpc_timeout(b"123456789n"), Err(TimeoutError::TooManyDigits));
/// assert_eq!(decode_grpc_timeout(b"5s"), Err(TimeoutError::BadUnit));
/// ```
pub fn decode_grpc_timeout(value: &[u8]) -> Result<Duration, TimeoutError> {
    let Some((&unit, digits)) = value.split_last() else {
        return Err(TimeoutError::Empty);
    };
    if unit.is_ascii_digit() {
        return Err(TimeoutError::BadUnit);
    }
    let n = parse_digits(digits, 8)?;
    Ok(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(TimeoutError::BadUnit),
    })
}

/// Parses a millisecond header value such as `connect-timeout-ms`: 1–10 ASCII digits.
///
/// ```
/// use std::time::Duration;
/// use ctxkit_tower::codec::decode_timeout_ms;
/// assert_eq!(decode_timeout_ms(b"250"), Ok(Duration::from_millis(250)));
/// assert!(decode_timeout_ms(b"-1").is_err());
/// ```
pub fn decode_timeout_ms(value: &[u8]) -> Result<Duration, TimeoutError> {
    parse_digits(value, MAX_MS_DIGITS).map(Duration::from_millis)
}

/// At most `max` ASCII digits, at least one. Cannot overflow: 10 digits fit a `u64`.
fn parse_digits(digits: &[u8], max: usize) -> Result<u64, TimeoutError> {
    if digits.is_empty() {
        return Err(TimeoutError::Empty);
    }
    if digits.len() > max {
        return Err(TimeoutError::TooManyDigits);
    }
    digits.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => Ok(n * 10 + u64::from(b - b'0')),
        _ => Err(TimeoutError::NotADigit),
    })
}

/// Encodes a timeout as `grpc-timeout`, exactly as grpc-go does: the finest unit whose value
/// fits in 8 digits, rounded up, so the peer never sees a shorter timeout than was meant. A
/// zero timeout is `0n`; timeouts past 99,999,999 hours (11,000 years) are sent as that.
///
/// ```
/// use std::time::Duration;
/// use ctxkit_tower::codec::encode_grpc_timeout;
/// assert_eq!(encode_grpc_timeout(Duration::from_millis(10)), "10000000n");
/// assert_eq!(encode_grpc_timeout(Duration::from_millis(100)), "100000u");
/// assert_eq!(encode_grpc_timeout(Duration::from_secs(1)), "1000000u");
/// assert_eq!(encode_grpc_timeout(Duration::from_nanos(100_000_001)), "100001u");
/// ```
pub fn encode_grpc_timeout(timeout: Duration) -> String {
    let nanos = timeout.as_nanos();
    if nanos == 0 {
        return "0n".to_owned();
    }
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (size, unit) in UNITS {
        let value = nanos.div_ceil(size);
        if value <= u128::from(MAX_GRPC_VALUE) {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX_GRPC_VALUE}H")
}

/// Encodes a timeout as whole milliseconds, rounded up (so never shorter), capped at the
/// largest 10-digit value.
///
/// ```
/// use std::time::Duration;
/// use ctxkit_tower::codec::encode_timeout_ms;
/// assert_eq!(encode_timeout_ms(Duration::from_micros(1500)), "2");
/// ```
pub fn encode_timeout_ms(timeout: Duration) -> String {
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    ms.min(9_999_999_999).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_decodes() {
        let cases: [(&[u8], Duration); 6] = [
            (b"2H", Duration::from_secs(7200)),
            (b"3M", Duration::from_secs(180)),
            (b"4S", Duration::from_secs(4)),
            (b"5m", Duration::from_millis(5)),
            (b"6u", Duration::from_micros(6)),
            (b"7n", Duration::from_nanos(7)),
        ];
        for (text, want) in cases {
            assert_eq!(decode_grpc_timeout(text), Ok(want));
        }
        assert_eq!(
            decode_grpc_timeout(b"99999999H"),
            Ok(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(decode_grpc_timeout(b"0n"), Ok(Duration::ZERO));
        assert_eq!(
            decode_grpc_timeout(b"00000001S"),
            Ok(Duration::from_secs(1))
        );
    }

    #[test]
    fn malformed_grpc_timeouts_are_rejected() {
        use TimeoutError::*;
        let cases: [(&[u8], TimeoutError); 14] = [
            (b"", Empty),
            (b"m", Empty),
            (b"123456789n", TooManyDigits),
            (b"999999999999999999999H", TooManyDigits),
            (b"10", BadUnit),
            (b"10s", BadUnit),
            (b"10x", BadUnit),
            (b"10 m", NotADigit),
            (b" 10m", NotADigit),
            (b"+1m", NotADigit),
            (b"-1m", NotADigit),
            (b"1.5S", NotADigit),
            ("１m".as_bytes(), NotADigit),
            ("10µ".as_bytes(), NotADigit),
        ];
        for (text, want) in cases {
            assert_eq!(
                decode_grpc_timeout(text),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn malformed_ms_timeouts_are_rejected() {
        assert_eq!(decode_timeout_ms(b""), Err(TimeoutError::Empty));
        assert_eq!(
            decode_timeout_ms(b"12345678901"),
            Err(TimeoutError::TooManyDigits)
        );
        assert_eq!(
            decode_timeout_ms(b"18446744073709551616"),
            Err(TimeoutError::TooManyDigits)
        );
        assert_eq!(decode_timeout_ms(b"1e3"), Err(TimeoutError::NotADigit));
        assert_eq!(
            decode_timeout_ms("٣".as_bytes()),
            Err(TimeoutError::NotADigit)
        );
        assert_eq!(
            decode_timeout_ms(b"9999999999"),
            Ok(Duration::from_millis(9_999_999_999))
        );
    }

    #[test]
    fn encoding_picks_the_finest_unit_that_fits_like_grpc_go() {
        assert_eq!(encode_grpc_timeout(Duration::ZERO), "0n");
        assert_eq!(encode_grpc_timeout(Duration::from_nanos(1)), "1n");
        assert_eq!(
            encode_grpc_timeout(Duration::from_nanos(99_999_999)),
            "99999999n"
        );
        assert_eq!(
            encode_grpc_timeout(Duration::from_nanos(100_000_000)),
            "100000u"
        );
        assert_eq!(
            encode_grpc_timeout(Duration::from_nanos(100_000_001)),
            "100001u"
        );
        assert_eq!(encode_grpc_timeout(Duration::from_secs(100)), "100000m");
        assert_eq!(encode_grpc_timeout(Duration::from_secs(100_000)), "100000S");
        assert_eq!(
            encode_grpc_timeout(Duration::from_secs(100_000_000)),
            "1666667M"
        );
        assert_eq!(
            encode_grpc_timeout(Duration::from_secs(10_000_000_000)),
            "2777778H"
        );
        assert_eq!(encode_grpc_timeout(Duration::MAX), "99999999H");
    }

    #[test]
    fn ms_encoding_rounds_up() {
        assert_eq!(encode_timeout_ms(Duration::ZERO), "0");
        assert_eq!(encode_timeout_ms(Duration::from_nanos(1)), "1");
        assert_eq!(encode_timeout_ms(Duration::from_millis(10_000)), "10000");
        assert_eq!(encode_timeout_ms(Duration::MAX), "9999999999");
    }
}
