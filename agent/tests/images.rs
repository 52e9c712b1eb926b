//! The image probe against real engines the tests start: a Docker engine (dockerd) and a
//! containerd with its CRI plugin, each with its own root, state and socket in a temporary
//! directory. No registry is reachable: images are made `FROM scratch` from random bytes.
//! Needs root and docker.io + containerd (scripts/test installs them); fails, never skips.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use nodemedic_agent::{
    config::{DiskThresholds, ImagesConfig},
    host::HostRoot,
    probes::images::ImagesProbe,
    probes::{Probe, ProbeContext, Section},
    testing::{Containerd, Dockerd},
    units::Percent,
};
use nodemedic_proto::v1::{Finding, ImageRuntime, Severity};

const MB: usize = 1_000_000;

/// Runs a new probe once with `config` on the real host; the runtime of `kind` and the
/// findings about it.
fn probe(config: ImagesConfig, kind: &str) -> (ImageRuntime, Vec<Finding>) {
    run(
        &ImagesProbe::new(config, DiskThresholds::default().fill_fit()),
        kind,
    )
}

fn run(probe: &ImagesProbe, kind: &str) -> (ImageRuntime, Vec<Finding>) {
    let ctx = ProbeContext {
        host: HostRoot::new("/"),
        now: SystemTime::now(),
    };
    let out = probe.run(&ctx).expect("the probe runs");
    let Section::Images(section) = out.section else {
        panic!("not an images section")
    };
    let runtime = section
        .runtimes
        .into_iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} runtime in the section"));
    let findings = out
        .findings
        .into_iter()
        .filter(|f| f.text("runtime") == Some(kind))
        .collect();
    (runtime, findings)
}

fn docker_config(engine: &Dockerd) -> ImagesConfig {
    ImagesConfig {
        docker_socket: Some(engine.socket.to_string_lossy().into_owned()),
        // Report anything: these engines hold megabytes, not gigabytes.
        reclaimable_min_bytes: 1,
        reclaimable_warn_percent: Percent::try_from(0.0).unwrap(),
        dangling_min_bytes: 1,
        ..ImagesConfig::default()
    }
}

/// `docker system df`'s human size ("3.001MB", "512kB", "0B") in bytes, and the precision
/// it was printed with (4 significant digits).
fn human(size: &str) -> (f64, f64) {
    let size = size.split_whitespace().next().unwrap();
    let split = size.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let (number, unit) = size.split_at(split);
    let factor = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other}"),
    };
    let n: f64 = number.parse().unwrap();
    (
        n * factor,
        factor * 10f64.powi(-(4 - 1 - n.log10().floor() as i32).max(0)),
    )
}

