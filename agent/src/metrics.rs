//! The agent's own metrics, served at `/metrics` beside `/healthz` and `/readyz`
//! (`--health-listen`), so a node's agent is scraped like node_exporter and
//! node-problem-detector are (OpenMetrics text).
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `nodemedic_agent_collections_total` | counter | collections run (one report each) |
//! | `nodemedic_agent_collection_duration_seconds` | histogram | wall time of one collection, every probe together |
//! | `nodemedic_agent_probe_duration_seconds{probe}` | histogram | wall time of one probe run |
//! | `nodemedic_agent_probe_failures_total{probe}` | counter | probe runs that failed or missed their deadline |
//! | `nodemedic_agent_findings{severity}` | gauge | findings in the latest report |
//! | `nodemedic_agent_pending_reports` | gauge | reports waiting for the collector's acknowledgement (the spool's depth with `--spool-dir`) |
//! | `nodemedic_agent_reports_acknowledged_total` | counter | reports the collector acknowledged |
//! | `nodemedic_agent_reports_dropped_total` | counter | reports dropped unsent: refused as invalid, or past the queue's or spool's limits |
//! | `nodemedic_agent_collector_connected` | gauge | 1 while the stream to the collector is open |
//! | `process_cpu_seconds_total` | counter | CPU time of the agent process |
//! | `process_resident_memory_bytes` | gauge | resident memory of the agent process |

use std::{sync::Mutex, time::Duration};

use nodemedic_proto::v1::{NodeReport, Severity};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::Registry,
};

/// Label of the per-probe metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabel {
    probe: String,
}

/// Label of `nodemedic_agent_findings`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: &'static str,
}

/// Every metric the agent exports.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    collections: Counter,
    collection_seconds: Histogram,
    probe_seconds: Family<ProbeLabel, Histogram>,
    probe_failures: Family<ProbeLabel, Counter>,
    findings: Family<SeverityLabel, Gauge>,
    pending: Gauge,
    acknowledged: Counter,
    dropped: Counter,
    dropped_seen: Mutex<u64>,
    connected: Gauge,
}

const SEVERITIES: [(Severity, &str); 3] = [
    (Severity::Critical, "critical"),
    (Severity::Warning, "warning"),
    (Severity::Info, "info"),
];

fn seconds_buckets() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = AgentMetrics {
            collections: Counter::default(),
            collection_seconds: seconds_buckets(),
            probe_seconds: Family::new_with_constructor(seconds_buckets),
            probe_failures: Family::default(),
            findings: Family::default(),
            pending: Gauge::default(),
            acknowledged: Counter::default(),
            dropped: Counter::default(),
            dropped_seen: Mutex::new(0),
            connected: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "nodemedic_agent_collections",
            "Collections run, one report each",
            m.collections.clone(),
        );
        registry.register(
            "nodemedic_agent_collection_duration_seconds",
            "Wall time of one collection, every probe together",
            m.collection_seconds.clone(),
        );
        registry.register(
            "nodemedic_agent_probe_duration_seconds",
            "Wall time of one probe run",
            m.probe_seconds.clone(),
        );
        registry.register(
            "nodemedic_agent_probe_failures",
            "Probe runs that failed or missed their deadline",
            m.probe_failures.clone(),
        );
        registry.register(
            "nodemedic_agent_findings",
            "Findings in the latest report, by severity",
            m.findings.clone(),
        );
        registry.register(
            "nodemedic_agent_pending_reports",
            "Reports waiting for the collector's acknowledgement",
            m.pending.clone(),
        );
        registry.register(
            "nodemedic_agent_reports_acknowledged",
            "Reports the collector acknowledged",
            m.acknowledged.clone(),
        );
        registry.register(
            "nodemedic_agent_reports_dropped",
            "Reports dropped unsent: refused as invalid, or past the queue's or spool's limits",
            m.dropped.clone(),
        );
        registry.register(
            "nodemedic_agent_collector_connected",
            "1 while the stream to the collector is open",
            m.connected.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        // Every severity is a series from the start, at 0 when there is none.
        for (_, severity) in SEVERITIES {
            drop(m.findings.get_or_create(&SeverityLabel { severity }));
        }
        AgentMetrics { registry, ..m }
    }
}

