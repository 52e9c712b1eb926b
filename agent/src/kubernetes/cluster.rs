//! What the agent keeps of the Kubernetes objects it watches: a compact view of each pod
//! on the node, the node's conditions, and recent Warning events, in memory that stays
//! bounded on a 110-pod node (no full objects, no `managedFields`; events capped in number
//! and age), plus what a single object cannot tell: restart counts over time and the last
//! image pull error a back-off hides.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, SystemTime},
};

use nodemedic_proto::quantity::{quantity, quantity_bytes};

use k8s_openapi::{
    api::core::v1::{ContainerState, ContainerStatus, Event, Node, Pod},
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Time},
};

/// Restart samples kept per container.
const RESTART_SAMPLES: usize = 32;

/// A condition of a pod or the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionView {
    /// `Ready`, `PodScheduled`, `DiskPressure`, ...
    pub kind: String,
    /// `True`, `False`, `Unknown`.
    pub status: String,
    /// The machine-readable reason.
    pub reason: String,
    /// The human-readable message.
    pub message: String,
    /// When it last changed.
    pub since: Option<SystemTime>,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// `OOMKilled`, `Error`, `Completed`, `ContainerCannotRun`, ...
    pub reason: String,
    /// Its exit code (137 for SIGKILL).
    pub exit_code: i32,
    /// The runtime's message.
    pub message: String,
    /// When it ended.
    pub finished: Option<SystemTime>,
}

/// One container of a pod, spec and status together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerView {
    /// Its name in the pod.
    pub name: String,
    /// An init container.
    pub init: bool,
    /// Its image reference.
    pub image: String,
    /// Restarts so far.
    pub restarts: u32,
    /// Passing its readiness probe.
    pub ready: bool,
    /// Why it is waiting, and the kubelet's words: `CrashLoopBackOff`, `ErrImagePull`, ...
    pub waiting: Option<(String, String)>,
    /// How it ended, when it is terminated now.
    pub terminated: Option<Termination>,
    /// How its previous run ended.
    pub last_terminated: Option<Termination>,
    /// `resources.limits.memory` as written (`512Mi`).
    pub memory_limit: Option<String>,
    /// `resources.requests.memory` as written.
    pub memory_request: Option<String>,
    /// `resources.requests.cpu` in millicores, when set.
    pub cpu_request_millis: Option<u64>,
    /// `resources.limits.ephemeral-storage` in bytes, when set.
    pub ephemeral_limit: Option<u64>,
    /// The runtime's ID of the running (or last) container, without the `containerd://`.
    pub container_id: String,
}

/// One pod on the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodView {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID.
    pub uid: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`.
    pub phase: String,
    /// `status.reason`: `Evicted`, `NodeLost`, ...
    pub reason: String,
    /// `status.message`.
    pub message: String,
    /// When deletion was asked for plus the grace period, when it is being deleted.
    pub deletion: Option<SystemTime>,
    /// What holds its deletion.
    pub finalizers: Vec<String>,
    /// Its conditions.
    pub conditions: Vec<ConditionView>,
    /// Init containers first, then the others.
    pub containers: Vec<ContainerView>,
    /// When the agent first saw the pod.
    pub seen: Option<SystemTime>,
}

impl PodView {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The condition of this kind.
    pub fn condition(&self, kind: &str) -> Option<&ConditionView> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// The node's object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// Its conditions.
    pub conditions: Vec<ConditionView>,
    /// `status.capacity.pods`.
    pub capacity_pods: Option<u32>,
    /// `status.allocatable.pods`, `.cpu` (millicores) and `.memory` (bytes): what pods may
    /// use of the node.
    pub allocatable_pods: Option<u32>,
    /// See `allocatable_pods`.
    pub allocatable_cpu_millis: Option<u64>,
    /// See `allocatable_pods`.
    pub allocatable_memory: Option<u64>,
    /// Cordoned (`spec.unschedulable`) ...
    pub unschedulable: bool,
    /// ... since: the `node.kubernetes.io/unschedulable` taint's `timeAdded`, else when the
    /// agent first saw it cordoned.
    pub unschedulable_since: Option<SystemTime>,
    /// Its taints, `key=value:Effect`.
    pub taints: Vec<String>,
    /// `status.nodeInfo`: kubelet, container runtime, kernel and OS versions.
    pub versions: NodeVersions,
}

/// The versions a node's kubelet reports (`status.nodeInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeVersions {
    /// `v1.29.3`.
    pub kubelet: String,
    /// `containerd://1.7.13`.
    pub container_runtime: String,
    /// `5.15.0-1057-aws`.
    pub kernel: String,
    /// `Ubuntu 22.04.4 LTS`.
    pub os_image: String,
}

