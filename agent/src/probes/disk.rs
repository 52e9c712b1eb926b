//! The disk probe: bytes and inodes of every real filesystem, read-only mounts, and how
//! fast each one fills. Judged against the kubelet's own lines: it evicts pods at
//! `nodefs.available<10%`, `imagefs.available<15%` and `nodefs.inodesFree<5%`, and starts
//! image garbage collection at 85% used. Also how busy their devices are and whether tasks
//! stall on I/O (`io`).

pub mod config;
pub mod io;
pub mod mounts;

use std::sync::Mutex;

use nodemedic_proto::{
    checks,
    finding::human_bytes,
    v1::{DiskSection, Evidence, Finding, Mount, MountRole, Severity},
};
use tracing::debug;

use self::{config::DiskThresholds, io::IoTracker, mounts::Candidate};
use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{forecast::History, parse::psi, units::percent};

/// Measures filesystems; keeps recent samples for the fill rate and the devices' counters.
#[derive(Debug, Default)]
pub struct DiskProbe {
    thresholds: DiskThresholds,
    history: Mutex<History>,
    io: Mutex<IoTracker>,
}

impl DiskProbe {
    /// A probe judging against `thresholds`.
    pub fn new(thresholds: DiskThresholds) -> Self {
        DiskProbe {
            thresholds,
            history: Mutex::default(),
            io: Mutex::default(),
        }
    }
}

impl Probe for DiskProbe {
    fn id(&self) -> &'static str {
        "disk"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let t = &self.thresholds;
        let table = ctx.host.mount_table()?;

        let mut section = DiskSection::default();
        let exists = |p: &str| ctx.host.path(p).is_dir();
        for candidate in mounts::select(table, exists) {
            match measure(ctx, &candidate) {
                Ok(mount) => section.mounts.push(mount),
                // A filesystem the node depends on must be measurable.
                Err(e) if !candidate.roles.is_empty() => return Err(e),
                Err(e) => {
                    debug!(message = "Skipping a filesystem.", mount = %candidate.info.mount_point, error = %e)
                }
            }
        }

        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        for mount in &mut section.mounts {
            if let Some(f) = history.record(
                &mount.mount_point,
                ctx.now,
                mount.bytes_used,
                mount.bytes_available,
                t.fill_window,
                t.fill_min_span,
            ) {
                mount.fill_rate_bytes_per_hour = Some(f.bytes_per_hour);
                mount.full_in_hours = f.full_in_hours;
            }
        }
        let mounted: Vec<&str> = section
            .mounts
            .iter()
            .map(|m| m.mount_point.as_str())
            .collect();
        history.retain(|m| mounted.contains(&m));
        drop(history);

        // Kernels without the file (or without PSI) give no rates and no stall verdict.
        let pressure = ctx
            .host
            .read_if_present("/proc/pressure/io")?
            .map(|text| psi::parse(&text).map_err(|e| ctx.host.parse_error("/proc/pressure/io", e)))
            .transpose()?;
        let stats = if ctx.host.path("/proc/diskstats").exists() {
            Some(
                ctx.host
                    .parse::<procfs_core::DiskStats>("/proc/diskstats")?,
            )
        } else {
            None
        };
        let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stats) = &stats {
            io.rates(ctx.now, stats, &mut section.mounts);
        }
        let stalled_for = io.stalled_for(ctx.now, pressure.as_ref(), t);
        drop(io);

        let mut findings: Vec<Finding> = section.mounts.iter().flat_map(|m| judge(m, t)).collect();
        findings.extend(io::judge(
            pressure.as_ref(),
            stalled_for,
            &section.mounts,
            t,
        ));
        section.io_stalled_for_seconds = stalled_for.map(|d| d.as_secs_f64());
        section.io_pressure = pressure;
        Ok(ProbeOutput {
            section: Section::Disk(section),
            findings,
        })
    }
}

fn measure(ctx: &ProbeContext, c: &Candidate) -> Result<Mount, ProbeError> {
    let u = ctx.host.fs_usage(&c.info.mount_point)?;
    Ok(Mount {
        mount_point: c.info.mount_point.clone(),
        device: c.info.source.clone(),
        device_id: c.info.device_id.clone(),
        fs_type: c.info.fs_type.clone(),
        roles: c.roles.iter().map(|r| *r as i32).collect(),
        read_only: c.info.read_only(),
        bytes_total: u.bytes_total,
        bytes_used: u.bytes_used,
        bytes_available: u.bytes_available,
        inodes_total: u.inodes_total,
        inodes_used: u.inodes_total.saturating_sub(u.inodes_free),
        inodes_available: u.inodes_free,
        ..Default::default()
    })
}

fn has(m: &Mount, role: MountRole) -> bool {
    m.roles.contains(&(role as i32))
}

