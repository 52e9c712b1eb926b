//! A real Prometheus (Debian's `prometheus`, on loopback) scrapes a real collector and
//! evaluates the shipped alert rules (`deploy/prometheus/nodemedic.rules.yaml`): an open
//! incident becomes the series and then the alert of its runbook rule, with the runbook in
//! its annotations.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use nodemedic_collector::incidents::IncidentConfig;
use nodemedic_proto::v1::Severity;
use nodemedic_tests::{
    Process, eventually, free_loopback_addr, http_get,
    in_process::{Running, connect, report},
    until_ready,
};
use serde_json::Value;

/// A real Prometheus scraping `target` every second, with the shipped rules.
struct Prometheus {
    _process: Process,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/prometheus/nodemedic.rules.yaml")
            .canonicalize()
            .expect("the shipped rule file");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: nodemedic-collector\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let addr = free_loopback_addr();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's prometheus; scripts/test installs it)");
        until_ready(
            &addr,
            "/-/ready",
            Duration::from_secs(60),
            "Prometheus ready",
        );
        Prometheus {
            _process: Process(child),
            addr,
            _dir: dir,
        }
    }

    /// A JSON answer of its HTTP API.
    fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(&self.addr, path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_collector_and_the_shipped_rules_alert_on_an_incident() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start_with(dir.path(), |c| {
        c.incidents = IncidentConfig::one_report();
    })
    .await;
    let target = server.http.to_string();
    let prometheus = tokio::task::spawn_blocking(move || Prometheus::start(&target))
        .await
        .unwrap();
    let mut a = connect(&server, "node-a", Duration::from_secs(10))
        .await
        .unwrap();
    a.report(report(
        "node-a",
        1,
        &[("memory.swap", Severity::Warning, "")],
        &[],
    ))
    .await;
    let prometheus = std::sync::Arc::new(prometheus);
    let p = std::sync::Arc::clone(&prometheus);
    let (target, series, alert) = tokio::task::spawn_blocking(move || {
        let target = eventually(Duration::from_secs(30), "the collector scraped up", || {
            let targets = p.api("/api/v1/targets");
            let t = targets["data"]["activeTargets"][0].clone();
            (t["health"] == "up").then_some(t)
        });
        let series = eventually(Duration::from_secs(30), "the incident's series", || {
            let q =
                p.api("/api/v1/query?query=nodemedic_open_incidents%7Brule%3D%22swap-in-use%22%7D");
            q["data"]["result"]
                .as_array()
                .filter(|r| !r.is_empty())
                .cloned()
        });
        let alert = eventually(Duration::from_secs(30), "the shipped rule's alert", || {
            let alerts = p.api("/api/v1/alerts");
            alerts["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == "NodemedicSwapInUse")
                .cloned()
        });
        (target, series, alert)
    })
    .await
    .unwrap();
    assert_eq!(target["lastError"], "", "{target}");
    assert_eq!(series[0]["metric"]["severity"], "warning", "{series:?}");
    // `for: 1m`: pending first, firing after a minute (not waited for here).
    assert!(
        alert["state"] == "pending" || alert["state"] == "firing",
        "{alert}"
    );
    assert_eq!(alert["labels"]["rule"], "swap-in-use");
    assert_eq!(alert["labels"]["scope"], "node");
    assert!(
        alert["annotations"]["runbook"]
            .as_str()
            .unwrap()
            .contains("swapoff"),
        "{alert}"
    );
    // Every rule of the shipped file loaded and evaluates without error.
    let rules = prometheus.api("/api/v1/rules");
    let groups = rules["data"]["groups"].as_array().unwrap();
    let all: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert!(all.len() > 10, "{} rules", all.len());
    for r in &all {
        assert_eq!(r["health"], "ok", "{r}");
    }

    // Resolved: the series goes and the alert with it.
    a.report(report("node-a", 2, &[], &[])).await;
    let p = std::sync::Arc::clone(&prometheus);
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(30), "the alert gone", || {
            let alerts = p.api("/api/v1/alerts");
            let any = alerts["data"]["alerts"]
                .as_array()?
                .iter()
                .any(|a| a["labels"]["alertname"] == "NodemedicSwapInUse");
            (!any).then_some(())
        })
    })
    .await
    .unwrap();
}
