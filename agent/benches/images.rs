//! Cost of one image-probe run with 200 images present, against a real Docker engine and a
//! real containerd (CRI) started here with their own roots in a temporary directory.
//! Run: `cargo bench -p nodemedic-agent --bench images` (needs root, docker.io, containerd;
//! env IMAGES, RUNS).

use std::time::SystemTime;

use nodemedic_agent::{
    config::{DiskThresholds, ImagesConfig},
    host::HostRoot,
    probes::images::ImagesProbe,
    probes::{Probe, ProbeContext, Section},
    testing::{Containerd, Dockerd},
};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_time() -> std::time::Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time (user + system) of another process so far, from /proc/<pid>/stat.
fn process_cpu(name: &str) -> std::time::Duration {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if !head.ends_with(&format!("({name}")) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        total += (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / ticks;
    }
    std::time::Duration::from_secs_f64(total)
}

/// `fresh`: a new probe each run, so Docker's `/system/df` runs every time (what happens
/// when images or containers changed); otherwise one probe, as the agent keeps it.
fn measure(name: &str, daemon: &str, config: ImagesConfig, kind: &str, runs: u32, fresh: bool) {
    let mut probe = ImagesProbe::new(config.clone(), DiskThresholds::default().fill_fit());
    let ctx = ProbeContext {
        host: HostRoot::new("/"),
        now: SystemTime::now(),
    };
    // One run to warm the connection paths up.
    probe.run(&ctx).unwrap();
    let (cpu0, daemon0, wall0) = (cpu_time(), process_cpu(daemon), std::time::Instant::now());
    let mut images = 0;
    for _ in 0..runs {
        if fresh {
            probe = ImagesProbe::new(config.clone(), DiskThresholds::default().fill_fit());
        }
        let out = probe.run(&ctx).expect("the probe runs");
        let Section::Images(s) = out.section else {
            unreachable!()
        };
        let r = s.runtimes.iter().find(|r| r.kind == kind).unwrap();
        assert!(r.error.is_empty(), "{}", r.error);
        images = r.images;
    }
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / f64::from(runs);
    println!("image probe, {name}: {runs} runs, {images} images");
    println!(
        "  wall time per run:          {:>7.2} ms",
        per(wall0.elapsed())
    );
    println!(
        "  agent cpu per run:          {:>7.2} ms",
        per(cpu_time() - cpu0)
    );
    println!(
        "  {daemon} cpu per run: {:>9.2} ms",
        per(process_cpu(daemon) - daemon0)
    );
}

fn main() {
    let count = env("IMAGES", 200);
    let runs = env("RUNS", 30) as u32;
    let dir = tempfile::tempdir().unwrap();
    let engine = Dockerd::start(&dir.path().join("docker"));
    let mut names = Vec::new();
    for i in 0..count {
        let name = format!("nodemedic.bench/img{i}:1");
        engine.image(&name, 20_000);
        names.push(name);
    }
    // A tenth of them used by (stopped) containers.
    for (i, name) in names.iter().enumerate().step_by(10) {
        engine.docker(&["create", "--name", &format!("c{i}"), name, "/blob"]);
    }
    let docker = ImagesConfig {
        docker_socket: Some(engine.socket.to_string_lossy().into_owned()),
        ..ImagesConfig::default()
    };
    measure(
        "Docker, nothing changed since the last run",
        "dockerd",
        docker.clone(),
        "docker",
        runs,
        false,
    );
    measure(
        "Docker, a full measurement (/system/df)",
        "dockerd",
        docker,
        "docker",
        runs,
        true,
    );

    let runtime = Containerd::start(&dir.path().join("containerd"));
    let archive = dir.path().join("all.tar");
    let mut save = vec!["save", "-o"];
    let archive_str = archive.to_string_lossy().into_owned();
    save.push(&archive_str);
    save.extend(names.iter().map(String::as_str));
    engine.docker(&save);
    runtime.import(&archive);
    measure(
        "CRI (containerd)",
        "containerd",
        ImagesConfig {
            cri_endpoint: Some(runtime.socket.to_string_lossy().into_owned()),
            ..ImagesConfig::default()
        },
        "cri",
        runs,
        false,
    );
}
