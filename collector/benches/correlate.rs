//! Correlation cost per report: the [`Correlator`] holding 5,000 nodes and their open
//! findings (and the incidents they make), fed one node's findings at a time as the store
//! writer does after each report.
//!
//! `cargo bench -p nodemedic-collector --bench correlate` (env: NODES, ROUNDS).
//!
//! A round's reports are spread over 10 s of the test clock and the correlator is flushed
//! once a (test) second, as the writer's tick does; the flush's cost is counted in the
//! report that precedes it.
//!
//! Scenarios, each over every node for ROUNDS rounds:
//! - steady: every node reports the same 3 findings again (the common case);
//! - churn: on every node one finding opens and resolves every other report, so its
//!   incident is updated each time;
//! - cluster: DNS fails on 60% of the nodes at once and recovers (a cluster incident opens
//!   and takes over node incidents, then resolves).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use nodemedic_collector::{
    incidents::{Correlator, IncidentConfig},
    open_finding::OpenFinding,
    runbook::Catalog,
};
use nodemedic_proto::v1::{Evidence, Finding, Severity};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SECOND: i64 = 1000;

/// A node's open findings at `t`: three that persist, plus the churning one on odd rounds
/// and DNS failing when `dns_down`.
fn open(node: &str, round: usize, t: i64, churn: bool, dns_down: bool) -> Vec<OpenFinding> {
    let mut findings = vec![
        Finding::fail("memory.swap", Severity::Warning, "", "swap in use".into()),
        Finding::fail(
            "disk.space",
            Severity::Warning,
            "/var/lib/containerd",
            "12% free".into(),
        )
        .with(Evidence::text("roles", "images"))
        .with(Evidence::percent("available_percent", 12.0)),
        Finding::fail(
            "disk.fill_rate",
            Severity::Warning,
            "/var/lib/containerd",
            "full in 20h".into(),
        )
        .with(Evidence::text("roles", "images"))
        .with(Evidence::number("full_in", 20.0, "hours")),
    ];
    if churn && round % 2 == 1 {
        findings.push(Finding::fail(
            "system.conntrack",
            Severity::Warning,
            "",
            "conntrack 85% full".into(),
        ));
    }
    if dns_down {
        findings.push(Finding::fail(
            "dns.unreachable",
            Severity::Critical,
            "udp://10.96.0.10",
            "no answer".into(),
        ));
    }
    findings
        .into_iter()
        .map(|f| OpenFinding {
            id: 0,
            // Persisting findings opened long ago; the churning one just now (counted by
            // repeat after its third opening).
            first_seen: if f.check == "system.conntrack" { t } else { 0 },
            last_seen: t,
            finding: Finding {
                node: node.to_owned(),
                ..f
            },
        })
        .collect()
}

struct Run {
    calls: Vec<Duration>,
    changes: usize,
}

fn run(
    c: &mut Correlator,
    nodes: &[String],
    rounds: usize,
    t0: i64,
    churn: bool,
    dns_share: f64,
) -> Run {
    let mut calls = Vec::with_capacity(nodes.len() * rounds);
    let mut changes = 0;
    let down = (nodes.len() as f64 * dns_share) as usize;
    for round in 0..rounds {
        let t = t0 + round as i64 * 10 * SECOND;
        // DNS is down for the first half of the rounds.
        let dns_down = dns_share > 0.0 && round < rounds / 2;
        // A round's reports spread over its 10 s; the writer flushes once a second.
        let per_second = nodes.len().div_ceil(10);
        for (i, node) in nodes.iter().enumerate() {
            let at = t + (i / per_second) as i64 * SECOND;
            let findings = open(node, round, at, churn, dns_down && i < down);
            let start = Instant::now();
            changes += c.observe(node, &findings, at).len();
            if (i + 1) % per_second == 0 {
                changes += c.flush(at).len();
            }
            calls.push(start.elapsed());
        }
    }
    Run { calls, changes }
}

fn print(name: &str, r: &mut Run) {
    r.calls.sort();
    let total: Duration = r.calls.iter().sum();
    let pct = |p: f64| r.calls[((r.calls.len() as f64 * p) as usize).min(r.calls.len() - 1)];
    println!(
        "{name:<8} {:>8} reports  mean {:>6.2} µs  p50 {:>6.2} µs  p99 {:>7.2} µs  max {:>8.2} µs  incident changes {}",
        r.calls.len(),
        total.as_secs_f64() * 1e6 / r.calls.len() as f64,
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        r.calls.last().unwrap().as_secs_f64() * 1e6,
        r.changes,
    );
}

fn main() {
    let n = env("NODES", 5000);
    let rounds = env("ROUNDS", 20);
    let nodes: Vec<String> = (0..n).map(|i| format!("node-{i:05}")).collect();
    let mut c = Correlator::new(Arc::new(Catalog::builtin()), IncidentConfig::default(), 0);
    // Warm up: every node's persisting findings open their incidents.
    let warm = run(&mut c, &nodes, 2, 3_600 * SECOND, false, 0.0);
    println!(
        "{n} nodes, 3 open findings each; warm-up opened {} incidents",
        warm.changes
    );
    let mut t = 4_000 * SECOND;
    for (name, churn, dns) in [
        ("steady", false, 0.0),
        ("churn", true, 0.0),
        ("cluster", false, 0.6),
    ] {
        let mut r = run(&mut c, &nodes, rounds, t, churn, dns);
        print(name, &mut r);
        t += rounds as i64 * 10 * SECOND + 3_600 * SECOND;
    }
}
