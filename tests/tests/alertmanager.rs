//! Incidents reach a real Alertmanager (Debian's `prometheus-alertmanager`, on loopback):
//! an open incident is an active alert with its rule, severity, nodes and runbook; when it
//! resolves, the alert ends.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use nodemedic_collector::{alertmanager::AlertmanagerConfig, incidents::IncidentConfig};
use nodemedic_proto::v1::Severity;
use nodemedic_tests::{
    eventually, free_loopback_addr, http_get,
    in_process::{Running, connect, report},
};
use serde_json::Value;

/// A real Alertmanager on a free loopback port, dropping what it routes.
struct Alertmanager {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: drop\nreceivers:\n  - name: drop\n",
        )
        .unwrap();
        let addr = free_loopback_addr();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (Debian's prometheus-alertmanager; scripts/test installs it)");
        let am = Alertmanager {
            child,
            addr,
            _dir: dir,
        };
        eventually(Duration::from_secs(30), "Alertmanager ready", || {
            let (status, _) = std::panic::catch_unwind(|| http_get(&am.addr, "/-/ready")).ok()?;
            (status == 200).then_some(())
        });
        am
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_is_an_alert_until_it_resolves() {
    let am = Alertmanager::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}", am.addr);
    let server = Running::start_with(dir.path(), |c| {
        c.incidents = IncidentConfig::one_report();
        c.alertmanager = Some(AlertmanagerConfig {
            urls: vec![url],
            interval: Duration::from_millis(300),
            ca: None,
            token_file: None,
        });
    })
    .await;
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

    let ours = |alerts: Vec<Value>| {
        alerts
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "NodemedicIncident")
    };
    let alert = tokio::task::spawn_blocking({
        let addr = am.addr.clone();
        move || {
            let am = AlertsOf(addr);
            eventually(Duration::from_secs(20), "the incident's alert", || {
                ours(am.get()).filter(|a| a["status"]["state"] == "active")
            })
        }
    })
    .await
    .unwrap();
    assert_eq!(alert["labels"]["rule"], "swap-in-use");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["scope"], "node");
    assert_eq!(alert["labels"]["nodes"], "node-a");
    assert!(
        alert["annotations"]["runbook"]
            .as_str()
            .unwrap()
            .contains("swapoff"),
        "{alert}"
    );

    // Resolved: the alert ends (Alertmanager drops it from its active alerts).
    a.report(report("node-a", 2, &[], &[])).await;
    let addr = am.addr.clone();
    tokio::task::spawn_blocking(move || {
        let am = AlertsOf(addr);
        eventually(Duration::from_secs(20), "the alert resolved", || {
            ours(am.get()).is_none().then_some(())
        })
    })
    .await
    .unwrap();
    let metrics = server.http_get("/metrics").await;
    assert!(
        !metrics.contains("nodemedic_alertmanager_posts_total{result=\"ok\"} 0"),
        "{metrics}"
    );
    drop(am);
}

/// The Alertmanager's API from a blocking thread.
struct AlertsOf(String);

impl AlertsOf {
    fn get(&self) -> Vec<Value> {
        let (status, body) = http_get(&self.0, "/api/v2/alerts");
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }
}
