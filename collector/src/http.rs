//! The HTTP listener: `/healthz` (the process answers), `/readyz` (the store accepts
//! writes), `/metrics` (Prometheus text format) and `/api/v1/bundle` (a diagnostics bundle
//! for curl: `?node=a&node=b&since=2h&incidents_only=true`).

use std::sync::Arc;

use axum::{
    Router,
    extract::{RawQuery, State},
    http::StatusCode,
    http::header,
    response::IntoResponse,
    routing::get,
};
use tokio_stream::StreamExt;

use crate::{
    bundle::stream::Bundler, diagnostics::bundle_request, metrics::Metrics,
    store::writer::WriterHandle,
};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    writer: WriterHandle,
    bundles: Bundler,
    /// Serving plaintext gRPC (`--insecure`): said on `/readyz`.
    insecure: bool,
}

/// The routes.
pub fn router(
    metrics: Arc<Metrics>,
    writer: WriterHandle,
    bundles: Bundler,
    insecure: bool,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/bundle", get(bundle_download))
        .with_state(AppState {
            metrics,
            writer,
            bundles,
            insecure,
        })
}

/// `GET /api/v1/bundle?node=N&since=2h&incidents_only=true`: the bundle as the body.
async fn bundle_download(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    let mut nodes = Vec::new();
    let mut since = None;
    let mut incidents_only = false;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "node" => nodes.push(value.to_owned()),
            "since" => match humantime::parse_duration(value) {
                Ok(d) => since = Some(d),
                Err(e) => {
                    return (StatusCode::BAD_REQUEST, format!("since={value}: {e}\n"))
                        .into_response();
                }
            },
            "incidents_only" => incidents_only = value == "true" || value == "1",
            other => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {other:?}; known: node, since, incidents_only\n"),
                )
                    .into_response();
            }
        }
    }
    // Redaction cannot be turned off over plain HTTP.
    let request = match bundle_request(nodes, since, incidents_only, false) {
        Ok(r) => r,
        Err(status) => {
            return (StatusCode::BAD_REQUEST, format!("{}\n", status.message())).into_response();
        }
    };
    let chunks = state.bundles.start(request);
    let body = tokio_stream::wrappers::ReceiverStream::new(chunks)
        .map(|c| c.map(|(data, _)| data).map_err(std::io::Error::other));
    (
        [
            (header::CONTENT_TYPE, "application/zstd"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"nodemedic-bundle.tar.zst\"",
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.writer.is_alive() && state.insecure {
        (
            StatusCode::OK,
            "ready (insecure: plaintext gRPC, agents not identified)\n",
        )
    } else if state.writer.is_alive() {
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
