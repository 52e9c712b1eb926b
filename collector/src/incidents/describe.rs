//! What an incident says: derived from its rule and its findings each time they change.

use std::collections::BTreeSet;

use nodemedic_proto::{
    time::timestamp_from_millis,
    v1::{Finding, Incident, IncidentScope, IncidentState, Severity},
};

use super::push_timeline;
use crate::{
    open_finding::OpenFinding,
    runbook::{Rule, remediation},
};

/// The incident `prev` re-described with its current `findings` (none: about to resolve,
/// so the previous description stays), `live` reporting nodes, as of `now`.
pub(super) fn describe(
    prev: &Incident,
    rule: Option<&Rule>,
    cluster: bool,
    findings: &[&OpenFinding],
    live: usize,
    now: i64,
) -> Incident {
    let mut incident = prev.clone();
    if findings.is_empty() {
        return incident;
    }
    let causes = |f: &Finding| rule.is_none_or(|r| r.matcher.checks.contains(&f.check));
    let mut ordered: Vec<&OpenFinding> = findings.to_vec();
    // The cause first, then its consequences; worst first within each.
    ordered.sort_by(|a, b| {
        causes(&b.finding)
            .cmp(&causes(&a.finding))
            .then_with(|| b.finding.severity.cmp(&a.finding.severity))
            .then_with(|| a.finding.node.cmp(&b.finding.node))
            .then_with(|| a.key().cmp(&b.key()))
    });
    let lead = &ordered[0].finding;

    incident.rule = rule.map(|r| r.id.clone()).unwrap_or_default();
    incident.title = rule.map_or_else(|| lead.check.clone(), |r| r.title.clone());
    incident.scope = if cluster {
        IncidentScope::Cluster
    } else {
        IncidentScope::Node
    } as i32;
    incident.state = IncidentState::Open as i32;
    // The worst finding's, unless the rule says why it is more (and then says so).
    let worst = ordered
        .iter()
        .map(|f| f.finding.severity)
        .max()
        .unwrap_or_default();
    let raised = rule.and_then(|r| {
        let severity = Severity::from(r.severity?) as i32;
        (severity > worst).then(|| (severity, r.because.clone().unwrap_or_default()))
    });
    (incident.severity, incident.severity_reason) = raised.unwrap_or((worst, String::new()));
    let nodes: BTreeSet<&str> = ordered.iter().map(|f| f.finding.node.as_str()).collect();
    incident.nodes = nodes.iter().map(|n| (*n).to_owned()).collect();
    incident.objects = ordered
        .iter()
        .filter_map(|f| {
            let pod = f.finding.text("pod")?;
            Some(match f.finding.text("namespace") {
                Some(ns) => format!("{ns}/{pod}"),
                None => pod.to_owned(),
            })
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    incident.group = rule
        .and_then(|r| r.group_by.as_deref())
        .and_then(|key| lead.text(key))
        .unwrap_or_default()
        .to_owned();
    incident.first_seen = prev.first_seen.or(Some(timestamp_from_millis(now)));
    incident.last_seen = ordered
        .iter()
        .map(|f| f.last_seen)
        .max()
        .map(timestamp_from_millis);
    incident.resolved_at = None;
    incident.failure_expected_at = rule
        .and_then(|r| r.forecast.as_deref())
        .and_then(|key| {
            ordered
                .iter()
                .filter_map(|f| {
                    // A forecast beyond ten years (or not a number) says nothing to act on.
                    let hours = f
                        .finding
                        .number(key)
                        .filter(|h| (0.0..=MAX_FORECAST_HOURS).contains(h))?;
                    Some(f.last_seen.saturating_add((hours * 3_600_000.0) as i64))
                })
                .min()
        })
        .map(timestamp_from_millis);
    incident.summary = summary(&incident, &ordered, cluster, live, &causes);
    incident.remediation = rule.map(|r| remediation(r, &ordered[0].stamped(None)));
    incident.findings = ordered.iter().map(|f| f.stamped(None)).collect();
    record_changes(prev, &mut incident, now);
    incident
}

fn summary(
    incident: &Incident,
    ordered: &[&OpenFinding],
    cluster: bool,
    live: usize,
    causes: &dyn Fn(&Finding) -> bool,
) -> String {
    let lead = &ordered[0].finding;
    if cluster {
        let checks: BTreeSet<&str> = ordered.iter().map(|f| f.finding.check.as_str()).collect();
        let n = incident.nodes.len();
        let group = if incident.group.is_empty() {
            String::new()
        } else {
            format!(" ({})", incident.group)
        };
        return format!(
            "{}{group} on {n} of {live} reporting nodes ({:.0}%). For example on {}: {}",
            checks.into_iter().collect::<Vec<_>>().join(", "),
            n as f64 * 100.0 / live as f64,
            lead.node,
            lead.message
        );
    }
    let consequences: BTreeSet<&str> = ordered
        .iter()
        .filter(|f| !causes(&f.finding))
        .map(|f| f.finding.check.as_str())
        .collect();
    if consequences.is_empty() {
        lead.message.clone()
    } else {
        format!(
            "{} Consequences on this node: {}.",
            lead.message,
            consequences.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

/// Timeline entries for findings that joined or left and a change of severity.
fn record_changes(prev: &Incident, incident: &mut Incident, now: i64) {
    let keys = |i: &Incident| -> BTreeSet<(String, String, String)> {
        i.findings
            .iter()
            .map(|f| (f.node.clone(), f.check.clone(), f.subject.clone()))
            .collect()
    };
    let (before, after) = (keys(prev), keys(incident));
    let name = |(node, check, subject): &(String, String, String)| {
        if subject.is_empty() {
            format!("{check} on {node}")
        } else {
            format!("{check} {subject} on {node}")
        }
    };
    if prev.rule != incident.rule && !prev.rule.is_empty() {
        push_timeline(
            incident,
            now,
            format!("now described by rule {}", incident.rule),
        );
    }
    for added in after.difference(&before) {
        push_timeline(incident, now, format!("+ {}", name(added)));
    }
    for removed in before.difference(&after) {
        push_timeline(incident, now, format!("- {}", name(removed)));
    }
    if prev.severity != 0 && prev.severity != incident.severity {
        let label = incident.severity().label();
        push_timeline(incident, now, format!("severity now {label}"));
    }
}

/// The furthest forecast an incident names: ten years.
const MAX_FORECAST_HOURS: f64 = 10.0 * 366.0 * 24.0;

/// Nothing a reader would notice changed: severity, rule, findings, nodes, forecast.
pub(super) fn same(a: &Incident, b: &Incident) -> bool {
    let keys = |i: &Incident| {
        i.findings
            .iter()
            .map(|f| (f.node.clone(), f.check.clone(), f.subject.clone()))
            .collect::<Vec<_>>()
    };
    a.severity == b.severity
        && a.rule == b.rule
        && a.nodes == b.nodes
        && a.failure_expected_at == b.failure_expected_at
        && keys(a) == keys(b)
}
