//! Conversions between [`Timestamp`] and the clock types the programs use.

use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use crate::{Duration, Timestamp};

/// Milliseconds since the Unix epoch (negative before it).
pub fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The timestamp of a Unix time in milliseconds.
pub fn timestamp_from_millis(millis: i64) -> Timestamp {
    Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The timestamp of a clock reading.
pub fn timestamp(t: SystemTime) -> Timestamp {
    timestamp_from_millis(unix_millis(t))
}

/// Milliseconds since the Unix epoch of a timestamp.
pub fn timestamp_millis(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos / 1_000_000))
}

/// The clock reading of a timestamp (the epoch for one the clock cannot hold).
pub fn system_time(ts: &Timestamp) -> SystemTime {
    let millis = timestamp_millis(ts);
    let reading = if millis >= 0 {
        UNIX_EPOCH.checked_add(StdDuration::from_millis(millis as u64))
    } else {
        UNIX_EPOCH.checked_sub(StdDuration::from_millis(millis.unsigned_abs()))
    };
    reading.unwrap_or(UNIX_EPOCH)
}

/// A protobuf duration.
pub fn duration(d: StdDuration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

/// A std duration; negative durations are zero.
pub fn std_duration(d: &Duration) -> StdDuration {
    if d.seconds < 0 || d.nanos < 0 {
        return StdDuration::ZERO;
    }
    StdDuration::new(d.seconds as u64, d.nanos as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        for m in [0, 1, 999, 1_700_000_000_123, -1, -1500] {
            assert_eq!(timestamp_millis(&timestamp_from_millis(m)), m);
        }
        let t = UNIX_EPOCH + StdDuration::from_millis(1_700_000_000_123);
        assert_eq!(system_time(&timestamp(t)), t);
    }

    #[test]
    fn timestamps_out_of_any_clock_do_not_panic() {
        let far = Timestamp {
            seconds: i64::MAX,
            nanos: 999_999_999,
        };
        assert_eq!(timestamp_millis(&far), i64::MAX);
        let _ = system_time(&far);
        let _ = system_time(&Timestamp {
            seconds: i64::MIN,
            nanos: -999_999_999,
        });
    }
}
