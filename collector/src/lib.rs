//! # nodemedic-collector
//!
//! The central service: agents stream reports in, the collector stores them durably,
//! tracks each finding from open to resolved, notices silent nodes, and answers queries.
//!
//! ## Layout (the data path, in order)
//! - [`gateway`]: `AgentGateway`, the agents' streams (Hello → Welcome, Report → Ack).
//! - [`validate`]: what is accepted (node names, report rules, limits);
//!   [`ratelimit`]: each agent's report rate (paced, not cut off).
//! - [`store`]: SQLite. [`store::writer`] is the single writer thread that batches
//!   commits and owns the finding lifecycle; [`store::Reader`] answers queries.
//!   [`open_finding`]: a finding open on a node, the type the store and the incidents share.
//! - [`incidents`]: correlation; the writer hands it each node's open findings and stores
//!   the incidents it opens, updates and resolves (the store uses the incidents, never the
//!   other way round).
//! - [`runbook`]: the runbook catalog, rules as data (`collector/runbooks/*.yaml`), and
//!   their remediations filled from a finding.
//! - [`query`]: the query service (`Diagnostics` on the wire).
//! - [`registry`]: which nodes are connected; commands down their streams, and requests
//!   waiting for an agent's answer; [`remediation`]: plan and apply remediation actions
//!   through them, recording every apply.
//! - [`doctor`]: one report diagnosed in-process (`nodemedic doctor`), the same validation
//!   and correlation with no hold.
//! - [`bundle`]: diagnostics bundles (`.tar.zst`) built from the store or from a
//!   diagnosis, and their checking.
//! - [`http`] and [`metrics`]: `/healthz`, `/readyz`, `/metrics`; [`alertmanager`]: open
//!   incidents posted as alerts; [`console`]: the live web pages under `/console/`.
//! - [`auth`]: who may call what (bearer tokens, tooling certificates and the identity they
//!   carry, the viewer and operator roles); [`tls`]: certificates and the server's TLS
//!   configuration; [`listener`]: TCP and TLS connections and their peers; [`reload`]:
//!   files read again when they change (certificates, tokens).
//! - [`server`]: binds and wires it all; `main.rs` only parses flags.

pub mod alertmanager;
pub mod auth;
pub mod bundle;
pub mod cluster;
pub mod console;
pub mod doctor;
pub mod error;
pub mod gateway;
pub mod http;
pub mod incidents;
pub mod listener;
pub mod metrics;
pub mod open_finding;
pub mod query;
pub mod ratelimit;
pub mod registry;
pub mod reload;
pub mod remediation;
pub mod runbook;
pub mod server;
pub mod store;
pub mod tls;
pub mod validate;
