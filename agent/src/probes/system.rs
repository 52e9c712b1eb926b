//! The system probe: kernel tables that run out before memory or disk do — PIDs, file
//! handles, conntrack entries — and CPU pressure.

use nodemedic_proto::checks;
use nodemedic_proto::v1::{Evidence, Finding, Severity, SystemSection};

use serde::Deserialize;

use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{
    host::HostError,
    parse::psi,
    units::{Percent, at_least, percent},
};

/// Kernel table limits, as a share of the kernel's maximum.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemThresholds {
    /// PIDs (threads) against `kernel.pid_max`: warn (default 80%).
    pub pids_warn_used: Percent,
    /// PIDs: critical (default 90%).
    pub pids_critical_used: Percent,
    /// File handles against `fs.file-max`: warn (default 80%).
    pub files_warn_used: Percent,
    /// File handles: critical (default 90%).
    pub files_critical_used: Percent,
    /// Conntrack entries against `nf_conntrack_max`: warn (default 75%).
    pub conntrack_warn_used: Percent,
    /// Conntrack: critical (default 90%); at 100% the kernel drops new connections.
    pub conntrack_critical_used: Percent,
    /// Warn when some task waited for a CPU this share of the last minute (default 50%).
    pub cpu_pressure_warn_some_avg60: Percent,
}

impl Default for SystemThresholds {
    fn default() -> Self {
        SystemThresholds {
            pids_warn_used: Percent::of(80.0),
            pids_critical_used: Percent::of(90.0),
            files_warn_used: Percent::of(80.0),
            files_critical_used: Percent::of(90.0),
            conntrack_warn_used: Percent::of(75.0),
            conntrack_critical_used: Percent::of(90.0),
            cpu_pressure_warn_some_avg60: Percent::of(50.0),
        }
    }
}

impl SystemThresholds {
    /// Checks that each warning comes before its critical line.
    pub fn validate(&self) -> Result<(), String> {
        at_least!(self:
            pids_critical_used >= pids_warn_used,
            files_critical_used >= files_warn_used,
            conntrack_critical_used >= conntrack_warn_used,
        )
    }
}

/// Measures kernel limits; keeps nothing between runs.
#[derive(Debug, Default)]
pub struct SystemProbe {
    thresholds: SystemThresholds,
}

impl SystemProbe {
    /// A probe judging against `thresholds`.
    pub fn new(thresholds: SystemThresholds) -> Self {
        SystemProbe { thresholds }
    }
}

impl Probe for SystemProbe {
    fn id(&self) -> &'static str {
        "system"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let host = &ctx.host;
        let parse_err = |path: &str, reason: String| HostError::Parse {
            path: host.path(path),
            reason,
        };

        // "0.53 0.81 0.43 1/78 5385": the total after the slash is every scheduling
        // entity (process or thread), which is what pid_max limits.
        let loadavg: procfs_core::LoadAverage = host.parse("/proc/loadavg")?;
        let pids_in_use = u64::from(loadavg.max);
        // "304 0 2466177": allocated, unused (always 0 since 2.6), maximum.
        let file_nr = host.read("/proc/sys/fs/file-nr")?;
        let mut fields = file_nr.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(open_files)), Some(Ok(_)), Some(Ok(file_max))) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(parse_err(
                "/proc/sys/fs/file-nr",
                format!("expected three numbers, found {:?}", file_nr.trim()),
            )
            .into());
        };
        let uptime: procfs_core::Uptime = host.parse("/proc/uptime")?;
        let cpu_pressure = host
            .read_if_present("/proc/pressure/cpu")?
            .map(|text| psi::parse(&text).map_err(|e| host.parse_error("/proc/pressure/cpu", e)))
            .transpose()?;

        let section = SystemSection {
            pids_in_use,
            pid_max: host.read_u64("/proc/sys/kernel/pid_max")?,
            open_files,
            file_max,
            conntrack_entries: host
                .read_u64_if_present("/proc/sys/net/netfilter/nf_conntrack_count")?,
            conntrack_max: host.read_u64_if_present("/proc/sys/net/netfilter/nf_conntrack_max")?,
            cpu_pressure,
            uptime_seconds: uptime.uptime.max(0.0) as u64,
            kernel_release: host
                .read_if_present("/proc/sys/kernel/osrelease")?
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        let findings = judge(&section, &self.thresholds);
        Ok(ProbeOutput {
            section: Section::System(section),
            findings,
        })
    }
}

/// A kernel table's use against its limit.
struct Table<'a> {
    check: &'static str,
    used: u64,
    max: u64,
    warn: Percent,
    critical: Percent,
    what: &'a str,
    consequence: &'a str,
}

