//! Test support (feature `test-support`): the shared real fixtures, and fake host trees
//! that the probes read like a node's `/`.

use std::path::PathBuf;

use crate::host::HostRoot;

/// The captured real files under `shared/fixtures/real` beside the repository
/// (`NODEMEDIC_FIXTURES` overrides). Panics, never skips, when they are missing.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("NODEMEDIC_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/real")
        });
    assert!(
        dir.is_dir(),
        "real fixtures not found at {}: clone the repository beside shared/ or set NODEMEDIC_FIXTURES",
        dir.display()
    );
    dir
}

/// The text of a real fixture, by its path under `fixtures/real`.
pub fn fixture(rel: &str) -> String {
    let path = fixtures_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A temporary tree that looks like a healthy node's `/` to the probes: 8 GiB of memory
/// with half available, no swap, small kernel tables, and one filesystem (the temporary
/// directory's own) mounted at `/`.
pub struct FakeHost {
    dir: tempfile::TempDir,
}

const GIB_KB: u64 = 1024 * 1024;

impl FakeHost {
    /// A healthy node.
    pub fn new() -> Self {
        let host = FakeHost {
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        host.set_memory(8 * GIB_KB, 4 * GIB_KB, 0, 0);
        host.write("/proc/vmstat", "nr_free_pages 1000\noom_kill 0\n");
        host.write("/proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        host.write("/proc/pressure/cpu", "some avg10=1.00 avg60=0.50 avg300=0.20 total=100\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        host.write("/proc/loadavg", "0.10 0.20 0.30 1/300 4242\n");
        host.write("/proc/uptime", "12345.67 20000.00\n");
        host.write("/proc/sys/kernel/pid_max", "4194304\n");
        host.write("/proc/sys/kernel/osrelease", "6.1.0-test\n");
        host.write("/proc/sys/fs/file-nr", "3000\t0\t9223372036854775807\n");
        host.set_mounts(&[]);
        host
    }

    /// The host root the probes read.
    pub fn root(&self) -> HostRoot {
        HostRoot::new(self.dir.path())
    }

    /// Writes a file at a host path, creating its directories.
    pub fn write(&self, host_path: &str, text: &str) {
        let path = self.root().path(host_path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dirs");
        std::fs::write(&path, text).expect("write fake host file");
    }

    /// Sets /proc/meminfo, in KiB as the kernel writes it.
    pub fn set_memory(
        &self,
        total_kb: u64,
        available_kb: u64,
        swap_total_kb: u64,
        swap_free_kb: u64,
    ) {
        self.write(
            "/proc/meminfo",
            &format!(
                "MemTotal:       {total_kb} kB\nMemFree:        {available_kb} kB\nMemAvailable:   {available_kb} kB\n\
                 Buffers:        0 kB\nCached:         0 kB\nSwapTotal:      {swap_total_kb} kB\nSwapFree:       {swap_free_kb} kB\n"
            ),
        );
    }

    /// Sets PID 1's mount table: `/` on the tree's own filesystem, plus `extra` mountinfo
    /// lines (whose mount points must exist under the tree to be measured).
    pub fn set_mounts(&self, extra: &[&str]) {
        let mut text = String::from("21 0 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n");
        text.push_str(
            "22 21 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw\n",
        );
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        self.write("/proc/1/mountinfo", &text);
    }
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}
