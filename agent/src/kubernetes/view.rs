//! What the watches know, shared with the probes that read it: the compact [`Cluster`], and
//! whether the first lists have arrived (a report waits for them) or the watches fail.

use std::{
    sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant},
};

use super::cluster::Cluster;

/// Where the Kubernetes view appears once the agent has connected (set after the probes
/// are made; the cgroups probe names pods from it).
pub type KubeSlot = Arc<OnceLock<Arc<KubeView>>>;

/// How often a failing watch is logged at most.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// How the watches are doing.
#[derive(Debug, Default)]
pub struct WatchState {
    pods_synced: bool,
    node_synced: bool,
    /// Event watches started, and those whose first list has arrived.
    event_watches: u32,
    events_listed: u32,
    /// Watch errors so far.
    pub errors: u64,
    /// The latest of them.
    pub last_error: String,
    last_logged: Option<Instant>,
}

impl WatchState {
    /// Every first list has arrived.
    pub fn synced(&self) -> bool {
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
    /// Woken when a probe asks for a volume's claim.
    volume_asked: tokio::sync::Notify,
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
            volume_asked: tokio::sync::Notify::new(),
        })
    }

    /// The view itself, locked.
    pub fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The API server's URL.
    pub fn api_server(&self) -> &str {
        &self.api_server
    }

    /// Waits at most `timeout` for every first list; answers how the watches are doing then.
    pub fn wait_synced(&self, timeout: Duration) -> MutexGuard<'_, WatchState> {
        let state = self.state();
        self.changed
            .wait_timeout_while(state, timeout, |s| !s.synced())
            .unwrap_or_else(|p| p.into_inner())
            .0
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

    /// The claim of the volume directory `name` when known; the first time, asks the
    /// resolver ([`super::volumes::resolve`]) and answers `None`.
    pub fn volume(&self, name: &str) -> Option<super::volumes::Volume> {
        let mut cluster = self.cluster();
        if cluster.volumes.ask(name) {
            drop(cluster);
            self.volume_asked.notify_one();
            return None;
        }
        cluster.volumes.get(name).cloned()
    }

    /// Waits until a probe asks for a volume's claim.
    pub(crate) async fn volume_asked(&self) {
        self.volume_asked.notified().await;
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
