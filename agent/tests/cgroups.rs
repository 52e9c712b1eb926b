//! The cgroups probe on real memory cgroups: the tests make cgroup v1 memory cgroups in
//! the kubelet's layout (`kubepods/burstable/pod<uid>/<container id>`, this machine has
//! the v1 memory controller), put real processes in them that allocate step by step, and
//! check what the kernel reports: usage, limit, growth and the minutes left, limit hits,
//! and a real OOM kill. The v2 tree is built from the kernel's documented file formats
//! (v2's memory controller cannot run here beside v1), named through the Kubernetes API.
//! Names from the CRI come from a pod started through a real containerd.
//! Needs root, python3, docker.io, containerd and busybox-static (scripts/test installs
//! them); fails, never skips, without them.

use std::{
    path::Path,
    process::Child,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use nodemedic_agent::{
    config::{CgroupsConfig, DiskThresholds, ImagesConfig, KubernetesConfig},
    kubernetes::{view::KubeSlot, watch::connect},
    probes::cgroups::CgroupsProbe,
    probes::{Probe, ProbeContext, Section},
    testing::{
        Containerd, CriContainer, CriPodSpec, Dockerd, FakeApiServer, FakeHost, MemoryCgroup,
    },
    units::Percent,
};
use nodemedic_proto::v1::{CgroupsSection, Finding, Severity};

const MIB: u64 = 1 << 20;

/// A pod UID and a container ID unique to this test run.
fn ids(tag: u32) -> (String, String) {
    let n = std::process::id();
    (
        format!("{n:08x}-{tag:04x}-4000-8000-00000000c900"),
        format!("{n:032x}{tag:032x}"),
    )
}

/// A real cgroup `kubepods/burstable/pod<uid>/<cid>` in a subtree of this test's own, and
/// a fake host whose `/sys/fs/cgroup/memory/kubepods` is that subtree.
fn pod_cgroup(tag: u32, limit: u64) -> (FakeHost, MemoryCgroup, String, String) {
    let (uid, cid) = ids(tag);
    let top = format!("nodemedic-test-{}-{tag}", std::process::id());
    let cgroup = MemoryCgroup::create(&format!("{top}/kubepods/burstable/pod{uid}/{cid}"), limit);
    let host = FakeHost::new();
    let link = host.root().path("/sys/fs/cgroup/memory/kubepods");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(
        Path::new(MemoryCgroup::ROOT).join(&top).join("kubepods"),
        &link,
    )
    .unwrap();
    (host, cgroup, uid, cid)
}

/// A process in `cgroup` that allocates (and touches) `step_mib` every `every_ms`, `steps`
/// times, then holds it.
fn allocate(cgroup: &MemoryCgroup, step_mib: u64, every_ms: u64, steps: u64) -> Child {
    cgroup.spawn(&format!(
        "exec python3 -c 'import time\nheld = []\nfor _ in range({steps}):\n    held.append(b\"x\" * ({step_mib} << 20))\n    time.sleep({every_ms} / 1000)\ntime.sleep(600)'"
    ))
}

/// The probe, walking at every run (the tests sample faster than the default 30 s).
fn probe(config: CgroupsConfig, kube: KubeSlot) -> CgroupsProbe {
    let config = CgroupsConfig {
        every: Duration::ZERO,
        ..config
    };
    let images = ImagesConfig::default();
    CgroupsProbe::new(
        config,
        images.sockets(),
        images.timeout,
        DiskThresholds::default().nodefs_warn_available,
        kube,
    )
}

fn run(probe: &CgroupsProbe, host: &FakeHost) -> (CgroupsSection, Vec<Finding>) {
    let out = probe
        .run(&ProbeContext {
            host: host.root(),
            now: SystemTime::now(),
        })
        .expect("the cgroups probe runs");
    let Section::Cgroups(section) = out.section else {
        panic!("not a cgroups section")
    };
    (section, out.findings)
}

/// Runs the probe every 200 ms until `pick` finds what it wants, for at most `within`.
fn until<T>(
    probe: &CgroupsProbe,
    host: &FakeHost,
    within: Duration,
    what: &str,
    mut pick: impl FnMut(&CgroupsSection, &[Finding]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let (section, findings) = run(probe, host);
        if let Some(found) = pick(&section, &findings) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {section:#?} {findings:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_container_growing_to_its_limit_is_seen_coming_then_oom_killed() {
    let (host, cgroup, uid, cid) = pod_cgroup(1, 96 * MIB);
    let config = CgroupsConfig {
        growth_min_span: Duration::from_secs(1),
        growth_window: Duration::from_secs(60),
        ..CgroupsConfig::default()
    };
    let probe = probe(config, KubeSlot::default());
    let subject = format!("pod {uid}/{}", &cid[..12]);

    // 8 MiB every 400 ms, up to 64 MiB: two thirds of the limit, growing.
    let mut child = allocate(&cgroup, 8, 400, 8);
    let f = until(
        &probe,
        &host,
        Duration::from_secs(20),
        "a forecast",
        |_, findings| {
            findings
                .iter()
                .find(|f| f.check == "pod.memory_near_limit" && f.subject == subject)
                .cloned()
        },
    );
    assert_eq!(f.number("limit_bytes").unwrap(), (96 * MIB) as f64);
    assert!(
        f.number("growth_bytes_per_minute").unwrap() > (100 * MIB) as f64,
        "{f:?}"
    );
    assert!(f.number("limit_in_minutes").unwrap() < 2.0, "{f:?}");
    assert!(f.message.contains("limit reached in"), "{}", f.message);
    assert_eq!(f.text("pod_uid").unwrap(), uid);
    assert_eq!(f.text("container_id").unwrap(), cid);

    // The section carries the kernel's own numbers. (The forecast can come from the
    // interpreter's start-up alone, page cache included, before its first step: wait for
    // the step in RSS.)
    let (version, usage) = until(
        &probe,
        &host,
        Duration::from_secs(10),
        "the first step in RSS",
        |section, _| {
            section
                .top
                .iter()
                .find(|u| u.container_id == cid && u.rss_bytes >= 8 * MIB)
                .map(|u| (section.cgroup_version.clone(), u.clone()))
        },
    );
    assert_eq!(version, "v1");
    assert_eq!(usage.limit_bytes, 96 * MIB);
    assert!(usage.working_set_bytes <= usage.usage_bytes);

    // Past the limit: the kernel kills it, and the cgroup's counter says so.
    child.kill().unwrap();
    child.wait().unwrap();
    let status = allocate(&cgroup, 32, 50, 10).wait().unwrap();
    assert!(!status.success(), "killed at the limit");
    let f = until(
        &probe,
        &host,
        Duration::from_secs(10),
        "the OOM kill",
        |_, findings| {
            findings
                .iter()
                .find(|f| f.check == "pod.oom_kills" && f.subject == subject)
                .cloned()
        },
    );
    assert_eq!(f.number("oom_kills").unwrap(), 1.0);
    assert_eq!(f.severity, Severity::Warning as i32, "seen happen: {f:?}");
    let (section, _) = run(&probe, &host);
    assert_eq!(
        section
            .top
            .iter()
            .find(|u| u.container_id == cid)
            .unwrap()
            .oom_kills,
        1
    );
}

#[test]
fn page_cache_at_the_limit_is_throttling_without_a_kill() {
    let (host, cgroup, uid, cid) = pod_cgroup(2, 32 * MIB);
    let probe = probe(
        CgroupsConfig {
            throttle_window: Duration::from_secs(60),
            ..CgroupsConfig::default()
        },
        KubeSlot::default(),
    );
    run(&probe, &host);
    // Writing a file three times the limit fills the cgroup with page cache, which the
    // kernel reclaims each time the limit is hit: no process is killed.
    let file = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
    let status = cgroup
        .spawn(&format!(
            // Each block written through (dsync): the cache is clean, so reclaimable.
            "exec dd if=/dev/zero of={} bs=1M count=96 oflag=dsync status=none",
            file.path().display()
        ))
        .wait()
        .unwrap();
    assert!(status.success(), "dd ran to the end: {status}");
    let subject = format!("pod {uid}/{}", &cid[..12]);
    let f = until(
        &probe,
        &host,
        Duration::from_secs(10),
        "throttling",
        |_, findings| {
            findings
                .iter()
                .find(|f| f.check == "pod.memory_throttled" && f.subject == subject)
                .cloned()
        },
    );
    assert!(f.number("limit_events").unwrap() >= 10.0, "{f:?}");
    let (_, findings) = run(&probe, &host);
    assert!(
        !findings
            .iter()
            .any(|f| f.check == "pod.oom_kills" && f.subject == subject),
        "no kill: {findings:#?}"
    );
}

/// Writes a cgroup v2 directory's memory files in the formats the kernel documents
/// (Documentation/admin-guide/cgroup-v2.rst); `events` is `memory.events.local`, and the
/// subtree's `memory.events` counts more kills, which must not be taken for the cgroup's.
fn write_v2(host: &FakeHost, dir: &str, current: u64, max: &str, inactive_file: u64, events: &str) {
    host.write(&format!("{dir}/memory.current"), &format!("{current}\n"));
    host.write(&format!("{dir}/memory.max"), &format!("{max}\n"));
    host.write(
        &format!("{dir}/memory.stat"),
        &format!(
            "anon {}\nfile {inactive_file}\ninactive_file {inactive_file}\nactive_file 0\n",
            current - inactive_file
        ),
    );
    host.write(&format!("{dir}/memory.events.local"), events);
    host.write(
        &format!("{dir}/memory.events"),
        "low 0\nhigh 0\nmax 0\noom 9\noom_kill 9\n",
    );
    host.write(
        &format!("{dir}/memory.pressure"),
        "some avg10=12.00 avg60=8.00 avg300=2.00 total=99\nfull avg10=4.00 avg60=2.00 avg300=0.50 total=33\n",
    );
}

/// The pod of `built-from-holmesgpt-describe-pod-oomkilled-crashloop.pod.json`.
const HOLMES_UID: &str = "7f3e2d1c-0b9a-4876-a5c4-d3e2f1a0b905";
const HOLMES_CID: &str = "58906e3ca1cef97c0089e986a5fc245f078db6bde15445d403592fd7dced2962";

/// Its pod cgroup directory (systemd driver) in a v2 tree of `host`, and its container's.
fn holmes_v2_dirs(host: &FakeHost) -> (String, String) {
    let pod_dir = format!(
        "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        HOLMES_UID.replace('-', "_")
    );
    host.write("/sys/fs/cgroup/kubepods.slice/memory.current", "1\n");
    let container_dir = format!("{pod_dir}/cri-containerd-{HOLMES_CID}.scope");
    (pod_dir, container_dir)
}

/// A Kubernetes view (through the real client and the tests' API server) holding that
/// pod, changed by `edit`.
async fn kube_with_holmes_pod(
    edit: impl FnOnce(&mut serde_json::Value),
) -> (FakeApiServer, tempfile::TempDir, KubeSlot) {
    let api = FakeApiServer::start().await;
    let mut pod: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "tests/fixtures/kube/built-from-holmesgpt-describe-pod-oomkilled-crashloop.pod.json",
        ))
        .unwrap(),
    )
    .unwrap();
    edit(&mut pod);
    api.set("pods", vec![pod]);
    api.set(
        "nodes",
        vec![serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}, "status": {"conditions": []}})],
    );
    let dir = tempfile::tempdir().unwrap();
    let view = connect(
        Some(&api.kubeconfig(dir.path())),
        "node-1",
        &KubernetesConfig::default().watch_options(),
    )
    .await
    .unwrap()
    .unwrap();
    let kube = KubeSlot::default();
    let _ = kube.set(view.0);
    (api, dir, kube)
}

