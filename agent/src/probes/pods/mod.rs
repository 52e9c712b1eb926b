//! The pods probe: what the kubelet says about this node and its pods, through the
//! Kubernetes API, so a crash-looping pod or an eviction is seen next to the disk or
//! memory trouble that caused it.
//!
//! [`connect`] makes a client (kubeconfig or in-cluster; none means node-only) and starts
//! the watches ([`watch`]) that keep a compact [`view::Cluster`] current; a probe run waits
//! for the first lists, then judges the view ([`judge`], with the kubelet's messages told
//! apart by [`classify`]).

pub mod classify;
pub mod judge;
pub mod view;
pub mod watch;

use std::{
    path::Path,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use nodemedic_proto::{
    time::timestamp,
    v1::{NodeConditionStatus, PodsSection},
};

use self::{view::Cluster, watch::ConnectError};
use crate::{
    config::KubernetesConfig,
    probe::{Probe, ProbeContext, ProbeError, ProbeOutput, Section},
};

/// How often a failing watch is logged at most.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct WatchState {
    pods_synced: bool,
    node_synced: bool,
    /// Event watches started, and those whose first list has arrived.
    event_watches: u32,
    events_listed: u32,
    errors: u64,
    last_error: String,
    last_logged: Option<Instant>,
}

impl WatchState {
    fn synced(&self) -> bool {
        self.pods_synced && self.node_synced && self.events_listed >= self.event_watches
    }
}

/// What the watches know, shared with the probe.
#[derive(Debug)]
pub struct KubeView {
    api_server: String,
    cluster: Mutex<Cluster>,
    state: Mutex<WatchState>,
    changed: Condvar,
    /// Whether the node's pods have been listed: event watches start after, so that the
    /// events of this node's pods are recognised as such.
    pods_listed: tokio::sync::watch::Sender<bool>,
}

impl KubeView {
    /// An empty view of the cluster at `api_server`.
    pub fn new(api_server: String) -> Arc<Self> {
        Arc::new(KubeView {
            api_server,
            cluster: Mutex::default(),
            state: Mutex::default(),
            changed: Condvar::new(),
            pods_listed: tokio::sync::watch::Sender::new(false),
        })
    }

    fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the view.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Cluster) -> R) -> R {
        f(&mut self.cluster())
    }

    /// Marks the first list of the node's pods, of the node, or of one event watch as
    /// complete.
    pub(crate) fn synced(&self, pods: bool, node: bool, events: bool) {
        let mut s = self.state();
        s.pods_synced |= pods;
        s.node_synced |= node;
        s.events_listed += u32::from(events);
        if pods {
            self.pods_listed.send_replace(true);
        }
        self.changed.notify_all();
    }

    /// Counts an event watch the first report waits for.
    pub(crate) fn expect_event_watch(&self) {
        self.state().event_watches += 1;
    }

    /// Waits until the node's pods have been listed.
    pub(crate) async fn pods_listed(&self) {
        let mut listed = self.pods_listed.subscribe();
        let _ = listed.wait_for(|l| *l).await;
    }

    /// Counts a watch error, logging it at most once a minute.
    pub(crate) fn error(&self, message: &str) {
        let mut s = self.state();
        s.errors += 1;
        s.last_error = message.to_owned();
        if s.last_logged.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY) {
            s.last_logged = Some(Instant::now());
            tracing::warn!(
                error = message,
                errors = s.errors,
                "Kubernetes watch failed; retrying with back-off"
            );
        }
        self.changed.notify_all();
    }
}

/// The client and the watches for `node`: `None` when there is no kubeconfig and the agent
/// is not in a pod (it then runs node-only and says so once).
pub async fn connect(
    kubeconfig: Option<&Path>,
    node: &str,
    config: &KubernetesConfig,
) -> Result<Option<Arc<KubeView>>, ConnectError> {
    let Some((client, api_server)) = watch::client(kubeconfig).await? else {
        tracing::info!(
            "no kubeconfig and not running in a pod: node-only (no pod, node or event findings)"
        );
        return Ok(None);
    };
    tracing::info!(%api_server, "watching this node's pods, the node and Warning events");
    let view = KubeView::new(api_server);
    watch::spawn(client, node, config, &view);
    Ok(Some(view))
}

/// Judges the view the watches keep.
#[derive(Debug)]
pub struct PodsProbe {
    view: Arc<KubeView>,
    config: KubernetesConfig,
}

impl PodsProbe {
    /// A probe over `view`.
    pub fn new(view: Arc<KubeView>, config: KubernetesConfig) -> Self {
        PodsProbe { view, config }
    }
}

impl Probe for PodsProbe {
    fn id(&self) -> &'static str {
        "pods"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[
            "pod.crashloop",
            "pod.oomkilled",
            "pod.image_pull",
            "pod.evicted",
            "pod.pending",
            "pod.config_error",
            "pod.terminating_stuck",
            "pod.probe_failing",
            "pod.restarts",
            "node.condition",
        ]
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let state = self.view.state();
        let (state, _) = self
            .view
            .changed
            .wait_timeout_while(state, self.config.sync_timeout, |s| !s.synced())
            .unwrap_or_else(|p| p.into_inner());
        if !state.synced() {
            return Err(ProbeError::Kubernetes(format!(
                "no list of this node's pods, node and events from {} within {:?}{}",
                self.view.api_server,
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
        let findings = judge::findings(&cluster, &self.config, ctx.now);
        let containers = cluster.pods.values().flat_map(|p| &p.containers);
        let section = PodsSection {
            api_server: self.view.api_server.clone(),
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
        };
        Ok(ProbeOutput {
            section: Section::Pods(section),
            findings,
        })
    }
}
