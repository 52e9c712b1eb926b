//! The collector's view of one report, in-process: `nodemedic doctor` runs it without a
//! collector. It applies the same validation as ingest and the same correlation, so the
//! findings come out as incidents with the remediation of their runbook rule.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use nodemedic_proto::{
    time::{timestamp_millis, unix_millis},
    v1::{Finding, Incident, NodeReport, Remediation, RemediationStep, Severity},
};

use crate::{
    error::Error,
    incidents::{Correlator, IncidentConfig},
    runbook::{Catalog, Rule, render},
    store::OpenFinding,
    validate,
};

/// `rule`'s remediation with its placeholders filled from `finding`.
pub fn remediation(rule: &Rule, finding: &Finding) -> Remediation {
    let r = &rule.remediation;
    Remediation {
        rule: rule.id.clone(),
        title: rule.title.clone(),
        steps: r
            .steps
            .iter()
            .map(|s| RemediationStep {
                text: render(&s.text, finding),
                command: s
                    .command
                    .as_ref()
                    .map(|c| render(c, finding))
                    .unwrap_or_default(),
                action: s.action.clone().unwrap_or_default(),
            })
            .collect(),
        recovery: r.recovery.clone(),
        data_loss: r.data_loss.clone(),
        verify: render(&r.verify, finding),
    }
}

/// One node's report with its findings correlated, as the collector would: the incidents,
/// worst first, each with its remediation.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    /// The report diagnosed.
    pub report: NodeReport,
    /// Its findings grouped into incidents, worst first.
    pub incidents: Vec<Incident>,
}

impl Diagnosis {
    /// The worst severity of the report's findings, `Unspecified` when nothing was found.
    pub fn worst(&self) -> Severity {
        self.report
            .findings
            .iter()
            .map(Finding::severity)
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
    let config = IncidentConfig {
        hold: Duration::ZERO,
        ..IncidentConfig::default()
    };
    let open: Vec<OpenFinding> = report
        .findings
        .iter()
        .map(|f| OpenFinding {
            id: 0,
            first_seen: now,
            last_seen: now,
            finding: f.clone(),
        })
        .collect();
    let mut incidents: Vec<Incident> = Correlator::new(catalog, config, 0)
        .observe(&report.node, &open, now)
        .into_iter()
        .filter_map(|c| c.event.incident)
        .collect();
    incidents.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule.cmp(&b.rule))
    });
    Ok(Diagnosis { report, incidents })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodemedic_proto::v1::Evidence;

    #[test]
    fn a_report_becomes_incidents_worst_first_with_filled_remediations() {
        let node = "n1";
        let mk = |check: &str, s: Severity, subject: &str| Finding {
            node: node.into(),
            ..Finding::fail(check, s, subject, "x".into())
        };
        let report = NodeReport {
            node: node.into(),
            seq: 1,
            collected_at: Some(nodemedic_proto::time::timestamp(SystemTime::now())),
            findings: vec![
                mk("memory.swap", Severity::Warning, ""),
                mk("disk.readonly", Severity::Critical, "/var/lib/kubelet"),
                mk("memory.oom_kills", Severity::Info, ""),
                mk("memory.available", Severity::Warning, ""),
                mk("disk.space", Severity::Critical, "/")
                    .with(Evidence::text("roles", "root,images")),
            ],
            ..Default::default()
        };
        let d = diagnose(report, Arc::new(Catalog::builtin())).unwrap();
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
}
