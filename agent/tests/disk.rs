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

/// Where the kubelet mounts the CSI volume of kubernetes/cloud-provider-openstack #1248's
/// pod (its cinder CSI node plugin's log names the path).
const PVC_MOUNT: &str = "/var/lib/kubelet/pods/d1e865ca-a911-473c-95ba-d9cbdfce67cc/volumes/kubernetes.io~csi/pvc-fa9fa290-bc41-4dd5-9263-63057d8575d9/mount";

/// A real ext4 filesystem mounted where the kubelet mounts a CSI volume, named through the
/// recorded API server: the pod by its UID, the claim by the PV's `claimRef` (asked for by
/// name on first sight, so named from a later run on), then filled past 15% and 3%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_s_volume_is_named_and_judged_by_its_own_lines() {
    use nodemedic_agent::{
        config::{DiskThresholds, KubernetesConfig},
        kubernetes::{view::KubeSlot, watch::connect},
        testing::{FakeApiServer, fixture},
    };
    let built = |name: &str| -> serde_json::Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kube")
            .join(name);
        serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
    };
    let mut node: serde_json::Value =
        serde_json::from_str(&fixture("pods/troubleshoot-nodes-healthy.min.json")).unwrap();
    let mut node = node["items"][0].take();
    node["metadata"]["name"] = "node-1".into();
    let mut pods: serde_json::Value = serde_json::from_str(&fixture(
        "pods/troubleshoot-pods-message-pending-pod-resources.json",
    ))
    .unwrap();
    let mut pod = pods["items"][0].take();
    pod["metadata"]["name"] = "task-pv-deployment-77bcbf5fc6-48lph".into();
    pod["metadata"]["namespace"] = "default".into();
    pod["metadata"]["uid"] = "d1e865ca-a911-473c-95ba-d9cbdfce67cc".into();
    pod["spec"]["nodeName"] = "node-1".into();
    let server = FakeApiServer::start().await;
    server.set("pods", vec![pod]);
    server.set("nodes", vec![node]);
    server.set("events", vec![]);
    server.set(
        "persistentvolumes",
        vec![built("built-around-issue-cpo-1248-cinder-csi.pv.json")],
    );
    let dir = tempfile::tempdir().unwrap();
    let config = KubernetesConfig::default();
    let (view, _client) = connect(
        Some(&server.kubeconfig(dir.path())),
        "node-1",
        &config.watch_options(),
    )
    .await
    .unwrap()
    .expect("not node-only");
    let slot = KubeSlot::default();
    slot.set(std::sync::Arc::clone(&view)).unwrap();

    let host = FakeHost::new();
    let volume = Mounted::ext4_on_loop(&host, PVC_MOUNT, 32);
    let probe = std::sync::Arc::new(DiskProbe::new(DiskThresholds::default(), slot));
    let measure = |probe: &std::sync::Arc<DiskProbe>| {
        let (probe, root) = (std::sync::Arc::clone(probe), host.root());
        tokio::task::spawn_blocking(move || {
            let out = probe
                .run(&ProbeContext {
                    host: root,
                    now: SystemTime::now(),
                })
                .unwrap();
            let Section::Disk(disk) = out.section else {
                panic!("not a disk section")
            };
            (disk.mounts, out.findings)
        })
    };
    assert!(
        view.wait_synced(Duration::from_secs(5)).synced(),
        "the recorded pods and node are listed"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        let (mounts, _) = measure(&probe).await.unwrap();
        let m = mounts
            .into_iter()
            .find(|m| m.mount_point == PVC_MOUNT)
            .expect("the volume is measured");
        if !m.claim.is_empty() {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "never named: {m:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (m.namespace.as_str(), m.pod.as_str(), m.claim.as_str()),
        (
            "default",
            "task-pv-deployment-77bcbf5fc6-48lph",
            "task-pv-claim"
        )
    );
    assert_eq!(m.roles, [nodemedic_proto::v1::MountRole::Volume as i32]);

    // Fill it to 10% available: a warning; to 2%: critical. Named by the claim.
    let fill_to = |available_percent: u64, name: &str, m: &Mount| {
        let keep = m.bytes_total * available_percent / 100;
        let bytes = m.bytes_available.saturating_sub(keep);
        volume.fill(name, bytes);
        fs::File::open(volume.path.join(name))
            .unwrap()
            .sync_all()
            .unwrap();
    };
    fill_to(10, "a", &m);
    let (mounts, findings) = measure(&probe).await.unwrap();
    let f = findings
        .iter()
        .find(|f| f.check == "disk.pvc_filling")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(f.subject, "default/task-pv-claim");
    assert_eq!(f.severity(), Severity::Warning);
    assert_eq!(f.text("pod"), Some("task-pv-deployment-77bcbf5fc6-48lph"));
    assert!(
        !findings.iter().any(|f| f.check == "disk.space"),
        "judged as a claim, not as any filesystem: {findings:#?}"
    );
    let m = mounts
        .into_iter()
        .find(|m| m.mount_point == PVC_MOUNT)
        .unwrap();
    fill_to(2, "b", &m);
    let (_, findings) = measure(&probe).await.unwrap();
    let f = findings
        .iter()
        .find(|f| f.check == "disk.pvc_filling")
        .unwrap();
    assert_eq!(f.severity(), Severity::Critical, "{}", f.message);
    assert!(
        f.message
            .contains("PersistentVolumeClaim default/task-pv-claim")
    );
}