fn df_images(engine: &Dockerd) -> serde_json::Value {
    engine
        .docker(&["system", "df", "--format", "{{json .}}"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["Type"] == "Images")
        .unwrap()
}

#[test]
fn docker_counts_and_reclaimable_bytes_match_docker_system_df() {
    let dir = tempfile::tempdir().unwrap();
    // The engine on a filesystem of its own, so how full the test machine is cannot raise
    // images.gc_imminent here.
    let fs = Tmpfs::mount(&dir.path().join("fs"), "512m");
    let engine = Dockerd::start(&fs.0);
    let used = engine.image("nodemedic.test/used:1", 3 * MB);
    let unused = engine.image("nodemedic.test/unused:1", 2 * MB);
    // Importing a second image under the same name leaves the first one dangling.
    let dangling = engine.image("nodemedic.test/rebuilt:1", MB);
    engine.image("nodemedic.test/rebuilt:1", MB / 2);
    engine.docker(&[
        "create",
        "--name",
        "stopped",
        "nodemedic.test/used:1",
        "/blob",
    ]);

    let (r, findings) = probe(docker_config(&engine), "docker");
    assert_eq!(r.error, "", "{r:#?}");
    assert!(r.version.starts_with("docker "), "{}", r.version);
    assert_eq!(r.root_dir, engine.data_root.to_string_lossy());

    let df = df_images(&engine);
    assert_eq!(r.images.to_string(), df["TotalCount"].as_str().unwrap());
    assert_eq!(r.images_in_use.to_string(), df["Active"].as_str().unwrap());
    let (reclaimable, precision) = human(df["Reclaimable"].as_str().unwrap());
    assert!(
        (r.reclaimable_bytes as f64 - reclaimable).abs() <= precision,
        "nodemedic {} vs docker system df {}",
        r.reclaimable_bytes,
        df["Reclaimable"]
    );
    let (size, precision) = human(df["Size"].as_str().unwrap());
    assert!((r.images_bytes as f64 - size).abs() <= precision);
    assert_eq!((r.dangling, r.stopped_containers), (1, 1));

    // The used image is never offered for removal; the largest unused one comes first.
    let offered: Vec<&str> = r.top_reclaimable.iter().map(|i| i.id.as_str()).collect();
    assert!(!offered.contains(&used.as_str()), "{offered:?}");
    assert_eq!(offered.first(), Some(&unused.as_str()));
    assert!(offered.contains(&dangling.as_str()));

    let mut checks: Vec<(&str, Severity)> = findings
        .iter()
        .map(|f| (f.check.as_str(), f.severity()))
        .collect();
    checks.sort();
    assert_eq!(
        checks,
        [
            ("images.dangling", Severity::Info),
            ("images.reclaimable", Severity::Warning)
        ]
    );
    // The agent keeps its probe: Docker's full measurement is reused until the engine's
    // event log shows a change.
    // (The filesystem's free bytes move with everything else on the machine: not compared.)
    let images = |r: &ImageRuntime| {
        let mut r = r.clone();
        r.fs_available_bytes = 0;
        r
    };
    let kept = ImagesProbe::new(docker_config(&engine), DiskThresholds::default().fill_fit());
    assert_eq!(images(&run(&kept, "docker").0), images(&r));
    assert_eq!(
        images(&run(&kept, "docker").0),
        images(&r),
        "nothing changed"
    );
    engine.image("nodemedic.test/new:1", MB);
    engine.docker(&["rm", "stopped"]);
    let after = run(&kept, "docker").0;
    assert_eq!(
        (after.images, after.images_in_use, after.stopped_containers),
        (5, 0, 0)
    );

    let reclaim = findings
        .iter()
        .find(|f| f.check == "images.reclaimable")
        .unwrap();
    assert_eq!(reclaim.number("bytes"), Some(r.reclaimable_bytes as f64));
    assert!(
        reclaim
            .text("top_reclaimable")
            .unwrap()
            .starts_with("nodemedic.test/unused:1 1.9 MiB"),
        "{reclaim:#?}"
    );
}

#[test]
fn containerd_through_the_cri() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Dockerd::start(&dir.path().join("docker"));
    let runtime = Containerd::start(&dir.path().join("containerd"));
    let id = engine.image("nodemedic.test/app:1", 2 * MB);
    let archive = dir.path().join("app.tar");
    engine.docker(&[
        "save",
        "-o",
        &archive.to_string_lossy(),
        "nodemedic.test/app:1",
    ]);
    runtime.import(&archive);

    let config = ImagesConfig {
        cri_endpoint: Some(format!("unix://{}", runtime.socket.display())),
        reclaimable_min_bytes: 1,
        reclaimable_warn_percent: Percent::try_from(0.0).unwrap(),
        ..ImagesConfig::default()
    };
    // containerd counts its image filesystem's use in the background (every few seconds).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (r, findings) = loop {
        let (r, findings) = probe(config.clone(), "cri");
        if r.image_fs_used_bytes > 0 || std::time::Instant::now() > deadline {
            break (r, findings);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(r.error, "", "{r:#?}");
    assert!(r.version.starts_with("containerd "), "{}", r.version);
    assert_eq!(r.images, 1);
    assert_eq!(r.images_in_use, 0);
    assert!(r.images_bytes >= 2 * MB as u64, "{r:#?}");
    assert_eq!(r.reclaimable_bytes, r.images_bytes, "no container uses it");
    assert_eq!(r.top_reclaimable[0].id, id);
    assert_eq!(r.top_reclaimable[0].tags, ["nodemedic.test/app:1"]);
    assert!(
        Path::new(&r.root_dir).starts_with(dir.path().join("containerd")),
        "the image filesystem is containerd's own: {}",
        r.root_dir
    );
    assert!(r.image_fs_used_bytes > 0 && r.image_fs_inodes_used > 0);
    assert!(findings.iter().any(|f| f.check == "images.reclaimable"));
}

#[test]
fn a_socket_that_does_not_answer_is_runtime_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file whose server is gone: connections are refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    // A server that accepts and never answers.
    let silent = dir.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let config = ImagesConfig {
        docker_socket: Some(stale.to_string_lossy().into_owned()),
        cri_endpoint: Some(silent.to_string_lossy().into_owned()),
        timeout: std::time::Duration::from_millis(500),
        ..ImagesConfig::default()
    };
    for (kind, socket) in [("docker", &stale), ("cri", &silent)] {
        let (r, findings) = probe(config.clone(), kind);
        assert!(!r.error.is_empty());
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].check, "images.runtime_unreachable");
        assert_eq!(findings[0].severity(), Severity::Critical);
        assert_eq!(findings[0].subject, socket.to_string_lossy());
    }
    // No socket at all is not a problem: the section just has no runtime.
    let ctx = ProbeContext {
        host: HostRoot::new(dir.path()),
        now: SystemTime::now(),
    };
    let out = ImagesProbe::new(
        ImagesConfig::default(),
        DiskThresholds::default().fill_fit(),
    )
    .run(&ctx)
    .unwrap();
    assert!(out.findings.is_empty());
}

