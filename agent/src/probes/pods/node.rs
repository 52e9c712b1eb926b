//! Findings from the Node object itself and what the pods on it ask of it: pods near the
//! kubelet's `maxPods`, requests above what the node can give, a node left cordoned. Each
//! carries the node's versions (`status.nodeInfo`) as evidence, so cluster rules can group
//! nodes by kubelet, runtime or kernel.

use std::time::{Duration, SystemTime};

use nodemedic_proto::checks;
use nodemedic_proto::finding::human_bytes;
use nodemedic_proto::time::timestamp;
use nodemedic_proto::v1::{Evidence, Finding, NodeResources, Severity};

use super::config::KubernetesConfig;
use crate::{
    kubernetes::cluster::{Cluster, NodeView, PodView},
    units::{percent, rfc3339},
};

/// What the node's unfinished pods ask of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Pods not Succeeded or Failed: they hold a pod slot.
    pub active: u32,
    /// Their CPU requests, millicores.
    pub cpu_millis: u64,
    /// Their memory requests, bytes.
    pub memory_bytes: u64,
}

/// A pod that still holds its slot and its requests.
fn active(pod: &PodView) -> bool {
    pod.phase != "Succeeded" && pod.phase != "Failed"
}

/// A pod's requests as the scheduler counts them: its containers' sum, or its largest init
/// container's when that is more (they run one at a time, before the others).
fn requests(pod: &PodView) -> (u64, u64) {
    let (mut app, mut init) = ((0, 0), (0, 0));
    for c in &pod.containers {
        let cpu = c.cpu_request_millis.unwrap_or(0);
        let memory = c
            .memory_request
            .as_deref()
            .and_then(nodemedic_proto::quantity::quantity_bytes)
            .unwrap_or(0);
        if c.init {
            init = (init.0.max(cpu), init.1.max(memory));
        } else {
            app = (app.0 + cpu, app.1 + memory);
        }
    }
    (app.0.max(init.0), app.1.max(init.1))
}

/// What the node's pods ask of it.
pub fn usage(cluster: &Cluster) -> Usage {
    cluster
        .pods
        .values()
        .filter(|p| active(p))
        .fold(Usage::default(), |u, p| {
            let (cpu, memory) = requests(p);
            Usage {
                active: u.active + 1,
                cpu_millis: u.cpu_millis + cpu,
                memory_bytes: u.memory_bytes + memory,
            }
        })
}

/// The report's view of the node.
pub fn resources(node: &NodeView, usage: Usage) -> NodeResources {
    NodeResources {
        pods_capacity: node.capacity_pods.unwrap_or(0),
        pods_allocatable: node.allocatable_pods.unwrap_or(0),
        pods_active: usage.active,
        cpu_allocatable_millis: node.allocatable_cpu_millis.unwrap_or(0),
        cpu_requested_millis: usage.cpu_millis,
        memory_allocatable_bytes: node.allocatable_memory.unwrap_or(0),
        memory_requested_bytes: usage.memory_bytes,
        unschedulable: node.unschedulable,
        unschedulable_since: node.unschedulable_since.map(timestamp),
        taints: node.taints.clone(),
        kubelet_version: node.versions.kubelet.clone(),
        container_runtime_version: node.versions.container_runtime.clone(),
        kernel_version: node.versions.kernel.clone(),
        os_image: node.versions.os_image.clone(),
    }
}

/// A finding about the node, with its versions.
pub fn node_finding(
    check: &str,
    severity: Severity,
    subject: &str,
    message: String,
    node: &NodeView,
) -> Finding {
    let v = &node.versions;
    let mut f = Finding::fail(check, severity, subject, message);
    for (key, value) in [
        ("kubelet_version", &v.kubelet),
        ("container_runtime_version", &v.container_runtime),
        ("kernel_version", &v.kernel),
    ] {
        if !value.is_empty() {
            f = f.with(Evidence::text(key, value.clone()));
        }
    }
    f
}

