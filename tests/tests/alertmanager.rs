//! Incidents reach a real Alertmanager (Debian's `prometheus-alertmanager`, on loopback):
//! an open incident is an active alert with its rule, severity, nodes and runbook; when it
//! resolves, the alert ends. Over plain HTTP, and over TLS checked with `amtool`.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use nodemedic_collector::{alertmanager::AlertmanagerConfig, incidents::IncidentConfig};
use nodemedic_proto::v1::Severity;
use nodemedic_tests::{
    Process, eventually, free_loopback_addr, http_get,
    in_process::{Running, connect, report},
    until_ready,
};
use serde_json::Value;

/// A real Alertmanager on a free loopback port, dropping what it routes.
struct Alertmanager {
    _process: Process,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Over plain HTTP, or over TLS with `tls`: the certificate and key files.
    fn start(tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: drop\nreceivers:\n  - name: drop\n",
        )
        .unwrap();
        let addr = free_loopback_addr();
        let mut command = Command::new("prometheus-alertmanager");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=");
        if let Some((cert, key)) = tls {
            let web = dir.path().join("web.yml");
            std::fs::write(
                &web,
                format!(
                    "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                    cert.display(),
                    key.display()
                ),
            )
            .unwrap();
            command.arg(format!("--web.config.file={}", web.display()));
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (Debian's prometheus-alertmanager; scripts/test installs it)");
        if tls.is_none() {
            until_ready(
                &addr,
                "/-/ready",
                Duration::from_secs(30),
                "Alertmanager ready",
            );
        }
        Alertmanager {
            _process: Process(child),
            addr,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_is_an_alert_until_it_resolves() {
    let am = Alertmanager::start(None);
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

/// `amtool alert query` against an Alertmanager over TLS, trusting `ca`: its alerts (JSON).
fn amtool_alerts(url: &str, ca: &Path, dir: &Path) -> Option<Vec<Value>> {
    let http = dir.join("amtool-http.yml");
    std::fs::write(&http, format!("tls_config:\n  ca_file: {}\n", ca.display())).unwrap();
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url={url}"))
        .arg(format!("--http.config.file={}", http.display()))
        .args(["alert", "query", "-o", "json"])
        .output()
        .expect("amtool (Debian's prometheus-alertmanager)");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_token_the_alert_arrives_and_amtool_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let made = Command::new(nodemedic_tests::binary("nodemedic-collector"))
        .args(["certs", "init"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let am = Alertmanager::start(Some((
        &certs.join("server.pem"),
        &certs.join("server-key.pem"),
    )));
    // The certificate names localhost.
    let url = format!("https://{}", am.addr.replace("127.0.0.1", "localhost"));
    let token = dir.path().join("am-token");
    std::fs::write(&token, "a-token-alertmanager-ignores\n").unwrap();
    let server = Running::start_with(dir.path(), |c| {
        c.incidents = IncidentConfig::one_report();
        c.alertmanager = Some(AlertmanagerConfig {
            urls: vec![url.clone()],
            interval: Duration::from_millis(300),
            ca: Some(certs.join("ca.pem")),
            token_file: Some(token),
        });
    })
    .await;
    let mut a = connect(&server, "node-t", Duration::from_secs(10))
        .await
        .unwrap();
    a.report(report(
        "node-t",
        1,
        &[("memory.swap", Severity::Warning, "")],
        &[],
    ))
    .await;
    let (ca, work) = (certs.join("ca.pem"), dir.path().to_owned());
    let alert = tokio::task::spawn_blocking(move || {
        eventually(
            Duration::from_secs(30),
            "the alert, seen by amtool over TLS",
            || {
                amtool_alerts(&url, &ca, &work)?
                    .into_iter()
                    .find(|a| a["labels"]["alertname"] == "NodemedicIncident")
            },
        )
    })
    .await
    .unwrap();
    assert_eq!(alert["labels"]["rule"], "swap-in-use");
    assert_eq!(alert["labels"]["nodes"], "node-t");
    let metrics = server.http_get("/metrics").await;
    assert!(
        nodemedic_tests::sample(
            &metrics,
            "nodemedic_alertmanager_posts_total{result=\"ok\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}
