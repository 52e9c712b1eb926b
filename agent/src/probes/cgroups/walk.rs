//! Finding the pods' memory cgroups under the host root and reading them: the v1 memory
//! controller (`/sys/fs/cgroup/memory/kubepods[.slice]/…`) or the v2 unified tree
//! (`/sys/fs/cgroup/kubepods[.slice]/…`), with the cgroupfs or the systemd driver's names.

use std::path::{Path, PathBuf};

use crate::{
    host::{HostError, HostRoot},
    parse::{
        cgroup_memory::{self, CgroupMemory},
        cgroup_path::{self, PodCgroup},
    },
};

/// Where the kubelet's cgroup tree may start, per version.
const ROOTS: &[(&str, Version)] = &[
    ("/sys/fs/cgroup/memory/kubepods.slice", Version::V1),
    ("/sys/fs/cgroup/memory/kubepods", Version::V1),
    ("/sys/fs/cgroup/kubepods.slice", Version::V2),
    ("/sys/fs/cgroup/kubepods", Version::V2),
];

/// Deepest level walked below the root: QoS class, pod, container.
const MAX_DEPTH: usize = 3;

/// The memory controller's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// cgroup v1, the `memory` controller's own hierarchy.
    V1,
    /// cgroup v2, the unified hierarchy.
    V2,
}

impl Version {
    /// `v1` or `v2`.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// One pod or container cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its directory.
    pub dir: PathBuf,
    /// The pod, and the container when it is a container's.
    pub pod: PodCgroup,
}

/// The kubelet's memory cgroups on this host: the version, and every pod and container
/// cgroup. `None` when the node has none (no kubelet, or another layout).
pub fn find(host: &HostRoot) -> Option<(Version, Vec<Found>)> {
    let (root, version) = ROOTS
        .iter()
        .map(|(p, v)| (host.path(p), *v))
        .find(|(p, v)| p.join(usage_file(*v)).exists())?;
    let mut found = Vec::new();
    descend(&root, 0, &mut found);
    Some((version, found))
}

fn usage_file(v: Version) -> &'static str {
    match v {
        Version::V1 => "memory.usage_in_bytes",
        Version::V2 => "memory.current",
    }
}

fn descend(dir: &Path, depth: usize, found: &mut Vec<Found>) {
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        // The path from the kubelet's root down (`kubepods/...`), which names the pod.
        let named = path.to_string_lossy();
        match cgroup_path::pod_of(&named[named.find("kubepods").unwrap_or(0)..]) {
            Some(pod) if pod.container_id.is_some() => found.push(Found { dir: path, pod }),
            Some(pod) => {
                found.push(Found {
                    dir: path.clone(),
                    pod,
                });
                descend(&path, depth + 1, found);
            }
            // A QoS class (`burstable`, `kubepods-besteffort.slice`) or something else.
            None => descend(&path, depth + 1, found),
        }
    }
}

/// Reads one cgroup's memory files: opened relative to the directory and read into one
/// buffer, as this runs for every container at every report.
pub fn read(version: Version, dir: &Path) -> Result<CgroupMemory, HostError> {
    let io = |source: std::io::Error| HostError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Files::open(dir).map_err(io)?;
    let parsed = match version {
        Version::V1 => {
            let usage = files.read("memory.usage_in_bytes").map_err(io)?;
            let limit = files.read("memory.limit_in_bytes").map_err(io)?;
            let stat = files.read("memory.stat").map_err(io)?;
            let oom = files.read("memory.oom_control").map_err(io)?;
            let failcnt = files.read("memory.failcnt").map_err(io)?;
            cgroup_memory::v1(
                files.text(&usage),
                files.text(&limit),
                files.text(&stat),
                files.text(&oom),
                files.text(&failcnt),
            )
        }
        Version::V2 => {
            let current = files.read("memory.current").map_err(io)?;
            let max = files.read("memory.max").map_err(io)?;
            let stat = files.read("memory.stat").map_err(io)?;
            // The cgroup's own events: memory.events counts its children's too.
            let events = files
                .read("memory.events.local")
                .or_else(|_| files.read("memory.events"))
                .map_err(io)?;
            let pressure = files.read("memory.pressure").ok();
            cgroup_memory::v2(
                files.text(&current),
                files.text(&max),
                files.text(&stat),
                files.text(&events),
                pressure.as_ref().map(|p| files.text(p)),
            )
        }
    };
    parsed.map_err(|e| HostError::Parse {
        path: dir.to_owned(),
        reason: e.to_string(),
    })
}

/// The files of one directory, read into one buffer.
struct Files {
    dir: std::os::fd::OwnedFd,
    buf: Vec<u8>,
}

impl Files {
    fn open(dir: &Path) -> std::io::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        let dir = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Files {
            dir,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Appends a file's bytes to the buffer; where they are.
    fn read(&mut self, name: &str) -> std::io::Result<std::ops::Range<usize>> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::openat(
            &self.dir,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let start = self.buf.len();
        let mut chunk = [0u8; 4096];
        loop {
            let n = rustix::io::read(&fd, &mut chunk)?;
            if n == 0 {
                break;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(start..self.buf.len())
    }

    fn text(&self, range: &std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&self.buf[range.clone()]).unwrap_or_default()
    }
}
