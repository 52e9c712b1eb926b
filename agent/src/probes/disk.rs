//! The disk probe: bytes and inodes of every real filesystem, read-only mounts, and how
//! fast each one fills. Judged against the kubelet's own lines ([`lines`]): those of its
//! config file, else its defaults — it evicts pods at `nodefs.available<10%`,
//! `imagefs.available<15%` and `nodefs.inodesFree<5%`, and starts image garbage collection
//! at 85% used. Also how busy their devices are and whether tasks
//! stall on I/O (`io`).

pub mod config;
pub mod io;
pub mod lines;
pub mod mounts;

use std::sync::Mutex;

use nodemedic_proto::{
    checks,
    finding::human_bytes,
    v1::{DiskSection, Evidence, Finding, Mount, MountRole, Severity},
};
use tracing::debug;

use self::{config::DiskThresholds, io::IoTracker, lines::EvictionLines, mounts::Candidate};
use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{
    forecast::History,
    kubelet::{KubeletConfig, Verdict, eviction, with_line},
    kubernetes::{view::KubeSlot, volumes::Volume},
    parse::psi,
    units::percent,
};

/// Measures filesystems; keeps recent samples for the fill rate and the devices' counters.
#[derive(Debug, Default)]
pub struct DiskProbe {
    thresholds: DiskThresholds,
    history: Mutex<History>,
    io: Mutex<IoTracker>,
    kube: KubeSlot,
}

impl DiskProbe {
    /// A probe judging against `thresholds`; pod volumes are named by pod and claim from
    /// the Kubernetes view in `kube` once the agent has one.
    pub fn new(thresholds: DiskThresholds, kube: KubeSlot) -> Self {
        DiskProbe {
            thresholds,
            history: Mutex::default(),
            io: Mutex::default(),
            kube,
        }
    }

