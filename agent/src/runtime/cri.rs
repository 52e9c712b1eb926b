//! CRI runtimes (containerd, CRI-O, cri-dockerd) through the Kubernetes CRI v1 gRPC API on
//! their unix socket: the image filesystem (`ImageFsInfo`), the images (`ListImages`) and
//! the containers (`ListContainers`), so images used by no container are known; and the
//! runtime's own health (`Status`).

use std::{collections::HashSet, path::Path};

use hyper_util::rt::TokioIo;
use nodemedic_proto::cri::{
    ImageFsInfoRequest, ListContainersRequest, ListImagesRequest, RuntimeCondition, StatusRequest,
    VersionRequest, image_service_client::ImageServiceClient,
    runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

use super::{
    RuntimeError,
    inventory::{ImageEntry, Inventory},
};

/// The sockets CRI runtimes listen on by default, in the order they are tried.
pub const DEFAULT_ENDPOINTS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/var/run/cri-dockerd.sock",
];

/// A gRPC channel to the runtime at `socket`, with `timeout` per request.
pub async fn connect(socket: &Path, timeout: std::time::Duration) -> Result<Channel, RuntimeError> {
    let socket = socket.to_owned();
    // The URI is required but unused: every connection goes to the socket.
    Endpoint::from_static("http://cri.invalid")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .map_err(|e| RuntimeError::Cri(format!("cannot connect: {e}")))
}

fn status_error(what: &'static str) -> impl Fn(tonic::Status) -> RuntimeError {
    move |s| {
        RuntimeError::Cri(format!(
            "{what}: {}: {}",
            s.code().description(),
            s.message()
        ))
    }
}

/// The runtime's name and version, as `containerd 1.7.2`.
async fn version(runtime: &mut RuntimeServiceClient<Channel>) -> Result<String, RuntimeError> {
    let v = runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .map_err(status_error("Version"))?
        .into_inner();
    Ok(format!("{} {}", v.runtime_name, v.runtime_version))
}

/// The runtime's conditions (`RuntimeReady`, `NetworkReady`) and its version.
pub async fn status(channel: Channel) -> Result<(String, Vec<RuntimeCondition>), RuntimeError> {
    let mut runtime = RuntimeServiceClient::new(channel);
    let version = version(&mut runtime).await?;
    let conditions = runtime
        .status(StatusRequest { verbose: false })
        .await
        .map_err(status_error("Status"))?
        .into_inner()
        .status
        .map(|s| s.conditions)
        .unwrap_or_default();
    Ok((version, conditions))
}

/// What the runtime holds.
pub async fn inventory(channel: Channel) -> Result<Inventory, RuntimeError> {
    let mut runtime = RuntimeServiceClient::new(channel.clone());
    let mut images = ImageServiceClient::new(channel);
    let version = version(&mut runtime).await?;
    let fs = images
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .map_err(status_error("ImageFsInfo"))?
        .into_inner();
    let listed = images
        .list_images(ListImagesRequest { filter: None })
        .await
        .map_err(status_error("ListImages"))?
        .into_inner()
        .images;
    let used = images_in_use(&mut runtime).await?;
    let image_fs = fs.image_filesystems.first();
    Ok(Inventory {
        version,
        root_dir: image_fs
            .and_then(|f| f.fs_id.as_ref())
            .map(|id| id.mountpoint.clone())
            .unwrap_or_default(),
        images: listed
            .into_iter()
            .map(|i| {
                let containers = used
                    .iter()
                    .filter(|refs| {
                        refs.iter().any(|r| {
                            *r == i.id || i.repo_tags.contains(r) || i.repo_digests.contains(r)
                        })
                    })
                    .count() as u32;
                ImageEntry {
                    containers,
                    id: i.id,
                    tags: i.repo_tags,
                    size: i.size,
                    shared: None,
                    pinned: i.pinned,
                    created: None,
                }
            })
            .collect(),
        image_fs: image_fs.map(|f| {
            (
                f.used_bytes.as_ref().map_or(0, |v| v.value),
                f.inodes_used.as_ref().map_or(0, |v| v.value),
            )
        }),
        ..Default::default()
    })
}

/// For each container, the references it makes to its image (id, digest or name: runtimes
/// differ in which they fill).
pub async fn images_in_use(
    runtime: &mut RuntimeServiceClient<Channel>,
) -> Result<Vec<HashSet<String>>, RuntimeError> {
    let containers = runtime
        .list_containers(ListContainersRequest { filter: None })
        .await
        .map_err(status_error("ListContainers"))?
        .into_inner()
        .containers;
    Ok(containers
        .into_iter()
        .map(|c| {
            [c.image_id, c.image_ref]
                .into_iter()
                .chain(c.image.map(|s| s.image))
                .filter(|r| !r.is_empty())
                .collect()
        })
        .collect())
}
