//! Naming what a cgroup measures: pod namespace/name and container name, from the CRI's
//! container labels (`io.kubernetes.pod.namespace`, `io.kubernetes.pod.name`,
//! `io.kubernetes.pod.uid`, `io.kubernetes.container.name`, set by the kubelet) or from the
//! Kubernetes API when the agent watches it; the CRI also names each pod's sandbox
//! ("pause") container `POD`. A cgroup nothing names is still reported by its pod UID and
//! container ID.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Duration,
};

use nodemedic_proto::cri::{
    ListContainersRequest, ListPodSandboxRequest, runtime_service_client::RuntimeServiceClient,
};

use crate::{kubernetes::view::KubeView, parse::cgroup_path::PodCgroup, runtime::cri};

/// A pod's or container's names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Name {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name ("" for the pod).
    pub container: String,
}

/// Names known so far, by container ID and by pod UID.
#[derive(Debug, Default)]
pub struct Names {
    containers: HashMap<String, Name>,
    pods: HashMap<String, (String, String)>,
}

impl Names {
    /// Learns the names of `cgroups` that are not known yet: from the Kubernetes view if
    /// there is one, then from the CRI runtime at `cri_socket` (asked at most once here).
    pub fn learn(
        &mut self,
        cgroups: &[&PodCgroup],
        kube: Option<&KubeView>,
        cri_socket: Option<&Path>,
        timeout: Duration,
    ) {
        let unknown = |names: &Self| {
            cgroups.iter().any(|c| match &c.container_id {
                Some(id) => !names.containers.contains_key(id),
                None => !names.pods.contains_key(&c.pod_uid),
            })
        };
        if !unknown(self) {
            return;
        }
        if let Some(kube) = kube {
            kube.with(|cluster| {
                for pod in cluster.pods.values() {
                    self.pods
                        .insert(pod.uid.clone(), (pod.namespace.clone(), pod.name.clone()));
                    for c in pod.containers.iter().filter(|c| !c.container_id.is_empty()) {
                        self.containers.insert(
                            c.container_id.clone(),
                            Name {
                                namespace: pod.namespace.clone(),
                                pod: pod.name.clone(),
                                container: c.name.clone(),
                            },
                        );
                    }
                }
            });
        }
        if !unknown(self) {
            return;
        }
        let Some(socket) = cri_socket else { return };
        match cri_labels(socket, timeout) {
            Ok(labelled) => {
                for (id, labels) in labelled {
                    let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
                    let (namespace, pod) = (
                        label("io.kubernetes.pod.namespace"),
                        label("io.kubernetes.pod.name"),
                    );
                    let uid = label("io.kubernetes.pod.uid");
                    if !uid.is_empty() && !pod.is_empty() {
                        self.pods.insert(uid, (namespace.clone(), pod.clone()));
                    }
                    let container = label("io.kubernetes.container.name");
                    if !container.is_empty() {
                        self.containers.insert(
                            id,
                            Name {
                                namespace,
                                pod,
                                container,
                            },
                        );
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot ask the CRI runtime for container names"),
        }
    }

    /// The names of a cgroup, as far as they are known.
    pub fn of(&self, cgroup: &PodCgroup) -> Name {
        if let Some(name) = cgroup
            .container_id
            .as_ref()
            .and_then(|id| self.containers.get(id))
        {
            return name.clone();
        }
        let (namespace, pod) = self.pods.get(&cgroup.pod_uid).cloned().unwrap_or_default();
        Name {
            namespace,
            pod,
            container: String::new(),
        }
    }

    /// Forgets what no cgroup uses any more.
    pub fn retain(&mut self, cgroups: &[&PodCgroup]) {
        let ids: HashSet<&str> = cgroups
            .iter()
            .filter_map(|c| c.container_id.as_deref())
            .collect();
        let uids: HashSet<&str> = cgroups.iter().map(|c| c.pod_uid.as_str()).collect();
        self.containers.retain(|id, _| ids.contains(id.as_str()));
        self.pods.retain(|uid, _| uids.contains(uid.as_str()));
    }
}

/// A container's ID and labels.
type Labelled = (String, HashMap<String, String>);

/// The container name the kubelet gives a pod's sandbox ("pause") container, as cAdvisor
/// shows it.
const SANDBOX_CONTAINER: &str = "POD";

/// Every container's labels, from `ListContainers`, and every pod sandbox's, from
/// `ListPodSandbox`, named [`SANDBOX_CONTAINER`] (its cgroup sits beside the containers').
fn cri_labels(socket: &Path, timeout: Duration) -> Result<Vec<Labelled>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let channel = cri::connect(socket, timeout)
            .await
            .map_err(|e| e.to_string())?;
        let mut client = RuntimeServiceClient::new(channel);
        let containers = client
            .list_containers(ListContainersRequest { filter: None })
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .containers;
        let sandboxes = client
            .list_pod_sandbox(ListPodSandboxRequest {})
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .items;
        let sandboxes = sandboxes.into_iter().map(|mut s| {
            s.labels.insert(
                "io.kubernetes.container.name".to_owned(),
                SANDBOX_CONTAINER.to_owned(),
            );
            (s.id, s.labels)
        });
        Ok(containers
            .into_iter()
            .map(|c| (c.id, c.labels))
            .chain(sandboxes)
            .collect())
    })
}
