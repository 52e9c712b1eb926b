//! The HTTP listener: `/healthz` (the process answers), `/readyz` (the store accepts
//! writes) and `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::{
    Router, extract::State, http::StatusCode, http::header, response::IntoResponse, routing::get,
};

use crate::{metrics::Metrics, store::writer::WriterHandle};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    writer: WriterHandle,
}

/// The routes.
pub fn router(metrics: Arc<Metrics>, writer: WriterHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, writer })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.writer.is_alive() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store writer has stopped\n",
        )
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
