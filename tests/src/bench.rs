//! What the benchmarks share: a store filled with synthetic nodes, each report a real
//! collection from this machine with its numbers moving as a node's do.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use nodemedic_agent::{Agent, config::Config, host::HostRoot, testing};
use nodemedic_collector::{
    incidents::IncidentConfig,
    runbook::Catalog,
    store::{
        open_for_writing,
        writer::{Events, WriterConfig, spawn},
    },
};
use nodemedic_proto::{
    time::timestamp_from_millis,
    v1::{Finding, Severity},
};

/// The number in the environment variable `name`, or `default`.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fills a store in `dir`: `nodes` nodes with `reports` reports each, up to `now`.
pub async fn fill_store(
    dir: &std::path::Path,
    catalog: &Arc<Catalog>,
    nodes: usize,
    reports: u64,
    now: i64,
) {
    // No live DNS queries: this machine's resolvers are not the benchmark's own.
    let mut config = Config::default();
    config.dns.enabled = false;
    let template = Agent::new("template".into(), HostRoot::new("/"), &config)
        .collect()
        .await;
    let (writer, thread) = spawn(
        open_for_writing(dir).unwrap(),
        WriterConfig {
            retention: Duration::from_secs(7 * 86_400),
            silent_after: 3,
            catalog: Arc::clone(catalog),
            incidents: IncidentConfig::default(),
        },
        Events::default(),
        Arc::default(),
    )
    .unwrap();
    let start = now - reports as i64 * 10_000;
    let filling = Instant::now();
    for n in 0..nodes {
        let node = format!("node-{n:05}");
        writer
            .hello(&node, "bench", Duration::from_secs(10), start)
            .await
            .unwrap();
    }
    let mut pending = Vec::new();
    for seq in 1..=reports {
        let at = start + seq as i64 * 10_000;
        for n in 0..nodes {
            let mut r = template.clone();
            r.node = format!("node-{n:05}");
            r.seq = seq;
            r.collected_at = Some(timestamp_from_millis(at));
            testing::drift(&mut r, n as u64, seq);
            r.findings = if (n as u64 + seq).is_multiple_of(3) {
                vec![Finding {
                    node: r.node.clone(),
                    ..Finding::fail("memory.swap", Severity::Warning, "", "swap in use".into())
                }]
            } else {
                vec![]
            };
            pending.push(writer.ingest(r, at).await.unwrap());
            if pending.len() >= 4096 {
                for p in pending.drain(..) {
                    p.await.unwrap();
                }
            }
        }
    }
    for p in pending {
        p.await.unwrap();
    }
    drop(writer);
    thread.join().unwrap();
    println!(
        "store: {nodes} nodes x {reports} reports, filled in {:.0} s, {} MiB",
        filling.elapsed().as_secs_f64(),
        std::fs::metadata(dir.join("nodemedic.db")).unwrap().len() >> 20
    );
}
