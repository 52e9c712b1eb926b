//! What one walk of the pod cgroups costs on a full node: 110 pods, 300 containers, in a
//! cgroup v1 tree on a tmpfs with the files as this machine's v1 memory controller writes
//! them (its real `memory.stat` is copied into every cgroup), and the CPU controller's tree
//! beside it (this machine's real `cpu.stat`, a quota on every container).
//!
//! `cargo bench -p nodemedic-agent --bench cgroups` (root: the fake host is a tmpfs).

use std::time::{Duration, Instant, SystemTime};

use nodemedic_agent::{
    config::{CgroupsConfig, DiskThresholds, ImagesConfig},
    kubernetes::view::KubeSlot,
    probes::cgroups::CgroupsProbe,
    probes::{Probe, ProbeContext, Section},
    testing::FakeHost,
};

const PODS: usize = 110;
const CONTAINERS: usize = 300;

fn main() {
    let host = FakeHost::new();
    let real =
        |name: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/memory/{name}")).unwrap();
    let stat = real("memory.stat");
    let cpu_stat = std::fs::read_to_string("/sys/fs/cgroup/cpu/cpu.stat").unwrap();
    let write = |dir: &str, limit: u64| {
        host.write(&format!("{dir}/memory.usage_in_bytes"), "52428800\n");
        host.write(
            &format!("{dir}/memory.limit_in_bytes"),
            &format!("{limit}\n"),
        );
        host.write(&format!("{dir}/memory.stat"), &stat);
        host.write(
            &format!("{dir}/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        );
        host.write(&format!("{dir}/memory.failcnt"), "0\n");
        let cpu = dir.replacen("/memory/", "/cpu/", 1);
        host.write(&format!("{cpu}/cpu.stat"), &cpu_stat);
        let quota = if limit < 1 << 40 { "50000\n" } else { "-1\n" };
        host.write(&format!("{cpu}/cpu.cfs_quota_us"), quota);
        host.write(&format!("{cpu}/cpu.cfs_period_us"), "100000\n");
    };
    let root = "/sys/fs/cgroup/memory/kubepods";
    write(root, 9223372036854771712);
    for qos in ["burstable", "besteffort"] {
        write(&format!("{root}/{qos}"), 9223372036854771712);
    }
    let mut containers = 0;
    for p in 0..PODS {
        let qos = if p % 3 == 0 {
            "besteffort"
        } else {
            "burstable"
        };
        let pod = format!("{root}/{qos}/pod00000000-0000-4000-8000-{p:012}");
        write(&pod, 9223372036854771712);
        let n = CONTAINERS / PODS + usize::from(p < CONTAINERS % PODS);
        for c in 0..n {
            write(&format!("{pod}/{:064x}", p * 10 + c), 268435456);
            containers += 1;
        }
    }
    let probe = CgroupsProbe::new(
        CgroupsConfig {
            ephemeral_every: Duration::from_secs(3600),
            every: Duration::ZERO,
            ..CgroupsConfig::default()
        },
        ImagesConfig::default().sockets(),
        ImagesConfig::default().timeout,
        DiskThresholds::default().nodefs_warn_available,
        KubeSlot::default(),
    );
    let ctx = ProbeContext {
        host: host.root(),
        now: SystemTime::now(),
    };
    let first = Instant::now();
    probe.run(&ctx).unwrap();
    let first = first.elapsed();
    let runs = 50;
    let cpu0 = cpu();
    let start = Instant::now();
    let mut walked = 0;
    for i in 0..runs {
        let out = probe
            .run(&ProbeContext {
                now: ctx.now + Duration::from_secs(10 * (i + 1)),
                ..ctx.clone()
            })
            .unwrap();
        if let Section::Cgroups(s) = out.section {
            walked = s.pods + s.containers;
        }
    }
    let wall = start.elapsed() / runs as u32;
    let cpu = (cpu() - cpu0) / runs as f64;
    println!(
        "{PODS} pods, {containers} containers ({walked} cgroups): {:.1} ms wall, {:.1} ms CPU per run (first run, with ephemeral storage: {:.1} ms)",
        wall.as_secs_f64() * 1e3,
        cpu * 1e3,
        first.as_secs_f64() * 1e3
    );
}

/// CPU seconds of this process.
fn cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}
