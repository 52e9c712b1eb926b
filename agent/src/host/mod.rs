//! The host root: every path a probe reads goes through it.
//!
//! In a DaemonSet the node's `/` is mounted at `/host` and the agent runs with
//! `--host-root /host`, like node_exporter's `--path.rootfs`; tests point the same code at a
//! temporary tree. Probes never name `/proc` directly. The node's clock is part of it too
//! ([`HostRoot::clock`]: adjtimex(2), or what a test sets).
//!
//! The kernel's text files are parsed by procfs-core wherever it has a parser
//! ([`HostRoot::parse`]: `Meminfo`, `VmStat`, `LoadAverage`, `Uptime`, a process's `Stat`;
//! the pressure files line by line): its parsers read from any reader, so they read the
//! host's files under the host root. `crate::parse` keeps what it does not cover. (The `procfs` crate itself and `sysinfo` read only this process's own
//! `/proc`, which in a pod is not the node's.)

pub mod clock;

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

pub use self::clock::Timex;

use crate::parse::{
    ParseError,
    mountinfo::{self, MountInfo},
};

/// A host file that could not be read, or did not hold what the kernel writes there.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file, under the host root.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file did not hold what the kernel writes there.
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file, under the host root.
        path: PathBuf,
        /// What was wrong, with the line.
        reason: String,
    },
}

impl HostError {
    /// Whether the file does not exist (a module not loaded, a kernel without the feature).
    pub fn is_not_found(&self) -> bool {
        matches!(self, HostError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The directory that stands for the node's `/`, and the node's clock.
#[derive(Debug, Clone)]
pub struct HostRoot {
    dir: PathBuf,
    /// A clock a test sets; the kernel's (adjtimex) without one.
    clock: Option<Arc<Mutex<Timex>>>,
}

impl PartialEq for HostRoot {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir
    }
}

impl Eq for HostRoot {}

impl HostRoot {
    /// A host root at `dir`, with the kernel's clock (the clock is not namespaced: a
    /// container reads the node's).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        HostRoot {
            dir: dir.into(),
            clock: None,
        }
    }

