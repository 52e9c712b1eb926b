//! The agent's own health over HTTP (`--health-listen`), for the kubelet's probes:
//! `/healthz` answers 200 while the report loop keeps collecting, 503 once no collection
//! has finished for too long (a wedged loop; probes have their own deadlines);
//! `/readyz` answers 200 once the first report is collected. Neither depends on the
//! collector: a collector outage must not restart or un-ready every agent of the cluster
//! (they spool meanwhile, and a rolling update must still progress). Both bodies say
//! whether the collector is connected and how many reports wait for its acknowledgement.
//! `/metrics` on the same listener: the loop's own figures ([`crate::metrics`]).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use nodemedic_proto::v1::NodeReport;

use crate::metrics::AgentMetrics;

/// What the report loop tells the health endpoint.
#[derive(Debug)]
pub struct Health {
    /// No collection for this long makes `/healthz` fail.
    stale_after: Duration,
    state: Mutex<Seen>,
    metrics: AgentMetrics,
}

#[derive(Debug, Default)]
struct Seen {
    last_collect: Option<Instant>,
    connected: bool,
    pending: usize,
    last_error: String,
}

impl Health {
    /// Health for a loop that collects every `interval`: stale after three missed
    /// collections and half a minute of grace.
    pub fn new(interval: Duration) -> Self {
        Health {
            stale_after: interval * 3 + Duration::from_secs(30),
            state: Mutex::default(),
            metrics: AgentMetrics::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A collection that took `elapsed` made `report`.
    pub fn collected(&self, report: &NodeReport, elapsed: Duration) {
        self.metrics.collected(report, elapsed);
        self.seen().last_collect = Some(Instant::now());
    }

    /// `pending` reports wait for an acknowledgement; `dropped` were dropped unsent since
    /// the agent started.
    pub fn queued(&self, pending: usize, dropped: u64) {
        self.metrics.queued(pending, dropped);
        self.seen().pending = pending;
    }

    /// The collector acknowledged a report.
    pub fn acknowledged(&self) {
        self.metrics.acknowledged();
    }

    /// The stream to the collector opened.
    pub fn connected(&self) {
        self.metrics.connected(true);
        let mut seen = self.seen();
        seen.connected = true;
        seen.last_error.clear();
    }

    /// The stream to the collector is down, for `error`.
    pub fn disconnected(&self, error: &str) {
        self.metrics.connected(false);
        let mut seen = self.seen();
        seen.connected = false;
        error.clone_into(&mut seen.last_error);
    }

    /// `/metrics`: the OpenMetrics text.
    pub fn metrics(&self) -> impl IntoResponse + use<> {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            self.metrics.encode(),
        )
    }

    /// `/healthz` at `now`: status and body.
    pub fn live(&self, now: Instant) -> (StatusCode, String) {
        let seen = self.seen();
        match seen.last_collect {
            Some(at) if now.duration_since(at) > self.stale_after => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no report collected for {}s\n{}",
                    now.duration_since(at).as_secs(),
                    seen.describe()
                ),
            ),
            _ => (StatusCode::OK, format!("ok\n{}", seen.describe())),
        }
    }

    /// `/readyz`: status and body.
    pub fn ready(&self) -> (StatusCode, String) {
        let seen = self.seen();
        match seen.last_collect {
            Some(_) => (StatusCode::OK, format!("ready\n{}", seen.describe())),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no report collected yet\n{}", seen.describe()),
            ),
        }
    }
}

impl Seen {
    fn describe(&self) -> String {
        let collector = if self.connected {
            "connected".to_owned()
        } else if self.last_error.is_empty() {
            "not connected yet".to_owned()
        } else {
            format!("not connected ({})", self.last_error)
        };
        format!(
            "collector: {collector}\nunacknowledged reports: {}\n",
            self.pending
        )
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/healthz",
            get(|State(h): State<Arc<Health>>| async move { h.live(Instant::now()) }),
        )
        .route(
            "/readyz",
            get(|State(h): State<Arc<Health>>| async move { h.ready() }),
        )
        .route(
            "/metrics",
            get(|State(h): State<Arc<Health>>| async move { h.metrics() }),
        )
        .with_state(health);
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_the_first_collection_and_live_until_collections_stop() {
        let health = Health::new(Duration::from_secs(10));
        assert_eq!(health.ready().0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            health.live(Instant::now()).0,
            StatusCode::OK,
            "starting up is alive"
        );
        health.disconnected("connect: connection refused");
        health.collected(&NodeReport::default(), Duration::from_millis(2));
        health.queued(1, 0);
        let (status, body) = health.ready();
        assert_eq!(status, StatusCode::OK, "a collector outage is not unready");
        assert!(
            body.contains("collector: not connected (connect: connection refused)"),
            "{body}"
        );
        assert!(body.contains("unacknowledged reports: 1"), "{body}");
        let later = Instant::now() + Duration::from_secs(61);
        let (status, body) = health.live(later);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("no report collected for 61s"), "{body}");
        health.connected();
        health.acknowledged();
        health.queued(0, 0);
        let (_, body) = health.live(Instant::now());
        assert!(
            body.contains("collector: connected\nunacknowledged reports: 0"),
            "{body}"
        );
    }
}
