//! Findings from the watched objects: one function per check, each taking the pod (or the
//! node) as the kubelet last described it, with the kubelet's own words as evidence.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use nodemedic_proto::checks;
use nodemedic_proto::v1::{Evidence, Finding, Severity};

use super::{classify, config::KubernetesConfig, node::node_finding};
use crate::{
    kubernetes::cluster::{Cluster, ConditionView, ContainerView, EventView, NodeView, PodView},
    units::rfc3339,
};

/// Node conditions whose `True` means trouble, and how bad.
const PRESSURE: &[(&str, Severity)] = &[
    ("MemoryPressure", Severity::Critical),
    ("DiskPressure", Severity::Critical),
    ("PIDPressure", Severity::Critical),
    ("NetworkUnavailable", Severity::Critical),
];

/// Every finding about the pods and the node.
pub fn findings(cluster: &Cluster, config: &KubernetesConfig, now: SystemTime) -> Vec<Finding> {
    let mut out = Vec::new();
    // Pod events by the pod's UID (the watch keeps only events of known pods), once.
    let mut by_pod: BTreeMap<&str, Vec<&EventView>> = BTreeMap::new();
    for e in cluster.events.values().filter(|e| e.kind == "Pod") {
        by_pod.entry(e.uid.as_str()).or_default().push(e);
    }
    for pod in cluster.pods.values() {
        let events = by_pod.get(pod.uid.as_str()).map_or(&[][..], Vec::as_slice);
        for c in &pod.containers {
            let crashloop = crashloop(pod, c, cluster, config, now);
            let looping = crashloop.is_some();
            out.extend(crashloop);
            out.extend(oomkilled(pod, c, config, now));
            out.extend(image_pull(pod, c, cluster, events));
            out.extend(config_error(pod, c, events));
            if !looping {
                out.extend(restarts(pod, c, cluster, config, now));
            }
        }
        out.extend(evicted(pod, config, now));
        out.extend(pending(pod, events));
        out.extend(stuck_creating(pod, events, config, now));
        out.extend(terminating_stuck(pod, config, now));
        out.extend(probe_failing(pod, events, config, now));
    }
    if let Some(node) = &cluster.node {
        out.extend(
            node.conditions
                .iter()
                .filter_map(|c| node_condition(node, c)),
        );
    }
    out
}

fn container_finding(
    check: &str,
    severity: Severity,
    pod: &PodView,
    c: &ContainerView,
    message: String,
) -> Finding {
    Finding::fail(
        check,
        severity,
        &format!("{}/{}", pod.key(), c.name),
        message,
    )
    .with(Evidence::text("namespace", pod.namespace.clone()))
    .with(Evidence::text("pod", pod.name.clone()))
    .with(Evidence::text("container", c.name.clone()))
    .with(Evidence::text("image", c.image.clone()))
}

fn pod_finding(check: &str, severity: Severity, pod: &PodView, message: String) -> Finding {
    Finding::fail(check, severity, &pod.key(), message)
        .with(Evidence::text("namespace", pod.namespace.clone()))
        .with(Evidence::text("pod", pod.name.clone()))
}

fn recent(at: Option<SystemTime>, window: Duration, now: SystemTime) -> bool {
    at.is_none_or(|t| t + window >= now)
}

