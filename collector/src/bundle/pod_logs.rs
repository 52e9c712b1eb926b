//! Pods' logs for a bundle: for each pod an incident in the bundle names (its findings'
//! `namespace` and `pod` evidence), the end of its containers' current and previous logs,
//! asked of the agent on the pod's node over its stream when the bundle is made (agents
//! never send logs with their reports). Bounded per container (lines), per node (bytes,
//! pods) and in nodes asked; written as `nodes/<node>/pods/<namespace>/<pod>/<container>.log`
//! (`.previous.log` for the run before), redacted like every file.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use nodemedic_proto::v1::{ContainerLog, Incident, LogsRequest, PodLogs, PodRef};

use crate::{registry::Registry, validate};

/// Nodes asked at most.
const MAX_NODES: usize = 64;
/// Pods asked of one node at most.
const MAX_PODS: usize = 20;
/// Last lines of each log.
const MAX_LINES: u32 = 200;
/// Log bytes in one node's answer at most (well under a gRPC message's limit).
const MAX_BYTES: u64 = 1 << 20;
/// How long the bundle waits for the agents (all asked at once).
const WITHIN: Duration = Duration::from_secs(10);

/// One node's answer.
#[derive(Debug, Clone)]
pub struct NodeLogs {
    /// The node.
    pub node: String,
    /// What its agent sent.
    pub logs: PodLogs,
}

/// The answers, and who answered.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    /// The answers, by node.
    pub nodes: Vec<NodeLogs>,
    /// Nodes whose agents answered.
    pub from: Vec<String>,
    /// Nodes asked that did not, each with why (`n3: not connected`).
    pub missing: Vec<String>,
}

/// The pods the incidents' findings name, by node (valid names only, bounded).
pub fn wanted(incidents: &[Incident]) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut wanted: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for f in incidents.iter().flat_map(|i| &i.findings) {
        let (Some(namespace), Some(pod)) = (f.text("namespace"), f.text("pod")) else {
            continue;
        };
        if validate::node_name(&f.node).is_err() || !name(namespace) || !name(pod) {
            continue;
        }
        if wanted.len() >= MAX_NODES && !wanted.contains_key(&f.node) {
            continue;
        }
        let pods = wanted.entry(f.node.clone()).or_default();
        if pods.len() < MAX_PODS {
            pods.insert((namespace.to_owned(), pod.to_owned()));
        }
    }
    wanted
}

/// Asks every node in `wanted` at once and waits for the answers.
pub async fn gather(
    registry: &Registry,
    wanted: BTreeMap<String, BTreeSet<(String, String)>>,
) -> Gathered {
    let asks = wanted.into_iter().map(|(node, pods)| async move {
        let request = LogsRequest {
            request_id: String::new(),
            pods: pods
                .into_iter()
                .map(|(namespace, name)| PodRef { namespace, name })
                .collect(),
            max_lines: MAX_LINES,
            max_bytes: MAX_BYTES,
        };
        let answer = registry.logs(&node, request, WITHIN).await;
        (node, answer)
    });
    let mut gathered = Gathered::default();
    for (node, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(logs) if logs.error.is_empty() => {
                gathered.from.push(node.clone());
                gathered.nodes.push(NodeLogs { node, logs });
            }
            Ok(logs) => gathered.missing.push(format!("{node}: {}", logs.error)),
            Err(e) => gathered.missing.push(format!("{node}: {e}")),
        }
    }
    gathered
}

/// A log's path in the archive; `None` when a name the agent sent is not a valid
/// Kubernetes name (it never chooses a path).
pub fn path(node: &str, log: &ContainerLog) -> Option<String> {
    let valid = validate::node_name(node).is_ok()
        && name(&log.namespace)
        && name(&log.pod)
        && name(&log.container);
    valid.then(|| {
        format!(
            "nodes/{node}/pods/{}/{}/{}{}.log",
            log.namespace,
            log.pod,
            log.container,
            if log.previous { ".previous" } else { "" }
        )
    })
}

/// A namespace, pod or container name: a DNS-1123 subdomain (which every DNS label is).
fn name(s: &str) -> bool {
    validate::node_name(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(namespace: &str, pod: &str, container: &str) -> ContainerLog {
        ContainerLog {
            namespace: namespace.into(),
            pod: pod.into(),
            container: container.into(),
            previous: true,
            ..ContainerLog::default()
        }
    }

    #[test]
    fn paths_come_only_from_valid_names() {
        assert_eq!(
            path("n1", &log("shop", "cart-7d9f8b6c5-x2k4q", "cart")).as_deref(),
            Some("nodes/n1/pods/shop/cart-7d9f8b6c5-x2k4q/cart.previous.log")
        );
        for hostile in [
            log("..", "p", "c"),
            log("shop", "../../etc", "c"),
            log("shop", "p", "c/../../x"),
            log("Shop", "p", "c"),
            log("", "p", "c"),
        ] {
            assert_eq!(path("n1", &hostile), None, "{hostile:?}");
        }
        assert_eq!(path("../n1", &log("shop", "p", "c")), None);
    }
}