/// A pod started through a real containerd's CRI (the runtime the tests start themselves) the
/// way the kubelet starts one (its sandbox under a `kubepods` cgroup parent, containers with
/// the kubelet's `io.kubernetes.*` labels, memory and CPU limits). The probe finds the
/// runtime's socket at its default place in the host root and names each cgroup from the
/// labels; a container spinning against a 0.2-CPU limit is throttled by the kernel in most
/// of its CFS periods (`cpu.stat` of its real CPU cgroup), one that sleeps is not.
#[test]
fn a_pod_started_through_the_cri_is_named_by_its_labels_and_its_cpu_throttling_seen() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Dockerd::start(&dir.path().join("docker"));
    let runtime = Containerd::start(&dir.path().join("containerd"));
    runtime.load_busybox(&engine);
    let (uid, _) = ids(3);
    let top = format!("nodemedic-test-{}-3", std::process::id());
    let container = |name, memory_limit| CriContainer {
        name,
        memory_limit,
        cpu_quota: None,
        busy: false,
    };
    // 2 ms of CPU every 10 ms: 100 periods a second, so the test sees enough in seconds.
    let encoder = CriContainer {
        cpu_quota: Some((2_000, 10_000)),
        busy: true,
        ..container("encoder", 32 * MIB)
    };
    let containers = [
        container("cart", 64 * MIB),
        container("istio-proxy", 32 * MIB),
        encoder,
    ];
    let pod = runtime.run_pod(&CriPodSpec {
        namespace: "shop",
        name: "cart-7d9f8b6c5-x2k4q",
        uid: &uid,
        cgroup_parent: &format!("/{top}/kubepods/burstable/pod{uid}"),
        containers: &containers,
    });

    let host = FakeHost::new();
    for (link, target) in [
        (
            "/sys/fs/cgroup/memory/kubepods",
            Path::new(MemoryCgroup::ROOT).join(&top).join("kubepods"),
        ),
        (
            "/sys/fs/cgroup/cpu/kubepods",
            Path::new("/sys/fs/cgroup/cpu").join(&top).join("kubepods"),
        ),
        ("/run/containerd/containerd.sock", runtime.socket.clone()),
    ] {
        let link = host.root().path(link);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &link).unwrap();
    }
    let probe = probe(CgroupsConfig::default(), KubeSlot::default());
    let (section, _) = run(&probe, &host);
    assert_eq!(
        (section.pods, section.containers),
        (1, 4),
        "three containers and the sandbox"
    );
    let sandbox = section
        .top
        .iter()
        .find(|u| !u.container_id.is_empty() && !pod.container_ids.contains(&u.container_id))
        .expect("the sandbox's cgroup");
    assert_eq!(
        (sandbox.pod.as_str(), sandbox.container.as_str()),
        ("cart-7d9f8b6c5-x2k4q", "POD"),
        "named as the kubelet names it"
    );
    for (c, id) in containers.iter().zip(&pod.container_ids) {
        let usage = section
            .top
            .iter()
            .find(|u| &u.container_id == id)
            .unwrap_or_else(|| panic!("{} measured: {section:#?}", c.name));
        assert_eq!(
            (
                usage.namespace.as_str(),
                usage.pod.as_str(),
                usage.container.as_str(),
                usage.pod_uid.as_str()
            ),
            ("shop", "cart-7d9f8b6c5-x2k4q", c.name, uid.as_str())
        );
        assert_eq!(usage.limit_bytes, c.memory_limit, "the limit the CRI set");
        assert!(usage.usage_bytes > 0, "busybox runs in it: {usage:?}");
    }

    let throttled = until(
        &probe,
        &host,
        Duration::from_secs(20),
        "encoder throttled",
        |_, fs| fs.iter().find(|f| f.check == "pod.cpu_throttled").cloned(),
    );
    assert_eq!(throttled.subject, "shop/cart-7d9f8b6c5-x2k4q/encoder");
    assert_eq!(throttled.severity, Severity::Warning as i32);
    assert_eq!(throttled.number("cpu_limit_cores"), Some(0.2));
    assert!(
        throttled.number("throttled_percent").unwrap() > 50.0,
        "a busy loop at 0.2 CPU is stopped in most periods: {throttled:#?}"
    );
    assert!(throttled.number("periods").unwrap() >= 100.0);
    assert!(throttled.message.contains("200m"), "{}", throttled.message);
    let (section, findings) = run(&probe, &host);
    let encoder = section
        .top
        .iter()
        .find(|u| u.container == "encoder")
        .unwrap();
    assert_eq!(encoder.cpu_limit_cores, 0.2);
    assert!(encoder.cpu_throttled_percent > 50.0, "{encoder:?}");
    assert!(
        findings
            .iter()
            .all(|f| f.check != "pod.cpu_throttled" || f.subject.ends_with("/encoder")),
        "containers without a CPU limit are never throttled: {findings:#?}"
    );
}