fn is_nodefs(m: &Mount) -> bool {
    [MountRole::Root, MountRole::Kubelet, MountRole::Logs]
        .iter()
        .any(|r| has(m, *r))
}

/// The roles as evidence: `root,kubelet,images`; runbook rules match on it.
fn roles_evidence(m: &Mount) -> Evidence {
    Evidence::text("roles", role_names(m).join(","))
}

fn role_names(m: &Mount) -> Vec<&'static str> {
    m.roles
        .iter()
        .filter_map(|r| MountRole::try_from(*r).ok())
        .map(MountRole::label)
        .collect()
}

fn roles_text(m: &Mount) -> String {
    let names = role_names(m);
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    }
}

/// The findings for one filesystem.
pub fn judge(m: &Mount, t: &DiskThresholds) -> Vec<Finding> {
    [space(m, t), inodes(m, t), read_only(m), fill_rate(m, t)]
        .into_iter()
        .flatten()
        .collect()
}

fn space(m: &Mount, t: &DiskThresholds) -> Option<Finding> {
    if m.bytes_total == 0 {
        return None;
    }
    let avail = percent(m.bytes_available, m.bytes_total);
    // The kubelet's usage: what is not available to it.
    let used = 100.0 - avail;
    let mut verdicts: Vec<(Severity, String)> = Vec::new();
    if is_nodefs(m) {
        if avail < t.nodefs_critical_available.get() {
            verdicts.push((Severity::Critical, format!("below the kubelet's eviction line nodefs.available<{}%: it is evicting pods from this node", t.nodefs_critical_available.get())));
        } else if avail < t.nodefs_warn_available.get() {
            verdicts.push((
                Severity::Warning,
                format!(
                    "the kubelet starts evicting pods at nodefs.available<{}%",
                    t.nodefs_critical_available.get()
                ),
            ));
        }
    }
    if has(m, MountRole::Images) {
        if avail < t.imagefs_critical_available.get() {
            verdicts.push((Severity::Critical, format!("below the kubelet's eviction line imagefs.available<{}%: it is evicting pods and deleting unused images", t.imagefs_critical_available.get())));
        } else if used >= t.imagefs_gc_used.get() {
            verdicts.push((Severity::Warning, format!("past the kubelet's image GC threshold ({}% used): it is deleting unused images", t.imagefs_gc_used.get())));
        } else if used >= t.imagefs_warn_used.get() {
            verdicts.push((
                Severity::Warning,
                format!(
                    "the kubelet starts deleting unused images at {}% used",
                    t.imagefs_gc_used.get()
                ),
            ));
        }
    }
    if !is_nodefs(m) && !has(m, MountRole::Images) {
        if used >= t.other_critical_used.get() {
            verdicts.push((
                Severity::Critical,
                "writes will fail when it is full".to_owned(),
            ));
        } else if used >= t.other_warn_used.get() {
            verdicts.push((
                Severity::Warning,
                "writes will fail when it is full".to_owned(),
            ));
        }
    }
    let (severity, why) = verdicts.into_iter().max_by_key(|(s, _)| *s)?;
    Some(
        Finding::fail(
            checks::DISK_SPACE,
            severity,
            &m.mount_point,
            format!(
                "{}{} has {:.1}% available ({} of {}): {why}.",
                m.mount_point,
                roles_text(m),
                avail,
                human_bytes(m.bytes_available as f64),
                human_bytes(m.bytes_total as f64),
            ),
        )
        .with(Evidence::bytes("available_bytes", m.bytes_available))
        .with(Evidence::bytes("total_bytes", m.bytes_total))
        .with(Evidence::bytes("used_bytes", m.bytes_used))
        .with(Evidence::percent("available_percent", avail))
        .with(roles_evidence(m)),
    )
}

fn inodes(m: &Mount, t: &DiskThresholds) -> Option<Finding> {
    // Some filesystems (btrfs, some FUSE) report no inode limit.
    if m.inodes_total == 0 {
        return None;
    }
    let free = percent(m.inodes_available, m.inodes_total);
    let line = format!("nodefs.inodesFree<{}%", t.inodes_critical_free.get());
    let (severity, why) = if free < t.inodes_critical_free.get() {
        let why = if is_nodefs(m) {
            format!("below the kubelet's eviction line {line}: it is evicting pods")
        } else {
            "file creation fails when none are left, whatever the free space".to_owned()
        };
        (Severity::Critical, why)
    } else if free < t.inodes_warn_free.get() {
        let why = if is_nodefs(m) {
            format!("the kubelet starts evicting pods at {line}")
        } else {
            "file creation fails when none are left, whatever the free space".to_owned()
        };
        (Severity::Warning, why)
    } else {
        return None;
    };
    Some(
        Finding::fail(
            checks::DISK_INODES,
            severity,
            &m.mount_point,
            format!(
                "{}{} has {:.1}% of its inodes free ({} of {}): {why}; many small files (logs, \
                 image layers, emptyDir caches) use them up.",
                m.mount_point,
                roles_text(m),
                free,
                m.inodes_available,
                m.inodes_total
            ),
        )
        .with(Evidence::count("inodes_free", m.inodes_available))
        .with(Evidence::count("inodes_total", m.inodes_total))
        .with(Evidence::percent("inodes_free_percent", free))
        .with(roles_evidence(m)),
    )
}

