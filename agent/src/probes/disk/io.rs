//! How busy the node's disks are: each measured filesystem's device from `/proc/diskstats`
//! (time busy, bytes read and written per second between two runs) and the tasks stalled
//! on I/O from `/proc/pressure/io`, judged when the stall has lasted.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use nodemedic_proto::{
    checks,
    finding::human_bytes,
    v1::{Evidence, Finding, Mount, Psi, Severity},
};
use procfs_core::DiskStats;

use super::config::DiskThresholds;

/// Bytes in a `/proc/diskstats` sector, whatever the device's own sector size.
const SECTOR: f64 = 512.0;

/// One device's counters at one time.
#[derive(Debug, Clone, Copy)]
struct Counters {
    sectors_read: u64,
    sectors_written: u64,
    /// Milliseconds with at least one I/O in flight (`io_ticks`).
    busy_ms: u64,
}

/// The previous run's counters and since when I/O has stalled tasks past the line.
#[derive(Debug, Default)]
pub struct IoTracker {
    last: Option<(SystemTime, HashMap<String, Counters>)>,
    stalled_since: Option<SystemTime>,
}

impl IoTracker {
    /// Sets each mount's rates from the counters' change since the previous run (none on
    /// the first run, for a filesystem with no block device, or after the clock went back).
    pub fn rates(&mut self, now: SystemTime, stats: &DiskStats, mounts: &mut [Mount]) {
        let current: HashMap<String, Counters> = stats
            .0
            .iter()
            .map(|d| {
                (
                    format!("{}:{}", d.major, d.minor),
                    Counters {
                        sectors_read: d.sectors_read,
                        sectors_written: d.sectors_written,
                        busy_ms: d.time_in_progress,
                    },
                )
            })
            .collect();
        if let Some((then, before)) = &self.last
            && let Ok(span) = now.duration_since(*then)
            && !span.is_zero()
        {
            let secs = span.as_secs_f64();
            for m in mounts.iter_mut() {
                let (Some(a), Some(b)) = (before.get(&m.device_id), current.get(&m.device_id))
                else {
                    continue;
                };
                // A counter going back is a device removed and added again under the
                // same number: no rate this time.
                let (Some(read), Some(written), Some(busy)) = (
                    b.sectors_read.checked_sub(a.sectors_read),
                    b.sectors_written.checked_sub(a.sectors_written),
                    b.busy_ms.checked_sub(a.busy_ms),
                ) else {
                    continue;
                };
                m.read_bytes_per_second = Some(read as f64 * SECTOR / secs);
                m.write_bytes_per_second = Some(written as f64 * SECTOR / secs);
                m.busy_percent = Some((busy as f64 / 10.0 / secs).min(100.0));
            }
        }
        self.last = Some((now, current));
    }

    /// How long tasks have stalled on I/O past the line, counting this reading; `None`
    /// when they do not (or the kernel has no PSI).
    pub fn stalled_for(
        &mut self,
        now: SystemTime,
        pressure: Option<&Psi>,
        t: &DiskThresholds,
    ) -> Option<Duration> {
        let over = pressure.is_some_and(|p| p.some_avg60 >= t.io_pressure_warn_some_avg60.get());
        if !over {
            self.stalled_since = None;
            return None;
        }
        let since = *self.stalled_since.get_or_insert(now);
        Some(now.duration_since(since).unwrap_or_default())
    }
}

