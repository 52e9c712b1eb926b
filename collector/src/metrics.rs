//! Prometheus metrics of the collector, served at `/metrics`.
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `nodemedic_reports_ingested_total` | counter | reports committed to the store |
//! | `nodemedic_reports_duplicate_total` | counter | replayed reports acknowledged without storing |
//! | `nodemedic_ingest_latency_seconds` | histogram | report received to committed |
//! | `nodemedic_store_batch_size` | histogram | writes per store transaction |
//! | `nodemedic_connected_agents` | gauge | open agent streams |
//! | `nodemedic_open_findings{severity}` | gauge | open findings by severity |
//! | `nodemedic_refused_total{reason}` | counter | streams or reports refused, by reason |
//! | `nodemedic_throttled_total` | counter | reports after which an agent over its rate was paced |
//! | `nodemedic_denied_total{call,reason}` | counter | calls denied: `unauthenticated`, `forbidden` or `throttled` (every call and reason a series from the start) |
//! | `nodemedic_reloads_total{what,result}` | counter | changed TLS or token files loaded again (`ok`) or kept out (`error`); both series of each watched file from the start |
//! | `nodemedic_rows_skipped_total{table}` | counter | stored rows skipped on reading: they do not decode or hold values no answer can carry (`store::usable`) |
//! | `nodemedic_alertmanager_posts_total{result}` | counter | alert rounds posted to an Alertmanager, `ok` or `error` |
//! | `nodemedic_node_open_findings{node,check,severity}` | gauge | open findings of one node and check (a series goes when its last finding resolves) |
//! | `nodemedic_open_incidents{rule,scope,severity}` | gauge | open incidents by runbook rule (`check:<id>` without one), `node` or `cluster` |
//! | `nodemedic_agent_connected{node}` | gauge | 1 while the node's agent has a stream open, 0 for a known node without one |
//!
//! The last three are read from the store at each scrape ([`fleet_text`]). `/metrics` answers
//! OpenMetrics when asked for it (`Accept: application/openmetrics-text`), otherwise
//! Prometheus' text format 0.0.4 ([`text_004`]).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Label of `nodemedic_open_findings`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    /// `info`, `warning` or `critical`.
    pub severity: String,
}

/// Label of `nodemedic_refused_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why: `invalid_node_name`, `node_mismatch`, `seq`, `too_large`, `duplicate_stream`, ...
    pub reason: String,
}

/// Labels of `nodemedic_denied_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabel {
    /// The RPC or HTTP route.
    pub call: String,
    /// `unauthenticated` or `forbidden`.
    pub reason: String,
}

/// Labels of `nodemedic_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// Which files: `token file`, `TLS (grpc)`, ...
    pub what: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Every call a caller can be denied, as `nodemedic_denied_total` names it: the
/// Diagnostics RPCs (a test keeps this in step with `query.rs`) and the HTTP bundle route.
pub const DENIABLE_CALLS: &[&str] = &[
    "ListNodes",
    "GetNode",
    "ListFindings",
    "WatchFindings",
    "ListIncidents",
    "GetIncident",
    "WatchIncidents",
    "PlanRemediation",
    "ApplyRemediation",
    "ListRemediations",
    "DownloadBundle",
    "TriggerCollection",
    "GET /api/v1/bundle",
    "GET /console",
    "POST /console/login",
];

/// Why a call is denied: each, for each of [`DENIABLE_CALLS`], a series at 0 from the start.
pub const DENIAL_REASONS: &[&str] = &["unauthenticated", "forbidden", "throttled"];

/// Every reason a stream or report is refused for: each a series at 0 from the start.
pub const REFUSAL_REASONS: &[&str] = &[
    "bad_message",
    "duplicate_stream",
    "identity",
    "invalid_node_name",
    "invalid_report",
    "no_hello",
    "node_mismatch",
    "reserved_node_name",
    "seq",
    "store",
    "tls_handshake",
    "too_large",
    "unexpected_message",
];

/// Every metric the collector exports.
pub struct Metrics {
    registry: Registry,
    /// Reports committed.
    pub reports_ingested: Counter,
    /// Replays acknowledged without storing.
    pub reports_duplicate: Counter,
    /// Seconds from receipt to commit.
    pub ingest_latency: Histogram,
    /// Writes per transaction.
    pub batch_size: Histogram,
    /// Open agent streams.
    pub connected_agents: Gauge,
    /// Open findings by severity.
    pub open_findings: Family<SeverityLabel, Gauge>,
    /// Refusals by reason.
    pub refused: Family<ReasonLabel, Counter>,
    /// Reports after which an agent was paced.
    pub throttled: Counter,
    /// Denied calls.
    pub denied: Family<DeniedLabel, Counter>,
    /// Files loaded again.
    pub reloads: Family<ReloadLabel, Counter>,
    /// Posts to Alertmanagers by result.
    pub alertmanager_posts: Family<ResultLabel, Counter>,
}

