//! Open incidents as Alertmanager alerts (`--alertmanager-url`, repeatable): every
//! `interval`, each open incident is posted to `/api/v2/alerts` with an `endsAt` a few
//! intervals ahead (so an alert lives while it is re-sent and expires if the collector
//! stops), and an incident that resolved since the last round is posted once more with
//! `endsAt` now, which resolves it at once.
//!
//! Labels: `alertname` (`NodemedicIncident`), `rule`, `severity`, `scope`, `nodes`,
//! `incident` (the id); annotations: `title`, `summary`, `runbook` (the first step).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use nodemedic_proto::v1::{Incident, IncidentState};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::{
    metrics::Metrics,
    store::{IncidentFilter, Reader},
};

/// Where and how alerts are sent.
#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    /// Alertmanagers' base URLs (`http://am:9093`); each gets every alert.
    pub urls: Vec<String>,
    /// How often the open incidents are sent again.
    pub interval: Duration,
    /// The CA that signed an `https://` Alertmanager's certificate.
    pub ca: Option<PathBuf>,
    /// A file holding a bearer token to send (`Authorization: Bearer …`).
    pub token_file: Option<PathBuf>,
}

/// Why alerts cannot be sent at all.
#[derive(Debug, thiserror::Error)]
pub enum AlertmanagerError {
    /// A URL that is not `http://` or `https://`.
    #[error("--alertmanager-url {0:?}: not an http:// or https:// URL")]
    Url(String),
    /// The CA or token file.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Sends the open incidents to the Alertmanagers until the collector stops.
pub struct Sender {
    config: AlertmanagerConfig,
    client: HttpsClient,
    token: Option<String>,
    reader: Arc<Reader>,
    metrics: Arc<Metrics>,
    /// What was sent last round, by incident id: resolved ones are sent once more.
    sent: HashMap<u64, Value>,
}

impl Sender {
    /// Checks the URLs and reads the CA and token files, so a bad one fails at start.
    pub fn new(
        config: AlertmanagerConfig,
        reader: Arc<Reader>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, AlertmanagerError> {
        let (client, token) = client(&config)?;
        Ok(Sender {
            config,
            client,
            token,
            reader,
            metrics,
            sent: HashMap::new(),
        })
    }

    /// Sends a round every interval, until `stop` changes.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<()>) {
        info!(
            message = "Sending open incidents to Alertmanager.",
            urls = ?self.config.urls,
            interval = ?self.config.interval
        );
        let mut every = tokio::time::interval(self.config.interval);
        loop {
            tokio::select! {
                _ = every.tick() => self.round().await,
                _ = stop.changed() => return,
            }
        }
    }