/// The taint the API server adds to a cordoned node.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// A Warning event about a pod on the node, or about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventView {
    /// `Pod` or `Node`.
    pub kind: String,
    /// The object's UID.
    pub uid: String,
    /// `spec.containers{app}` when it is about one container.
    pub field_path: String,
    /// `Unhealthy`, `FailedScheduling`, `BackOff`, ...
    pub reason: String,
    /// The kubelet's (or scheduler's) words.
    pub message: String,
    /// How many times it happened (the event's count or series count).
    pub count: u32,
    /// When it last happened.
    pub last: SystemTime,
}

impl EventView {
    /// The container named in the event's field path, if any.
    pub fn container(&self) -> Option<&str> {
        self.field_path
            .split_once('{')
            .and_then(|(_, rest)| rest.strip_suffix('}'))
    }
}

/// Everything watched, as of the last update.
#[derive(Debug, Default)]
pub struct Cluster {
    /// Pods on the node, by UID.
    pub pods: BTreeMap<String, PodView>,
    /// The node, once seen.
    pub node: Option<NodeView>,
    /// Warning events, by the event's namespace/name.
    pub events: BTreeMap<String, EventView>,
    /// The claims of the volume directories probes asked about.
    pub volumes: super::volumes::Volumes,
    /// Restart counts seen over time, per pod UID and container.
    restarts: BTreeMap<(String, String), VecDeque<(SystemTime, u32)>>,
    /// The last `ErrImagePull` message per pod UID and container (`ImagePullBackOff` says less).
    pull_errors: BTreeMap<(String, String), String>,
}

impl Cluster {
    /// Records a pod as it is now, seen at `now`.
    pub fn apply_pod(&mut self, pod: &Pod, now: SystemTime) {
        let mut view = pod_view(pod);
        view.seen = self.pods.get(&view.uid).and_then(|p| p.seen).or(Some(now));
        for c in &view.containers {
            let key = (view.uid.clone(), c.name.clone());
            let samples = self.restarts.entry(key.clone()).or_default();
            if samples.back().is_none_or(|(_, n)| *n != c.restarts) {
                samples.push_back((now, c.restarts));
                if samples.len() > RESTART_SAMPLES {
                    samples.pop_front();
                }
            }
            if let Some((reason, message)) = &c.waiting
                && reason == "ErrImagePull"
                && !message.is_empty()
            {
                self.pull_errors.insert(key, message.clone());
            }
        }
        self.pods.insert(view.uid.clone(), view);
    }

    /// Forgets a pod.
    pub fn delete_pod(&mut self, uid: &str) {
        self.pods.remove(uid);
        self.restarts.retain(|(u, _), _| u != uid);
        self.pull_errors.retain(|(u, _), _| u != uid);
    }

