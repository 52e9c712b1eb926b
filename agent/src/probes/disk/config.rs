//! The disk probe's thresholds (`thresholds.disk:` in the agent's config file).

use std::time::Duration;

use serde::Deserialize;

use crate::units::{Percent, at_least};

/// Filesystem limits. "nodefs" is any filesystem holding `/`, `/var/lib/kubelet` or
/// `/var/log`; "imagefs" one holding an image store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskThresholds {
    /// Warn when nodefs available falls below this (default 20%).
    pub nodefs_warn_available: Percent,
    /// Critical below this: the kubelet's `nodefs.available<10%` eviction line, on a node
    /// with no kubelet config (see [`super::lines`]).
    pub nodefs_critical_available: Percent,
    /// Warn when imagefs use passes this (default 80%): image GC starts at 85%.
    pub imagefs_warn_used: Percent,
    /// The kubelet's `imageGCHighThresholdPercent` (default 85%) on a node with no kubelet
    /// config (see [`super::lines`]).
    pub imagefs_gc_used: Percent,
    /// Critical below this: the kubelet's `imagefs.available<15%` eviction line.
    pub imagefs_critical_available: Percent,
    /// Warn when any other filesystem's use passes this (default 90%).
    pub other_warn_used: Percent,
    /// Critical when any other filesystem's use passes this (default 95%).
    pub other_critical_used: Percent,
    /// Warn when free inodes fall below this (default 10%).
    pub inodes_warn_free: Percent,
    /// Critical below this: the kubelet's `nodefs.inodesFree<5%` eviction line.
    pub inodes_critical_free: Percent,
    /// Warn when the fill rate says full within this (default 24h).
    #[serde(with = "humantime_serde")]
    pub fill_warn_within: Duration,
    /// Critical when the fill rate says full within this (default 2h).
    #[serde(with = "humantime_serde")]
    pub fill_critical_within: Duration,
    /// The samples the fill rate is fitted to (default the last 1h).
    #[serde(with = "humantime_serde")]
    pub fill_window: Duration,
    /// The shortest span of samples that gives a rate (default 5m).
    #[serde(with = "humantime_serde")]
    pub fill_min_span: Duration,
    /// `disk.pvc_filling` when a claim's volume has less than this available (default
    /// 15%) ...
    pub pvc_warn_available: Percent,
    /// ... critical below this (default 3%) ...
    pub pvc_critical_available: Percent,
    /// ... and a warning when its fill rate says full within this (default 4d).
    #[serde(with = "humantime_serde")]
    pub pvc_fill_within: Duration,
    /// Warn when tasks stalled on I/O this share of the last minute (default 20%) ...
    pub io_pressure_warn_some_avg60: Percent,
    /// ... for this long (default 5m: a burst of writes is not a problem).
    #[serde(with = "humantime_serde")]
    pub io_pressure_for: Duration,
}

impl Default for DiskThresholds {
    fn default() -> Self {
        DiskThresholds {
            nodefs_warn_available: Percent::of(20.0),
            nodefs_critical_available: Percent::of(10.0),
            imagefs_warn_used: Percent::of(80.0),
            imagefs_gc_used: Percent::of(85.0),
            imagefs_critical_available: Percent::of(15.0),
            other_warn_used: Percent::of(90.0),
            other_critical_used: Percent::of(95.0),
            inodes_warn_free: Percent::of(10.0),
            inodes_critical_free: Percent::of(5.0),
            fill_warn_within: Duration::from_secs(24 * 3600),
            fill_critical_within: Duration::from_secs(2 * 3600),
            fill_window: Duration::from_secs(3600),
            fill_min_span: Duration::from_secs(300),
            pvc_warn_available: Percent::of(15.0),
            pvc_critical_available: Percent::of(3.0),
            pvc_fill_within: Duration::from_secs(4 * 24 * 3600),
            io_pressure_warn_some_avg60: Percent::of(20.0),
            io_pressure_for: Duration::from_secs(300),
        }
    }
}

impl DiskThresholds {
    /// The samples fill rates are fitted to.
    pub fn fill_fit(&self) -> crate::forecast::Fit {
        crate::forecast::Fit {
            window: self.fill_window,
            min_span: self.fill_min_span,
        }
    }

    /// Checks that each warning comes before its critical line.
    pub fn validate(&self) -> Result<(), String> {
        at_least!(self:
            nodefs_warn_available >= nodefs_critical_available,
            inodes_warn_free >= inodes_critical_free,
            pvc_warn_available >= pvc_critical_available,
            other_critical_used >= other_warn_used,
            fill_warn_within >= fill_critical_within,
        )
    }
}