/// cgroup v2 (systemd driver names), from the kernel's documented file formats, named
/// through the Kubernetes API (a recorded pod whose container status carries the ID).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_tree_named_by_the_kubernetes_api() {
    let host = FakeHost::new();
    let (pod_dir, container_dir) = holmes_v2_dirs(&host);
    write_v2(
        &host,
        &pod_dir,
        60 * MIB,
        "max",
        0,
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    );
    // 49 of 50 MiB in use, 1 MiB of it inactive page cache; two kills so far.
    write_v2(
        &host,
        &container_dir,
        49 * MIB,
        &(50 * MIB).to_string(),
        MIB,
        "low 0\nhigh 0\nmax 30\noom 2\noom_kill 2\n",
    );
    let (_api, _dir, kube) = kube_with_holmes_pod(|_| {}).await;
    let probe = Arc::new(probe(
        CgroupsConfig {
            near_limit_percent: Percent::try_from(90.0).unwrap(),
            ..CgroupsConfig::default()
        },
        kube,
    ));
    let host = Arc::new(host);
    let (section, findings) = {
        let (probe, host) = (Arc::clone(&probe), Arc::clone(&host));
        // The watch fills the view: run until the container is named.
        tokio::task::spawn_blocking(move || {
            until(&probe, &host, Duration::from_secs(10), "names", |s, f| {
                f.iter()
                    .any(|f| f.subject.starts_with("app-02/"))
                    .then(|| (s.clone(), f.to_vec()))
            })
        })
        .await
        .unwrap()
    };
    assert_eq!(section.cgroup_version, "v2");
    assert_eq!((section.pods, section.containers), (1, 1));
    let subject = "app-02/giant-narwhal-6958c5bdd8-69gtn/main";
    let near = findings
        .iter()
        .find(|f| f.check == "pod.memory_near_limit" && f.subject == subject)
        .expect("near the limit");
    assert_eq!(near.number("working_set_bytes").unwrap(), (48 * MIB) as f64);
    assert_eq!(near.number("used_percent").unwrap(), 96.0);
    let kills = findings
        .iter()
        .find(|f| f.check == "pod.oom_kills" && f.subject == subject)
        .expect("kills");
    assert_eq!(
        kills.number("oom_kills").unwrap(),
        2.0,
        "memory.events.local, not the subtree's"
    );
    assert_eq!(
        kills.severity,
        Severity::Info as i32,
        "before the agent looked"
    );
    let top = &section.top[0];
    assert_eq!(
        (top.namespace.as_str(), top.container.as_str()),
        ("app-02", "main")
    );
    assert_eq!(top.memory_pressure.unwrap().some_avg60, 8.0);
    assert!(
        !findings
            .iter()
            .any(|f| f.check == "pod.oom_kills"
                && f.subject == "app-02/giant-narwhal-6958c5bdd8-69gtn"),
        "the pod's own events count no kill: {findings:#?}"
    );
}