    /// Records the node, seen at `now`.
    pub fn apply_node(&mut self, node: &Node, now: SystemTime) {
        let status = node.status.as_ref();
        let spec = node.spec.as_ref();
        let quantity = |list: Option<&BTreeMap<String, Quantity>>, key: &str| {
            list.and_then(|m| m.get(key)).and_then(|q| quantity(&q.0))
        };
        let capacity = status.and_then(|s| s.capacity.as_ref());
        let allocatable = status.and_then(|s| s.allocatable.as_ref());
        let taints = spec.and_then(|s| s.taints.as_deref()).unwrap_or_default();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let before = self
            .node
            .as_ref()
            .filter(|n| n.unschedulable)
            .and_then(|n| n.unschedulable_since);
        let info = status.and_then(|s| s.node_info.as_ref());
        self.node = Some(NodeView {
            name: node.metadata.name.clone().unwrap_or_default(),
            conditions: conditions!(status.and_then(|s| s.conditions.as_ref())),
            capacity_pods: quantity(capacity, "pods").map(|n| n as u32),
            allocatable_pods: quantity(allocatable, "pods").map(|n| n as u32),
            allocatable_cpu_millis: quantity(allocatable, "cpu")
                .map(|c| (c * 1000.0).round() as u64),
            allocatable_memory: quantity(allocatable, "memory").map(|b| b as u64),
            unschedulable,
            unschedulable_since: unschedulable.then(|| {
                taints
                    .iter()
                    .find(|t| t.key == UNSCHEDULABLE_TAINT)
                    .and_then(|t| t.time_added.as_ref().map(time))
                    .or(before)
                    .unwrap_or(now)
            }),
            taints: taints
                .iter()
                .map(|t| match &t.value {
                    Some(v) if !v.is_empty() => format!("{}={v}:{}", t.key, t.effect),
                    _ => format!("{}:{}", t.key, t.effect),
                })
                .collect(),
            versions: info.map_or_else(NodeVersions::default, |i| NodeVersions {
                kubelet: i.kubelet_version.clone(),
                container_runtime: i.container_runtime_version.clone(),
                kernel: i.kernel_version.clone(),
                os_image: i.os_image.clone(),
            }),
        });
    }

    /// Records a Warning event, keeping at most `max` events (the oldest go first; age is
    /// judged at each report, on the report's clock).
    pub fn apply_event(&mut self, event: &Event, now: SystemTime, max: usize) {
        if event.type_.as_deref() != Some("Warning") {
            return;
        }
        let key = format!(
            "{}/{}",
            event.metadata.namespace.as_deref().unwrap_or_default(),
            event.metadata.name.as_deref().unwrap_or_default()
        );
        let obj = &event.involved_object;
        let last = event
            .series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref().map(|t| system_time(&t.0)))
            .or_else(|| event.last_timestamp.as_ref().map(time))
            .or_else(|| event.event_time.as_ref().map(|t| system_time(&t.0)))
            .or_else(|| event.first_timestamp.as_ref().map(time))
            .unwrap_or(now);
        let count = event
            .series
            .as_ref()
            .and_then(|s| s.count)
            .or(event.count)
            .unwrap_or(1)
            .max(1) as u32;
        self.events.insert(
            key,
            EventView {
                kind: obj.kind.clone().unwrap_or_default(),
                uid: obj.uid.clone().unwrap_or_default(),
                field_path: obj.field_path.clone().unwrap_or_default(),
                reason: event.reason.clone().unwrap_or_default(),
                message: event.message.clone().unwrap_or_default(),
                count,
                last,
            },
        );
        self.cap_events(max);
    }

    /// Drops events older than `window` before `now`.
    pub fn expire_events(&mut self, now: SystemTime, window: Duration) {
        let since = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        self.events.retain(|_, e| e.last >= since);
    }

    /// Drops the oldest events beyond `max`.
    fn cap_events(&mut self, max: usize) {
        while self.events.len() > max {
            let oldest = self
                .events
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.events.remove(&k),
                None => break,
            };
        }
    }

    /// Restarts of a container within `window` before `now`, as far as the agent has seen
    /// (a container first seen inside the window counts from then).
    pub fn restarts_within(
        &self,
        uid: &str,
        container: &str,
        window: Duration,
        now: SystemTime,
    ) -> u32 {
        let Some(samples) = self.restarts.get(&(uid.to_owned(), container.to_owned())) else {
            return 0;
        };
        let since = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        let Some((_, latest)) = samples.back() else {
            return 0;
        };
        // The count when the window began: the last sample before it, else the first seen.
        let base = samples
            .iter()
            .rev()
            .find(|(t, _)| *t < since)
            .or(samples.front())
            .map_or(0, |(_, n)| *n);
        latest.saturating_sub(base)
    }

    /// The last `ErrImagePull` message of a container.
    pub fn pull_error(&self, uid: &str, container: &str) -> Option<&str> {
        self.pull_errors
            .get(&(uid.to_owned(), container.to_owned()))
            .map(String::as_str)
    }
}

