//! The pods probe's settings (`kubernetes:` in the agent's config file): what it judges, and
//! what the Kubernetes watches it reads from keep.

use std::time::Duration;

use serde::Deserialize;

use crate::units::Percent;

/// The pods probe (when the agent has a kubeconfig or runs in a pod).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// OOM kills, evictions and the restarts a crash loop reports count this far back
    /// (default 1h).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// `pod.restarts` at this many restarts ... (default 5)
    pub restarts_warn: u32,
    /// ... within this time, when not in back-off now (default 30m).
    #[serde(with = "humantime_serde")]
    pub restarts_within: Duration,
    /// `pod.probe_failing` at this many failed liveness/readiness probes ... (default 3)
    pub probe_failures: u32,
    /// ... within this time (default 10m).
    #[serde(with = "humantime_serde")]
    pub probe_failures_within: Duration,
    /// `pod.stuck_creating` when a pod has waited this long in ContainerCreating or
    /// PodInitializing since it was scheduled, with sandbox, attach or mount failures
    /// (default 5m).
    #[serde(with = "humantime_serde")]
    pub creating_after: Duration,
    /// `pod.terminating_stuck` this long after the pod's deletion time (default 5m).
    #[serde(with = "humantime_serde")]
    pub terminating_after: Duration,
    /// Also watch pods no node has yet, for `pod.pending` (default false: turn it on for
    /// one agent, or a few; each watching agent reports them).
    pub unscheduled_pods: bool,
    /// Watch Warning events about pods (probe failures, pull errors). Every agent
    /// receives the cluster's Warning pod events and keeps only its own pods' (default
    /// true).
    pub pod_events: bool,
    /// Warning events kept at most (default 1000).
    pub max_events: usize,
    /// `node.pods_capacity` when the node's unfinished pods fill this share of its
    /// `capacity.pods` (percent, default 95) ...
    pub pods_capacity_percent: Percent,
    /// ... for this long (default 15m).
    #[serde(with = "humantime_serde")]
    pub pods_capacity_for: Duration,
    /// `node.cordoned` when the node has been unschedulable this long (default 24h).
    #[serde(with = "humantime_serde")]
    pub cordoned_after: Duration,
    /// How long a report waits for the first list from the API server (default 3s; at most
    /// three quarters of `probe_timeout`).
    #[serde(with = "humantime_serde")]
    pub sync_timeout: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            window: Duration::from_secs(3600),
            restarts_warn: 5,
            restarts_within: Duration::from_secs(1800),
            probe_failures: 3,
            probe_failures_within: Duration::from_secs(600),
            creating_after: Duration::from_secs(300),
            terminating_after: Duration::from_secs(300),
            unscheduled_pods: false,
            pod_events: true,
            max_events: 1000,
            sync_timeout: Duration::from_secs(3),
            pods_capacity_percent: Percent::of(95.0),
            pods_capacity_for: Duration::from_secs(900),
            cordoned_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl KubernetesConfig {
    /// What the watches keep ([`crate::kubernetes::watch::connect`]).
    pub fn watch_options(&self) -> crate::kubernetes::WatchOptions {
        crate::kubernetes::WatchOptions {
            unscheduled_pods: self.unscheduled_pods,
            pod_events: self.pod_events,
            max_events: self.max_events,
        }
    }
}