/// A tmpfs of `size` mounted at `path`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount -t tmpfs needs root (CI runs as root)"
        );
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_image_filesystem_raises_gc_imminent() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("fs"), "64m");
    {
        let engine = Dockerd::start(&fs.0);
        let (r, findings) = probe(docker_config(&engine), "docker");
        assert_eq!(r.mount_point, fs.0.to_string_lossy());
        assert!(
            !findings.iter().any(|f| f.check == "images.gc_imminent"),
            "an empty engine: {findings:#?}"
        );
        // Fill it past the kubelet's 85% line with images nobody uses.
        for i in 0..15 {
            engine.image(&format!("nodemedic.test/fill:{i}"), 4 * MB);
        }
        let (r, findings) = probe(docker_config(&engine), "docker");
        let gc = findings
            .iter()
            .find(|f| f.check == "images.gc_imminent")
            .unwrap_or_else(|| panic!("{r:#?} {findings:#?}"));
        assert_eq!(gc.severity(), Severity::Warning);
        assert!(gc.number("used_percent").unwrap() >= 85.0, "{gc:#?}");
        assert_eq!(gc.text("mount"), Some(fs.0.to_str().unwrap()));
        assert!(gc.number("reclaimable_bytes").unwrap() >= 50.0 * MB as f64);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_plan_and_apply_remove_unused_images() {
    use nodemedic_agent::remediation::Remediator;
    use nodemedic_proto::v1::{ActionRequest, action_result};

    let dir = tempfile::tempdir().unwrap();
    let engine = Dockerd::start(&dir.path().join("docker"));
    let runtime = Containerd::start(&dir.path().join("containerd"));
    let id = engine.image("nodemedic.test/gone:1", MB);
    let archive = dir.path().join("gone.tar");
    engine.docker(&[
        "save",
        "-o",
        &archive.to_string_lossy(),
        "nodemedic.test/gone:1",
    ]);
    runtime.import(&archive);
    let config = ImagesConfig {
        cri_endpoint: Some(runtime.socket.to_string_lossy().into_owned()),
        ..ImagesConfig::default()
    };
    let actions = Remediator::new(
        "n1",
        &["images.*".into()],
        HostRoot::new("/"),
        config.sockets(),
        config.timeout,
    )
    .unwrap();
    let plan = match actions
        .handle(ActionRequest {
            request_id: "1".into(),
            action: "images.prune_unused".into(),
            runtime: "cri".into(),
            ..Default::default()
        })
        .await
        .result
    {
        Some(action_result::Result::Plan(p)) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(plan.items.len(), 1, "{plan:#?}");
    assert_eq!(plan.items[0].id, id);
    assert!(plan.bytes >= MB as u64);
    let outcome = actions.apply(&plan.plan_id).await.unwrap();
    assert_eq!(
        (outcome.removed, outcome.skipped, outcome.failed),
        (1, 0, 0),
        "{outcome:#?}"
    );
    assert_eq!(outcome.freed_bytes, plan.bytes);
    // The probe blocks (it runs on the agent's blocking threads).
    let (r, _) = tokio::task::spawn_blocking(move || probe(config, "cri"))
        .await
        .unwrap();
    assert_eq!(r.images, 0, "the image is gone from the CRI's list");
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_stopped_containers_and_build_cache_are_pruned_as_planned() {
    use nodemedic_agent::remediation::Remediator;
    use nodemedic_proto::v1::ActionRequest;

    let dir = tempfile::tempdir().unwrap();
    let engine = Dockerd::start(dir.path());
    engine.image("nodemedic.test/base:1", MB);
    engine.docker(&["create", "--name", "old", "nodemedic.test/base:1", "/blob"]);
    engine.build("nodemedic.test/built:1", 200_000);
    let actions = Remediator::new(
        "n1",
        &[
            "images.prune_stopped_containers".into(),
            "images.prune_build_cache".into(),
        ],
        HostRoot::new("/"),
        docker_config(&engine).sockets(),
        docker_config(&engine).timeout,
    )
    .unwrap();
    let plan = |action: &str| {
        let actions = &actions;
        let action = action.to_owned();
        async move {
            actions
                .plan(&ActionRequest {
                    action,
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };

    let containers = plan("images.prune_stopped_containers").await;
    assert_eq!(containers.items.len(), 1, "{containers:#?}");
    assert_eq!(containers.items[0].names, ["/old"]);
    let outcome = actions.apply(&containers.plan_id).await.unwrap();
    assert_eq!(outcome.removed, 1, "{outcome:#?}");
    assert_eq!(engine.docker(&["ps", "-aq"]), "");

    let cache = plan("images.prune_build_cache").await;
    assert!(!cache.items.is_empty(), "BuildKit left cache: {cache:#?}");
    assert!(cache.bytes >= 200_000, "{cache:#?}");
    let outcome = actions.apply(&cache.plan_id).await.unwrap();
    assert_eq!(outcome.failed, 0, "{outcome:#?}");
    assert_eq!(outcome.removed as usize, cache.items.len(), "{outcome:#?}");
    assert!(outcome.freed_bytes >= 200_000, "{outcome:#?}");
    assert!(
        plan("images.prune_build_cache").await.items.is_empty(),
        "nothing unused is left"
    );
    // Disallowed here: the image prunes.
    let refused = actions
        .plan(&ActionRequest {
            action: "images.prune_unused".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("--allow-action"), "{refused}");
}
