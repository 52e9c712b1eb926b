//! Collector ingest rate with the real SQLite store: N agent streams over loopback, each
//! pipelining up to W unacknowledged reports (as a reconnecting agent resends), with report
//! contents taken from a real collection on this machine plus findings that come and go.
//!
//! `cargo bench -p nodemedic-tests --bench ingest` (env: NODES, REPORTS, WINDOW).

use std::{
    collections::VecDeque,
    time::{Duration, Instant, SystemTime},
};

use nodemedic_agent::{Agent, config::Config, host::HostRoot, reporter::Connection};
use nodemedic_collector::server::{Bound, Config as ServerConfig};
use nodemedic_proto::{
    time::{duration, timestamp},
    v1::{
        AgentMessage, CollectorMessage, Finding, Hello, NodeReport, Severity, agent_message,
        collector_message,
    },
};
use nodemedic_tests::in_process::loopback_config;
use prost::Message;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(template: &NodeReport, node: &str, seq: u64) -> NodeReport {
    let mut r = template.clone();
    r.node = node.to_owned();
    r.seq = seq;
    r.collected_at = Some(timestamp(SystemTime::now()));
    r.findings.clear();
    r.findings.push(Finding {
        node: node.into(),
        ..Finding::fail("memory.swap", Severity::Warning, "", "swap in use".into())
    });
    // One finding that opens and resolves every other report.
    if seq.is_multiple_of(2) {
        r.findings.push(Finding {
            node: node.into(),
            ..Finding::fail(
                "disk.space",
                Severity::Critical,
                "/var/lib/kubelet",
                format!("{seq}"),
            )
        });
    }
    for f in &mut r.findings {
        f.node = node.to_owned();
    }
    r
}

async fn agent(
    url: String,
    node: String,
    template: NodeReport,
    reports: u64,
    window: usize,
) -> Vec<Duration> {
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let hello = Hello {
        node: node.clone(),
        agent_version: "bench".into(),
        capabilities: vec![],
        interval: Some(duration(Duration::from_secs(10))),
    };
    let Connection {
        outbound: tx,
        mut inbound,
        ..
    } = Connection::open(channel, hello, window + 2).await.unwrap();
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let mut latencies = Vec::with_capacity(reports as usize);
    let mut next = 1;
    while latencies.len() < reports as usize {
        while in_flight.len() < window && next <= reports {
            let r = report(&template, &node, next);
            tx.send(AgentMessage {
                kind: Some(agent_message::Kind::Report(r)),
            })
            .await
            .unwrap();
            in_flight.push_back(Instant::now());
            next += 1;
        }
        match inbound.next().await {
            Some(Ok(CollectorMessage {
                kind: Some(collector_message::Kind::Ack(_)),
            })) => {
                latencies.push(in_flight.pop_front().unwrap().elapsed());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    latencies
}

fn main() {
    let nodes = env("NODES", 200);
    let reports = env("REPORTS", 250) as u64;
    let window = env("WINDOW", 16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // No live DNS queries: this machine's resolvers are not the benchmark's own.
        let mut config = Config::default();
        config.dns.enabled = false;
        let template = Agent::new("template".into(), HostRoot::default(), &config).collect().await;
        let dir = tempfile::tempdir().unwrap();
        let bound = Bound::bind(ServerConfig {
            retention: Duration::from_secs(86_400),
            max_message_bytes: 4 << 20,
            ..loopback_config(dir.path())
        })
        .await
        .unwrap();
        let url = format!("http://{}", bound.grpc_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(bound.serve(async { let _ = stopped.await; }));

        let started = Instant::now();
        let agents: Vec<_> = (0..nodes)
            .map(|i| tokio::spawn(agent(url.clone(), format!("bench-node-{i}"), template.clone(), reports, window)))
            .collect();
        let mut latencies = Vec::new();
        for a in agents {
            latencies.extend(a.await.unwrap());
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        let total = latencies.len();
        let sample = report(&template, "bench-node-0", 2);
        println!("collector ingest ({nodes} streams x {reports} reports, window {window}, {} bytes/report, {} findings/report avg 1.5)",
            sample.encoded_len(), sample.findings.len());
        println!("  reports acknowledged: {total} in {:.2} s", elapsed.as_secs_f64());
        println!("  ingest rate:          {:.0} reports/s", total as f64 / elapsed.as_secs_f64());
        println!("  ack latency p50/p99/max: {:.1} / {:.1} / {:.1} ms",
            pct(0.50).as_secs_f64() * 1e3, pct(0.99).as_secs_f64() * 1e3, latencies.last().unwrap().as_secs_f64() * 1e3);
        let db = std::fs::metadata(dir.path().join("nodemedic.db")).map(|m| m.len()).unwrap_or(0);
        println!("  database size:        {:.1} MiB (+ WAL)", db as f64 / (1 << 20) as f64);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    });
}