/// `pod.crashloop`: the container is in CrashLoopBackOff (or fails to start, again).
fn crashloop(
    pod: &PodView,
    c: &ContainerView,
    cluster: &Cluster,
    config: &KubernetesConfig,
    now: SystemTime,
) -> Option<Finding> {
    let (reason, words) = c.waiting.as_ref()?;
    // The kubelet shows RunContainerError between back-offs of a container that cannot start.
    let looping = reason == "CrashLoopBackOff" || (reason == "RunContainerError" && c.restarts > 0);
    if !looping {
        return None;
    }
    let last = c.last_terminated.as_ref().or(c.terminated.as_ref());
    let oom = last.is_some_and(|t| t.reason == "OOMKilled");
    let in_hour = cluster.restarts_within(&pod.uid, &c.name, config.window, now);
    let ended = last.map_or_else(
        || "no termination recorded".to_owned(),
        |t| format!("last exit {} ({})", t.exit_code, t.reason),
    );
    let mut f = container_finding(
        checks::POD_CRASHLOOP,
        Severity::Critical,
        pod,
        c,
        format!(
            "{}/{} container {} is crash-looping: {ended}, {} restarts ({in_hour} seen in the last {}); kubelet: {words}",
            pod.namespace,
            pod.name,
            c.name,
            c.restarts,
            humantime::format_duration(config.window),
        ),
    )
    .with(Evidence::count("restarts", u64::from(c.restarts)))
    .with(Evidence::count("restarts_last_hour", u64::from(in_hour)))
    .with(Evidence::text("oomkilled", oom.to_string()))
    .with(Evidence::text("kubelet_message", words.clone()));
    if let Some(t) = last {
        f = f
            .with(Evidence::text("last_reason", t.reason.clone()))
            .with(Evidence::number(
                "exit_code",
                f64::from(t.exit_code),
                "code",
            ));
        if !t.message.is_empty() {
            f = f.with(Evidence::text("last_message", t.message.clone()));
        }
    }
    Some(f)
}

/// `pod.oomkilled`: the container's last run (or this one) ended OOMKilled within the window.
fn oomkilled(
    pod: &PodView,
    c: &ContainerView,
    config: &KubernetesConfig,
    now: SystemTime,
) -> Option<Finding> {
    let t = [c.terminated.as_ref(), c.last_terminated.as_ref()]
        .into_iter()
        .flatten()
        .find(|t| t.reason == "OOMKilled")?;
    if !recent(t.finished, config.window, now) {
        return None;
    }
    let limit = c.memory_limit.clone().unwrap_or_else(|| "none".into());
    let request = c.memory_request.clone().unwrap_or_else(|| "none".into());
    let mut f = container_finding(
        checks::POD_OOMKILLED,
        Severity::Warning,
        pod,
        c,
        format!(
            "{}/{} container {} was OOMKilled (exit {}); memory limit {limit}, request {request}",
            pod.namespace, pod.name, c.name, t.exit_code
        ),
    )
    .with(Evidence::text("memory_limit", limit))
    .with(Evidence::text("memory_request", request))
    .with(Evidence::number(
        "exit_code",
        f64::from(t.exit_code),
        "code",
    ));
    if let Some(at) = t.finished {
        f = f.with(Evidence::text("finished_at", rfc3339(at)));
    }
    Some(f)
}

/// `pod.image_pull`: the container cannot get its image.
fn image_pull(
    pod: &PodView,
    c: &ContainerView,
    cluster: &Cluster,
    events: &[&EventView],
) -> Option<Finding> {
    let (reason, words) = c.waiting.as_ref()?;
    if !matches!(
        reason.as_str(),
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
    ) {
        return None;
    }
    // The back-off only says "Back-off pulling image"; the pull's own error says why.
    let from_event = events
        .iter()
        .filter(|e| e.reason == "Failed" && e.container() == Some(c.name.as_str()))
        .filter(|e| e.message.starts_with("Failed to pull image"))
        .max_by_key(|e| e.last)
        .map(|e| e.message.as_str());
    let error = cluster
        .pull_error(&pod.uid, &c.name)
        .or(from_event)
        .unwrap_or(words);
    let kind = if reason == "InvalidImageName" {
        "invalid_name"
    } else {
        classify::pull_error(error)
    };
    Some(
        container_finding(
            checks::POD_IMAGE_PULL,
            Severity::Warning,
            pod,
            c,
            format!(
                "{}/{} container {} cannot pull {} ({reason}, {kind}): {error}",
                pod.namespace, pod.name, c.name, c.image
            ),
        )
        .with(Evidence::text("registry", classify::registry(&c.image)))
        .with(Evidence::text("error", kind))
        .with(Evidence::text("reason", reason.clone()))
        .with(Evidence::text("kubelet_message", error)),
    )
}

