//! The pods probe: what the kubelet says about this node and its pods, through the
//! Kubernetes API, so a crash-looping pod or an eviction is seen next to the disk or
//! memory trouble that caused it.
//!
//! The watches of [`crate::kubernetes`] keep a compact view of the node, its pods and
//! Warning events current; a probe run waits for the first lists, then judges the view
//! ([`judge`], with the kubelet's messages told apart by [`classify`]).

pub mod classify;
pub mod config;
pub mod judge;
pub mod node;

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use nodemedic_proto::{
    checks,
    time::timestamp,
    v1::{Finding, NodeConditionStatus, PodsSection, Severity},
};

use self::config::KubernetesConfig;
use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::kubernetes::view::KubeView;

/// Judges the view the watches keep.
#[derive(Debug)]
pub struct PodsProbe {
    view: Arc<KubeView>,
    config: KubernetesConfig,
    /// Since when the node's pods have filled its capacity line, across runs.
    full_since: Mutex<Option<SystemTime>>,
}

impl PodsProbe {
    /// A probe over `view`.
    pub fn new(view: Arc<KubeView>, config: KubernetesConfig) -> Self {
        PodsProbe {
            view,
            config,
            full_since: Mutex::default(),
        }
    }
}

impl Probe for PodsProbe {
    fn id(&self) -> &'static str {
        "pods"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[
            checks::POD_CRASHLOOP,
            checks::POD_OOMKILLED,
            checks::POD_IMAGE_PULL,
            checks::POD_EVICTED,
            checks::POD_PENDING,
            checks::POD_CONFIG_ERROR,
            checks::POD_TERMINATING_STUCK,
            checks::POD_PROBE_FAILING,
            checks::POD_RESTARTS,
            checks::POD_STUCK_CREATING,
            checks::NODE_CONDITION,
            checks::NODE_NOT_FOUND,
            checks::NODE_PODS_CAPACITY,
            checks::NODE_OVERCOMMITTED,
            checks::NODE_CORDONED,
        ]
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let state = self.view.wait_synced(self.config.sync_timeout);
        if !state.synced() {
            return Err(ProbeError::Kubernetes(format!(
                "no list of this node's pods, node and events from {} within {:?}{}",
                self.view.api_server(),
                self.config.sync_timeout,
                if state.last_error.is_empty() {
                    String::new()
                } else {
                    format!(": {}", state.last_error)
                }
            )));
        }
        let (errors, last_error) = (state.errors, state.last_error.clone());
        drop(state);
        let mut cluster = self.view.cluster();
        cluster.expire_events(ctx.now, self.config.window);
        let mut findings = judge::findings(&cluster, &self.config, ctx.now);
        let usage = node::usage(&cluster);
        if let Some(n) = &cluster.node {
            let mut full_since = self.full_since.lock().unwrap_or_else(|p| p.into_inner());
            findings.extend(node::findings(
                n,
                usage,
                &self.config,
                ctx.now,
                &mut full_since,
            ));
        }
        if cluster.node.is_none() {
            findings.push(Finding::fail(
                checks::NODE_NOT_FOUND,
                Severity::Warning,
                "",
                format!(
                    "{} has no Node of this name: is the node name (--node-name, NODE_NAME) the Node's name in the cluster? Its pods and conditions cannot be judged",
                    self.view.api_server()
                ),
            ));
        }
        let containers = cluster.pods.values().flat_map(|p| &p.containers);
        let section = PodsSection {
            api_server: self.view.api_server().to_owned(),
            synced: true,
            pods: cluster.pods.len() as u32,
            containers: containers.clone().count() as u32,
            containers_not_ready: containers.clone().filter(|c| !c.ready && !c.init).count() as u32,
            restarts: containers.map(|c| c.restarts).sum(),
            node_conditions: cluster
                .node
                .iter()
                .flat_map(|n| &n.conditions)
                .map(|c| NodeConditionStatus {
                    condition: c.kind.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    since: c.since.map(timestamp),
                })
                .collect(),
            events_kept: cluster.events.len() as u32,
            watch_errors: errors,
            last_watch_error: last_error,
            node: cluster.node.as_ref().map(|n| node::resources(n, usage)),
        };
        Ok(ProbeOutput {
            section: Section::Pods(section),
            findings,
        })
    }
}
