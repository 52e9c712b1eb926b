//! The image actions: what each would remove from Docker or a CRI runtime, and removing
//! it. Nothing a container (running or stopped) uses is planned, and each item is checked
//! again right before it is removed; a CRI-pinned image is never planned.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use bollard::{
    Docker,
    errors::Error as DockerError,
    models::ContainerSummaryStateEnum,
    query_parameters::{
        ListContainersOptionsBuilder, PruneBuildOptionsBuilder, RemoveContainerOptionsBuilder,
        RemoveImageOptionsBuilder,
    },
};
use nodemedic_proto::{
    cri::{
        ImageSpec, RemoveImageRequest, image_service_client::ImageServiceClient,
        runtime_service_client::RuntimeServiceClient,
    },
    v1::{ActionItem, ActionPlan},
};
use tonic::transport::Channel;

use super::RemediationError;
use crate::{
    host::HostRoot,
    runtime::{
        RuntimeError, cri, docker,
        endpoint::{Endpoint, Sockets},
        inventory::{Inventory, RuntimeKind},
    },
};

/// Untagged images no container uses.
pub const PRUNE_DANGLING: &str = "images.prune_dangling";
/// Every image no container uses.
pub const PRUNE_UNUSED: &str = "images.prune_unused";
/// Docker containers that are not running.
pub const PRUNE_STOPPED_CONTAINERS: &str = "images.prune_stopped_containers";
/// Docker build cache nothing uses.
pub const PRUNE_BUILD_CACHE: &str = "images.prune_build_cache";

/// An item's result: removed.
pub const REMOVED: &str = "removed";
/// An item's result: not removed, on purpose (in use now, already gone).
pub const SKIPPED: &str = "skipped";
/// An item's result: the runtime refused or failed.
pub const FAILED: &str = "failed";

/// Why an image planned for removal was skipped.
const IN_USE_NOW: &str = "a container uses it now (created after the plan)";

const IMAGE: &str = "image";
const CONTAINER: &str = "container";
const BUILD_CACHE: &str = "build cache";

/// What `action` would remove now, on the runtimes matching `runtime` (empty: all).
pub async fn plan(
    host: &HostRoot,
    sockets: &Sockets,
    timeout: Duration,
    action: &str,
    runtime: &str,
    older_than: Option<Duration>,
) -> Result<Vec<ActionItem>, RemediationError> {
    let endpoints: Vec<Endpoint> = Endpoint::discover(host, sockets)
        .into_iter()
        .filter(|e| runtime.is_empty() || e.kind.label() == runtime)
        .collect();
    if endpoints.is_empty() {
        return Err(RemediationError::NoRuntime(runtime.to_owned()));
    }
    let mut items = Vec::new();
    for endpoint in endpoints {
        let socket = host.path(&endpoint.host_path);
        let kind = endpoint.kind;
        match (kind, action) {
            (RuntimeKind::Docker, PRUNE_DANGLING | PRUNE_UNUSED) => {
                let docker = docker::connect(&socket, timeout).await?;
                let inventory = docker::measure(&docker).await?;
                items.extend(image_items(&inventory, kind, action, older_than));
            }
            (RuntimeKind::Cri, PRUNE_DANGLING | PRUNE_UNUSED) => {
                let inventory = cri::inventory(cri::connect(&socket, timeout).await?).await?;
                items.extend(image_items(&inventory, kind, action, older_than));
            }
            (RuntimeKind::Docker, PRUNE_STOPPED_CONTAINERS) => {
                let docker = docker::connect(&socket, timeout).await?;
                let options = ListContainersOptionsBuilder::default()
                    .all(true)
                    .size(true)
                    .build();
                let containers = docker
                    .list_containers(Some(options))
                    .await
                    .map_err(RuntimeError::from)?;
                items.extend(
                    containers
                        .into_iter()
                        .filter(|c| c.state != Some(ContainerSummaryStateEnum::RUNNING))
                        .map(|c| ActionItem {
                            kind: CONTAINER.into(),
                            id: c.id.unwrap_or_default(),
                            names: c.names.unwrap_or_default(),
                            bytes: c.size_rw.unwrap_or(0).max(0) as u64,
                            runtime: kind.label().into(),
                            ..Default::default()
                        }),
                );
            }
            (RuntimeKind::Docker, PRUNE_BUILD_CACHE) => {
                let docker = docker::connect(&socket, timeout).await?;
                let df = docker
                    .df(None::<bollard::query_parameters::DataUsageOptions>)
                    .await
                    .map_err(RuntimeError::from)?;
                items.extend(
                    df.build_cache
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|b| !b.in_use.unwrap_or(false) && !b.shared.unwrap_or(false))
                        .map(|b| ActionItem {
                            kind: BUILD_CACHE.into(),
                            id: b.id.unwrap_or_default(),
                            names: b.description.into_iter().collect(),
                            bytes: b.size.unwrap_or(0).max(0) as u64,
                            runtime: kind.label().into(),
                            ..Default::default()
                        }),
                );
            }
            // Containers and build cache of CRI runtimes are the kubelet's to manage.
            (RuntimeKind::Cri, _) => {}
            _ => return Err(RemediationError::Unknown(action.to_owned())),
        }
    }
    Ok(items)
}

