//! The Kubernetes side: a client from a kubeconfig or the in-cluster service account, and
//! watches (list, then watch; restarted with back-off by `kube`'s watcher) of the pods on
//! this node, this node's object and Warning events, feeding the shared [`KubeView`].

use std::{collections::BTreeSet, path::Path, sync::Arc, time::SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};

use super::{WatchOptions, view::KubeView};

/// The client and the watches for `node` (the view they keep, and the client for the
/// writes of [`crate::publish`]): `None` when there is no kubeconfig and the agent is not in
/// a pod (it then runs node-only and says so once).
pub async fn connect(
    kubeconfig: Option<&Path>,
    node: &str,
    options: &WatchOptions,
) -> Result<Option<(Arc<KubeView>, Client)>, ConnectError> {
    let Some((client, api_server)) = client(kubeconfig).await? else {
        tracing::info!(
            "no kubeconfig and not running in a pod: node-only (no pod, node or event findings)"
        );
        return Ok(None);
    };
    tracing::info!(%api_server, "watching this node's pods, the node and Warning events");
    let view = KubeView::new(api_server);
    spawn(client.clone(), node, options, &view);
    Ok(Some((view, client)))
}

/// Why the Kubernetes client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig file is unreadable or invalid.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// In a pod, but the service account's configuration is unusable.
    #[error("in-cluster Kubernetes configuration: {0}")]
    InCluster(String),
    /// The client could not be built from the configuration.
    #[error("Kubernetes client: {0}")]
    Client(String),
}

/// A client (and the API server's URL) from `kubeconfig`, else from the in-cluster service
/// account when running in a pod; `None` (node-only) when neither is there.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Option<(Client, String)>, ConnectError> {
    let config = match kubeconfig {
        Some(path) => {
            let err = |reason: String| ConnectError::Kubeconfig {
                path: path.display().to_string(),
                reason,
            };
            let file = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| err(e.to_string()))?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            kube::Config::incluster().map_err(|e| ConnectError::InCluster(e.to_string()))?
        }
        None => return Ok(None),
    };
    let url = config.cluster_url.to_string();
    Client::try_from(config)
        .map(|client| Some((client, url)))
        .map_err(|e| ConnectError::Client(e.to_string()))
}

/// Starts the watches on the current tokio runtime; they run until the runtime stops.
pub fn spawn(client: Client, node: &str, options: &WatchOptions, view: &Arc<KubeView>) {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    tokio::spawn(watch_pods(
        pods.clone(),
        on_node,
        Arc::clone(view),
        Scope::Node,
    ));
    if options.unscheduled_pods {
        let unscheduled = watcher::Config::default().fields("spec.nodeName=");
        let scope = Scope::Unscheduled {
            node: node.to_owned(),
        };
        tokio::spawn(watch_pods(pods, unscheduled, Arc::clone(view), scope));
    }
    let nodes: Api<Node> = Api::all(client.clone());
    tokio::spawn(watch_node(
        nodes,
        watcher::Config::default().fields(&format!("metadata.name={node}")),
        Arc::clone(view),
    ));
    tokio::spawn(super::volumes::resolve(client.clone(), Arc::clone(view)));
    let events: Api<Event> = Api::all(client);
    let mut selectors = vec![format!(
        "involvedObject.kind=Node,involvedObject.name={node},type=Warning"
    )];
    if options.pod_events {
        selectors.push("involvedObject.kind=Pod,type=Warning".to_owned());
    }
    for selector in selectors {
        view.expect_event_watch();
        let (events, view, max_events) = (events.clone(), Arc::clone(view), options.max_events);
        tokio::spawn(async move {
            view.pods_listed().await;
            let selected = watcher::Config::default().fields(&selector);
            watch_events(events, selected, view, max_events).await;
        });
    }
}

/// Which pods a watch covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// The pods on this node.
    Node,
    /// Pods no node has yet (one agent in the cluster is enough).
    Unscheduled { node: String },
}

async fn watch_pods(api: Api<Pod>, config: watcher::Config, view: Arc<KubeView>, scope: Scope) {
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    // The pods this watch put in the view, and those a relist has listed so far.
    let mut mine = BTreeSet::new();
    let mut listed = BTreeSet::new();
    while let Some(event) = stream.next().await {
        let now = SystemTime::now();
        match event {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                listed.insert(pod.metadata.uid.clone().unwrap_or_default());
                view.with(|c| c.apply_pod(&pod, now));
            }
            Ok(watcher::Event::InitDone) => {
                // Pods gone while the watch was down.
                view.with(|c| {
                    for uid in mine.difference(&listed) {
                        c.delete_pod(uid);
                    }
                });
                mine = std::mem::take(&mut listed);
                if scope == Scope::Node {
                    view.synced(true, false, false);
                }
            }
            Ok(watcher::Event::Apply(pod)) => {
                mine.insert(pod.metadata.uid.clone().unwrap_or_default());
                view.with(|c| c.apply_pod(&pod, now));
            }
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                mine.remove(&uid);
                // An unscheduled pod that was scheduled here now belongs to the node's watch.
                let moved_here = match &scope {
                    Scope::Unscheduled { node } => {
                        pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) == Some(node)
                    }
                    Scope::Node => false,
                };
                if !moved_here {
                    view.with(|c| c.delete_pod(&uid));
                }
            }
            Err(e) => view.error(&format!("pods: {e}")),
        }
    }
}

async fn watch_node(api: Api<Node>, config: watcher::Config, view: Arc<KubeView>) {
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                view.with(|c| c.apply_node(&node, SystemTime::now()));
            }
            Ok(watcher::Event::InitDone) => view.synced(false, true, false),
            Ok(watcher::Event::Delete(_)) => view.with(|c| c.node = None),
            Ok(watcher::Event::Init) => {}
            Err(e) => view.error(&format!("node: {e}")),
        }
    }
}

async fn watch_events(
    api: Api<Event>,
    config: watcher::Config,
    view: Arc<KubeView>,
    max_events: usize,
) {
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let now = SystemTime::now();
        match event {
            Ok(watcher::Event::Apply(e) | watcher::Event::InitApply(e)) => view.with(|c| {
                // Events of pods elsewhere in the cluster are not kept.
                let about_us = e.involved_object.kind.as_deref() == Some("Node")
                    || e.involved_object
                        .uid
                        .as_ref()
                        .is_some_and(|u| c.pods.contains_key(u));
                if about_us {
                    c.apply_event(&e, now, max_events);
                }
            }),
            Ok(watcher::Event::InitDone) => view.synced(false, false, true),
            Ok(watcher::Event::Delete(_) | watcher::Event::Init) => {}
            Err(e) => view.error(&format!("events: {e}")),
        }
    }
}
