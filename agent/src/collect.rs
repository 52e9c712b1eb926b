//! One collection: run the probes and wrap what they found into a [`NodeReport`].

use std::{sync::Arc, time::SystemTime};

use nodemedic_proto::{time::timestamp, v1::NodeReport};

use crate::{
    config::{Config, Thresholds},
    host::HostRoot,
    probe::{ProbeContext, ProbeSet},
    probes::default_probes,
};

/// The agent's version, sent in every Hello and report.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The hostname is not valid UTF-8, so it cannot be a node name.
#[derive(Debug, thiserror::Error)]
#[error("the hostname is not UTF-8; pass --node-name")]
pub struct HostnameNotUtf8;

/// The name this node reports as: `explicit` when given and not empty, else the hostname.
pub fn node_name(explicit: Option<String>) -> Result<String, HostnameNotUtf8> {
    match explicit {
        Some(name) if !name.is_empty() => Ok(name),
        _ => rustix::system::uname()
            .nodename()
            .to_str()
            .map(str::to_owned)
            .map_err(|_| HostnameNotUtf8),
    }
}

/// Runs the probes of one node; holds their state (samples, counters) between runs.
pub struct Collector {
    node: String,
    host: HostRoot,
    thresholds: Arc<Thresholds>,
    probes: ProbeSet,
    kube: crate::probes::cgroups::names::KubeSlot,
}

impl Collector {
    /// The default probes on `host`, reporting as `node`.
    pub fn new(node: String, host: HostRoot, config: Config) -> Self {
        let kube = crate::probes::cgroups::names::KubeSlot::default();
        let probes = ProbeSet::new(default_probes(&config, &kube), config.probe_timeout);
        Collector {
            node,
            host,
            thresholds: Arc::new(config.thresholds),
            probes,
            kube,
        }
    }

    /// Adds the pods probe when a Kubernetes client can be made (from `kubeconfig`, or
    /// in-cluster in a pod); without one the collector stays node-only.
    pub async fn with_kubernetes(
        mut self,
        kubeconfig: Option<&std::path::Path>,
        config: &crate::config::KubernetesConfig,
    ) -> Result<Self, crate::probes::pods::watch::ConnectError> {
        if let Some(view) = crate::probes::pods::connect(kubeconfig, &self.node, config).await? {
            // The wait for the first lists must end before the probe's deadline.
            let config = crate::config::KubernetesConfig {
                sync_timeout: config.sync_timeout.min(self.probes.timeout() * 3 / 4),
                ..config.clone()
            };
            // The cgroups probe names pods from the same view.
            let _ = self.kube.set(Arc::clone(&view));
            let probe = crate::probes::pods::PodsProbe::new(view, config);
            self.probes.add(Arc::new(probe));
        }
        Ok(self)
    }

    /// The node this collector reports as.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The probe ids, for the Hello.
    pub fn capabilities(&self) -> Vec<String> {
        self.probes.ids()
    }

    /// Collects a report now; its `seq` is left for the sender to set.
    pub async fn collect(&self) -> NodeReport {
        let now = SystemTime::now();
        let ctx = ProbeContext {
            host: self.host.clone(),
            now,
            thresholds: Arc::clone(&self.thresholds),
        };
        let mut report = NodeReport {
            node: self.node.clone(),
            agent_version: AGENT_VERSION.to_owned(),
            collected_at: Some(timestamp(now)),
            ..Default::default()
        };
        self.probes.collect(&ctx, &mut report).await;
        // Whatever the node holds (a mount point named with a line break, a long error),
        // the report stays one the collector accepts.
        nodemedic_proto::limits::fit_report(&mut report);
        report
    }
}
