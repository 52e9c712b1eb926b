//! Doctor mode, in one place: the collector's view of one report, in-process, for
//! `nodemedic doctor` without a collector. It applies the same validation as ingest and the
//! same correlation (with no hold: [`IncidentConfig::one_report`]), so the findings come out
//! as incidents with the remediation of their runbook rule; `doctor --bundle` writes the
//! bundle from this same [`Diagnosis`] (`bundle::of_diagnosis`).

use std::{sync::Arc, time::SystemTime};

use nodemedic_proto::{
    time::{timestamp_millis, unix_millis},
    v1::{Finding, Incident, NodeReport, Severity},
};

use crate::{
    error::Error,
    incidents::{Correlator, IncidentConfig},
    open_finding::OpenFinding,
    runbook::Catalog,
    validate,
};

/// One node's report with its findings correlated, as the collector would: the incidents,
/// worst first, each with its remediation.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    /// The report diagnosed.
    pub report: NodeReport,
    /// Its findings, numbered and seen at the report's time, as the store would give them.
    pub findings: Vec<Finding>,
    /// Its findings grouped into incidents, worst first.
    pub incidents: Vec<Incident>,
    /// When (the report's collection, unix ms).
    pub at: i64,
}

impl Diagnosis {
    /// The worst severity of what doctor prints: its incidents (which may be more severe
    /// than their findings, saying why) and findings; `Unspecified` when nothing was found.
    pub fn worst(&self) -> Severity {
        let incidents = self.incidents.iter().map(Incident::severity);
        let findings = self.report.findings.iter().map(Finding::severity);
        incidents
            .chain(findings)
            .max()
            .unwrap_or(Severity::Unspecified)
    }
}

