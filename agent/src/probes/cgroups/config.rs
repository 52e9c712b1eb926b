//! The cgroups probe's settings (`cgroups:` in the agent's config file).

use std::time::Duration;

use serde::Deserialize;

use crate::units::Percent;

/// The cgroups probe: pod memory and CPU against limits, and pod ephemeral storage.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupsConfig {
    /// Walk the pod cgroups at all.
    pub enabled: bool,
    /// Walk them at most this often; reports in between repeat the last walk's result
    /// (default 30s: one walk of 300 containers costs about 15 ms, see BENCHMARKS.md).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// `pod.memory_near_limit` when a working set is above this share of its limit
    /// (percent, default 90) ...
    pub near_limit_percent: Percent,
    /// ... or will reach the limit within this time at its growth (default 30m).
    #[serde(with = "humantime_serde")]
    pub limit_within: Duration,
    /// Growth is fitted to the samples of this window (default 10m) ...
    #[serde(with = "humantime_serde")]
    pub growth_window: Duration,
    /// ... once they span this long (default 1m).
    #[serde(with = "humantime_serde")]
    pub growth_min_span: Duration,
    /// `pod.memory_throttled` at this many limit hits or memory.high events ... (default 10)
    pub throttle_events: u64,
    /// ... within this time, with no OOM kill (default 5m).
    #[serde(with = "humantime_serde")]
    pub throttle_window: Duration,
    /// `pod.cpu_throttled` when the kernel stopped a container at its CPU limit in more
    /// than this share of its CFS periods (percent, default 25) ...
    pub cpu_throttled_percent: Percent,
    /// ... over this window (default 5m) ...
    #[serde(with = "humantime_serde")]
    pub cpu_throttle_window: Duration,
    /// ... once it ran in this many periods in it (default 100: 10 s of running at the
    /// kernel's 100 ms period), so a container that barely ran is not judged.
    pub cpu_min_periods: u64,
    /// `pod.oom_kills` stays open this long after the last kill (default 1h).
    #[serde(with = "humantime_serde")]
    pub oom_window: Duration,
    /// `pod.ephemeral_storage` above this share of the pod's ephemeral-storage limit
    /// (percent, default 80).
    pub ephemeral_warn_percent: Percent,
    /// Ephemeral storage is measured this often, as it walks directories (default 1m).
    #[serde(with = "humantime_serde")]
    pub ephemeral_every: Duration,
    /// The pods using the most ephemeral storage named when nodefs is filling (default 3).
    pub ephemeral_top: usize,
    /// Containers kept in the report, closest to their limits first (default 10).
    pub top: usize,
}

impl Default for CgroupsConfig {
    fn default() -> Self {
        CgroupsConfig {
            enabled: true,
            every: Duration::from_secs(30),
            near_limit_percent: Percent::of(90.0),
            limit_within: Duration::from_secs(1800),
            growth_window: Duration::from_secs(600),
            growth_min_span: Duration::from_secs(60),
            throttle_events: 10,
            throttle_window: Duration::from_secs(300),
            cpu_throttled_percent: Percent::of(25.0),
            cpu_throttle_window: Duration::from_secs(300),
            cpu_min_periods: 100,
            oom_window: Duration::from_secs(3600),
            ephemeral_warn_percent: Percent::of(80.0),
            ephemeral_every: Duration::from_secs(60),
            ephemeral_top: 3,
            top: 10,
        }
    }
}

impl CgroupsConfig {
    /// Checks the values: the walk and its windows take time (`0s` would walk every
    /// cgroup at every report and fit growth to nothing).
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("every", self.every),
            ("ephemeral_every", self.ephemeral_every),
            ("growth_window", self.growth_window),
            ("throttle_window", self.throttle_window),
            ("cpu_throttle_window", self.cpu_throttle_window),
            ("oom_window", self.oom_window),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be more than 0s"));
            }
        }
        if self.growth_min_span > self.growth_window {
            return Err("growth_min_span must be at most growth_window".into());
        }
        Ok(())
    }
}
