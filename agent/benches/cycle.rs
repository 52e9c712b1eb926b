//! CPU time and allocations of one agent collection cycle (disk + memory + system) on this
//! machine's real /proc. Run: `cargo bench -p nodemedic-agent --bench cycle`.

use std::{alloc::System, time::Instant};

use nodemedic_agent::{Collector, config::Config, host::HostRoot};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn cpu_time() -> std::time::Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let collector = Collector::new("bench".into(), HostRoot::default(), Config::default());
    let cycles = 2000;
    runtime.block_on(async {
        for _ in 0..50 {
            collector.collect().await;
        }
        let region = Region::new(GLOBAL);
        let (cpu0, wall0) = (cpu_time(), Instant::now());
        let mut findings = 0;
        let mut mounts = 0;
        for _ in 0..cycles {
            let r = collector.collect().await;
            findings += r.findings.len();
            mounts = r.disk.map_or(0, |d| d.mounts.len());
        }
        let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
        let stats = region.change();
        println!("agent collection cycle ({cycles} cycles, {mounts} filesystems, {} findings/cycle)", findings / cycles);
        println!("  cpu time per cycle:    {:>9.1} us", cpu.as_secs_f64() * 1e6 / cycles as f64);
        println!("  wall time per cycle:   {:>9.1} us", wall.as_secs_f64() * 1e6 / cycles as f64);
        println!("  allocations per cycle: {:>9}", stats.allocations / cycles);
        println!("  bytes allocated/cycle: {:>9}", stats.bytes_allocated / cycles);
    });
}
