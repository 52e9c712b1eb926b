//! Docker through the Engine API (bollard): `/system/df` gives images with their shared
//! sizes and container counts, containers with their writable layers, volumes and build
//! cache, in one call; `/info` the root directory. `/system/df` is costly for the engine,
//! so it is asked again only when the engine's event log shows images or containers
//! changing, or every five minutes.
//!
//! The API version is negotiated down to what the engine speaks. bollard 0.19 is used, not
//! a later one: from API 1.52 `/system/df` answers in a new shape that later bollards
//! expect, while every engine in use on nodes (20.10 to 28) answers the classic shape at
//! the versions they support.

use std::{collections::HashMap, path::Path, time::Duration};

use bollard::{
    API_DEFAULT_VERSION, Docker,
    models::ContainerSummaryStateEnum,
    query_parameters::{DataUsageOptions, EventsOptionsBuilder, ListContainersOptionsBuilder},
};

use futures::StreamExt;

use super::{
    RuntimeError,
    inventory::{ImageEntry, Inventory},
};

/// Connects to the engine at `socket`, with `timeout` per request.
pub async fn connect(socket: &Path, timeout: std::time::Duration) -> Result<Docker, RuntimeError> {
    let socket = socket.to_string_lossy();
    Docker::connect_with_unix(&socket, timeout.as_secs().max(1), API_DEFAULT_VERSION)?
        .negotiate_version()
        .await
        .map_err(RuntimeError::from)
}

/// What the last full measurement saw, so the next runs can skip it while nothing changed.
#[derive(Debug, Default)]
pub struct Cache {
    /// The engine's version and root directory: fixed while it runs.
    engine: Option<(String, String)>,
    /// The last full measurement and when it was made (since the epoch).
    last: Option<(Inventory, Duration)>,
}

/// `/system/df` makes the engine measure every layer and container (tens of ms of its CPU
/// with 200 images), and even listing images costs it a few: a full measurement runs only
/// when the engine's event log shows an image or container event since the last one, or
/// at least this often.
const FULL_EVERY: Duration = Duration::from_secs(300);

/// What the engine holds.
pub async fn inventory(docker: &Docker, cache: &mut Cache) -> Result<Inventory, RuntimeError> {
    let (version, root_dir) = match &cache.engine {
        Some(engine) => engine.clone(),
        None => {
            let version = docker.version().await?;
            let info = docker.info().await?;
            let engine = (
                format!("docker {}", version.version.unwrap_or_default()),
                info.docker_root_dir
                    .unwrap_or_else(|| "/var/lib/docker".into()),
            );
            cache.engine = Some(engine.clone());
            engine
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if let Some((inventory, at)) = &cache.last
        && now.saturating_sub(*at) < FULL_EVERY
        && !changed_since(docker, *at, now).await?
    {
        return Ok(inventory.clone());
    }
    let mut inventory = measure(docker).await?;
    inventory.version = version;
    inventory.root_dir = root_dir;
    // Taken before the measurement: an event during it is seen again next time.
    cache.last = Some((inventory.clone(), now));
    Ok(inventory)
}

/// Docker's `since`/`until` form of a time since the epoch, to the nanosecond.
fn docker_time(t: Duration) -> String {
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

/// Whether an image or container event was logged from `since` to `until` (since the epoch).
/// With an `until` that is not in the future the engine answers from its event log and
/// ends the stream at once.
async fn changed_since(
    docker: &Docker,
    since: Duration,
    until: Duration,
) -> Result<bool, RuntimeError> {
    let filters = HashMap::from([("type", vec!["image", "container"])]);
    let options = EventsOptionsBuilder::default()
        .since(&docker_time(since))
        .until(&docker_time(until))
        .filters(&filters)
        .build();
    let mut events = Box::pin(docker.events(Some(options)));
    match events.next().await {
        None => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(e)) => Err(e.into()),
    }
}

/// Everything `/system/df` says (not the version and root directory).
pub async fn measure(docker: &Docker) -> Result<Inventory, RuntimeError> {
    let df = docker.df(None::<DataUsageOptions>).await?;
    let images = df
        .images
        .unwrap_or_default()
        .into_iter()
        .map(|i| ImageEntry {
            id: i.id,
            tags: i.repo_tags,
            size: i.size.max(0) as u64,
            shared: (i.shared_size >= 0).then_some(i.shared_size as u64),
            containers: i.containers.max(0) as u32,
            pinned: false,
            created: Some(i.created),
        })
        .collect();
    let stopped: Vec<i64> = df
        .containers
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.state != Some(ContainerSummaryStateEnum::RUNNING))
        .map(|c| c.size_rw.unwrap_or(0).max(0))
        .collect();
    let unused_volumes: Vec<i64> = df
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.usage_data)
        .filter(|u| u.ref_count == 0)
        .map(|u| u.size.max(0))
        .collect();
    // As `docker system df` counts it: shared cache records not at all.
    let cache = df.build_cache.unwrap_or_default();
    let own = |b: &&bollard::models::BuildCache| !b.shared.unwrap_or(false);
    let size = |b: &bollard::models::BuildCache| b.size.unwrap_or(0).max(0) as u64;
    Ok(Inventory {
        images,
        layers_bytes: df.layers_size.map(|b| b.max(0) as u64),
        stopped_containers: (stopped.len() as u32, stopped.iter().sum::<i64>() as u64),
        unused_volumes: (
            unused_volumes.len() as u32,
            unused_volumes.iter().sum::<i64>() as u64,
        ),
        build_cache: (
            cache.iter().filter(own).map(size).sum(),
            cache
                .iter()
                .filter(own)
                .filter(|b| !b.in_use.unwrap_or(false))
                .map(size)
                .sum(),
        ),
        ..Default::default()
    })
}

/// The ids of the images containers (running or stopped) were created from, as the engine
/// says now.
pub async fn images_in_use(docker: &Docker) -> Result<Vec<String>, RuntimeError> {
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default().all(true).build(),
        ))
        .await?;
    Ok(containers.into_iter().filter_map(|c| c.image_id).collect())
}
