//! CPU time and allocations of one agent collection cycle (every probe but live DNS
//! queries) on this machine's real /proc, and the same with each of the host-facility
//! probes off in turn, to see what each costs. Run: `cargo bench -p nodemedic-agent --bench
//! cycle`.

use std::{alloc::System, time::Instant};

use nodemedic_agent::{Agent, config::Config, host::HostRoot};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn cpu_time() -> std::time::Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Resolv.conf is read, but no live DNS query is sent: this machine's resolvers are not
    // the benchmark's own (the DNS bench measures queries against a dnsmasq of its own).
    let mut steady = Config::default();
    steady.dns.enabled = false;
    let mut ranking = steady.clone();
    ranking.thresholds.memory.top_processes_every = std::time::Duration::ZERO;
    let without = |name: &str| {
        let mut c = steady.clone();
        match name {
            "journal" => c.journal.enabled = false,
            "net" => c.net.enabled = false,
            "certs" => c.certs.enabled = false,
            "services" => c.services.enabled = false,
            "inotify" => c.inotify.enabled = false,
            _ => unreachable!(),
        }
        (format!("steady cycle without the {name} probe"), c)
    };
    let mut configs = vec![
        (
            "steady cycle (processes ranked once a minute)".to_owned(),
            steady.clone(),
        ),
        ("cycle that ranks processes".to_owned(), ranking),
    ];
    configs.extend(["journal", "net", "certs", "services", "inotify"].map(without));
    for (name, config) in configs {
        // The kernel probe's catch-up wait makes a cycle last 100 ms: fewer cycles for the
        // comparisons.
        let cycles = if name.contains("without") { 300 } else { 2000 };
        runtime.block_on(measure(
            &name,
            cycles,
            Agent::new("bench".into(), HostRoot::default(), &config),
        ));
    }
}

async fn measure(name: &str, cycles: usize, agent: Agent) {
    for _ in 0..50 {
        agent.collect().await;
    }
    let region = Region::new(GLOBAL);
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let mut findings = 0;
    let mut mounts = 0;
    let mut probe_micros: Vec<(String, u64)> = Vec::new();
    for _ in 0..cycles {
        let r = agent.collect().await;
        findings += r.findings.len();
        mounts = r.disk.as_ref().map_or(0, |d| d.mounts.len());
        for run in &r.probes {
            match probe_micros.iter_mut().find(|(p, _)| *p == run.probe) {
                Some((_, total)) => *total += run.duration_micros,
                None => probe_micros.push((run.probe.clone(), run.duration_micros)),
            }
        }
    }
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
    let stats = region.change();
    let processes = std::fs::read_dir("/proc").map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .count()
    });
    println!(
        "agent {name}: {cycles} cycles, {mounts} filesystems, {processes} processes, {} findings/cycle",
        findings / cycles
    );
    println!(
        "  cpu time per cycle:    {:>9.1} us",
        cpu.as_secs_f64() * 1e6 / cycles as f64
    );
    println!(
        "  wall time per cycle:   {:>9.1} us",
        wall.as_secs_f64() * 1e6 / cycles as f64
    );
    println!("  allocations per cycle: {:>9}", stats.allocations / cycles);
    println!(
        "  bytes allocated/cycle: {:>9}",
        stats.bytes_allocated / cycles
    );
    println!("  wall time per probe (they run concurrently):");
    for (probe, total) in probe_micros {
        println!("    {probe:<8} {:>9.1} us", total as f64 / cycles as f64);
    }
}
