//! The web console's pages, server-side, on a large store: a collector process over a
//! store of NODES synthetic nodes (default 10,000, REPORTS reports each, default 6), asked
//! for the fleet's first page (worst first), a filtered page and a later page, and a node
//! page; then a store of one node with a day of reports at 10 s (8,640) for the node
//! page's 24 h charts. Each page is asked RUNS times (default 20) over loopback HTTP; the
//! figures are the page's own "Rendered in" (the handler's time, store read included) and
//! the whole request as curl would see it.
//!
//! `cargo bench -p nodemedic-tests --bench console`

use std::{sync::Arc, time::Instant};

use nodemedic_collector::runbook::Catalog;
use nodemedic_tests::{
    CollectorProcess,
    bench::{env, fill_store},
    http_get_with,
};

/// (median, worst) of `xs`, ms.
fn spread(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[xs.len() - 1])
}

fn measure(collector: &CollectorProcess, what: &str, path: &str, headers: &str, runs: usize) {
    let (mut server, mut whole) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let (status, body) = http_get_with(&collector.http_addr, path, headers);
        whole.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        let body = String::from_utf8(body).unwrap();
        bytes = body.len();
        if let Some(ms) = body
            .split("Rendered in ")
            .nth(1)
            .and_then(|r| r.split(" ms").next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            server.push(ms);
        }
    }
    let (wm, ww) = spread(whole);
    match server.is_empty() {
        false => {
            let (sm, sw) = spread(server);
            println!(
                "{what:<34} server {sm:7.1} ms median {sw:7.1} ms worst | request {wm:7.1} ms median {ww:7.1} ms worst | {} KiB",
                bytes >> 10
            );
        }
        true => println!(
            "{what:<34} request {wm:7.1} ms median {ww:7.1} ms worst | {} KiB",
            bytes >> 10
        ),
    }
}

#[tokio::main]
async fn main() {
    let nodes = env("NODES", 10_000);
    let reports = env("REPORTS", 6) as u64;
    let runs = env("RUNS", 20);
    let catalog = Arc::new(Catalog::builtin());
    let now = nodemedic_proto::time::unix_millis(std::time::SystemTime::now());

    let fleet = tempfile::tempdir().unwrap();
    fill_store(fleet.path(), &catalog, nodes, reports, now).await;
    let collector = CollectorProcess::start(fleet.path(), "127.0.0.1:0");
    measure(
        &collector,
        "fleet, first page (worst first)",
        "/console/",
        "",
        runs,
    );
    measure(
        &collector,
        "fleet, warning+, sorted by name",
        "/console/?severity=warning&sort=name",
        "",
        runs,
    );
    measure(&collector, "fleet, page 50", "/console/?page=50", "", runs);
    measure(
        &collector,
        "fleet, live region (htmx)",
        "/console/?page=1",
        "HX-Request: true\r\n",
        runs,
    );
    measure(
        &collector,
        "node page, 6 h",
        "/console/nodes/node-00042",
        "",
        runs,
    );
    collector.kill();

    let day = tempfile::tempdir().unwrap();
    fill_store(day.path(), &catalog, 1, 8_640, now).await;
    let collector = CollectorProcess::start(day.path(), "127.0.0.1:0");
    measure(
        &collector,
        "node page, 1 h (360 reports)",
        "/console/nodes/node-00000?window=1h",
        "",
        runs,
    );
    measure(
        &collector,
        "node page, 24 h (8,640 reports)",
        "/console/nodes/node-00000?window=24h",
        "",
        runs,
    );
    collector.kill();
}
