//! A real cgroup v1 memory cgroup with a limit, for the kernel's own counters and OOM kills.

use std::path::PathBuf;

/// A real cgroup v1 memory cgroup at `/sys/fs/cgroup/memory/<path>` with a limit, for
/// tests that need the kernel's own counters and OOM kills (this machine has the v1 memory
/// controller). On drop its processes are killed and the
/// directories it created removed (shared parents that are still in use stay). Needs root;
/// panics, never skips, without the controller.
pub struct MemoryCgroup {
    created: Vec<PathBuf>,
    path: PathBuf,
}

impl MemoryCgroup {
    /// The v1 memory controller's mount.
    pub const ROOT: &str = "/sys/fs/cgroup/memory";

    /// Creates `path` (e.g. `kubepods/burstable/pod<uid>/<container id>`) and limits it
    /// to `limit_bytes`.
    pub fn create(path: &str, limit_bytes: u64) -> Self {
        let root = PathBuf::from(Self::ROOT);
        assert!(
            root.join("memory.limit_in_bytes").exists(),
            "no cgroup v1 memory controller at {}: these tests need one",
            root.display()
        );
        let mut created = Vec::new();
        let mut dir = root;
        for part in path.split('/') {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                created.push(dir.clone());
            }
        }
        std::fs::write(dir.join("memory.limit_in_bytes"), limit_bytes.to_string())
            .expect("set memory.limit_in_bytes");
        MemoryCgroup { created, path: dir }
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs `script` with `sh -c` inside the cgroup (it joins before it runs anything).
    pub fn spawn(&self, script: &str) -> std::process::Child {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && {script}",
                self.path.display()
            ))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn sh")
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                break;
            }
            for pid in procs.lines() {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid])
                    .status();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
