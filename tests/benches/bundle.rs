//! Building a diagnostics bundle from a large store: NODES synthetic nodes with REPORTS
//! reports each (a real collection from this machine as the template, its numbers moving
//! from report to report as a node's do, findings that come and go), then one bundle of
//! everything into a byte counter.
//!
//! `cargo bench -p nodemedic-tests --bench bundle` (env NODES, default 5000; REPORTS,
//! default 360 = an hour at 10 s; BUNDLE_KEEP, a path to keep the bundle at; BUNDLE_STORE, a
//! directory to keep the filled store in and to reuse it from on the next run).

use std::{
    io::Write,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use nodemedic_agent::{Agent, config::Config, host::HostRoot, testing};
use nodemedic_collector::{
    bundle::{self, BundleRequest, Sources},
    incidents::IncidentConfig,
    runbook::Catalog,
    store::{
        Reader, open_for_writing,
        writer::{Events, WriterConfig, spawn},
    },
};
use nodemedic_proto::{
    time::timestamp_from_millis,
    v1::{Finding, Severity},
};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory now and its peak since the last reset, from /proc/self/status (KiB).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Counts the bundle's bytes, and keeps them in a file when asked (env BUNDLE_KEEP).
struct Counter(u64, Option<std::fs::File>);

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        if let Some(file) = &mut self.1 {
            file.write_all(b)?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fills a store in `dir`: `nodes` nodes with `reports` reports each, up to `now`.
async fn fill(dir: &std::path::Path, catalog: &Arc<Catalog>, nodes: usize, reports: u64, now: i64) {
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

#[tokio::main]
async fn main() {
    let nodes = env("NODES", 5000);
    let reports = env("REPORTS", 360) as u64;
    let keep = std::env::var_os("BUNDLE_KEEP");
    // BUNDLE_STORE: a directory to keep the filled store in, and to reuse it from.
    let (_temporary, dir) = match std::env::var_os("BUNDLE_STORE") {
        Some(dir) => (None, std::path::PathBuf::from(dir)),
        None => {
            let temporary = tempfile::tempdir_in(
                std::env::var("BUNDLE_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()),
            )
            .unwrap();
            let dir = temporary.path().to_owned();
            (Some(temporary), dir)
        }
    };
    let catalog = Arc::new(Catalog::builtin());
    let now = nodemedic_proto::time::unix_millis(SystemTime::now());
    if dir.join("nodemedic.db").exists() {
        println!("store: reused from {}", dir.display());
    } else {
        fill(&dir, &catalog, nodes, reports, now).await;
    }

    let reader = Reader::open(&dir).unwrap();
    let sources = Sources {
        reader: &reader,
        catalog: &catalog,
        info: serde_json::json!({"version": "bench"}),
        pod_logs: &[],
    };
    // Reset the peak so VmHWM measures the bundle alone.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (before, _) = rss();
    let built = Instant::now();
    let mut out = Counter(0, keep.as_ref().map(|p| std::fs::File::create(p).unwrap()));
    let manifest =
        bundle::write(&sources, &BundleRequest::default(), now, &mut out, |_| {}).unwrap();
    let seconds = built.elapsed().as_secs_f64();
    let (_, peak) = rss();
    let input: u64 = manifest.files.iter().map(|f| f.size).sum();
    println!(
        "bundle: {} files in {seconds:.1} s",
        manifest.files.len() + 1
    );
    println!(
        "  uncompressed input: {:.0} MB ({:.0} MB/s)",
        input as f64 / 1e6,
        input as f64 / 1e6 / seconds
    );
    // The same input as it was before histories went column by column: every report a
    // JSON line (counted after the bundle, outside its time), the other files as they are.
    // The rate comparable across formats.
    let mut lines = 0u64;
    for n in 0..nodes {
        reader
            .each_report(&format!("node-{n:05}"), 0, |r| {
                lines += serde_json::to_vec(r).map_or(0, |v| v.len() as u64 + 1);
                Ok::<_, nodemedic_collector::store::StoreError>(())
            })
            .unwrap();
    }
    let others: u64 = manifest
        .files
        .iter()
        .filter(|f| !f.path.ends_with("/history.json"))
        .map(|f| f.size)
        .sum();
    println!(
        "  as JSON lines:      {:.0} MB ({:.0} MB/s; the reports {:.0} MB)",
        (lines + others) as f64 / 1e6,
        (lines + others) as f64 / 1e6 / seconds,
        lines as f64 / 1e6
    );
    println!("  compressed:         {:.1} MB", out.0 as f64 / 1e6);
    println!(
        "  memory growth:      {:.1} MiB (peak RSS {} MiB over {} MiB before)",
        peak.saturating_sub(before) as f64 / 1024.0,
        peak / 1024,
        before / 1024
    );
}