impl AgentMetrics {
    /// A collection that took `elapsed` made `report`.
    pub fn collected(&self, report: &NodeReport, elapsed: Duration) {
        self.collections.inc();
        self.collection_seconds.observe(elapsed.as_secs_f64());
        for run in &report.probes {
            let label = ProbeLabel {
                probe: run.probe.clone(),
            };
            self.probe_seconds
                .get_or_create(&label)
                .observe(run.duration_micros as f64 / 1e6);
            let failures = self.probe_failures.get_or_create(&label);
            if !run.ok {
                failures.inc();
            }
        }
        for (severity, label) in SEVERITIES {
            let count = report
                .findings
                .iter()
                .filter(|f| f.severity == severity as i32)
                .count();
            self.findings
                .get_or_create(&SeverityLabel { severity: label })
                .set(count as i64);
        }
    }

    /// `pending` reports wait for an acknowledgement; `dropped` were dropped unsent since
    /// the agent started.
    pub fn queued(&self, pending: usize, dropped: u64) {
        self.pending.set(pending as i64);
        let mut seen = self.dropped_seen.lock().unwrap_or_else(|e| e.into_inner());
        self.dropped.inc_by(dropped.saturating_sub(*seen));
        *seen = (*seen).max(dropped);
    }

    /// The collector acknowledged a report.
    pub fn acknowledged(&self) {
        self.acknowledged.inc();
    }

    /// The stream to the collector opened (`true`) or closed.
    pub fn connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The agent process's CPU time and resident memory, read at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        let cpu = ConstCounter::new(cpu.tv_sec as f64 + cpu.tv_nsec as f64 / 1e9);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "CPU time of the agent process",
            None,
            cpu.metric_type(),
        )?)?;
        // The agent's own /proc, not the host's: this process is the one measured.
        if let Ok(statm) =
            <procfs_core::process::StatM as procfs_core::FromRead>::from_file("/proc/self/statm")
        {
            let rss = ConstGauge::new((statm.resident * rustix::param::page_size() as u64) as i64);
            rss.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of the agent process",
                None,
                rss.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use nodemedic_proto::v1::{Finding, ProbeRun};

    use super::*;

    /// The value of the sample `name` (labels included) in an exposition.
    fn sample<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    #[test]
    fn collections_probes_findings_and_the_queue_are_counted() {
        let metrics = AgentMetrics::default();
        let fresh = metrics.encode();
        assert!(
            fresh.contains("nodemedic_agent_findings{severity=\"critical\"} 0"),
            "{fresh}"
        );
        assert!(
            fresh.contains("nodemedic_agent_collections_total 0"),
            "{fresh}"
        );
        assert!(
            fresh.contains("# TYPE process_cpu_seconds counter"),
            "{fresh}"
        );

        let run = |probe: &str, ok: bool| ProbeRun {
            probe: probe.into(),
            ok,
            duration_micros: 1500,
            ..Default::default()
        };
        let report = NodeReport {
            probes: vec![run("disk", true), run("dns", false)],
            findings: vec![
                Finding::fail("disk.space", Severity::Critical, "/", "full".into()),
                Finding::unknown("probe.failed", Severity::Warning, "dns", "x".into()),
            ],
            ..Default::default()
        };
        metrics.collected(&report, Duration::from_millis(3));
        metrics.collected(&report, Duration::from_millis(3));
        metrics.queued(5, 2);
        metrics.queued(4, 2);
        metrics.acknowledged();
        metrics.connected(true);
        let text = metrics.encode();
        assert_eq!(sample(&text, "nodemedic_agent_collections_total"), "2");
        assert_eq!(
            sample(&text, "nodemedic_agent_probe_failures_total{probe=\"dns\"}"),
            "2"
        );
        assert_eq!(
            sample(
                &text,
                "nodemedic_agent_probe_failures_total{probe=\"disk\"}"
            ),
            "0",
            "a probe that never failed is a series at 0"
        );
        assert_eq!(
            sample(
                &text,
                "nodemedic_agent_probe_duration_seconds_count{probe=\"disk\"}"
            ),
            "2"
        );
        assert_eq!(
            sample(&text, "nodemedic_agent_findings{severity=\"critical\"}"),
            "1"
        );
        assert_eq!(
            sample(&text, "nodemedic_agent_findings{severity=\"warning\"}"),
            "1"
        );
        assert_eq!(
            sample(&text, "nodemedic_agent_reports_dropped_total"),
            "2",
            "the queue's running total, counted once"
        );
        assert_eq!(sample(&text, "nodemedic_agent_pending_reports"), "4");
        assert_eq!(sample(&text, "nodemedic_agent_collector_connected"), "1");
        assert!(
            sample(&text, "process_resident_memory_bytes")
                .parse::<u64>()
                .unwrap()
                > 1 << 20
        );
    }
}