/// Label of `nodemedic_alertmanager_posts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nodemedic");
        let m = Metrics {
            reports_ingested: Counter::default(),
            reports_duplicate: Counter::default(),
            ingest_latency: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            batch_size: Histogram::new([1.0, 4.0, 16.0, 64.0, 256.0, 1024.0]),
            connected_agents: Gauge::default(),
            open_findings: Family::default(),
            refused: Family::default(),
            throttled: Counter::default(),
            denied: Family::default(),
            reloads: Family::default(),
            alertmanager_posts: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reports_ingested",
            "Reports committed to the store",
            m.reports_ingested.clone(),
        );
        registry.register(
            "reports_duplicate",
            "Replayed reports acknowledged without storing",
            m.reports_duplicate.clone(),
        );
        registry.register(
            "ingest_latency_seconds",
            "Time from receiving a report to committing it",
            m.ingest_latency.clone(),
        );
        registry.register(
            "store_batch_size",
            "Writes per store transaction",
            m.batch_size.clone(),
        );
        registry.register(
            "connected_agents",
            "Open agent streams",
            m.connected_agents.clone(),
        );
        registry.register(
            "open_findings",
            "Open findings by severity",
            m.open_findings.clone(),
        );
        registry.register(
            "refused",
            "Streams or reports refused, by reason",
            m.refused.clone(),
        );
        registry.register(
            "throttled",
            "Reports after which an agent over its rate was paced",
            m.throttled.clone(),
        );
        registry.register(
            "denied",
            "Calls denied: unauthenticated or forbidden",
            m.denied.clone(),
        );
        registry.register(
            "reloads",
            "Changed TLS or token files loaded again, or kept out",
            m.reloads.clone(),
        );
        registry.register(
            "alertmanager_posts",
            "Alert rounds posted to an Alertmanager, by result",
            m.alertmanager_posts.clone(),
        );
        for result in ["ok", "error"] {
            let _ = m.alertmanager_posts.get_or_create(&ResultLabel {
                result: result.to_owned(),
            });
        }
        registry.register_collector(Box::new(SkippedRows));
        for reason in REFUSAL_REASONS {
            let _ = m.refused.get_or_create(&ReasonLabel {
                reason: (*reason).to_owned(),
            });
        }
        for call in DENIABLE_CALLS {
            for reason in DENIAL_REASONS {
                let _ = m.denied.get_or_create(&DeniedLabel {
                    call: (*call).to_owned(),
                    reason: (*reason).to_owned(),
                });
            }
        }
        Metrics { registry, ..m }
    }
}

/// `nodemedic_rows_skipped_total{table}`, read from the store's counters at each scrape.
#[derive(Debug)]
struct SkippedRows;