/// A pod's emptyDir volume and container log against its ephemeral-storage limit (from the
/// Kubernetes API), and, once nodefs fills, named as its largest consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_storage_against_the_limit_and_a_filling_nodefs() {
    let host = Arc::new(FakeHost::new());
    let (pod_dir, container_dir) = holmes_v2_dirs(&host);
    let quiet = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n";
    write_v2(&host, &pod_dir, 10 * MIB, "max", 0, quiet);
    write_v2(
        &host,
        &container_dir,
        10 * MIB,
        &(50 * MIB).to_string(),
        0,
        quiet,
    );
    // The kubelet's directories for the pod: 60 MiB in an emptyDir, 25 MiB of log.
    let fill = |path: &str, bytes: u64| {
        let path = host.root().path(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![1u8; bytes as usize]).unwrap();
    };
    fill(
        &format!(
            "/var/lib/kubelet/pods/{HOLMES_UID}/volumes/kubernetes.io~empty-dir/scratch/data.bin"
        ),
        60 * MIB,
    );
    fill(
        &format!("/var/log/pods/app-02_giant-narwhal-6958c5bdd8-69gtn_{HOLMES_UID}/main/0.log"),
        25 * MIB,
    );
    let (_api, _dir, kube) = kube_with_holmes_pod(|pod| {
        pod["spec"]["containers"][0]["resources"]["limits"]["ephemeral-storage"] =
            serde_json::Value::from("100Mi");
    })
    .await;
    let probe = Arc::new(probe(
        CgroupsConfig {
            ephemeral_every: Duration::ZERO,
            ..CgroupsConfig::default()
        },
        kube,
    ));
    let subject = "app-02/giant-narwhal-6958c5bdd8-69gtn";
    let ephemeral = |probe: &Arc<CgroupsProbe>, host: &Arc<FakeHost>| {
        let (probe, host) = (Arc::clone(probe), Arc::clone(host));
        tokio::task::spawn_blocking(move || {
            until(
                &probe,
                &host,
                Duration::from_secs(10),
                "pod.ephemeral_storage",
                |_, f| {
                    f.iter()
                        .find(|f| f.check == "pod.ephemeral_storage" && f.subject == subject)
                        .cloned()
                },
            )
        })
    };
    let f = ephemeral(&probe, &host).await.unwrap();
    assert!(
        f.message.contains("ephemeral-storage limit"),
        "{}",
        f.message
    );
    assert_eq!(
        f.number("ephemeral_limit_bytes").unwrap(),
        (100 * MIB) as f64
    );
    // Disk blocks used: at least the bytes written.
    let used = f.number("ephemeral_bytes").unwrap();
    assert!(
        used >= (85 * MIB) as f64 && used < (90 * MIB) as f64,
        "{used}"
    );
    assert_eq!(f.severity, Severity::Warning as i32);

    // Without a limit known, the pod is named only when nodefs fills: the fake node's
    // 1 GiB filesystem, 85% full.
    let probe = Arc::new(self::probe(
        CgroupsConfig {
            ephemeral_every: Duration::ZERO,
            ..CgroupsConfig::default()
        },
        KubeSlot::default(),
    ));
    let (p, h) = (Arc::clone(&probe), Arc::clone(&host));
    let (_, findings) = tokio::task::spawn_blocking(move || run(&p, &h))
        .await
        .unwrap();
    assert!(
        !findings.iter().any(|f| f.check == "pod.ephemeral_storage"),
        "nodefs has room: {findings:#?}"
    );
    fill("/var/lib/other/filler.bin", 800 * MIB);
    let (p, h) = (Arc::clone(&probe), Arc::clone(&host));
    let (_, findings) = tokio::task::spawn_blocking(move || run(&p, &h))
        .await
        .unwrap();
    let f = findings
        .iter()
        .find(|f| f.check == "pod.ephemeral_storage")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(
        f.subject,
        format!("pod {HOLMES_UID}"),
        "unnamed without the API"
    );
    assert!(f.number("nodefs_available_percent").unwrap() < 20.0);
}
