//! Time as the store keeps it: microseconds since the Unix epoch, the finest
//! resolution both SQLite integers and Azure's 7-digit timestamps hold exactly.

use chrono::{DateTime, Utc};

const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Now, truncated to whole microseconds.
pub(crate) fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

/// `t` truncated to whole microseconds.
pub(crate) fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    from_micros(to_micros(t))
}

/// Microseconds since the epoch.
pub(crate) fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The instant `micros` after the epoch; out-of-range values saturate.
pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(if micros < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// The index of the clock hour holding `micros`. Truncating division, as SQL
/// integer division does, so every backend buckets alike (the meter does not
/// serve times before 1970).
pub(crate) fn hour_index(micros: i64) -> i64 {
    micros / MICROS_PER_HOUR
}

/// The SQL expression of [`hour_index`] over a microsecond column.
pub(crate) const HOUR_DIVISOR: i64 = MICROS_PER_HOUR;

/// The start of clock hour `index`.
pub(crate) fn hour_start(index: i64) -> DateTime<Utc> {
    from_micros(index.saturating_mul(MICROS_PER_HOUR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};

    #[test]
    fn hours() {
        assert_eq!(hour_index(MICROS_PER_HOUR - 1), 0);
        assert_eq!(hour_index(MICROS_PER_HOUR), 1);
        assert_eq!(hour_start(1), from_micros(MICROS_PER_HOUR));
    }

    #[test]
    fn truncation_keeps_micros() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T10:20:30.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(truncate(t).nanosecond(), 123_456_000);
        assert_eq!(Utc.timestamp_micros(to_micros(t)).unwrap(), truncate(t));
    }
}