impl prometheus_client::collector::Collector for SkippedRows {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::{
            encoding::EncodeMetric,
            metrics::{TypedMetric, counter::ConstCounter},
        };
        let mut family = encoder.encode_descriptor(
            "rows_skipped",
            "Stored rows skipped on reading: they do not decode or hold values no answer can carry",
            None,
            ConstCounter::<u64>::TYPE,
        )?;
        for (table, n) in crate::store::usable::skipped() {
            let labels = [("table", table)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Counts a refusal, for one of [`REFUSAL_REASONS`].
    pub fn refuse(&self, reason: &str) {
        debug_assert!(
            REFUSAL_REASONS.contains(&reason),
            "{reason} is not in REFUSAL_REASONS"
        );
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a denied call, one of [`DENIABLE_CALLS`], for one of [`DENIAL_REASONS`].
    pub fn deny(&self, call: &str, reason: &str) {
        debug_assert!(
            DENIABLE_CALLS.contains(&call) && DENIAL_REASONS.contains(&reason),
            "{call} {reason} is not in DENIABLE_CALLS × DENIAL_REASONS"
        );
        self.denied
            .get_or_create(&DeniedLabel {
                call: call.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a post of alerts to an Alertmanager.
    pub fn alertmanager_post(&self, result: &str) {
        self.alertmanager_posts
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Makes the reload series of `what` (files watched for changes), at 0.
    pub fn watching(&self, what: &str) {
        for result in ["ok", "error"] {
            let _ = self.reloads.get_or_create(&ReloadLabel {
                what: what.to_owned(),
                result: result.to_owned(),
            });
        }
    }

    /// Counts a reload of changed files.
    pub fn reloaded(&self, what: &str, result: &str) {
        self.reloads
            .get_or_create(&ReloadLabel {
                what: what.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The fleet families, in OpenMetrics text without its `# EOF`: from `fleet` (the store)
/// and `connected` (whether a node has a stream open).
pub fn fleet_text(fleet: &crate::store::Fleet, connected: impl Fn(&str) -> bool) -> String {
    use std::{collections::BTreeMap, fmt::Write};
    let severity = |s: i32| {
        nodemedic_proto::v1::Severity::try_from(s)
            .unwrap_or_default()
            .as_str_name()
            .trim_start_matches("SEVERITY_")
            .to_lowercase()
    };
    let mut out = String::new();
    let family = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(
            out,
            "# HELP nodemedic_{name} {help}.\n# TYPE nodemedic_{name} gauge"
        );
    };
    family(
        &mut out,
        "node_open_findings",
        "Open findings of one node and check, by severity",
    );
    for (node, check, s, n) in &fleet.findings {
        let _ = writeln!(
            out,
            "nodemedic_node_open_findings{{node=\"{node}\",check=\"{check}\",severity=\"{}\"}} {n}",
            severity(*s)
        );
    }
    family(
        &mut out,
        "open_incidents",
        "Open incidents by runbook rule, scope and severity",
    );
    let mut incidents: BTreeMap<(&str, &str, String), u64> = BTreeMap::new();
    for (key, s) in &fleet.incidents {
        // `node/<node>/<rule>` or `cluster/<rule>/<group>` (names and ids have no '/').
        let mut parts = key.split('/');
        let scope = parts.next().unwrap_or_default();
        let rule = match scope {
            "node" => parts.nth(1),
            _ => parts.next(),
        }
        .unwrap_or_default();
        *incidents.entry((rule, scope, severity(*s))).or_default() += 1;
    }
    for ((rule, scope, s), n) in &incidents {
        let _ = writeln!(
            out,
            "nodemedic_open_incidents{{rule=\"{rule}\",scope=\"{scope}\",severity=\"{s}\"}} {n}"
        );
    }
    family(
        &mut out,
        "agent_connected",
        "1 while the node's agent has a stream open, 0 for a known node without one",
    );
    for node in &fleet.nodes {
        let _ = writeln!(
            out,
            "nodemedic_agent_connected{{node=\"{node}\"}} {}",
            u8::from(connected(node))
        );
    }
    out
}

/// `openmetrics` (OpenMetrics text) in Prometheus' text format 0.0.4: no `# EOF` or
/// `# UNIT`, and a counter's HELP and TYPE name its `_total` samples.
pub fn text_004(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|t| t.strip_suffix(" counter"))
        {
            counters.insert(name.to_owned());
        }
    }
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_the_service_authorizes_is_a_deniable_call_at_0() {
        let query = include_str!("query.rs");
        let authorized: Vec<&str> = query
            .split("self.allow(&request, \"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap())
            .collect();
        assert!(authorized.len() >= 10, "{authorized:?}");
        for call in &authorized {
            assert!(
                DENIABLE_CALLS.contains(call),
                "{call} is not in DENIABLE_CALLS"
            );
        }
        let text = Metrics::default().encode();
        for call in DENIABLE_CALLS {
            for reason in DENIAL_REASONS {
                let series =
                    format!("nodemedic_denied_total{{call=\"{call}\",reason=\"{reason}\"}} 0");
                assert!(text.contains(&series), "{series} missing");
            }
        }
    }

    #[test]
    fn incidents_are_counted_by_rule_scope_and_severity() {
        let fleet = crate::store::Fleet {
            findings: vec![],
            incidents: vec![
                ("node/n1/disk-full-images".into(), 3),
                ("node/n2/disk-full-images".into(), 3),
                ("node/n2/check:disk.inodes".into(), 2),
                ("cluster/dns-failing-cluster/".into(), 3),
            ],
            nodes: vec!["n1".into(), "n2".into()],
        };
        let text = fleet_text(&fleet, |n| n == "n1");
        for series in [
            "nodemedic_open_incidents{rule=\"disk-full-images\",scope=\"node\",severity=\"critical\"} 2",
            "nodemedic_open_incidents{rule=\"check:disk.inodes\",scope=\"node\",severity=\"warning\"} 1",
            "nodemedic_open_incidents{rule=\"dns-failing-cluster\",scope=\"cluster\",severity=\"critical\"} 1",
            "nodemedic_agent_connected{node=\"n1\"} 1",
            "nodemedic_agent_connected{node=\"n2\"} 0",
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
        }
    }

    #[test]
    fn the_skipped_rows_are_a_series_per_table_from_the_start() {
        let text = Metrics::default().encode();
        for table in ["findings", "incidents", "reports", "remediations"] {
            let series = format!("nodemedic_rows_skipped_total{{table=\"{table}\"}} 0");
            assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
        }
    }
}