/// Every finding about the node's capacity and state. `full_since` is when the pods
/// first reached the capacity line in the runs so far (kept by the caller between runs).
pub fn findings(
    node: &NodeView,
    usage: Usage,
    config: &KubernetesConfig,
    now: SystemTime,
    full_since: &mut Option<SystemTime>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(pods_capacity(node, usage, config, now, full_since));
    out.extend(overcommitted(node, usage));
    out.extend(cordoned(node, config, now));
    out
}

/// `node.pods_capacity`: the pods fill (nearly) every slot the kubelet allows, for a while.
fn pods_capacity(
    node: &NodeView,
    usage: Usage,
    config: &KubernetesConfig,
    now: SystemTime,
    full_since: &mut Option<SystemTime>,
) -> Option<Finding> {
    let capacity = node.capacity_pods.filter(|c| *c > 0)?;
    let share = percent(u64::from(usage.active), u64::from(capacity));
    if share < config.pods_capacity_percent.get() {
        *full_since = None;
        return None;
    }
    let since = *full_since.get_or_insert(now);
    let held = now.duration_since(since).unwrap_or_default();
    if held < config.pods_capacity_for {
        return None;
    }
    Some(
        node_finding(
            checks::NODE_PODS_CAPACITY,
            Severity::Warning,
            "pods",
            format!(
                "the node runs {} pods of the {capacity} its kubelet allows ({share:.0}%) for {}: the scheduler places no more pods here once it is full (maxPods, and on clouds the pod IPs the node's interfaces give)",
                usage.active,
                humantime::format_duration(Duration::from_secs(held.as_secs())),
            ),
            node,
        )
        .with(Evidence::count("pods", u64::from(usage.active)))
        .with(Evidence::count("capacity_pods", u64::from(capacity)))
        .with(Evidence::percent("used_percent", share)),
    )
}

/// `node.overcommitted`: the pods request more than the node can give (pods bound
/// without the scheduler, static pods, or a kubelet restarted with larger reservations).
fn overcommitted(node: &NodeView, usage: Usage) -> Vec<Finding> {
    let mut out = Vec::new();
    let cores = |m: u64| format!("{:.2}", m as f64 / 1000.0);
    for (resource, requested, allocatable, text) in [
        (
            "cpu",
            usage.cpu_millis,
            node.allocatable_cpu_millis,
            &cores as &dyn Fn(u64) -> String,
        ),
        (
            "memory",
            usage.memory_bytes,
            node.allocatable_memory,
            &|b: u64| human_bytes(b as f64),
        ),
    ] {
        let Some(allocatable) = allocatable.filter(|a| requested > *a) else {
            continue;
        };
        out.push(
            node_finding(
                checks::NODE_OVERCOMMITTED,
                Severity::Info,
                resource,
                format!(
                    "the node's pods request {} of {resource}, more than the {} it can give pods (allocatable): they were placed without the scheduler's check, or the node's reservations grew",
                    text(requested),
                    text(allocatable)
                ),
                node,
            )
            .with(Evidence::text("resource", resource))
            .with(Evidence::count("requested", requested))
            .with(Evidence::count("allocatable", allocatable)),
        );
    }
    out
}

/// `node.cordoned`: unschedulable for longer than a drain or maintenance takes.
fn cordoned(node: &NodeView, config: &KubernetesConfig, now: SystemTime) -> Option<Finding> {
    let since = node.unschedulable_since.filter(|_| node.unschedulable)?;
    let held = now.duration_since(since).unwrap_or_default();
    if held < config.cordoned_after {
        return None;
    }
    Some(
        node_finding(
            checks::NODE_CORDONED,
            Severity::Info,
            "unschedulable",
            format!(
                "the node has been cordoned since {} ({}): no new pods are placed on it; uncordon it or remove it",
                rfc3339(since),
                humantime::format_duration(Duration::from_secs(held.as_secs() / 60 * 60)),
            ),
            node,
        )
        .with(Evidence::text("since", rfc3339(since)))
        .with(Evidence::text("taints", node.taints.join(","))),
    )
}