impl Table<'_> {
    fn judge(&self) -> Option<Finding> {
        if self.max == 0 {
            return None;
        }
        let pct = percent(self.used, self.max);
        let severity = if pct >= self.critical.get() {
            Severity::Critical
        } else if pct >= self.warn.get() {
            Severity::Warning
        } else {
            return None;
        };
        Some(
            Finding::fail(
                self.check,
                severity,
                "",
                format!(
                    "{} {} of {} in use ({pct:.1}%): {}.",
                    self.what, self.used, self.max, self.consequence
                ),
            )
            .with(Evidence::count("used", self.used))
            .with(Evidence::count("max", self.max))
            .with(Evidence::percent("used_percent", pct)),
        )
    }
}

/// The findings for a system section.
pub fn judge(s: &SystemSection, t: &SystemThresholds) -> Vec<Finding> {
    let tables = [
        Table {
            check: checks::SYSTEM_PIDS,
            used: s.pids_in_use,
            max: s.pid_max,
            warn: t.pids_warn_used,
            critical: t.pids_critical_used,
            what: "PIDs (threads)",
            consequence: "at the limit fork() fails and containers cannot start; look for a process leaking threads",
        },
        Table {
            check: checks::SYSTEM_FILE_DESCRIPTORS,
            used: s.open_files,
            max: s.file_max,
            warn: t.files_warn_used,
            critical: t.files_critical_used,
            what: "File handles",
            consequence: "at the limit open() fails with ENFILE on the whole node",
        },
        Table {
            check: checks::SYSTEM_CONNTRACK,
            used: s.conntrack_entries.unwrap_or(0),
            max: s.conntrack_max.unwrap_or(0),
            warn: t.conntrack_warn_used,
            critical: t.conntrack_critical_used,
            what: "Conntrack entries",
            consequence: "when the table is full the kernel drops new connections (\"nf_conntrack: table full\"); raise net.netfilter.nf_conntrack_max",
        },
    ];
    let mut out: Vec<Finding> = tables.iter().filter_map(Table::judge).collect();
    if let Some(p) = s
        .cpu_pressure
        .as_ref()
        .filter(|p| p.some_avg60 >= t.cpu_pressure_warn_some_avg60.get())
    {
        out.push(
            Finding::fail(
                checks::SYSTEM_CPU_PRESSURE,
                Severity::Warning,
                "",
                format!("Tasks waited for a CPU {:.1}% of the last minute: the node is CPU-starved; check pods without CPU limits.", p.some_avg60),
            )
            .with(Evidence::percent("some_avg60", p.some_avg60))
            .with(Evidence::percent("some_avg10", p.some_avg10)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_against_their_limits() {
        let s = SystemSection {
            pids_in_use: 100,
            pid_max: 4_194_304,
            open_files: 850,
            file_max: 1000,
            conntrack_entries: Some(95),
            conntrack_max: Some(100),
            ..Default::default()
        };
        let found: Vec<_> = judge(&s, &SystemThresholds::default())
            .into_iter()
            .map(|f| (f.check.clone(), f.severity()))
            .collect();
        assert_eq!(
            found,
            [
                ("system.file_descriptors".to_owned(), Severity::Warning),
                ("system.conntrack".to_owned(), Severity::Critical),
            ]
        );
    }

    #[test]
    fn reads_a_host_tree_and_names_a_broken_file() {
        let host = crate::testing::FakeHost::new();
        host.write("/proc/sys/net/netfilter/nf_conntrack_count", "95\n");
        host.write("/proc/sys/net/netfilter/nf_conntrack_max", "100\n");
        let ctx = ProbeContext {
            host: host.root(),
            now: std::time::SystemTime::now(),
        };
        let out = SystemProbe::default().run(&ctx).unwrap();
        let Section::System(s) = out.section else {
            panic!("not a system section")
        };
        assert_eq!(
            (s.pids_in_use, s.pid_max, s.open_files),
            (300, 4_194_304, 3000)
        );
        assert_eq!(
            (s.conntrack_entries, s.conntrack_max),
            (Some(95), Some(100))
        );
        assert_eq!(
            (s.kernel_release.as_str(), s.uptime_seconds),
            ("6.1.0-test", 12345)
        );
        assert_eq!(s.cpu_pressure.unwrap().some_avg10, 1.0);
        let checks: Vec<_> = out
            .findings
            .iter()
            .map(|f| (f.check.as_str(), f.severity()))
            .collect();
        assert_eq!(checks, [("system.conntrack", Severity::Critical)]);

        host.write("/proc/loadavg", "garbage\n");
        let err = SystemProbe::default().run(&ctx).unwrap_err().to_string();
        assert!(
            err.contains("proc/loadavg") && err.contains("garbage"),
            "{err}"
        );
    }

    #[test]
    fn no_conntrack_module_is_no_finding() {
        let s = SystemSection {
            pid_max: 10,
            pids_in_use: 1,
            ..Default::default()
        };
        assert!(judge(&s, &SystemThresholds::default()).is_empty());
    }
}
