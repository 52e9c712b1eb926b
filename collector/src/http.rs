//! The HTTP listener: `/healthz` (the process answers), `/readyz` (the store accepts
//! writes), `/metrics` (Prometheus text format), `/api/v1/bundle` (a diagnostics bundle
//! for curl: `?node=a&node=b&since=2h&incidents_only=true`, a viewer's bearer token,
//! client certificate or console login; `no_redact=true` needs an operator) and the web
//! console under `/console/` ([`crate::console`]). TLS as on the gRPC listener.

use std::sync::Arc;

use axum::{
    Router,
    extract::{ConnectInfo, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio_stream::StreamExt;

use crate::{
    auth::{Auth, Role},
    bundle::stream::{Bundler, Piece},
    console,
    listener::Peer,
    metrics::{self, Metrics},
    query::bundle_request,
    registry::Registry,
    store::{Reader, writer::WriterHandle},
};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    /// The fleet series of `/metrics` are read from the store.
    reader: Arc<Reader>,
    registry: Arc<Registry>,
    writer: WriterHandle,
    bundles: Bundler,
    /// Who may download bundles.
    auth: Arc<Auth>,
    /// Serving plaintext (`--insecure`): said on `/readyz`.
    insecure: bool,
}

/// The routes.
pub fn router(
    metrics: Arc<Metrics>,
    reader: Arc<Reader>,
    registry: Arc<Registry>,
    writer: WriterHandle,
    bundles: Bundler,
    auth: Arc<Auth>,
    insecure: bool,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/bundle", get(bundle_download))
        .with_state(AppState {
            metrics,
            reader,
            registry,
            writer,
            bundles,
            auth,
            insecure,
        })
}

/// `GET /api/v1/bundle?node=N&since=2h&incidents_only=true`: the bundle as the body.
async fn bundle_download(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    let mut nodes = Vec::new();
    let mut since = None;
    let mut incidents_only = false;
    let mut no_redact = false;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            // The console's bundle form sends its empty fields too.
            "node" | "since" if value.is_empty() => {}
            "node" => nodes.push(value.to_owned()),
            "since" => match humantime::parse_duration(value) {
                Ok(d) => since = Some(d),
                Err(e) => {
                    return (StatusCode::BAD_REQUEST, format!("since={value}: {e}\n"))
                        .into_response();
                }
            },
            "incidents_only" => incidents_only = value == "true" || value == "1",
            "no_redact" => no_redact = value == "true" || value == "1",
            other => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown parameter {other:?}; known: node, since, incidents_only, no_redact\n"
                    ),
                )
                    .into_response();
            }
        }
    }
    let need = if no_redact {
        Role::Operator
    } else {
        Role::Viewer
    };
    // A bearer token, a client certificate, or the console's login cookie.
    if let Err(denied) =
        console::session::authorize(&state.auth, "GET /api/v1/bundle", need, &headers, &peer)
    {
        return console::session::refused_text(&denied);
    }
    let request = match bundle_request(nodes, since, incidents_only, no_redact) {
        Ok(r) => r,
        Err(status) => {
            return (StatusCode::BAD_REQUEST, format!("{}\n", status.message())).into_response();
        }
    };
    let chunks = state.bundles.start(request);
    let body = tokio_stream::wrappers::ReceiverStream::new(chunks).filter_map(|c| match c {
        Ok(Piece::Data(data, _)) => Some(Ok(data)),
        // Who sent pods' logs is in the manifest's files; a download has no side channel.
        Ok(Piece::Logs { .. }) => None,
        Err(e) => Some(Err(std::io::Error::other(e))),
    });
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
    if !state.writer.is_alive() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store writer has stopped\n".to_owned(),
        );
    }
    if let Some(reason) = state.writer.failing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the store cannot write: {reason}\n"),
        );
    }
    let mut text = "ready".to_owned();
    if state.insecure {
        text.push_str(" (insecure: plaintext, agents not identified");
        if state.auth.is_open() {
            text.push_str(", every caller may operate");
        }
        text.push(')');
    }
    text.push('\n');
    (StatusCode::OK, text)
}

async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let reader = Arc::clone(&state.reader);
    let fleet = tokio::task::spawn_blocking(move || reader.fleet().map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let mut text = state.metrics.encode();
    match fleet {
        Ok(fleet) => {
            let tail = text
                .strip_suffix("# EOF\n")
                .map(str::len)
                .unwrap_or(text.len());
            text.truncate(tail);
            text.push_str(&metrics::fleet_text(&fleet, |n| {
                state.registry.is_connected(n)
            }));
            text.push_str("# EOF\n");
        }
        // The process's own series are still worth serving; the fleet's are left out.
        Err(e) => {
            tracing::warn!(message = "Cannot read the fleet's series for /metrics.", error = %e)
        }
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics::text_004(&text),
        )
    }
}
