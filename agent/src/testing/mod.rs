//! Test support (feature `test-support`), one module per test double: the real captured
//! fixtures and fake host trees the probes read like a node's `/` (here), real DNS servers
//! ([`dns`]), real Docker and containerd engines ([`engines`]), a real memory cgroup
//! ([`cgroup`]), a recorded Kubernetes API server ([`apiserver`]), reports that drift
//! as a node's do ([`drift`]), and journal files systemd writes ([`journal`]).

mod apiserver;
mod cgroup;
mod dns;
mod drift;
mod engines;
mod journal;

pub use self::{
    apiserver::FakeApiServer,
    cgroup::MemoryCgroup,
    dns::{DnsStub, Dnsmasq, StubMode},
    drift::drift,
    engines::{BUSYBOX_IMAGE, Containerd, CriContainer, CriPod, CriPodSpec, Dockerd},
    journal::{JournalEntry, write_journal},
};

use std::path::PathBuf;

use crate::host::HostRoot;

/// The captured real files in `tests/fixtures/real/` (their origins and licences in its
/// `SOURCES.md`). Panics, never skips, when they are missing.
pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/real");
    assert!(
        dir.is_dir(),
        "real fixtures not found at {}: they are part of the repository",
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
/// with half available, no swap, small kernel tables, and one filesystem mounted at `/`: a
/// 1 GiB tmpfs of the tree's own, nearly empty, so the disk probe's view of it does not
/// depend on how full the machine running the tests is. Needs root (tests run as root);
/// panics, never skips, without it.
pub struct FakeHost {
    dir: tempfile::TempDir,
    clock: std::sync::Arc<std::sync::Mutex<crate::host::Timex>>,
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

const GIB_KB: u64 = 1024 * 1024;

impl FakeHost {
    /// A healthy node.
    pub fn new() -> Self {
        let host = FakeHost {
            dir: tempfile::tempdir().expect("temporary directory"),
            clock: std::sync::Arc::new(std::sync::Mutex::new(crate::host::Timex::synchronised())),
        };
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1g,nr_inodes=100000", "tmpfs"])
            .arg(host.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            mounted,
            "cannot mount the fake host's tmpfs: the tests run as root (scripts/test checks)"
        );
        host.set_memory(8 * GIB_KB, 4 * GIB_KB, 0, 0);
        host.write("/proc/vmstat", "nr_free_pages 1000\noom_kill 0\n");
        host.write("/proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        host.write("/proc/pressure/cpu", "some avg10=1.00 avg60=0.50 avg300=0.20 total=100\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        host.write("/proc/pressure/io", "some avg10=0.10 avg60=0.30 avg300=0.70 total=2160\nfull avg10=0.00 avg60=0.01 avg300=0.30 total=1340\n");
        host.write("/proc/diskstats", " 254       0 vda 1846 59 112781 2240 1565 555 603220 4091 0 4145 6461 366 83 474928 102 411 28\n 254       1 vda1 1800 59 112000 2200 1500 555 600000 4000 0 4100 6400 366 83 474928 102 0 0\n");
        host.write("/proc/loadavg", "0.10 0.20 0.30 1/300 4242\n");
        host.write("/proc/uptime", "12345.67 20000.00\n");
        host.write("/proc/sys/kernel/pid_max", "4194304\n");
        host.write("/proc/sys/kernel/osrelease", "6.1.0-test\n");
        host.write("/proc/sys/fs/file-nr", "3000\t0\t9223372036854775807\n");
        host.write("/proc/sys/fs/inotify/max_user_instances", "128\n");
        host.write("/proc/sys/fs/inotify/max_user_watches", "8192\n");
        host.set_mounts(&[]);
        host.set_link("lo", false, "unknown", Some(true));
        host.set_link("eth0", true, "up", Some(true));
        host.write("/proc/net/route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\neth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n");
        host.set_net_counters(&[
            ("lo", [500, 0, 0, 500, 0, 0]),
            ("eth0", [90_000, 0, 0, 80_000, 0, 0]),
        ]);
        // A quiet kernel log (the kernel probe reads it when the tree has no /dev/kmsg).
        host.write("/var/log/kern.log", "");
        // A journal directory journald has not written to yet.
        std::fs::create_dir_all(host.root().path("/var/log/journal")).unwrap();
        host
    }

    /// The host root the probes read, with the tree's clock (synchronised until
    /// [`FakeHost::set_clock`]). An agent process given the tree's directory reads the
    /// machine's real clock instead.
    pub fn root(&self) -> HostRoot {
        HostRoot::new(self.dir.path()).with_clock(std::sync::Arc::clone(&self.clock))
    }

    /// Puts an interface in the tree's `/sys/class/net`: `physical` gives it a `device`
    /// link's directory, `carrier` `None` leaves the file out (an interface configured down,
    /// whose carrier the kernel refuses to read).
    pub fn set_link(&self, name: &str, physical: bool, operstate: &str, carrier: Option<bool>) {
        let base = format!("/sys/class/net/{name}");
        self.write(&format!("{base}/operstate"), &format!("{operstate}\n"));
        let flags = if carrier.is_some() {
            "0x1003"
        } else {
            "0x1002"
        };
        self.write(&format!("{base}/flags"), &format!("{flags}\n"));
        let carrier_path = self.root().path(&format!("{base}/carrier"));
        match carrier {
            Some(c) => self.write(&format!("{base}/carrier"), if c { "1\n" } else { "0\n" }),
            None => {
                let _ = std::fs::remove_file(carrier_path);
            }
        }
        if physical {
            std::fs::create_dir_all(self.root().path(&format!("{base}/device"))).unwrap();
        }
    }

    /// Writes `/proc/net/dev` with each interface's rx packets, errors, drops and tx
    /// packets, errors, drops (bytes and the other columns derived or zero).
    pub fn set_net_counters(&self, interfaces: &[(&str, [u64; 6])]) {
        let mut text = String::from(
            "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
        );
        for (name, [rp, re, rd, tp, te, td]) in interfaces {
            text.push_str(&format!(
                "{name:>6}: {} {rp} {re} {rd} 0 0 0 0 {} {tp} {te} {td} 0 0 0 0\n",
                rp * 1000,
                tp * 1000
            ));
        }
        self.write("/proc/net/dev", &text);
    }

    /// Sets what the tree's clock answers.
    pub fn set_clock(&self, clock: crate::host::Timex) {
        *self.clock.lock().unwrap_or_else(|p| p.into_inner()) = clock;
    }

    /// Writes a file at a host path, creating its directories.
    pub fn write(&self, host_path: &str, text: &str) {
        let path = self.root().path(host_path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dirs");
        std::fs::write(&path, text).expect("write fake host file");
    }

    /// Sets /proc/meminfo, in KiB as the kernel writes it: every line a 6.1 kernel writes
    /// (procfs-core's parser wants them all), free memory as available, the rest zero.
    pub fn set_memory(
        &self,
        total_kb: u64,
        available_kb: u64,
        swap_total_kb: u64,
        swap_free_kb: u64,
    ) {
        let lines = [
            ("MemTotal", total_kb),
            ("MemFree", available_kb),
            ("MemAvailable", available_kb),
            ("Buffers", 0),
            ("Cached", 0),
            ("SwapCached", 0),
            ("Active", 0),
            ("Inactive", 0),
            ("Active(anon)", 0),
            ("Inactive(anon)", 0),
            ("Active(file)", 0),
            ("Inactive(file)", 0),
            ("Unevictable", 0),
            ("Mlocked", 0),
            ("SwapTotal", swap_total_kb),
            ("SwapFree", swap_free_kb),
            ("Zswap", 0),
            ("Zswapped", 0),
            ("Dirty", 0),
            ("Writeback", 0),
            ("AnonPages", 0),
            ("Mapped", 0),
            ("Shmem", 0),
            ("KReclaimable", 0),
            ("Slab", 0),
            ("SReclaimable", 0),
            ("SUnreclaim", 0),
            ("KernelStack", 0),
            ("PageTables", 0),
            ("SecPageTables", 0),
            ("NFS_Unstable", 0),
            ("Bounce", 0),
            ("WritebackTmp", 0),
            ("CommitLimit", total_kb / 2 + swap_total_kb),
            ("Committed_AS", 0),
            ("VmallocTotal", 34_359_738_367),
            ("VmallocUsed", 0),
            ("VmallocChunk", 0),
            ("Percpu", 0),
            ("HardwareCorrupted", 0),
            ("AnonHugePages", 0),
        ];
        let mut text = String::new();
        for (key, kb) in lines {
            text.push_str(&format!("{:<16}{kb:>8} kB\n", format!("{key}:")));
        }
        text.push_str("HugePages_Total:       0\nHugePages_Free:        0\nHugePages_Rsvd:        0\nHugePages_Surp:        0\n");
        text.push_str("Hugepagesize:       2048 kB\nHugetlb:               0 kB\n");
        self.write("/proc/meminfo", &text);
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