    /// The same root with a clock of the caller's (fake host trees).
    pub fn with_clock(mut self, clock: Arc<Mutex<Timex>>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The clock's discipline now.
    pub fn clock(&self) -> Result<Timex, HostError> {
        match &self.clock {
            Some(c) => Ok(*c.lock().unwrap_or_else(|p| p.into_inner())),
            None => clock::read().map_err(|source| HostError::Io {
                path: "adjtimex(2)".into(),
                source,
            }),
        }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The real path of a host path: `/proc/meminfo` -> `<root>/proc/meminfo`.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.dir.join(host_path.trim_start_matches('/'))
    }

    /// The real path of a host path whose last part may be a symbolic link, followed as
    /// the node would: an absolute target (`/var/lib/kubelet/pki/kubelet-client-….pem`, as
    /// the kubelet writes them) is taken under the root, not in the agent's own
    /// filesystem. Gives up after 8 links (a loop) with the last path reached.
    pub fn resolve(&self, host_path: &str) -> PathBuf {
        let mut current = host_path.to_owned();
        for _ in 0..8 {
            let Ok(target) = fs::read_link(self.path(&current)) else {
                break;
            };
            let target = target.to_string_lossy().into_owned();
            current = if target.starts_with('/') {
                target
            } else {
                let parent = current.rsplit_once('/').map_or("", |(p, _)| p);
                format!("{parent}/{target}")
            };
        }
        self.path(&current)
    }

    /// Reads a host file as text; the error names the file.
    pub fn read(&self, host_path: &str) -> Result<String, HostError> {
        let path = self.path(host_path);
        fs::read_to_string(&path).map_err(|source| HostError::Io { path, source })
    }

    /// Reads a host file that holds one unsigned number (`/proc/sys/...`).
    pub fn read_u64(&self, host_path: &str) -> Result<u64, HostError> {
        let text = self.read(host_path)?;
        text.trim().parse().map_err(|_| HostError::Parse {
            path: self.path(host_path),
            reason: format!("expected a number, found {:?}", text.trim()),
        })
    }

    /// Like [`HostRoot::read_u64`], but `None` when the file does not exist (a kernel
    /// module that is not loaded, a kernel without the feature).
    pub fn read_u64_if_present(&self, host_path: &str) -> Result<Option<u64>, HostError> {
        match self.read_u64(host_path) {
            Err(e) if e.is_not_found() => Ok(None),
            other => other.map(Some),
        }
    }

    /// Like [`HostRoot::read`], but `None` when the file does not exist.
    pub fn read_if_present(&self, host_path: &str) -> Result<Option<String>, HostError> {
        match self.read(host_path) {
            Err(e) if e.is_not_found() => Ok(None),
            other => other.map(Some),
        }
    }

    /// A parse error of a file under the host root.
    pub fn parse_error(&self, host_path: &str, err: ParseError) -> HostError {
        HostError::Parse {
            path: self.path(host_path),
            reason: err.to_string(),
        }
    }

    /// Reads a host file with procfs-core's parser for it; errors name the file.
    pub fn parse<T: procfs_core::FromRead>(&self, host_path: &str) -> Result<T, HostError> {
        let path = self.path(host_path);
        let bytes = fs::read(&path).map_err(|source| HostError::Io {
            path: path.clone(),
            source,
        })?;
        T::from_read(bytes.as_slice()).map_err(|e| HostError::Parse {
            path,
            reason: parse_failure(&e, &bytes),
        })
    }

    /// The host's mount table: PID 1's, which is the host's even when the agent runs in its
    /// own mount namespace; this process's when PID 1's cannot be read.
    pub fn mount_table(&self) -> Result<Vec<MountInfo>, HostError> {
        let (path, text) = match self.read_if_present("/proc/1/mountinfo") {
            Ok(Some(text)) => ("/proc/1/mountinfo", text),
            _ => ("/proc/self/mountinfo", self.read("/proc/self/mountinfo")?),
        };
        mountinfo::parse(&text).map_err(|e| self.parse_error(path, e))
    }

    /// Size and use of the filesystem holding a host path.
    pub fn fs_usage(&self, host_path: &str) -> Result<FsUsage, HostError> {
        let path = self.path(host_path);
        let st = rustix::fs::statvfs(&path).map_err(|e| HostError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        let frsize = st.f_frsize;
        Ok(FsUsage {
            bytes_total: st.f_blocks * frsize,
            bytes_used: st.f_blocks.saturating_sub(st.f_bfree) * frsize,
            bytes_available: st.f_bavail * frsize,
            inodes_total: st.f_files,
            inodes_free: st.f_ffree,
        })
    }
}

/// Why procfs-core refused a file, said for an operator: what it could not read and how
/// the file begins (procfs-core's own text for a malformed file names its source line and
/// asks for a bug report, which would mislead here: the file is what is wrong).
fn parse_failure(error: &procfs_core::ProcError, bytes: &[u8]) -> String {
    let what = match error {
        procfs_core::ProcError::InternalError(e) => e
            .msg
            .trim_start_matches("Internal Unwrap Error: ")
            .to_owned(),
        other => other.to_string(),
    };
    let text = String::from_utf8_lossy(bytes);
    let start: String = text.chars().take(80).collect();
    format!("{what}; the file begins {start:?}")
}

/// What `statvfs` says of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// Size.
    pub bytes_total: u64,
    /// Used (size minus free, the reserved blocks counting as used).
    pub bytes_used: u64,
    /// Available to unprivileged writers: what the kubelet counts.
    pub bytes_available: u64,
    /// Inodes.
    pub inodes_total: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

impl Default for HostRoot {
    fn default() -> Self {
        HostRoot::new("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_followed_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        std::fs::create_dir_all(root.path("/var/lib/kubelet/pki")).unwrap();
        std::fs::write(root.path("/var/lib/kubelet/pki/dated.pem"), "x").unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, root.path(&format!("/var/lib/kubelet/pki/{name}")))
                .unwrap()
        };
        link("/var/lib/kubelet/pki/dated.pem", "absolute.pem");
        link("absolute.pem", "relative.pem");
        link("loop-b", "loop-a");
        link("loop-a", "loop-b");
        for name in ["absolute.pem", "relative.pem"] {
            assert_eq!(
                root.resolve(&format!("/var/lib/kubelet/pki/{name}")),
                root.path("/var/lib/kubelet/pki/dated.pem")
            );
        }
        assert!(!root.resolve("/var/lib/kubelet/pki/loop-a").is_file());
    }
}