fn read_only(m: &Mount) -> Option<Finding> {
    let must_write = [
        MountRole::Root,
        MountRole::Kubelet,
        MountRole::Images,
        MountRole::Logs,
    ]
    .iter()
    .any(|r| has(m, *r));
    (m.read_only && must_write).then(|| {
        Finding::fail(
            checks::DISK_READONLY,
            Severity::Critical,
            &m.mount_point,
            format!(
                "{}{} is mounted read-only: the kubelet and the runtime cannot write to it. The \
                 kernel remounts a filesystem read-only after I/O or journal errors; check the \
                 kernel log and drain the node.",
                m.mount_point,
                roles_text(m)
            ),
        )
        .with(Evidence::text("device", m.device.clone()))
        .with(Evidence::text("fs_type", m.fs_type.clone()))
        .with(roles_evidence(m))
    })
}

fn fill_rate(m: &Mount, t: &DiskThresholds) -> Option<Finding> {
    let hours = m.full_in_hours?;
    let rate = m.fill_rate_bytes_per_hour?;
    let severity = if hours * 3600.0 < t.fill_critical_within.as_secs_f64() {
        Severity::Critical
    } else if hours * 3600.0 < t.fill_warn_within.as_secs_f64() {
        Severity::Warning
    } else {
        return None;
    };
    Some(
        Finding::fail(
            checks::DISK_FILL_RATE,
            severity,
            &m.mount_point,
            format!(
                "{}{} grows by {}/h: at this rate it is full in {:.1} h ({} available).",
                m.mount_point,
                roles_text(m),
                human_bytes(rate),
                hours,
                human_bytes(m.bytes_available as f64)
            ),
        )
        .with(Evidence::number("fill_rate", rate, "bytes_per_hour"))
        .with(Evidence::number("full_in", hours, "hours"))
        .with(Evidence::bytes("available_bytes", m.bytes_available))
        .with(roles_evidence(m)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(roles: &[MountRole], total: u64, available: u64) -> Mount {
        Mount {
            mount_point: "/var/lib/kubelet".into(),
            roles: roles.iter().map(|r| *r as i32).collect(),
            bytes_total: total,
            bytes_used: total - available,
            bytes_available: available,
            inodes_total: 1000,
            inodes_available: 900,
            ..Default::default()
        }
    }

    fn checks(m: &Mount) -> Vec<(String, Severity)> {
        judge(m, &DiskThresholds::default())
            .into_iter()
            .map(|f| (f.check.clone(), f.severity()))
            .collect()
    }

    #[test]
    fn nodefs_warns_before_the_eviction_line_and_is_critical_at_it() {
        let k = [MountRole::Kubelet];
        assert_eq!(checks(&mount(&k, 100, 25)), []);
        assert_eq!(
            checks(&mount(&k, 100, 15)),
            [("disk.space".into(), Severity::Warning)]
        );
        assert_eq!(
            checks(&mount(&k, 100, 9)),
            [("disk.space".into(), Severity::Critical)]
        );
        let f = &judge(&mount(&k, 100, 9), &DiskThresholds::default())[0];
        assert!(f.message.contains("nodefs.available<10%"), "{}", f.message);
    }

    #[test]
    fn imagefs_names_garbage_collection() {
        let i = [MountRole::Images];
        let msg = |avail| {
            judge(&mount(&i, 100, avail), &DiskThresholds::default())[0]
                .message
                .clone()
        };
        assert!(msg(18).contains("starts deleting unused images at 85%"));
        assert!(msg(15).contains("image GC threshold"));
        assert!(msg(10).contains("imagefs.available<15%"));
        assert_eq!(
            checks(&mount(&i, 100, 10)),
            [("disk.space".into(), Severity::Critical)]
        );
    }

    #[test]
    fn inodes_readonly_and_fill_rate() {
        let mut m = mount(&[MountRole::Root], 100, 50);
        m.inodes_available = 40;
        m.read_only = true;
        m.fill_rate_bytes_per_hour = Some(50.0);
        m.full_in_hours = Some(1.0);
        assert_eq!(
            checks(&m),
            [
                ("disk.inodes".into(), Severity::Critical),
                ("disk.readonly".into(), Severity::Critical),
                ("disk.fill_rate".into(), Severity::Critical),
            ]
        );
        // A pod volume may be read-only on purpose.
        let mut v = mount(&[MountRole::Volume], 100, 50);
        v.read_only = true;
        assert_eq!(checks(&v), []);
    }
}
