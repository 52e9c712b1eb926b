//! The collector's view of one report, in-process: what `nodemedic doctor` prints without a
//! collector running. It applies the same validation as ingest, orders the findings worst
//! first, and pairs each with its advice.

use nodemedic_proto::v1::{Finding, NodeReport, Severity};

use crate::{advice::advice, error::Error, validate};

/// One node's findings, worst first, with what to do.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    /// The report diagnosed.
    pub report: NodeReport,
    /// Its findings, worst first, each with its advice.
    pub findings: Vec<(Finding, Option<String>)>,
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
pub fn diagnose(report: NodeReport) -> Result<Diagnosis, Error> {
    validate::report(
        &report,
        &report.node.clone(),
        report.seq.saturating_sub(1),
        validate::ReportLimits::default(),
    )?;
    let mut findings: Vec<(Finding, Option<String>)> = report
        .findings
        .iter()
        .map(|f| (f.clone(), advice(f)))
        .collect();
    findings.sort_by(|(a, _), (b, _)| {
        b.severity()
            .cmp(&a.severity())
            .then_with(|| a.check.cmp(&b.check))
            .then_with(|| a.subject.cmp(&b.subject))
    });
    Ok(Diagnosis { report, findings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_worst_first_with_advice() {
        let node = "n1";
        let mk = |check: &str, s: Severity| Finding {
            node: node.into(),
            ..Finding::fail(check, s, "", "x".into())
        };
        let report = NodeReport {
            node: node.into(),
            seq: 1,
            collected_at: Some(nodemedic_proto::time::timestamp(
                std::time::SystemTime::now(),
            )),
            findings: vec![
                mk("memory.swap", Severity::Warning),
                mk("disk.readonly", Severity::Critical),
                mk("memory.oom_kills", Severity::Info),
            ],
            ..Default::default()
        };
        let d = diagnose(report).unwrap();
        let order: Vec<&str> = d.findings.iter().map(|(f, _)| f.check.as_str()).collect();
        assert_eq!(order, ["disk.readonly", "memory.swap", "memory.oom_kills"]);
        assert!(d.findings.iter().all(|(_, a)| a.is_some()));
        assert_eq!(d.worst(), Severity::Critical);
    }
}