/// `pod.config_error`: CreateContainerConfigError (a missing Secret, ConfigMap or key).
fn config_error(pod: &PodView, c: &ContainerView, events: &[&EventView]) -> Option<Finding> {
    let (reason, words) = c.waiting.as_ref()?;
    if reason != "CreateContainerConfigError" {
        return None;
    }
    let from_event = events
        .iter()
        .filter(|e| e.reason == "Failed" && e.container() == Some(c.name.as_str()))
        .max_by_key(|e| e.last)
        .map(|e| e.message.trim_start_matches("Error: "));
    let words = if words.is_empty() {
        from_event.unwrap_or_default()
    } else {
        words.as_str()
    };
    let (kind, missing) = classify::config_error(words);
    Some(
        container_finding(
            checks::POD_CONFIG_ERROR,
            Severity::Warning,
            pod,
            c,
            format!(
                "{}/{} container {} cannot be created: {words}",
                pod.namespace, pod.name, c.name
            ),
        )
        .with(Evidence::text("missing_kind", kind))
        .with(Evidence::text("missing", missing))
        .with(Evidence::text("kubelet_message", words)),
    )
}

/// `pod.restarts`: many restarts in a short window, not in back-off now.
fn restarts(
    pod: &PodView,
    c: &ContainerView,
    cluster: &Cluster,
    config: &KubernetesConfig,
    now: SystemTime,
) -> Option<Finding> {
    let n = cluster.restarts_within(&pod.uid, &c.name, config.restarts_within, now);
    if n < config.restarts_warn {
        return None;
    }
    let last = c.last_terminated.as_ref().map_or_else(String::new, |t| {
        format!("; last exit {} ({})", t.exit_code, t.reason)
    });
    Some(
        container_finding(
            checks::POD_RESTARTS,
            Severity::Warning,
            pod,
            c,
            format!(
                "{}/{} container {} restarted {n} times in the last {}{last}",
                pod.namespace,
                pod.name,
                c.name,
                humantime::format_duration(config.restarts_within)
            ),
        )
        .with(Evidence::count("restarts_in_window", u64::from(n)))
        .with(Evidence::count("restarts", u64::from(c.restarts))),
    )
}

/// `pod.evicted`: the kubelet evicted the pod within the window.
fn evicted(pod: &PodView, config: &KubernetesConfig, now: SystemTime) -> Option<Finding> {
    if pod.phase != "Failed" || pod.reason != "Evicted" {
        return None;
    }
    // When: the pod's last condition change; a pod that says nothing, when first seen.
    let at = pod
        .conditions
        .iter()
        .filter_map(|c| c.since)
        .max()
        .or(pod.seen);
    if !recent(at, config.window, now) {
        return None;
    }
    let resource = classify::eviction_resource(&pod.message).unwrap_or("unknown");
    Some(
        pod_finding(
            checks::POD_EVICTED,
            Severity::Warning,
            pod,
            format!(
                "{} was evicted ({resource}): {}",
                pod.key(),
                pod.message.trim()
            ),
        )
        .with(Evidence::text("resource", resource))
        .with(Evidence::text("kubelet_message", pod.message.trim())),
    )
}

/// `pod.pending`: the scheduler cannot place the pod.
/// `pod.stuck_creating`: scheduled, but its sandbox, volumes or mounts will not come up.
fn stuck_creating(
    pod: &PodView,
    events: &[&EventView],
    config: &KubernetesConfig,
    now: SystemTime,
) -> Option<Finding> {
    let waiting = pod.containers.iter().any(|c| {
        c.waiting
            .as_ref()
            .is_some_and(|(r, _)| r == "ContainerCreating" || r == "PodInitializing")
    });
    if pod.phase != "Pending" || !waiting {
        return None;
    }
    let since = pod
        .condition("PodScheduled")
        .filter(|c| c.status == "True")
        .and_then(|c| c.since)
        .or(pod.seen)?;
    let waited = now.duration_since(since).unwrap_or_default();
    if waited < config.creating_after {
        return None;
    }
    let event = events
        .iter()
        .filter(|e| classify::CREATION_FAILURES.contains(&e.reason.as_str()))
        .max_by_key(|e| e.last)?;
    let cause = classify::creation_failure(&event.message);
    Some(
        pod_finding(
            checks::POD_STUCK_CREATING,
            Severity::Warning,
            pod,
            format!(
                "{}/{} has waited {} to start ({cause}): {} x{}: {}",
                pod.namespace,
                pod.name,
                humantime::format_duration(Duration::from_secs(waited.as_secs())),
                event.reason,
                event.count,
                event.message
            ),
        )
        .with(Evidence::text("cause", cause))
        .with(Evidence::text("event_reason", event.reason.clone()))
        .with(Evidence::count("events", u64::from(event.count)))
        .with(Evidence::number("waited", waited.as_secs_f64(), "seconds"))
        .with(Evidence::text("kubelet_message", event.message.clone())),
    )
}