/// The finding for tasks stalled on I/O for `t.io_pressure_for` or longer; it names the
/// busiest of the measured filesystems' devices.
pub fn judge(
    pressure: Option<&Psi>,
    stalled_for: Option<Duration>,
    mounts: &[Mount],
    t: &DiskThresholds,
) -> Option<Finding> {
    let (p, held) = (pressure?, stalled_for?);
    if held < t.io_pressure_for {
        return None;
    }
    let busiest = mounts
        .iter()
        .filter(|m| m.busy_percent.is_some())
        .max_by(|a, b| {
            a.busy_percent
                .partial_cmp(&b.busy_percent)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    let busiest_text = busiest.map_or_else(
        || "no measured filesystem's device shows it".to_owned(),
        |m| {
            format!(
                "the busiest device is {} ({}) at {:.0}% busy, {}/s read, {}/s written",
                m.device,
                m.mount_point,
                m.busy_percent.unwrap_or(0.0),
                human_bytes(m.read_bytes_per_second.unwrap_or(0.0)),
                human_bytes(m.write_bytes_per_second.unwrap_or(0.0)),
            )
        },
    );
    let mut f = Finding::fail(
        checks::DISK_IO_PRESSURE,
        Severity::Warning,
        "",
        format!(
            "Tasks stalled on I/O {:.1}% of the last minute, for {}: {busiest_text}. Pods slow down, probes time out and the kubelet falls behind; look for a pod writing heavily (logs, caches) or an image pull storm.",
            p.some_avg60,
            humantime::format_duration(Duration::from_secs(held.as_secs())),
        ),
    )
    .with(Evidence::percent("some_avg60", p.some_avg60))
    .with(Evidence::percent("full_avg60", p.full_avg60))
    .with(Evidence::number("stalled_for", held.as_secs_f64(), "s"));
    if let Some(m) = busiest {
        f = f
            .with(Evidence::text("busiest_mount", m.mount_point.clone()))
            .with(Evidence::percent(
                "busiest_busy",
                m.busy_percent.unwrap_or(0.0),
            ));
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/diskstats` as three kernel generations print it: 14 fields before 4.18, 18
    /// with the discard counters (4.18), 20 with the flush counters (5.5).
    const GENERATIONS: &str = "\
   8       0 sda 9162 3120 612718 12240 10245 8817 465688 51272 0 16000 63512
 254       0 vda 1846777 59201 112781338 2240062 1565557 555801 603220392 4091238 0 414520 6461598 366103 83 474928040 102100
 259       0 nvme0n1 52003 1033 4512846 9862 88310 61722 9123208 150773 0 81232 167552 0 0 0 0 12093 6917
";

    fn stats(text: &str) -> DiskStats {
        DiskStats(
            text.lines()
                .map(|l| procfs_core::DiskStat::from_line(l).unwrap())
                .collect(),
        )
    }

    fn mount(device_id: &str) -> Mount {
        Mount {
            mount_point: "/".into(),
            device: "/dev/vda".into(),
            device_id: device_id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_kernel_generation_parses() {
        let s = stats(GENERATIONS);
        assert_eq!(
            s.0.iter()
                .map(|d| (d.name.as_str(), d.time_in_progress, d.flushes))
                .collect::<Vec<_>>(),
            [
                ("sda", 16000, None),
                ("vda", 414520, None),
                ("nvme0n1", 81232, Some(12093))
            ]
        );
        // Shorter lines (the partitions of kernels before 2.6.25) are refused, not misread.
        assert!(procfs_core::DiskStat::from_line("8 1 sda1 100 200 300 400").is_err());
    }

    #[test]
    fn a_real_nodes_root_filesystem_finds_its_device() {
        // A Kubernetes worker's sosreport (Ubuntu 20.04, kernel 5.4): its mount table and
        // its diskstats, the same counters a second later.
        use crate::{parse::mountinfo, probes::disk::mounts, testing::fixture};
        let candidates = mounts::select(
            mountinfo::parse(&fixture("proc/hotsos-k8s-node-pid1-mountinfo")).unwrap(),
            |_| true,
        );
        let mut measured: Vec<Mount> = candidates
            .iter()
            .map(|c| mount(&c.info.device_id))
            .collect();
        let before = stats(&fixture("proc/hotsos-k8s-node-diskstats"));
        let mut after = before.clone();
        for d in &mut after.0 {
            d.time_in_progress += 500;
            d.sectors_written += 2048;
        }
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut tracker = IoTracker::default();
        tracker.rates(t0, &before, &mut measured);
        tracker.rates(t0 + Duration::from_secs(1), &after, &mut measured);
        assert_eq!(candidates[0].info.mount_point, "/");
        assert_eq!(measured[0].device_id, "252:1", "vda1");
        assert_eq!(measured[0].busy_percent, Some(50.0));
        assert_eq!(measured[0].write_bytes_per_second, Some(1024.0 * 1024.0));
    }

    #[test]
    fn rates_come_from_the_change_between_two_runs() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut tracker = IoTracker::default();
        let mut mounts = [mount("254:0"), mount("0:42")];
        tracker.rates(
            t0,
            &stats("254 0 vda 0 0 1000 0 0 0 2000 0 0 5000 0"),
            &mut mounts,
        );
        assert_eq!(mounts[0].busy_percent, None, "no rate from one reading");
        tracker.rates(
            t0 + Duration::from_secs(10),
            &stats("254 0 vda 0 0 21480 0 0 0 2000 0 0 12500 0"),
            &mut mounts,
        );
        assert_eq!(mounts[0].busy_percent, Some(75.0));
        assert_eq!(
            mounts[0].read_bytes_per_second,
            Some(20480.0 * 512.0 / 10.0)
        );
        assert_eq!(mounts[0].write_bytes_per_second, Some(0.0));
        assert_eq!(mounts[1].busy_percent, None, "overlay/tmpfs have no device");
        // The device came back with fresh counters: no rate, and the next run has one.
        tracker.rates(
            t0 + Duration::from_secs(20),
            &stats("254 0 vda 0 0 10 0 0 0 0 0 0 10 0"),
            &mut mounts,
        );
        assert_eq!(mounts[0].busy_percent, Some(75.0), "left as it was");
    }

    #[test]
    fn a_stall_is_judged_once_it_has_lasted() {
        let t = DiskThresholds::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let stalled = Psi {
            some_avg60: 35.0,
            full_avg60: 12.0,
            ..Default::default()
        };
        let calm = Psi {
            some_avg60: 3.0,
            ..Default::default()
        };
        let mut busy = mount("254:0");
        busy.busy_percent = Some(98.0);
        busy.write_bytes_per_second = Some(150e6);
        let mut tracker = IoTracker::default();
        let mut at = |secs, p: &Psi| {
            let held = tracker.stalled_for(t0 + Duration::from_secs(secs), Some(p), &t);
            judge(Some(p), held, std::slice::from_ref(&busy), &t)
        };
        assert!(at(0, &stalled).is_none());
        assert!(at(240, &stalled).is_none(), "4 minutes is not yet 5");
        let f = at(300, &stalled).expect("held 5 minutes");
        assert_eq!(f.check, checks::DISK_IO_PRESSURE);
        assert!(
            f.message.contains("35.0%") && f.message.contains("/dev/vda (/) at 98% busy"),
            "{}",
            f.message
        );
        assert!(at(360, &calm).is_none());
        assert!(
            at(420, &stalled).is_none(),
            "a new stall starts its own clock"
        );
        assert!(
            judge(None, None, &[], &t).is_none(),
            "no PSI: nothing judged"
        );
    }
}
