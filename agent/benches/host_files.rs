//! CPU of reading and parsing the host files the probes read every cycle, on a real
//! Kubernetes worker's files (`tests/fixtures/real/proc/`: a 56-line mountinfo with
//! containerd overlays, meminfo, vmstat), in a fake host tree on a tmpfs (needs root).
//! Run: `cargo bench -p nodemedic-agent --bench host_files`.

use std::time::SystemTime;

use nodemedic_agent::{
    probes::{Probe, ProbeContext},
    probes::{memory::MemoryProbe, system::SystemProbe},
    testing::{FakeHost, fixture},
};

fn cpu_time() -> std::time::Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn measure(name: &str, runs: u32, mut f: impl FnMut()) {
    for _ in 0..runs / 10 {
        f();
    }
    let start = cpu_time();
    for _ in 0..runs {
        f();
    }
    let per_run = (cpu_time() - start).as_secs_f64() * 1e6 / f64::from(runs);
    println!("  {name:<44} {per_run:>8.1} us CPU per run ({runs} runs)");
}

fn main() {
    let host = FakeHost::new();
    host.write(
        "/proc/1/mountinfo",
        &fixture("proc/hotsos-k8s-node-pid1-mountinfo"),
    );
    host.write("/proc/meminfo", &fixture("proc/hotsos-k8s-node-meminfo"));
    host.write("/proc/vmstat", &fixture("proc/hotsos-k8s-node-vmstat"));
    let root = host.root();
    let ctx = ProbeContext {
        host: root.clone(),
        now: SystemTime::now(),
    };
    println!("host files of a real Kubernetes worker (hotsos fixtures):");
    measure("mount table (56 mounts)", 20_000, || {
        assert_eq!(root.mount_table().unwrap().len(), 56);
    });
    // A node with ~100 pods has hundreds of mounts (volumes, overlays, secrets): the same
    // lines ten times.
    let real = fixture("proc/hotsos-k8s-node-pid1-mountinfo");
    host.write("/proc/1/mountinfo", &real.repeat(10));
    measure("mount table (560 mounts)", 2_000, || {
        assert_eq!(root.mount_table().unwrap().len(), 560);
    });
    host.write("/proc/1/mountinfo", &real);
    let memory = MemoryProbe::default();
    memory.run(&ctx).unwrap();
    measure("memory probe (meminfo, vmstat, PSI)", 20_000, || {
        memory.run(&ctx).unwrap();
    });
    measure(
        "system probe (loadavg, file-nr, uptime, PSI)",
        20_000,
        || {
            SystemProbe::default().run(&ctx).unwrap();
        },
    );
}