fn pending(pod: &PodView, events: &[&EventView]) -> Option<Finding> {
    let scheduled = pod.condition("PodScheduled");
    let unschedulable = pod.phase == "Pending"
        && scheduled.is_some_and(|c| c.status == "False" && c.reason == "Unschedulable");
    if !unschedulable {
        return None;
    }
    // The latest FailedScheduling event, else the condition; one that gives a reason
    // ("skip schedule deleting pod" gives none) before one that does not.
    let mut said: Vec<&EventView> = events
        .iter()
        .copied()
        .filter(|e| e.reason == "FailedScheduling")
        .collect();
    said.sort_by_key(|e| std::cmp::Reverse(e.last));
    let candidates: Vec<&str> = said
        .iter()
        .map(|e| e.message.as_str())
        .chain(scheduled.map(|c| c.message.as_str()))
        .collect();
    let (words, reasons) = candidates
        .iter()
        .map(|w| (*w, classify::scheduling_reasons(w)))
        .find(|(_, r)| r != &["other"])
        .unwrap_or_else(|| {
            let w = candidates.first().copied().unwrap_or_default();
            (w, classify::scheduling_reasons(w))
        });
    Some(
        pod_finding(
            checks::POD_PENDING,
            Severity::Warning,
            pod,
            format!(
                "{} cannot be scheduled ({}): {words}",
                pod.key(),
                reasons[0]
            ),
        )
        .with(Evidence::text("reason", reasons[0]))
        .with(Evidence::text("reasons", reasons.join(",")))
        .with(Evidence::text("scheduler_message", words)),
    )
}

/// `pod.terminating_stuck`: deletion was due long ago and the pod is still there.
fn terminating_stuck(pod: &PodView, config: &KubernetesConfig, now: SystemTime) -> Option<Finding> {
    let due = pod.deletion?;
    let late = now.duration_since(due).ok()?;
    if late < config.terminating_after {
        return None;
    }
    let held = if pod.finalizers.is_empty() {
        "no finalizers (the kubelet or the runtime has not confirmed the containers stopped)"
            .to_owned()
    } else {
        format!("finalizers {}", pod.finalizers.join(", "))
    };
    Some(
        pod_finding(
            checks::POD_TERMINATING_STUCK,
            Severity::Warning,
            pod,
            format!(
                "{} has been terminating for {} past its deletion time; {held}",
                pod.key(),
                humantime::format_duration(Duration::from_secs(late.as_secs()))
            ),
        )
        .with(Evidence::text("deletion_timestamp", rfc3339(due)))
        .with(Evidence::number(
            "late_seconds",
            late.as_secs() as f64,
            "seconds",
        ))
        .with(Evidence::text("finalizers", pod.finalizers.join(","))),
    )
}

/// `pod.probe_failing`: repeated Unhealthy events for a container's probes.
fn probe_failing(
    pod: &PodView,
    events: &[&EventView],
    config: &KubernetesConfig,
    now: SystemTime,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &pod.containers {
        let unhealthy: Vec<&&EventView> = events
            .iter()
            .filter(|e| e.reason == "Unhealthy")
            .filter(|e| e.container().is_none_or(|n| n == c.name))
            .filter(|e| e.last + config.probe_failures_within >= now)
            .collect();
        let count: u32 = unhealthy.iter().map(|e| e.count).sum();
        if count < config.probe_failures {
            continue;
        }
        let Some(last) = unhealthy.iter().max_by_key(|e| e.last) else {
            continue;
        };
        let probe = last
            .message
            .split_whitespace()
            .next()
            .unwrap_or("probe")
            .to_ascii_lowercase();
        out.push(
            container_finding(
                checks::POD_PROBE_FAILING,
                Severity::Warning,
                pod,
                c,
                format!(
                    "{}/{} container {}: {count} failed probes in the last {}; kubelet: {}",
                    pod.namespace,
                    pod.name,
                    c.name,
                    humantime::format_duration(config.probe_failures_within),
                    last.message
                ),
            )
            .with(Evidence::text("probe", probe))
            .with(Evidence::count("failures", u64::from(count)))
            .with(Evidence::text("kubelet_message", last.message.clone())),
        );
    }
    out
}