/// Diagnoses a report as the collector would see it: the same validation as ingest, then
/// the correlation of its findings, with no hold (one sample cannot show persistence).
pub fn diagnose(report: NodeReport, catalog: Arc<Catalog>) -> Result<Diagnosis, Error> {
    validate::report(
        &report,
        &report.node.clone(),
        report.seq.saturating_sub(1),
        validate::ReportLimits::default(),
    )?;
    let now = report
        .collected_at
        .as_ref()
        .map_or_else(|| unix_millis(SystemTime::now()), timestamp_millis);
    let open: Vec<OpenFinding> = report
        .findings
        .iter()
        .zip(1..)
        .map(|(f, id)| OpenFinding {
            id,
            first_seen: now,
            last_seen: now,
            finding: f.clone(),
        })
        .collect();
    let findings = open.iter().map(|o| o.stamped(None)).collect();
    let mut incidents: Vec<Incident> = Correlator::new(catalog, IncidentConfig::one_report(), 0)
        .observe(&report.node, &open, now)
        .into_iter()
        .filter_map(|c| c.event.incident)
        .collect();
    incidents.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule.cmp(&b.rule))
    });
    Ok(Diagnosis {
        report,
        findings,
        incidents,
        at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodemedic_proto::v1::Evidence;

    /// A finding of node `n1`, as its agent would send it.
    fn mk(check: &str, severity: Severity, subject: &str) -> Finding {
        Finding {
            node: "n1".into(),
            ..Finding::fail(check, severity, subject, "x".into())
        }
    }

    /// `findings` in one report of `n1`, diagnosed with the built-in catalog.
    fn diagnosed(findings: Vec<Finding>) -> Diagnosis {
        let report = NodeReport {
            node: "n1".into(),
            seq: 1,
            collected_at: Some(nodemedic_proto::time::timestamp(SystemTime::now())),
            findings,
            ..Default::default()
        };
        diagnose(report, Arc::new(Catalog::builtin())).unwrap()
    }

    #[test]
    fn a_report_becomes_incidents_worst_first_with_filled_remediations() {
        let d = diagnosed(vec![
            mk("memory.swap", Severity::Warning, ""),
            mk("disk.readonly", Severity::Critical, "/var/lib/kubelet"),
            mk("memory.oom_kills", Severity::Info, ""),
            mk("memory.available", Severity::Warning, ""),
            mk("disk.space", Severity::Critical, "/").with(Evidence::text("roles", "root,images")),
        ]);
        let rules: Vec<(&str, Vec<&str>)> = d
            .incidents
            .iter()
            .map(|i| {
                (
                    i.rule.as_str(),
                    i.findings.iter().map(|f| f.check.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            rules,
            [
                ("disk-full-images", vec!["disk.space"]),
                ("filesystem-read-only", vec!["disk.readonly"]),
                (
                    "memory-pressure-oom-kills",
                    vec!["memory.available", "memory.oom_kills"]
                ),
                ("swap-in-use", vec!["memory.swap"]),
            ]
        );
        let drain: Vec<&str> = d.incidents[1]
            .remediation
            .as_ref()
            .unwrap()
            .commands()
            .collect();
        assert!(drain.iter().any(|c| c.contains("dmesg")), "{drain:?}");
        assert!(
            drain.iter().any(|c| c.contains("kubectl drain n1")),
            "{drain:?}"
        );
        assert_eq!(d.worst(), Severity::Critical);
    }

    #[test]
    fn the_oom_counter_and_the_kernel_lines_of_the_same_kills_are_one_incident() {
        let summary = |incidents: &[Incident]| {
            incidents
                .iter()
                .map(|i| {
                    let checks: Vec<&str> = i.findings.iter().map(|f| f.check.as_str()).collect();
                    (i.rule.clone(), checks.join(","), i.severity().label())
                })
                .collect::<Vec<_>>()
        };
        let counter = || mk("memory.oom_kills", Severity::Warning, "");
        let kill = |subject: &str| mk("kernel.oom_kill", Severity::Warning, subject);
        let joined = "kernel.oom_kill,memory.oom_kills".to_owned();

        // The node ran out: the node's runbook, critical although each kill is a warning,
        // and the incident says why.
        let d = diagnosed(vec![kill(""), counter()]);
        // Doctor's headline and exit code follow that incident, not the findings.
        assert_eq!(d.worst(), Severity::Critical);
        let node_oom = d.incidents;
        assert_eq!(
            summary(&node_oom),
            [(
                "kernel-oom-kill-node".to_owned(),
                joined.clone(),
                "critical"
            )]
        );
        assert!(node_oom[0].severity_reason.contains("ran out of memory"));

        // A systemd unit's limit: its cgroup's runbook, not "the node ran out of memory",
        // and no more severe than the kill.
        let unit = kill("cgroup /system.slice/fluentd.service")
            .with(Evidence::text("cgroup", "/system.slice/fluentd.service"));
        let unit_oom = diagnosed(vec![unit, counter()]).incidents;
        assert_eq!(
            summary(&unit_oom),
            [(
                "kernel-oom-kill-cgroup".to_owned(),
                joined.clone(),
                "warning"
            )]
        );
        assert_eq!(unit_oom[0].severity_reason, "");
        let remediation = unit_oom[0].remediation.as_ref().unwrap();
        assert!(
            remediation
                .commands()
                .any(|c| c.contains("/sys/fs/cgroup/system.slice/fluentd.service/memory.max")),
            "{remediation:?}"
        );
        assert_eq!(
            summary(&diagnosed(vec![kill("cgroup ?"), counter()]).incidents),
            [(
                "kernel-oom-kill-unnamed-cgroup".to_owned(),
                joined,
                "warning"
            )]
        );
    }

    #[test]
    fn an_incident_is_never_more_severe_than_its_findings_without_a_reason() {
        // An Azure VM's empty CD-ROM: info, under a rule for disks that fail.
        let d = diagnosed(vec![mk("kernel.io_error", Severity::Info, "sr0")]);
        assert_eq!(d.incidents[0].rule, "kernel-io-error");
        assert_eq!(d.incidents[0].severity(), Severity::Info);
        assert_eq!(d.worst(), Severity::Info);
        // ext4's errors recorded since the last fsck: a warning stays one.
        let d = diagnosed(vec![mk("kernel.fs_error", Severity::Warning, "vdb")]);
        assert_eq!(d.incidents[0].severity(), Severity::Warning);
    }
}
