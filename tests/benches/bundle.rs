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
    time::{Instant, SystemTime},
};

use nodemedic_collector::{
    bundle::{self, BundleRequest, Sources},
    runbook::Catalog,
    store::Reader,
};
use nodemedic_tests::bench::{env, fill_store};

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
        fill_store(&dir, &catalog, nodes, reports, now).await;
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