/// How other agents' condition types end when `True` is good news: a vendor's
/// `KernelReady`, `ContainerRuntimeReady`, a CNI's `…Available`, k3s's `EtcdIsVoter`. Every
/// other type is problem-style, as node-problem-detector's are (`KernelDeadlock`,
/// `ReadonlyFilesystem`, `Frequent…Restart`): `True` is the problem.
const POSITIVE_SUFFIXES: &[&str] = &[
    "Ready",
    "Available",
    "Healthy",
    "Up",
    "Reachable",
    "Running",
    "IsVoter",
];

/// Whether `status` of the condition type `kind` (not the kubelet's own) is trouble.
fn other_agents_trouble(kind: &str, status: &str) -> bool {
    if POSITIVE_SUFFIXES.iter().any(|s| kind.ends_with(s)) {
        status == "False"
    } else {
        status == "True"
    }
}

/// `node.condition`: the kubelet (or a vendor's agent) says the node is in trouble.
fn node_condition(node: &NodeView, c: &ConditionView) -> Option<Finding> {
    let known = PRESSURE.iter().find(|(kind, _)| *kind == c.kind);
    let severity = match (c.kind.as_str(), known) {
        ("Ready", _) if c.status != "True" => Severity::Critical,
        ("Ready", _) => return None,
        (_, Some((_, severity))) if c.status == "True" => *severity,
        (_, Some(_)) => return None,
        // Another agent's condition (node-problem-detector, a cloud's): worth knowing, by
        // its polarity.
        (kind, None) if other_agents_trouble(kind, &c.status) => Severity::Info,
        _ => return None,
    };
    let mut f = node_finding(
        checks::NODE_CONDITION,
        severity,
        &c.kind,
        format!(
            "node condition {}={} ({}): {}",
            c.kind, c.status, c.reason, c.message
        ),
        node,
    )
    .with(Evidence::text("condition", c.kind.clone()))
    .with(Evidence::text("status", c.status.clone()))
    .with(Evidence::text("reason", c.reason.clone()))
    .with(Evidence::text("kubelet_message", c.message.clone()));
    if let Some(since) = c.since {
        f = f.with(Evidence::text("since", rfc3339(since)));
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(kind: &str, status: &str) -> ConditionView {
        ConditionView {
            kind: kind.into(),
            status: status.into(),
            reason: String::new(),
            message: String::new(),
            since: None,
        }
    }

    #[test]
    fn other_agents_conditions_are_read_by_their_polarity() {
        for (kind, status, raised) in [
            // Problem-style (node-problem-detector's): True is the problem.
            ("KernelDeadlock", "True", true),
            ("KernelDeadlock", "False", false),
            ("FrequentContainerdRestart", "True", true),
            // Positive (a vendor's, k3s's): False is the problem, True nothing.
            ("KernelReady", "False", true),
            ("KernelReady", "True", false),
            ("ContainerRuntimeReady", "True", false),
            ("EtcdIsVoter", "True", false),
            ("EtcdIsVoter", "False", true),
            ("NodeNetworkAvailable", "False", true),
            // Unknown says nothing either way.
            ("KernelReady", "Unknown", false),
            ("KernelDeadlock", "Unknown", false),
        ] {
            let f = node_condition(&NodeView::default(), &condition(kind, status));
            assert_eq!(f.is_some(), raised, "{kind}={status}");
            if let Some(f) = f {
                assert_eq!(f.severity, Severity::Info as i32, "{kind}={status}");
                assert_eq!(f.subject, kind);
            }
        }
    }
}
