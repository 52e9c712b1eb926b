//! Prometheus alerting rules made from the catalog: one alert per runbook rule, firing while
//! the collector's `nodemedic_open_incidents` has an open incident of that rule, with the
//! rule's title and steps as its annotations; and alerts about nodemedic itself (an agent
//! disconnected, stored rows skipped). `nodemedic runbook alerts` prints them; the files in
//! `deploy/prometheus/` are its output, kept in step by a test.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Catalog, Rule};

/// A Prometheus rule file: `groups:`.
#[derive(Debug, Serialize)]
pub struct RuleFile {
    /// One group, `nodemedic`.
    pub groups: Vec<Group>,
}

/// A rule group.
#[derive(Debug, Serialize)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Its alerts.
    pub rules: Vec<Alert>,
}

/// One alerting rule.
#[derive(Debug, Serialize)]
pub struct Alert {
    /// `Nodemedic` and the rule id in CamelCase.
    pub alert: String,
    /// PromQL.
    pub expr: String,
    /// How long it must hold.
    #[serde(rename = "for")]
    pub hold: String,
    /// Labels added to the alert.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, `runbook`.
    pub annotations: BTreeMap<String, String>,
}

/// The alerts for `catalog`.
pub fn rule_file(catalog: &Catalog) -> RuleFile {
    let mut rules: Vec<Alert> = catalog.rules().map(|(r, _)| incident_alert(r)).collect();
    rules.push(Alert {
        alert: "NodemedicAgentDisconnected".into(),
        expr: "nodemedic_agent_connected == 0".into(),
        hold: "10m".into(),
        labels: BTreeMap::from([("severity".into(), "warning".into())]),
        annotations: BTreeMap::from([
            (
                "summary".into(),
                "nodemedic's agent on {{ $labels.node }} has not been connected for 10 minutes".into(),
            ),
            (
                "description".into(),
                "The node's findings are not current: its agent pod is down, or cannot reach the collector (the node.silent finding says since when).".into(),
            ),
            (
                "runbook".into(),
                "nodemedic runbook show node-silent; kubectl -n nodemedic get pods -o wide --field-selector spec.nodeName=<node>".into(),
            ),
        ]),
    });
    rules.push(Alert {
        alert: "NodemedicStoredRowsSkipped".into(),
        expr: "increase(nodemedic_rows_skipped_total[15m]) > 0".into(),
        hold: "0m".into(),
        labels: BTreeMap::from([("severity".into(), "warning".into())]),
        annotations: BTreeMap::from([
            (
                "summary".into(),
                "The collector skipped stored {{ $labels.table }} rows it cannot read".into(),
            ),
            (
                "description".into(),
                "Some stored rows do not decode or hold values no answer can carry; answers and bundles leave them out. The collector's log names them.".into(),
            ),
            (
                "runbook".into(),
                "kubectl -n nodemedic logs statefulset/nodemedic-collector | grep -i skipped".into(),
            ),
        ]),
    });
    RuleFile {
        groups: vec![Group {
            name: "nodemedic".into(),
            rules,
        }],
    }
}

/// The same alerts as a prometheus-operator `PrometheusRule` in the `nodemedic` namespace.
pub fn prometheus_rule(catalog: &Catalog) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "nodemedic",
            "namespace": "nodemedic",
            "labels": {"app.kubernetes.io/name": "nodemedic", "app.kubernetes.io/component": "alerts"},
        },
        "spec": rule_file(catalog),
    })
}

/// The alert of one runbook rule: the incident's own severity becomes the alert's.
fn incident_alert(rule: &Rule) -> Alert {
    let steps: Vec<String> = rule
        .remediation
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let command = s
                .command
                .as_deref()
                .map_or(String::new(), |c| format!(" `{}`", plain(c)));
            format!("{}. {}{command}", i + 1, plain(&s.text))
        })
        .collect();
    Alert {
        alert: format!("Nodemedic{}", camel(&rule.id)),
        expr: format!(
            "sum by (rule, scope, severity) (nodemedic_open_incidents{{rule=\"{}\"}}) > 0",
            rule.id
        ),
        hold: "1m".into(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::from([
            (
                "summary".into(),
                format!("{}: {{{{ $value }}}} open", plain(&rule.title)),
            ),
            (
                "description".into(),
                format!(
                    "{} (nodemedic incidents --state open shows which nodes.)",
                    steps.first().map_or("", String::as_str)
                ),
            ),
            (
                "runbook".into(),
                format!("nodemedic runbook show {}: {}", rule.id, steps.join(" ")),
            ),
        ]),
    }
}

/// `disk-full-images` as `DiskFullImages`.
fn camel(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or(String::new(), |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect()
}

/// A runbook text with its `{{placeholder}}`s as `<placeholder>`: Prometheus reads `{{`
/// as its own templates. Other braces (a JSON patch in a command) stay.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let name = rest[start + 2..start + 2 + len].trim();
        out.push_str(&rest[..start]);
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            out.push('<');
            out.push_str(name);
            out.push('>');
        } else {
            // Not a placeholder: keep it from being read as a template.
            out.push_str("{ {");
            out.push_str(&rest[start + 2..start + 2 + len]);
            out.push_str("} }");
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_an_alert_with_its_steps_and_no_template_of_ours_left() {
        let catalog = Catalog::builtin();
        let file = rule_file(&catalog);
        let alerts = &file.groups[0].rules;
        assert_eq!(alerts.len(), catalog.rules().count() + 2);
        let disk = alerts
            .iter()
            .find(|a| a.alert == "NodemedicDiskFullImages")
            .unwrap();
        assert!(disk.expr.contains("rule=\"disk-full-images\""));
        assert!(
            disk.annotations["runbook"].starts_with("nodemedic runbook show disk-full-images: 1. ")
        );
        assert_eq!(
            plain("du {{mount}} and {{ node }}"),
            "du <mount> and <node>"
        );
        let patch = r#"-p '{"spec":{"resources":{"requests":{"storage":"<size>"}}}}'"#;
        assert_eq!(plain(patch), patch, "a JSON patch is not a placeholder");
        for a in alerts {
            for text in a.annotations.values() {
                // Only Prometheus' own templates remain.
                let ours = text
                    .replace("{{ $value }}", "")
                    .replace("{{ $labels.node }}", "");
                let ours = ours.replace("{{ $labels.table }}", "");
                assert!(!ours.contains("{{"), "{}: {text}", a.alert);
            }
        }
    }
}
