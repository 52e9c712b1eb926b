//! The disk probe on real mounts: tmpfs mounts of a known size filled past each threshold,
//! and an ext4 filesystem on a loop device written to, its counters in the kernel's own
//! `/proc/diskstats`. Needs root (mount); fails, never skips, without it.

use std::{
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, SystemTime},
};

use nodemedic_agent::{
    probes::disk::DiskProbe,
    probes::{Probe, ProbeContext, Section},
    testing::FakeHost,
};
use nodemedic_proto::v1::{Finding, Mount, Severity};

const MIB: u64 = 1024 * 1024;

/// A filesystem mounted inside the fake host's tree, unmounted (and its loop device
/// detached) on drop.
struct Mounted {
    path: PathBuf,
    /// Where the node sees it.
    node_path: &'static str,
}

impl Mounted {
    /// A tmpfs with `options` at `/var/lib/kubelet`.
    fn tmpfs(host: &FakeHost, options: &str) -> Self {
        Self::mount(
            host,
            "/var/lib/kubelet",
            &["-t", "tmpfs", "-o", options, "tmpfs"],
        )
    }

    /// A fresh ext4 filesystem of `mib` MiB on a loop device at `node_path`.
    fn ext4_on_loop(host: &FakeHost, node_path: &'static str, mib: u64) -> Self {
        let image = host.root().path("/disk.img");
        fs::File::create(&image)
            .and_then(|f| f.set_len(mib * MIB))
            .unwrap();
        let status = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .status()
            .expect("run mkfs.ext4 (e2fsprogs)");
        assert!(status.success(), "mkfs.ext4 failed");
        Self::mount(host, node_path, &["-o", "loop", image.to_str().unwrap()])
    }

    fn mount(host: &FakeHost, node_path: &'static str, args: &[&str]) -> Self {
        let path = host.root().path(node_path);
        fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(args)
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount {args:?} failed: this test needs root (CI runs as root)"
        );
        let mounted = Mounted { path, node_path };
        mounted.publish(host);
        mounted
    }

    /// Copies the kernel's own mountinfo line for this mount into the fake host's table,
    /// with the mount point as the node would see it.
    fn publish(&self, host: &FakeHost) {
        let real = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let target = self.path.to_str().unwrap();
        let line = real
            .lines()
            .rfind(|l| l.split_whitespace().nth(4) == Some(target))
            .unwrap_or_else(|| panic!("{target} not in /proc/self/mountinfo"));
        let mut fields: Vec<&str> = line.split(' ').collect();
        fields[4] = self.node_path;
        host.set_mounts(&[&fields.join(" ")]);
    }

    fn fill(&self, name: &str, bytes: u64) {
        fs::write(self.path.join(name), vec![7u8; bytes as usize]).unwrap();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // -d: a loop device goes with its mount.
        let _ = Command::new("umount").arg("-d").arg(&self.path).status();
    }
}

fn run(probe: &DiskProbe, host: &FakeHost, now: SystemTime) -> (Mount, Vec<Finding>) {
    run_at(probe, host, now, "/var/lib/kubelet")
}

fn run_at(
    probe: &DiskProbe,
    host: &FakeHost,
    now: SystemTime,
    node_path: &str,
) -> (Mount, Vec<Finding>) {
    let ctx = ProbeContext {
        host: host.root(),
        now,
    };
    let out = probe.run(&ctx).unwrap();
    let Section::Disk(disk) = out.section else {
        panic!("not a disk section")
    };
    let mount = disk
        .mounts
        .into_iter()
        .find(|m| m.mount_point == node_path)
        .expect("the filesystem is measured");
    let findings = out
        .findings
        .into_iter()
        .filter(|f| f.subject == node_path)
        .collect();
    (mount, findings)
}

fn checks(findings: &[Finding]) -> Vec<(&str, Severity)> {
    findings
        .iter()
        .map(|f| (f.check.as_str(), f.severity()))
        .collect()
}

