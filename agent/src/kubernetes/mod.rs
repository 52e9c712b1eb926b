//! The agent's view of its own node in the Kubernetes API: a client (kubeconfig or the
//! in-cluster service account; none means node-only), watches of this node's pods, the
//! node object and Warning events ([`watch`]), kept as a compact [`cluster::Cluster`]
//! ([`view::KubeView`], shared with the probes that read it: pods, and cgroups for names),
//! and the claims of the volumes the disk probe meets ([`volumes`], asked for by name).

pub mod cluster;
pub mod view;
pub mod volumes;
pub mod watch;

/// What the watches keep, beyond this node's pods and its Node object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    /// Also watch pods no node has yet.
    pub unscheduled_pods: bool,
    /// Watch Warning events about pods (every agent receives the cluster's and keeps only
    /// its own pods').
    pub pod_events: bool,
    /// Warning events kept at most.
    pub max_events: usize,
}