/// The images `action` removes: none that a container uses or the runtime pins; untagged
/// ones only for `prune_dangling`; with `older_than`, only images known to be older.
fn image_items(
    inventory: &Inventory,
    kind: RuntimeKind,
    action: &str,
    older_than: Option<Duration>,
) -> Vec<ActionItem> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    inventory
        .images
        .iter()
        .filter(|i| i.removable())
        .filter(|i| action != PRUNE_DANGLING || i.dangling())
        .filter(|i| {
            older_than.is_none_or(|age| i.created.is_some_and(|c| now - c >= age.as_secs() as i64))
        })
        .map(|i| ActionItem {
            kind: IMAGE.into(),
            id: i.id.clone(),
            names: i
                .tags
                .iter()
                .filter(|t| *t != "<none>:<none>")
                .cloned()
                .collect(),
            bytes: i.own_bytes(),
            runtime: kind.label().into(),
            ..Default::default()
        })
        .collect()
}

/// Carries out `plan`, item by item; every item comes back with its result.
pub async fn apply(
    host: &HostRoot,
    sockets: &Sockets,
    timeout: Duration,
    plan: &ActionPlan,
) -> Vec<ActionItem> {
    let endpoints = Endpoint::discover(host, sockets);
    let mut dockers: HashMap<String, Result<Docker, String>> = HashMap::new();
    let mut cris: HashMap<String, Result<Channel, String>> = HashMap::new();
    let mut out = Vec::with_capacity(plan.items.len());
    for item in &plan.items {
        let Some(endpoint) = endpoints.iter().find(|e| e.kind.label() == item.runtime) else {
            out.push(done(
                item,
                FAILED,
                0,
                format!("no {} runtime on this node now", item.runtime),
            ));
            continue;
        };
        let socket = host.path(&endpoint.host_path);
        let key = endpoint.host_path.clone();
        let result = match endpoint.kind {
            RuntimeKind::Docker => {
                match connected(&mut dockers, key, docker::connect(&socket, timeout)).await {
                    Ok(docker) => remove_docker(&docker, item).await,
                    Err(e) => done(item, FAILED, 0, e),
                }
            }
            RuntimeKind::Cri => {
                match connected(&mut cris, key, cri::connect(&socket, timeout)).await {
                    Ok(channel) => remove_cri(channel, item).await,
                    Err(e) => done(item, FAILED, 0, e),
                }
            }
        };
        out.push(result);
    }
    out
}

/// A runtime client, connected once per apply (a failure too is remembered, so the items
/// of an unreachable runtime fail fast).
async fn connected<T: Clone>(
    clients: &mut HashMap<String, Result<T, String>>,
    key: String,
    connect: impl Future<Output = Result<T, RuntimeError>>,
) -> Result<T, String> {
    if let Some(client) = clients.get(&key) {
        return client.clone();
    }
    let client = connect.await.map_err(|e| e.to_string());
    clients.insert(key, client.clone());
    client
}

