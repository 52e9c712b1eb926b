//! The image probe's settings (`images:` in the agent's config file).

use std::time::Duration;

use serde::Deserialize;

use crate::units::Percent;

/// The image probe: which runtimes to ask and when their image caches are a problem.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Ask the runtimes at all.
    pub enabled: bool,
    /// The Docker socket (a host path). Default `/var/run/docker.sock`, used when present;
    /// a socket named here must exist.
    pub docker_socket: Option<String>,
    /// The CRI socket (a host path, `unix://` allowed). Default: the first present of the
    /// usual containerd, k3s, CRI-O and cri-dockerd sockets; one named here must exist.
    pub cri_endpoint: Option<String>,
    /// Deadline of each runtime's requests (default 3s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// `images.reclaimable` when unused images hold this share of the image filesystem
    /// (percent, default 20) ...
    pub reclaimable_warn_percent: Percent,
    /// ... and at least this many bytes (default 1 GiB).
    pub reclaimable_min_bytes: u64,
    /// `images.dangling` when untagged images hold at least this many bytes (default 500 MiB).
    pub dangling_min_bytes: u64,
    /// The kubelet's `imageGCHighThresholdPercent` on a node with no kubelet config (the
    /// config's, or the kubelet's default 85, otherwise): above it, image GC runs.
    pub gc_high_percent: Percent,
    /// `images.gc_imminent` also when the image filesystem will cross that line within
    /// this time at its fill rate (default 6h).
    #[serde(with = "humantime_serde")]
    pub gc_warn_within: Duration,
    /// Largest unused images named in the report and the findings (default 5).
    pub top: usize,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            enabled: true,
            docker_socket: None,
            cri_endpoint: None,
            timeout: Duration::from_secs(3),
            reclaimable_warn_percent: Percent::of(20.0),
            reclaimable_min_bytes: 1 << 30,
            dangling_min_bytes: 500 << 20,
            gc_high_percent: Percent::of(85.0),
            gc_warn_within: Duration::from_secs(6 * 3600),
            top: 5,
        }
    }
}

impl ImagesConfig {
    /// The runtime sockets it names.
    pub fn sockets(&self) -> crate::runtime::endpoint::Sockets {
        crate::runtime::endpoint::Sockets {
            docker: self.docker_socket.clone(),
            cri: self.cri_endpoint.clone(),
        }
    }
}