    /// Names each PersistentVolume mount by its pod and claim, as far as the view knows
    /// (a claim asked for now is named from a later report on).
    fn name_volumes(&self, mounts: &mut [Mount]) {
        let Some(view) = self.kube.get() else {
            return;
        };
        for m in mounts {
            let Some((uid, dir)) = mounts::persistent_volume(&m.mount_point) else {
                continue;
            };
            if let Some((namespace, pod)) = view.with(|c| {
                c.pods
                    .get(uid)
                    .map(|p| (p.namespace.clone(), p.name.clone()))
            }) {
                m.namespace = namespace;
                m.pod = pod;
            }
            if let Some(Volume::Claim { namespace, name }) = view.volume(dir) {
                m.namespace = namespace;
                m.claim = name;
            }
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

        self.name_volumes(&mut section.mounts);
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

        let lines = EvictionLines::new(KubeletConfig::read(&ctx.host).as_ref(), t);
        let mut findings: Vec<Finding> = section
            .mounts
            .iter()
            .flat_map(|m| judge(m, t, &lines))
            .collect();
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

/// The findings for one filesystem, against the agent's thresholds `t` and the run's
/// eviction `lines`.
pub fn judge(m: &Mount, t: &DiskThresholds, lines: &EvictionLines) -> Vec<Finding> {
    // A claim's volume is the application's storage, judged by its own lines.
    let claimed = !m.claim.is_empty();
    let (room, rate) = if claimed {
        (pvc_filling(m, t), None)
    } else {
        (space(m, t, lines), fill_rate(m, t))
    };
    [room, inodes(m, t, lines), read_only(m), rate]
        .into_iter()
        .flatten()
        .collect()
}

/// `disk.pvc_filling`: a claim's volume nearly full, or full within days at its rate
/// (kubernetes-mixin's KubePersistentVolumeFillingUp lines).
fn pvc_filling(m: &Mount, t: &DiskThresholds) -> Option<Finding> {
    if m.bytes_total == 0 {
        return None;
    }
    let avail = percent(m.bytes_available, m.bytes_total);
    let soon = m
        .full_in_hours
        .filter(|h| h * 3600.0 <= t.pvc_fill_within.as_secs_f64());
    let (severity, why) = if avail < t.pvc_critical_available.get() {
        (
            Severity::Critical,
            "writes to it fail when it is full".to_owned(),
        )
    } else if avail < t.pvc_warn_available.get() {
        (Severity::Warning, "it is nearly full".to_owned())
    } else if let Some(h) = soon {
        (
            Severity::Warning,
            format!(
                "at {}/h it is full in {}",
                human_bytes(m.fill_rate_bytes_per_hour.unwrap_or(0.0)),
                humantime::format_duration(std::time::Duration::from_secs(
                    (h * 3600.0) as u64 / 60 * 60
                ))
            ),
        )
    } else {
        return None;
    };
    let pod = if m.pod.is_empty() { "unknown" } else { &m.pod };
    let mut f = Finding::fail(
        checks::DISK_PVC_FILLING,
        severity,
        &format!("{}/{}", m.namespace, m.claim),
        format!(
            "PersistentVolumeClaim {}/{} (pod {pod}) has {avail:.1}% available ({} of {}): {why}.",
            m.namespace,
            m.claim,
            human_bytes(m.bytes_available as f64),
            human_bytes(m.bytes_total as f64),
        ),
    )
    .with(Evidence::text("namespace", m.namespace.clone()))
    .with(Evidence::text("claim", m.claim.clone()))
    .with(Evidence::text("pod", m.pod.clone()))
    .with(Evidence::text("mount", m.mount_point.clone()))
    .with(Evidence::bytes("available_bytes", m.bytes_available))
    .with(Evidence::bytes("total_bytes", m.bytes_total))
    .with(Evidence::percent("available_percent", avail));
    if let Some(h) = m.full_in_hours {
        f = f.with(Evidence::number("full_in", h, "hours"));
    }
    Some(f)
}

fn space(m: &Mount, t: &DiskThresholds, lines: &EvictionLines) -> Option<Finding> {
    if m.bytes_total == 0 {
        return None;
    }
    let avail = percent(m.bytes_available, m.bytes_total);
    // The kubelet's usage: what is not available to it.
    let used = 100.0 - avail;
    let total = m.bytes_total;
    let mut verdicts: Vec<Verdict> = Vec::new();
    let mut other = !is_nodefs(m) && !has(m, MountRole::Images);
    if is_nodefs(m) {
        if lines.nodefs.is_none() && lines.nodefs_soft.is_none() {
            // The kubelet's config evicts on other signals only: judged as any filesystem.
            other = true;
        }
        verdicts.extend(eviction(
            avail,
            total,
            lines.nodefs.as_ref(),
            lines.nodefs_soft.as_ref(),
            t.nodefs_warn_available.get(),
            "evicting pods from this node",
        ));
    }
    if has(m, MountRole::Images) {
        verdicts.extend(eviction(
            avail,
            total,
            lines.imagefs.as_ref(),
            lines.imagefs_soft.as_ref(),
            0.0,
            "evicting pods and deleting unused images",
        ));
        let gc = &lines.image_gc;
        let gc_used = gc.percent_of(total);
        if used >= gc_used {
            verdicts.push((
                Severity::Warning,
                format!(
                    "past the kubelet's image GC threshold of {gc_used}% used{}: it is deleting unused images",
                    gc.origin()
                ),
                Some(gc),
            ));
        } else if used >= t.imagefs_warn_used.get().min(gc_used) {
            verdicts.push((
                Severity::Warning,
                format!(
                    "the kubelet starts deleting unused images at {gc_used}% used{}",
                    gc.origin()
                ),
                Some(gc),
            ));
        }
    }
    if other {
        if used >= t.other_critical_used.get() {
            verdicts.push((
                Severity::Critical,
                "writes will fail when it is full".to_owned(),
                None,
            ));
        } else if used >= t.other_warn_used.get() {
            verdicts.push((
                Severity::Warning,
                "writes will fail when it is full".to_owned(),
                None,
            ));
        }
    }
    let (severity, why, line) = verdicts.into_iter().max_by_key(|(s, _, _)| *s)?;
    let f = Finding::fail(
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
    .with(roles_evidence(m));
    Some(with_line(f, line))
}

fn inodes(m: &Mount, t: &DiskThresholds, lines: &EvictionLines) -> Option<Finding> {
    // Some filesystems (btrfs, some FUSE) report no inode limit.
    if m.inodes_total == 0 {
        return None;
    }
    let free = percent(m.inodes_available, m.inodes_total);
    let line = if is_nodefs(m) {
        lines.nodefs_inodes.as_ref()
    } else if has(m, MountRole::Images) {
        lines.imagefs_inodes.as_ref()
    } else {
        None
    };
    let (severity, why, line) = match eviction(
        free,
        m.inodes_total,
        line,
        None,
        t.inodes_warn_free.get(),
        "evicting pods",
    ) {
        Some(verdict) => verdict,
        None if line.is_some() => return None,
        None => {
            let why = "file creation fails when none are left, whatever the free space".to_owned();
            if free < t.inodes_critical_free.get() {
                (Severity::Critical, why, None)
            } else if free < t.inodes_warn_free.get() {
                (Severity::Warning, why, None)
            } else {
                return None;
            }
        }
    };
    let f = Finding::fail(
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
    .with(roles_evidence(m));
    Some(with_line(f, line))
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
    use crate::kubelet::KubeletConfig;

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
        judge(m, &DiskThresholds::default(), &EvictionLines::default())
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
        let f = &judge(
            &mount(&k, 100, 9),
            &DiskThresholds::default(),
            &EvictionLines::default(),
        )[0];
        assert!(f.message.contains("nodefs.available<10%"), "{}", f.message);
    }

    #[test]
    fn imagefs_names_garbage_collection() {
        let i = [MountRole::Images];
        let msg = |avail| {
            judge(
                &mount(&i, 100, avail),
                &DiskThresholds::default(),
                &EvictionLines::default(),
            )[0]
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

    /// The lines of a real EKS node's kubelet config, and of one with a line in bytes.
    #[test]
    fn judged_against_the_kubelet_s_own_lines() {
        let eks: KubeletConfig = serde_saphyr::from_str(include_str!(
            "../../../tests/fixtures/real/kubelet/eks-al2023-config.json"
        ))
        .unwrap();
        let t = DiskThresholds::default();
        let eks = EvictionLines::new(Some(&eks), &t);
        // A separate image filesystem at 12% available: below the kubelet's default
        // imagefs line, but nodeadm's evictionHard leaves the kubelet none, so only its
        // image GC (default 85%) is running.
        let images = mount(&[MountRole::Images], 100, 12);
        let default = judge(&images, &t, &EvictionLines::default());
        assert_eq!(default[0].severity(), Severity::Critical);
        let on_eks = &judge(&images, &t, &eks)[0];
        assert_eq!(on_eks.severity(), Severity::Warning, "{}", on_eks.message);
        assert!(
            on_eks
                .message
                .contains("image GC threshold of 85% used (the kubelet's default)"),
            "{}",
            on_eks.message
        );
        let nodefs = &judge(&mount(&[MountRole::Kubelet], 100, 9), &t, &eks)[0];
        assert_eq!(nodefs.severity(), Severity::Critical);
        assert!(
            nodefs
                .message
                .contains("nodefs.available<10% (evictionHard in the kubelet's config)"),
            "{}",
            nodefs.message
        );
        assert_eq!(
            nodefs.text("threshold_source"),
            Some("kubelet_config_evictionHard")
        );

        let bytes: KubeletConfig = serde_saphyr::from_str(
            "evictionHard:\n  nodefs.available: 5Gi\nevictionSoft:\n  nodefs.available: 8Gi\n",
        )
        .unwrap();
        let bytes = EvictionLines::new(Some(&bytes), &t);
        let gib = 1u64 << 30;
        let k = [MountRole::Kubelet];
        let at = |available| judge(&mount(&k, 100 * gib, available * gib), &t, &bytes);
        assert_eq!(
            at(9)[0].severity(),
            Severity::Warning,
            "below 20%, above 8 GiB"
        );
        assert!(at(9)[0].message.contains("nodefs.available<8.0 GiB"));
        let soft = &at(7)[0];
        assert_eq!(soft.severity(), Severity::Critical);
        assert!(
            soft.message.contains("soft eviction line"),
            "{}",
            soft.message
        );
        assert!(
            at(4)[0]
                .message
                .contains("eviction line nodefs.available<5.0 GiB")
        );
        // A kubelet that evicts on no nodefs signal: judged as any filesystem.
        let memory_only: KubeletConfig =
            serde_saphyr::from_str("evictionHard:\n  memory.available: 1Gi\n").unwrap();
        let memory_only = EvictionLines::new(Some(&memory_only), &t);
        let f = &judge(&mount(&k, 100, 9), &t, &memory_only)[0];
        assert_eq!(f.severity(), Severity::Warning);
        assert!(f.message.contains("writes will fail"), "{}", f.message);
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