#[test]
fn space_thresholds_and_fill_forecast_on_a_real_tmpfs() {
    let host = FakeHost::new();
    let tmpfs = Mounted::tmpfs(&host, "size=64m,nr_inodes=10000");
    let probe = DiskProbe::default();
    let t0 = SystemTime::now();

    let (m, findings) = run(&probe, &host, t0);
    assert_eq!(m.bytes_total, 64 * MIB);
    assert_eq!(m.fs_type, "tmpfs");
    assert!(findings.is_empty(), "{findings:?}");

    // 85% used: below the 20% warning line, above the kubelet's 10% eviction line.
    tmpfs.fill("a", 54 * MIB);
    let (m, findings) = run(&probe, &host, t0 + Duration::from_secs(600));
    assert_eq!(checks(&findings), [("disk.space", Severity::Warning)]);
    assert!(
        findings[0].message.contains("nodefs.available<10%"),
        "{}",
        findings[0].message
    );
    assert_eq!(
        findings[0].number("available_bytes"),
        Some(m.bytes_available as f64)
    );

    // 94% used: past the eviction line. Three samples 10 minutes apart give a real fill
    // rate and a forecast from it.
    tmpfs.fill("b", 6 * MIB);
    let (m, findings) = run(&probe, &host, t0 + Duration::from_secs(1200));
    let rate = m
        .fill_rate_bytes_per_hour
        .expect("a rate from three samples over 20 minutes");
    // Least squares through (0, u0), (10m, u0+54Mi), (20m, u0+60Mi): 30 MiB per 10 minutes.
    assert!(
        (rate - 180.0 * MIB as f64).abs() < 2.0 * MIB as f64,
        "rate {rate}"
    );
    let hours = m.full_in_hours.unwrap();
    assert!((hours - m.bytes_available as f64 / rate).abs() < 1e-9);
    assert_eq!(
        checks(&findings),
        [
            ("disk.space", Severity::Critical),
            ("disk.fill_rate", Severity::Critical)
        ]
    );
    assert!(
        findings[1].message.contains("full in"),
        "{}",
        findings[1].message
    );

    // Deleting the files: back to healthy, the rate turns negative, no forecast.
    fs::remove_file(tmpfs.path.join("a")).unwrap();
    fs::remove_file(tmpfs.path.join("b")).unwrap();
    let (m, findings) = run(&probe, &host, t0 + Duration::from_secs(1800));
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(m.full_in_hours, None);
}

#[test]
fn inode_exhaustion_and_read_only_remount_on_a_real_tmpfs() {
    let host = FakeHost::new();
    let tmpfs = Mounted::tmpfs(&host, "size=16m,nr_inodes=1000");
    let probe = DiskProbe::default();
    for i in 0..970 {
        fs::write(tmpfs.path.join(format!("f{i}")), b"").unwrap();
    }
    let (m, findings) = run(&probe, &host, SystemTime::now());
    assert_eq!(m.inodes_total, 1000);
    assert!(m.inodes_available < 50, "{m:?}");
    assert_eq!(checks(&findings), [("disk.inodes", Severity::Critical)]);
    assert!(
        findings[0].message.contains("nodefs.inodesFree<5%"),
        "{}",
        findings[0].message
    );

    let status = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&tmpfs.path)
        .status()
        .unwrap();
    assert!(status.success());
    tmpfs.publish(&host);
    let (m, findings) = run(&probe, &host, SystemTime::now());
    assert!(m.read_only);
    assert_eq!(
        checks(&findings),
        [
            ("disk.inodes", Severity::Critical),
            ("disk.readonly", Severity::Critical)
        ]
    );
}

#[test]
fn a_loop_devices_writes_show_in_its_busy_time_and_throughput() {
    let host = FakeHost::new();
    let disk = Mounted::ext4_on_loop(&host, "/var/lib/containerd", 96);
    let probe = DiskProbe::default();
    // The kernel's own counters, copied in at each run as the node's /proc holds them.
    let run = |now| {
        host.write(
            "/proc/diskstats",
            &fs::read_to_string("/proc/diskstats").unwrap(),
        );
        run_at(&probe, &host, now, "/var/lib/containerd")
    };
    let t0 = SystemTime::now();
    let (m, _) = run(t0);
    assert!(m.device_id.starts_with("7:"), "a loop device: {m:?}");
    assert_eq!(m.busy_percent, None, "no rate from one reading");

    // 48 MiB written past the page cache, each block synchronously.
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=48", "oflag=direct,dsync"])
        .arg(format!("of={}", disk.path.join("layer").display()))
        .status()
        .expect("run dd");
    assert!(status.success());
    let t1 = SystemTime::now();
    let (m, _) = run(t1);
    let span = t1.duration_since(t0).unwrap().as_secs_f64();
    let written = m.write_bytes_per_second.expect("a rate from two readings") * span;
    assert!(
        written >= (48 * MIB) as f64,
        "{written} bytes counted for 48 MiB written: {m:?}"
    );
    let busy = m.busy_percent.unwrap();
    assert!(busy > 0.0 && busy <= 100.0, "busy {busy}%");
}
