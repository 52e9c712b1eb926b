//! Fill rate and "full in N hours": a least-squares line through the recent samples of a
//! filesystem's used bytes. Shared by the probes that forecast growth (disk, images,
//! cgroups).

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A drop in use larger than this share of the filesystem is a cleanup, which starts a new
/// trend.
const CLEANUP_SHARE: f64 = 0.01;

/// Which samples a fill rate is fitted to: those of the last `window`, once they span
/// `min_span`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// The samples of this long are fitted.
    pub window: Duration,
    /// The shortest span of samples that gives a rate.
    pub min_span: Duration,
}

/// Recent `(time, used bytes)` samples per mount point.
#[derive(Debug, Default)]
pub struct History {
    samples: HashMap<String, VecDeque<(f64, f64)>>,
}

/// The growth of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Bytes per hour; negative when it shrinks.
    pub bytes_per_hour: f64,
    /// Hours until nothing is available; `None` unless it grows.
    pub full_in_hours: Option<f64>,
}

impl History {
    /// Records a sample and fits the samples of the last `window`. `None` until the samples
    /// span at least `min_span` and there are three of them.
    pub fn record(
        &mut self,
        mount_point: &str,
        now: SystemTime,
        used: u64,
        available: u64,
        window: Duration,
        min_span: Duration,
    ) -> Option<Forecast> {
        let t = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let samples = self.samples.entry(mount_point.to_owned()).or_default();
        let size = (used + available) as f64;
        if samples.back().is_some_and(|&(last, _)| last >= t) {
            // The clock went back: the old samples no longer line up.
            samples.clear();
        } else if samples
            .back()
            .is_some_and(|&(_, last_used)| last_used - used as f64 > size * CLEANUP_SHARE)
        {
            // Something was cleaned up: the trend before it says nothing about what comes.
            samples.clear();
        }
        samples.push_back((t, used as f64));
        while samples
            .front()
            .is_some_and(|&(first, _)| first < t - window.as_secs_f64())
        {
            samples.pop_front();
        }
        let span = t - samples.front().map_or(t, |&(first, _)| first);
        if samples.len() < 3 || span < min_span.as_secs_f64() {
            return None;
        }
        let per_second = slope(samples.iter().copied());
        let bytes_per_hour = per_second * 3600.0;
        let full_in_hours = (bytes_per_hour > 0.0).then(|| available as f64 / bytes_per_hour);
        Some(Forecast {
            bytes_per_hour,
            full_in_hours,
        })
    }

    /// Forgets the series `keep` says are gone (unmounted filesystems, removed cgroups).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.samples.retain(|k, _| keep(k));
    }
}

/// Least-squares slope of y over x.
fn slope(points: impl Iterator<Item = (f64, f64)> + Clone) -> f64 {
    let n = points.clone().count() as f64;
    let (sx, sy) = points
        .clone()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    fn at(minutes: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + minutes * 60)
    }

    #[test]
    fn steady_growth_gives_rate_and_time_to_full() {
        let mut h = History::default();
        let gib = 1u64 << 30;
        assert_eq!(
            h.record("/", at(0), 10 * gib, 20 * gib, HOUR, 5 * MIN),
            None
        );
        assert_eq!(
            h.record("/", at(5), 11 * gib, 19 * gib, HOUR, 5 * MIN),
            None,
            "two samples"
        );
        let f = h
            .record("/", at(10), 12 * gib, 18 * gib, HOUR, 5 * MIN)
            .unwrap();
        assert!((f.bytes_per_hour - 12.0 * gib as f64).abs() < 1.0, "{f:?}");
        assert!((f.full_in_hours.unwrap() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn shrinking_or_flat_never_fills() {
        let mut h = History::default();
        for (m, used) in [(0, 100), (5, 90), (10, 80)] {
            h.record("/", at(m), used, 1000, HOUR, 5 * MIN);
        }
        let f = h.record("/", at(15), 70, 1000, HOUR, 5 * MIN).unwrap();
        assert!(f.bytes_per_hour < 0.0);
        assert_eq!(f.full_in_hours, None);
    }

    #[test]
    fn a_cleanup_starts_a_new_trend() {
        let mut h = History::default();
        for (m, used) in [(0, 100), (5, 500), (10, 900)] {
            h.record("/", at(m), used, 1000 - used, HOUR, 5 * MIN);
        }
        assert_eq!(h.record("/", at(15), 100, 900, HOUR, 5 * MIN), None);
        assert_eq!(h.samples["/"].len(), 1);
    }

    #[test]
    fn old_samples_leave_the_window_and_clock_jumps_reset() {
        let mut h = History::default();
        for m in [0, 5, 10] {
            h.record("/", at(m), 100, 1000, 12 * MIN, 5 * MIN);
        }
        // At minute 20 only minutes 10 and 20 are within 12 minutes: too few samples.
        assert_eq!(h.record("/", at(20), 100, 1000, 12 * MIN, 5 * MIN), None);
        assert_eq!(h.samples["/"].len(), 2);
        h.record("/", at(1), 100, 1000, 12 * MIN, 5 * MIN);
        assert_eq!(h.samples["/"].len(), 1);
        h.retain(|_| false);
        assert!(h.samples.is_empty());
    }
}
