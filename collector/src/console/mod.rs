//! The web console: live pages of the fleet, the incidents, one incident and one node,
//! served by the collector on its HTTP listener (the same TLS), to the same viewers and
//! operators as the API (`session.rs`: token cookie, bearer header or client certificate).
//!
//! Pages are askama templates (`collector/templates/console/`), rendered on the server
//! from the store (a [`Reader`] of the console's own, so a page never waits for the API's
//! connection) and redacted for viewers as the API's answers are. Live updates are htmx
//! fetching a page's region again when `/console/events` (`live.rs`) names a change; the
//! node page's charts are SVG drawn by plotters (`plots.rs`) from the node's stored
//! history (`series.rs`). Every file the browser loads is compiled in (`assets.rs`).
//!
//! - `fleet.rs`: the fleet page's rows, filters, sorting and pages (pure; benchmarked at
//!   10,000 nodes);
//! - `views.rs`: the templates' view of incidents, findings and reports;
//! - `pages.rs`: the handlers, one per page.

pub mod assets;
pub mod fleet;
pub mod live;
mod pages;
pub mod plots;
pub mod series;
pub mod session;
mod views;

use std::sync::Arc;

use axum::{
    Router,
    routing::{get, post},
};

use crate::{
    auth::Auth,
    registry::Registry,
    store::{Reader, writer::Events},
};

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    /// The console's own read connection.
    pub reader: Arc<Reader>,
    /// Which nodes are connected.
    pub registry: Arc<Registry>,
    /// Who may look.
    pub auth: Arc<Auth>,
    /// The writer's broadcasts, for live updates.
    pub events: Events,
    /// Changes when the collector stops: event streams end.
    pub shutdown: tokio::sync::watch::Receiver<()>,
    /// Served over TLS: the token cookie is `Secure`.
    pub tls: bool,
}

/// The console's routes, under `/console`.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/console", get(pages::to_fleet))
        .route("/console/", get(pages::fleet))
        .route("/console/login", post(pages::login))
        .route("/console/logout", post(pages::logout))
        .route("/console/events", get(pages::events))
        .route("/console/incidents", get(pages::incidents))
        .route("/console/incidents/{id}", get(pages::incident))
        .route("/console/nodes/{name}", get(pages::node))
        .route("/console/assets/{file}", get(pages::asset))
        .with_state(console)
}