    /// One round: every open incident, and the ones resolved since the last.
    async fn round(&mut self) {
        let reader = Arc::clone(&self.reader);
        let open = tokio::task::spawn_blocking(move || {
            reader
                .incidents(&IncidentFilter {
                    state: IncidentState::Open,
                    limit: 10_000,
                    ..Default::default()
                })
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let open = match open {
            Ok((open, _)) => open,
            Err(e) => {
                return warn!(message = "Cannot read the open incidents for Alertmanager.", error = %e);
            }
        };
        let now = SystemTime::now();
        let ends = now + self.config.interval * 4;
        let mut alerts = Vec::new();
        let mut sent = HashMap::new();
        for incident in &open {
            let alert = alert(incident, ends);
            sent.insert(incident.id, alert.clone());
            alerts.push(alert);
        }
        for (id, mut alert) in std::mem::take(&mut self.sent) {
            if !sent.contains_key(&id) {
                alert["endsAt"] = rfc3339(now).into();
                alerts.push(alert);
            }
        }
        self.sent = sent;
        if alerts.is_empty() {
            return;
        }
        let body = Bytes::from(Value::Array(alerts).to_string());
        for url in &self.config.urls {
            let result = self.post(url, body.clone()).await;
            self.metrics.alertmanager_post(match &result {
                Ok(()) => "ok",
                Err(_) => "error",
            });
            if let Err(e) = result {
                warn!(message = "Alertmanager did not take the alerts; they are sent again next round.", %url, error = %e);
            }
        }
    }

    async fn post(&self, url: &str, body: Bytes) -> Result<(), String> {
        let mut request =
            axum::http::Request::post(format!("{}/api/v2/alerts", url.trim_end_matches('/')))
                .header("content-type", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .map_err(|_| "no answer within 10s".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status()))
        }
    }
}

/// The HTTP client for `config`'s Alertmanagers and the bearer token to send, or why the
/// settings cannot be used (a bad URL, an unreadable CA or token file).
fn client(config: &AlertmanagerConfig) -> Result<(HttpsClient, Option<String>), AlertmanagerError> {
    if let Some(bad) = config
        .urls
        .iter()
        .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(AlertmanagerError::Url(bad.clone()));
    }
    let file_err = |path: &PathBuf, reason: String| AlertmanagerError::File {
        path: path.clone(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &config.ca {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| file_err(ca, e.to_string()))?;
        for cert in certs {
            roots.add(cert).map_err(|e| file_err(ca, e.to_string()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AlertmanagerError::Url(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let token = config
        .token_file
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| file_err(path, e.to_string()))
        })
        .transpose()?;
    Ok((Client::builder(TokioExecutor::new()).build(https), token))
}

/// One incident as an Alertmanager alert, ending at `ends` unless sent again.
fn alert(i: &Incident, ends: SystemTime) -> Value {
    let starts = i
        .first_seen
        .as_ref()
        .map(nodemedic_proto::time::system_time)
        .unwrap_or(ends);
    let first_step = i
        .remediation
        .as_ref()
        .and_then(|r| r.steps.first())
        .map(|s| match s.command.is_empty() {
            true => s.text.clone(),
            false => format!("{} `{}`", s.text, s.command),
        })
        .unwrap_or_default();
    json!({
        "labels": {
            "alertname": "NodemedicIncident",
            "rule": if i.rule.is_empty() { "none" } else { i.rule.as_str() },
            "severity": i.severity().label(),
            "scope": match i.scope() {
                nodemedic_proto::v1::IncidentScope::Cluster => "cluster",
                _ => "node",
            },
            "nodes": i.nodes.join(","),
            "incident": i.id.to_string(),
        },
        "annotations": {
            "title": i.title,
            "summary": i.summary,
            "runbook": first_step,
        },
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
    })
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_at_start_naming_them() {
        let config = |url: &str, ca: Option<&str>| AlertmanagerConfig {
            urls: vec![url.into()],
            interval: Duration::from_secs(30),
            ca: ca.map(PathBuf::from),
            token_file: None,
        };
        let err = |c: AlertmanagerConfig| client(&c).err().map(|e| e.to_string());
        assert!(err(config("http://127.0.0.1:9093", None)).is_none());
        assert_eq!(
            err(config("ftp://am", None)).unwrap(),
            "--alertmanager-url \"ftp://am\": not an http:// or https:// URL"
        );
        assert!(
            err(config("https://am", Some("/nonexistent/ca.pem")))
                .unwrap()
                .starts_with("/nonexistent/ca.pem: ")
        );
    }

    #[test]
    fn an_incident_becomes_an_alert_with_its_labels_and_runbook() {
        let incident = Incident {
            id: 7,
            rule: "disk-full-images".into(),
            title: "The filesystem holding container images is full".into(),
            severity: nodemedic_proto::v1::Severity::Critical as i32,
            nodes: vec!["n1".into(), "n2".into()],
            remediation: Some(nodemedic_proto::v1::Remediation {
                steps: vec![nodemedic_proto::v1::RemediationStep {
                    text: "Remove unused images.".into(),
                    command: "crictl rmi --prune".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = alert(&incident, SystemTime::UNIX_EPOCH + Duration::from_secs(60));
        assert_eq!(a["labels"]["rule"], "disk-full-images");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["labels"]["nodes"], "n1,n2");
        assert_eq!(a["labels"]["incident"], "7");
        assert_eq!(
            a["annotations"]["runbook"],
            "Remove unused images. `crictl rmi --prune`"
        );
        assert_eq!(a["endsAt"], "1970-01-01T00:01:00.000Z");
    }
}
