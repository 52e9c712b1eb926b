//! The disk probe on real tmpfs mounts of a known size, filled past each threshold. Needs
//! root (mount); fails, never skips, without it.

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
use nodemedic_proto::v1::{DiskSection, Finding, Mount, Severity};

const MIB: u64 = 1024 * 1024;

/// A tmpfs mounted at `<host>/var/lib/kubelet`, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(host: &FakeHost, options: &str) -> Self {
        let path = host.root().path("/var/lib/kubelet");
        fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -t tmpfs failed: this test needs root (CI runs as root)"
        );
        let tmpfs = Tmpfs { path };
        tmpfs.publish(host);
        tmpfs
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
        fields[4] = "/var/lib/kubelet";
        host.set_mounts(&[&fields.join(" ")]);
    }

    fn fill(&self, name: &str, bytes: u64) {
        fs::write(self.path.join(name), vec![7u8; bytes as usize]).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn run(probe: &DiskProbe, host: &FakeHost, now: SystemTime) -> (Mount, Vec<Finding>) {
    let ctx = ProbeContext {
        host: host.root(),
        now,
    };
    let out = probe.run(&ctx).unwrap();
    let Section::Disk(DiskSection { mounts }) = out.section else {
        panic!("not a disk section")
    };
    let kubelet = mounts
        .into_iter()
        .find(|m| m.mount_point == "/var/lib/kubelet")
        .expect("the tmpfs is measured");
    let findings = out
        .findings
        .into_iter()
        .filter(|f| f.subject == "/var/lib/kubelet")
        .collect();
    (kubelet, findings)
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
    let tmpfs = Tmpfs::mount(&host, "size=64m,nr_inodes=10000");
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
    let tmpfs = Tmpfs::mount(&host, "size=16m,nr_inodes=1000");
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
