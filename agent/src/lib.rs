//! # nodemedic-agent
//!
//! Runs on every node (a DaemonSet), measures it, and streams reports to the collector.
//! `nodemedic doctor` runs the same probes in-process.
//!
//! ## Layout
//! From the bottom up; a module imports only from the lines above its own.
//! - [`units`], [`host`] (the host root every path goes through, `--host-root /host` in a
//!   pod; `/proc` files through procfs-core) and [`parse`] (pure parsers of the files
//!   procfs-core does not cover, tested on real captured files).
//! - Shared by several probes, owned by none: [`runtime`] (Docker and CRI clients),
//!   [`kubernetes`] (the watches of this node's objects and their compact view),
//!   [`forecast`] (fill rates), [`kubelet`] (the kubelet's config file), [`logs`] (log
//!   rules as data and their bounded tally, for the kernel log and the journal).
//! - [`probes`]: the [`probes::Probe`] trait, one module per probe with its own settings,
//!   and [`probes::set::ProbeSet`], which runs them under a deadline and turns a failure
//!   into a `probe.failed` finding.
//! - [`config`]: the YAML config file, gathering each probe's settings.
//! - [`agent`]: one collection, probes to a [`nodemedic_proto::v1::NodeReport`].
//! - [`publish`]: what the agent writes into the cluster about its node, from its reports:
//!   node conditions (the table in `publish/table.rs`) and Events, by one writer task.
//! - [`remediation`]: the actions the collector may ask for (plan, then apply).
//! - [`reporter`]: the loop that streams reports to the collector and resends what was
//!   not acknowledged; [`spool`] keeps those reports on disk across agent restarts,
//!   [`backoff`] paces reconnects.
//! - [`health`]: `/healthz` and `/readyz` for the kubelet's probes, and `/metrics`
//!   ([`metrics`]: cycle time, probe failures, the queue), on `--health-listen`.

pub mod agent;
pub mod backoff;
pub mod config;
pub mod forecast;
pub mod health;
pub mod host;
pub mod kubelet;
pub mod kubernetes;
pub mod logs;
pub mod metrics;
pub mod parse;
pub mod podlogs;
pub mod probes;
pub mod publish;
pub mod remediation;
pub mod reporter;
pub mod runtime;
pub mod spool;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod units;

pub use agent::Agent;