fn system_time(ts: &k8s_openapi::jiff::Timestamp) -> SystemTime {
    SystemTime::from(*ts)
}

fn time(t: &Time) -> SystemTime {
    system_time(&t.0)
}

/// The views of an optional list of pod or node conditions: the two API types have the
/// same fields but no trait in common.
macro_rules! conditions {
    ($list:expr) => {
        $list
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        condition(
                            &c.type_,
                            &c.status,
                            &c.reason,
                            &c.message,
                            &c.last_transition_time,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
}
use conditions;

/// A pod's or the node's condition (the two API types have the same fields).
fn condition(
    kind: &str,
    status: &str,
    reason: &Option<String>,
    message: &Option<String>,
    since: &Option<Time>,
) -> ConditionView {
    ConditionView {
        kind: kind.to_owned(),
        status: status.to_owned(),
        reason: reason.clone().unwrap_or_default(),
        message: message.clone().unwrap_or_default(),
        since: since.as_ref().map(time),
    }
}

fn termination(state: Option<&ContainerState>) -> Option<Termination> {
    let t = state?.terminated.as_ref()?;
    Some(Termination {
        reason: t.reason.clone().unwrap_or_default(),
        exit_code: t.exit_code,
        message: t.message.clone().unwrap_or_default(),
        finished: t.finished_at.as_ref().map(time),
    })
}

/// The compact view of a pod.
pub fn pod_view(pod: &Pod) -> PodView {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let mut containers = Vec::new();
    let specs: Vec<(&k8s_openapi::api::core::v1::Container, bool)> = spec
        .map(|s| {
            let init = s.init_containers.iter().flatten().map(|c| (c, true));
            init.chain(s.containers.iter().map(|c| (c, false)))
                .collect()
        })
        .unwrap_or_default();
    let statuses: Vec<&ContainerStatus> = status
        .map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
                .collect()
        })
        .unwrap_or_default();
    for (c, init) in specs {
        let resources = c.resources.as_ref();
        let memory = |m: Option<&BTreeMap<String, Quantity>>| {
            m.and_then(|m| m.get("memory")).map(|q| q.0.clone())
        };
        let mut view = ContainerView {
            name: c.name.clone(),
            init,
            image: c.image.clone().unwrap_or_default(),
            memory_limit: memory(resources.and_then(|r| r.limits.as_ref())),
            memory_request: memory(resources.and_then(|r| r.requests.as_ref())),
            cpu_request_millis: resources
                .and_then(|r| r.requests.as_ref())
                .and_then(|m| m.get("cpu"))
                .and_then(|q| quantity(&q.0))
                .map(|c| (c * 1000.0).round() as u64),
            ephemeral_limit: resources
                .and_then(|r| r.limits.as_ref())
                .and_then(|m| m.get("ephemeral-storage"))
                .and_then(|q| quantity_bytes(&q.0)),
            ..ContainerView::default()
        };
        if let Some(s) = statuses.iter().find(|s| s.name == c.name) {
            view.restarts = s.restart_count.max(0) as u32;
            view.container_id = s
                .container_id
                .as_deref()
                .and_then(|id| id.split_once("://").map(|(_, id)| id.to_owned()))
                .unwrap_or_default();
            view.ready = s.ready;
            if !s.image.is_empty() && view.image.is_empty() {
                view.image = s.image.clone();
            }
            let state = s.state.as_ref();
            view.waiting = state.and_then(|st| st.waiting.as_ref()).map(|w| {
                (
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default(),
                )
            });
            view.terminated = termination(state);
            view.last_terminated = termination(s.last_state.as_ref());
        }
        containers.push(view);
    }
    PodView {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        reason: status.and_then(|s| s.reason.clone()).unwrap_or_default(),
        message: status.and_then(|s| s.message.clone()).unwrap_or_default(),
        deletion: meta.deletion_timestamp.as_ref().map(time),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
        conditions: conditions!(status.and_then(|s| s.conditions.as_ref())),
        containers,
        seen: None,
    }
}
