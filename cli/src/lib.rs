//! # nodemedic-cli
//!
//! The `nodemedic` command: `doctor` diagnoses this machine in-process (the agent's probes
//! and the collector's analysis, no server); `nodes`, `node`, `findings`, `watch`,
//! `incidents`, `incident` and `collect` ask a collector's Diagnostics API. Tables follow kubectl's style; `-o json`
//! and `-o yaml` print the protos' JSON mapping.
//!
//! ## Layout
//! - [`bundle`]: download and inspect diagnostics bundles.
//! - [`doctor`]: local diagnosis and its exit codes (0 healthy, 4 warning, 3 critical).
//! - [`query`]: the collector commands; [`incidents`]: `incidents` and `incident ID`.
//! - [`render`]: report, findings and incident views shared by `doctor`, `node` and
//!   `incident`.
//! - [`remediation`]: `remediate plan|apply|history`, remediation actions through the collector.
//! - [`runbook`]: the runbook catalog offline (list, show, validate).
//! - [`table`], [`output`]: kubectl-style tables and the structured formats.

pub mod bundle;
pub mod doctor;
pub mod incidents;
pub mod output;
pub mod query;
pub mod remediation;
pub mod render;
pub mod runbook;
pub mod table;
