//! What a container runtime holds, in one shape for Docker and CRI runtimes: the images with
//! their sizes and users, and the other space an engine can give back.

use nodemedic_proto::v1::{ImageRuntime, UnusedImage};

/// Which API a runtime was reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// The Docker Engine API (bollard).
    Docker,
    /// The Kubernetes CRI (containerd, CRI-O, cri-dockerd).
    Cri,
}

impl RuntimeKind {
    /// `docker` or `cri`: the report's `kind` and the findings' `runtime` evidence.
    pub fn label(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Cri => "cri",
        }
    }
}

/// One image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// The runtime's id (`sha256:…`).
    pub id: String,
    /// Its names; none for a dangling image.
    pub tags: Vec<String>,
    /// Bytes, layers shared with other images included.
    pub size: u64,
    /// Bytes shared with other images, where the runtime says (Docker).
    pub shared: Option<u64>,
    /// Containers (running or stopped) created from it.
    pub containers: u32,
    /// The runtime asks that it be kept (CRI `pinned`, e.g. the sandbox image).
    pub pinned: bool,
    /// Creation time, unix seconds, where known.
    pub created: Option<i64>,
}

impl ImageEntry {
    /// Untagged: a leftover of a re-tag or a rebuild.
    pub fn dangling(&self) -> bool {
        self.tags.iter().all(|t| t == "<none>:<none>")
    }

    /// Bytes that removing only this image frees.
    pub fn own_bytes(&self) -> u64 {
        self.size.saturating_sub(self.shared.unwrap_or(0))
    }

    /// Nothing uses it and the runtime does not ask to keep it.
    pub fn removable(&self) -> bool {
        self.containers == 0 && !self.pinned
    }
}

/// A runtime's images and reclaimable space.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    /// Engine or runtime name and version.
    pub version: String,
    /// Where the images live: Docker's root directory, the CRI image filesystem.
    pub root_dir: String,
    /// The images.
    pub images: Vec<ImageEntry>,
    /// Docker: bytes of all image layers, each counted once.
    pub layers_bytes: Option<u64>,
    /// Docker: stopped containers and the bytes of their writable layers.
    pub stopped_containers: (u32, u64),
    /// Docker: volumes no container uses, and their bytes.
    pub unused_volumes: (u32, u64),
    /// Docker: build cache bytes, and the part of it nothing uses.
    pub build_cache: (u64, u64),
    /// CRI: the runtime's own count of image bytes and inodes on its filesystem.
    pub image_fs: Option<(u64, u64)>,
}

impl Inventory {
    /// Bytes that removing every image used by no container would free. With Docker's layer
    /// accounting this is `docker system df`'s RECLAIMABLE: all layers minus the layers of
    /// images in use. A CRI runtime does not say which layers images share, so there it is
    /// the sum of the unused images' sizes (an upper bound when they share layers).
    pub fn reclaimable_bytes(&self) -> u64 {
        match self.layers_bytes {
            Some(layers) => {
                let used: u64 = self
                    .images
                    .iter()
                    .filter(|i| i.containers > 0)
                    .map(ImageEntry::own_bytes)
                    .sum();
                layers.saturating_sub(used)
            }
            None => self
                .images
                .iter()
                .filter(|i| i.removable())
                .map(|i| i.size)
                .sum(),
        }
    }

    /// Bytes of all images, shared layers once where the runtime says.
    pub fn images_bytes(&self) -> u64 {
        self.layers_bytes
            .unwrap_or_else(|| self.images.iter().map(|i| i.size).sum())
    }

    /// The report's view, with the `top` largest removable images.
    pub fn summary(&self, kind: RuntimeKind, endpoint: &str, top: usize) -> ImageRuntime {
        let dangling: Vec<&ImageEntry> = self
            .images
            .iter()
            .filter(|i| i.dangling() && i.removable())
            .collect();
        let mut unused: Vec<&ImageEntry> = self.images.iter().filter(|i| i.removable()).collect();
        unused.sort_by(|a, b| b.own_bytes().cmp(&a.own_bytes()).then(a.id.cmp(&b.id)));
        ImageRuntime {
            kind: kind.label().into(),
            endpoint: endpoint.into(),
            version: self.version.clone(),
            root_dir: self.root_dir.clone(),
            images: self.images.len() as u32,
            images_in_use: self.images.iter().filter(|i| i.containers > 0).count() as u32,
            images_bytes: self.images_bytes(),
            // Every layer is either one image's own or shared.
            images_shared_bytes: self.layers_bytes.map_or(0, |layers| {
                layers.saturating_sub(self.images.iter().map(ImageEntry::own_bytes).sum())
            }),
            reclaimable_bytes: self.reclaimable_bytes(),
            dangling: dangling.len() as u32,
            dangling_bytes: dangling.iter().map(|i| i.own_bytes()).sum(),
            stopped_containers: self.stopped_containers.0,
            stopped_containers_bytes: self.stopped_containers.1,
            unused_volumes: self.unused_volumes.0,
            unused_volumes_bytes: self.unused_volumes.1,
            build_cache_bytes: self.build_cache.0,
            build_cache_reclaimable_bytes: self.build_cache.1,
            image_fs_used_bytes: self.image_fs.map_or(0, |f| f.0),
            image_fs_inodes_used: self.image_fs.map_or(0, |f| f.1),
            top_reclaimable: unused
                .iter()
                .take(top)
                .map(|i| UnusedImage {
                    id: i.id.clone(),
                    tags: i.tags.clone(),
                    size_bytes: i.own_bytes(),
                    created: i
                        .created
                        .map(|s| nodemedic_proto::time::timestamp_from_millis(s * 1000)),
                })
                .collect(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, size: u64, shared: u64, containers: u32, tags: &[&str]) -> ImageEntry {
        ImageEntry {
            id: id.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            size,
            shared: Some(shared),
            containers,
            pinned: false,
            created: None,
        }
    }

    #[test]
    fn reclaimable_follows_docker_system_df() {
        // Two images share a 100-byte base; only `app` is used.
        let inv = Inventory {
            layers_bytes: Some(100 + 50 + 30 + 20),
            images: vec![
                image("sha256:app", 150, 100, 1, &["app:1"]),
                image("sha256:old", 130, 100, 0, &["app:0"]),
                image("sha256:tmp", 20, 0, 0, &["<none>:<none>"]),
            ],
            ..Default::default()
        };
        // All layers minus what the used image holds on its own: the shared base stays
        // counted as reclaimable, as docker system df does.
        assert_eq!(inv.reclaimable_bytes(), 200 - 50);
        let s = inv.summary(RuntimeKind::Docker, "/run/docker.sock", 1);
        assert_eq!((s.images, s.images_in_use, s.dangling), (3, 1, 1));
        assert_eq!(s.images_shared_bytes, 100, "the base layer");
        assert_eq!(s.dangling_bytes, 20);
        assert_eq!(s.top_reclaimable.len(), 1);
        assert_eq!(s.top_reclaimable[0].id, "sha256:old");
    }

    #[test]
    fn cri_sums_unused_unpinned_images() {
        let mut pause = image("sha256:pause", 300, 0, 0, &["pause:3.9"]);
        pause.shared = None;
        pause.pinned = true;
        let mut unused = image("sha256:x", 70, 0, 0, &["x:1"]);
        unused.shared = None;
        let inv = Inventory {
            images: vec![pause, unused],
            ..Default::default()
        };
        assert_eq!(
            inv.reclaimable_bytes(),
            70,
            "a pinned image is never reclaimable"
        );
        assert_eq!(inv.images_bytes(), 370);
    }
}