fn done(item: &ActionItem, result: &str, bytes: u64, detail: impl Into<String>) -> ActionItem {
    ActionItem {
        result: result.into(),
        bytes,
        detail: detail.into(),
        ..item.clone()
    }
}

/// A Docker error as an item result: a 404 means it is gone already, a 409 that something
/// uses it now; anything else is a failure.
fn docker_refused(item: &ActionItem, e: DockerError) -> ActionItem {
    match e {
        DockerError::DockerResponseServerError {
            status_code: 404, ..
        } => done(item, SKIPPED, 0, "already gone"),
        DockerError::DockerResponseServerError {
            status_code: 409,
            message,
        } => done(item, SKIPPED, 0, format!("in use: {message}")),
        e => done(item, FAILED, 0, e.to_string()),
    }
}

async fn remove_docker(docker: &Docker, item: &ActionItem) -> ActionItem {
    match item.kind.as_str() {
        IMAGE => {
            match docker::images_in_use(docker).await {
                Ok(used) if used.contains(&item.id) => {
                    return done(item, SKIPPED, 0, IN_USE_NOW);
                }
                Ok(_) => {}
                Err(e) => return done(item, FAILED, 0, e.to_string()),
            }
            let options = RemoveImageOptionsBuilder::default()
                .force(false)
                .noprune(false)
                .build();
            match docker.remove_image(&item.id, Some(options), None).await {
                Ok(_) => done(item, REMOVED, item.bytes, ""),
                Err(e) => docker_refused(item, e),
            }
        }
        CONTAINER => {
            match docker
                .inspect_container(
                    &item.id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
            {
                Ok(c) if c.state.as_ref().and_then(|s| s.running).unwrap_or(false) => {
                    return done(item, SKIPPED, 0, "running now (started after the plan)");
                }
                Ok(_) => {}
                Err(e) => return docker_refused(item, e),
            }
            let options = RemoveContainerOptionsBuilder::default()
                .force(false)
                .build();
            match docker.remove_container(&item.id, Some(options)).await {
                Ok(()) => done(item, REMOVED, item.bytes, ""),
                Err(e) => docker_refused(item, e),
            }
        }
        BUILD_CACHE => {
            let filters = HashMap::from([("id", vec![item.id.as_str()])]);
            let options = PruneBuildOptionsBuilder::default()
                .filters(&filters)
                .build();
            match docker.prune_build(Some(options)).await {
                Ok(r) if r.caches_deleted.as_ref().is_none_or(Vec::is_empty) => {
                    done(item, SKIPPED, 0, "in use now or already gone")
                }
                Ok(r) => done(
                    item,
                    REMOVED,
                    r.space_reclaimed.unwrap_or(0).max(0) as u64,
                    "",
                ),
                Err(e) => docker_refused(item, e),
            }
        }
        other => done(item, FAILED, 0, format!("unknown item kind {other:?}")),
    }
}

async fn remove_cri(channel: Channel, item: &ActionItem) -> ActionItem {
    let mut runtime = RuntimeServiceClient::new(channel.clone());
    match cri::images_in_use(&mut runtime).await {
        Ok(used)
            if used
                .iter()
                .flatten()
                .any(|r| *r == item.id || item.names.contains(r)) =>
        {
            return done(item, SKIPPED, 0, IN_USE_NOW);
        }
        Ok(_) => {}
        Err(e) => return done(item, FAILED, 0, e.to_string()),
    }
    let request = RemoveImageRequest {
        image: Some(ImageSpec {
            image: item.id.clone(),
            ..Default::default()
        }),
    };
    match ImageServiceClient::new(channel).remove_image(request).await {
        Ok(_) => done(item, REMOVED, item.bytes, ""),
        Err(s) if s.code() == tonic::Code::NotFound => done(item, SKIPPED, 0, "already gone"),
        Err(s) => done(
            item,
            FAILED,
            0,
            format!("{}: {}", s.code().description(), s.message()),
        ),
    }
}
