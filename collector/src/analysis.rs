//! A node's findings with what to do about each: the collector's view of one report,
//! in-process. `nodemedic doctor` runs it without a collector; `nodemedic node` applies it
//! to a node's open findings. It applies the same validation as ingest, orders the findings
//! worst first, and pairs each with the remediation of the runbook rule that matches it.

use nodemedic_proto::v1::{Finding, NodeReport, Severity};
use serde::Serialize;

use crate::{
    error::Error,
    runbook::{Catalog, render},
    validate,
};

/// One remediation step, placeholders filled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemedyStep {
    /// What to do.
    pub text: String,
    /// The command to paste.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The automated action that performs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// The remediation of a rule, applied to one finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remedy {
    /// The rule's id.
    pub rule: String,
    /// The rule's title.
    pub title: String,
    /// Ordered steps.
    pub steps: Vec<RemedyStep>,
    /// Expected recovery time.
    pub recovery: String,
    /// Data-loss risk.
    pub data_loss: String,
    /// How to tell it worked.
    pub verify: String,
}

/// The remedy for `finding` among the node's open findings, from `catalog`.
pub fn remedy(catalog: &Catalog, finding: &Finding, open: &[Finding]) -> Option<Remedy> {
    let open_checks: Vec<&str> = open.iter().map(|f| f.check.as_str()).collect();
    let rule = catalog.for_finding(finding, &open_checks)?;
    let r = &rule.remediation;
    Some(Remedy {
        rule: rule.id.clone(),
        title: rule.title.clone(),
        steps: r
            .steps
            .iter()
            .map(|s| RemedyStep {
                text: render(&s.text, finding),
                command: s.command.as_ref().map(|c| render(c, finding)),
                action: s.action.clone(),
            })
            .collect(),
        recovery: r.recovery.clone(),
        data_loss: r.data_loss.clone(),
        verify: render(&r.verify, finding),
    })
}

/// Findings worst first, each with its remedy.
pub fn with_remedies(
    catalog: &Catalog,
    mut findings: Vec<Finding>,
) -> Vec<(Finding, Option<Remedy>)> {
    findings.sort_by(|a, b| {
        b.severity()
            .cmp(&a.severity())
            .then_with(|| a.check.cmp(&b.check))
            .then_with(|| a.subject.cmp(&b.subject))
    });
    findings
        .iter()
        .map(|f| (f.clone(), remedy(catalog, f, &findings)))
        .collect()
}

/// One node's findings, worst first, with what to do.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    /// The report diagnosed.
    pub report: NodeReport,
    /// Its findings, worst first, each with its remedy.
    pub findings: Vec<(Finding, Option<Remedy>)>,
}

impl Diagnosis {
    /// The worst severity, `Unspecified` when nothing was found.
    pub fn worst(&self) -> Severity {
        self.findings
            .iter()
            .map(|(f, _)| f.severity())
            .max()
            .unwrap_or(Severity::Unspecified)
    }
}

/// Diagnoses a report as the collector would see it.
pub fn diagnose(report: NodeReport, catalog: &Catalog) -> Result<Diagnosis, Error> {
    validate::report(
        &report,
        &report.node.clone(),
        report.seq.saturating_sub(1),
        validate::ReportLimits::default(),
    )?;
    let findings = with_remedies(catalog, report.findings.clone());
    Ok(Diagnosis { report, findings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodemedic_proto::v1::Evidence;

    #[test]
    fn orders_worst_first_with_filled_remedies() {
        let node = "n1";
        let mk = |check: &str, s: Severity, subject: &str| Finding {
            node: node.into(),
            ..Finding::fail(check, s, subject, "x".into())
        };
        let report = NodeReport {
            node: node.into(),
            seq: 1,
            collected_at: Some(nodemedic_proto::time::timestamp(
                std::time::SystemTime::now(),
            )),
            findings: vec![
                mk("memory.swap", Severity::Warning, ""),
                mk("disk.readonly", Severity::Critical, "/var/lib/kubelet"),
                mk("memory.oom_kills", Severity::Info, ""),
                mk("disk.space", Severity::Critical, "/")
                    .with(Evidence::text("roles", "root,images")),
            ],
            ..Default::default()
        };
        let d = diagnose(report, &Catalog::builtin()).unwrap();
        let order: Vec<(&str, &str)> = d
            .findings
            .iter()
            .map(|(f, r)| (f.check.as_str(), r.as_ref().map_or("", |r| r.rule.as_str())))
            .collect();
        assert_eq!(
            order,
            [
                ("disk.readonly", "filesystem-read-only"),
                ("disk.space", "disk-full-images"),
                ("memory.swap", "swap-in-use"),
                ("memory.oom_kills", "oom-kills"),
            ]
        );
        let drain = d.findings[0]
            .1
            .as_ref()
            .unwrap()
            .steps
            .iter()
            .find_map(|s| s.command.clone())
            .unwrap();
        assert!(drain.contains("dmesg"), "{drain}");
        let steps = &d.findings[0].1.as_ref().unwrap().steps;
        assert!(
            steps.iter().any(|s| s
                .command
                .as_deref()
                .is_some_and(|c| c.contains("kubectl drain n1"))),
            "{steps:?}"
        );
        assert_eq!(d.worst(), Severity::Critical);
    }
}
