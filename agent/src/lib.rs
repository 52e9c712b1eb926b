//! # nodemedic-agent
//!
//! Runs on every node (a DaemonSet), measures it, and streams reports to the collector.
//! `nodemedic doctor` runs the same probes in-process.
//!
//! ## Layout
//! - [`host`]: the host root every path goes through (`--host-root /host` in a pod).
//! - [`parse`]: pure parsers of the kernel's files, tested on real captured files.
//! - [`probe`]: the [`probe::Probe`] trait and [`probe::ProbeSet`], which runs probes
//!   under a deadline and turns a failure into a `probe.failed` finding.
//! - [`probes`]: one module per probe (`disk`, `memory`, `system`); each measures its
//!   section of the report and judges it against [`config::Thresholds`].
//! - [`collect`]: one collection, probes to [`nodemedic_proto::v1::NodeReport`].
//! - [`reporter`]: the loop that streams reports to the collector and resends what was
//!   not acknowledged; [`spool`] keeps those reports on disk across agent restarts.
//! - [`health`]: `/healthz` and `/readyz` for the kubelet's probes, and `/metrics`
//!   ([`metrics`]: cycle time, probe failures, the queue), on `--health-listen`.
//! - [`config`]: the YAML config file and its defaults.

pub mod actions;
pub mod backoff;
pub mod collect;
pub mod config;
pub mod health;
pub mod host;
pub mod metrics;
pub mod parse;
pub mod probe;
pub mod probes;
pub mod reporter;
pub mod spool;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use collect::Collector;
