//! Finding the pods' memory cgroups under the host root and reading them: the v1 memory
//! controller (`/sys/fs/cgroup/memory/kubepods[.slice]/…`) or the v2 unified tree
//! (`/sys/fs/cgroup/kubepods[.slice]/…`), with the cgroupfs or the systemd driver's names;
//! and the same cgroups' CPU bandwidth files (v1's `cpu` controller mirrors the memory
//! controller's tree; v2 keeps both in one directory).

use std::path::{Path, PathBuf};

use crate::{
    host::{HostError, HostRoot},
    parse::{
        cgroup_cpu::{self, CgroupCpu},
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

/// Where v1's CPU controller is mounted: joined with `cpuacct` on most distributions.
const V1_CPU_ROOTS: &[&str] = &["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"];

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
    /// Its memory cgroup's directory.
    pub dir: PathBuf,
    /// Its CPU cgroup's directory, when the node has a CPU controller.
    pub cpu_dir: Option<PathBuf>,
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
    let cpu_root = match version {
        Version::V2 => Some(root.clone()),
        Version::V1 => {
            let name = root.file_name()?;
            V1_CPU_ROOTS
                .iter()
                .map(|r| host.path(r).join(name))
                .find(|p| p.join("cpu.stat").exists())
        }
    };
    if let Some(cpu_root) = cpu_root {
        for f in &mut found {
            f.cpu_dir = f.dir.strip_prefix(&root).ok().map(|rel| cpu_root.join(rel));
        }
    }
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
            Some(pod) if pod.container_id.is_some() => found.push(Found {
                dir: path,
                cpu_dir: None,
                pod,
            }),
            Some(pod) => {
                found.push(Found {
                    dir: path.clone(),
                    cpu_dir: None,
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

/// Reads one cgroup's CPU bandwidth files (`dir` is its [`Found::cpu_dir`]).
pub fn read_cpu(version: Version, dir: &Path) -> Result<CgroupCpu, HostError> {
    let io = |source: std::io::Error| HostError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Files::open(dir).map_err(io)?;
    let stat = files.read("cpu.stat").map_err(io)?;
    let parsed = match version {
        Version::V1 => {
            let quota = files.read("cpu.cfs_quota_us").map_err(io)?;
            let period = files.read("cpu.cfs_period_us").map_err(io)?;
            cgroup_cpu::v1(files.text(&stat), files.text(&quota), files.text(&period))
        }
        Version::V2 => {
            let max = files.read("cpu.max").map_err(io)?;
            cgroup_cpu::v2(files.text(&stat), files.text(&max))
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
