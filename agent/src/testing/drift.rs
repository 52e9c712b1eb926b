//! Reports that change as a real node's do, for the load generator and the benches.

use nodemedic_proto::v1::NodeReport;

/// Report `seq` of a simulated node (`node` seeds its randomness) made from one real
/// collection: moves, in place, what differs between two real collections of a node, by
/// about as much as it moves between two collections of this machine 10 s apart (measured:
/// BENCHMARKS.md, "Collector: 10,000 agents"). Bytes used on every mount grow; memory
/// available wanders by tens of MiB; pressure averages, open files and threads move a
/// little; uptime ticks; how long each probe took is new every time; a process's RSS
/// changes now and then. (Everything else — mount names, resolvers, images, the kernel —
/// stays, as it does on a node.)
pub fn drift(r: &mut NodeReport, node: u64, seq: u64) {
    // splitmix64: a different step for every number, the same for the same node and seq.
    let mut state = node.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ seq;
    let mut next = |range: u64| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % range.max(1)
    };
    let wander = |value: u64, by: u64, next: &mut dyn FnMut(u64) -> u64| {
        value.saturating_add(next(2 * by)).saturating_sub(by)
    };
    if let Some(disk) = &mut r.disk {
        for m in &mut disk.mounts {
            let grown = seq * 24_576 + next(32_768);
            m.bytes_used = m.bytes_used.saturating_add(grown);
            m.bytes_available = m.bytes_available.saturating_sub(grown);
        }
    }
    if let Some(memory) = &mut r.memory {
        memory.available_bytes = wander(memory.available_bytes, 64 << 20, &mut next);
        for p in &mut memory.top_processes {
            if next(8) == 0 {
                p.rss_bytes = wander(p.rss_bytes, 1 << 20, &mut next) & !4095;
            }
        }
    }
    if let Some(system) = &mut r.system {
        system.pids_in_use = wander(system.pids_in_use, 2, &mut next);
        system.open_files = wander(system.open_files, 2, &mut next);
        system.uptime_seconds = system.uptime_seconds.saturating_add(seq * 10);
        if let Some(psi) = &mut system.cpu_pressure {
            psi.some_avg10 = next(200) as f64 / 100.0;
            psi.some_avg60 = next(200) as f64 / 100.0;
            psi.some_avg300 = next(400) as f64 / 100.0;
        }
    }
    if let Some(dns) = &mut r.dns {
        for p in &mut dns.probes {
            p.p50_ms = next(2000) as f64 / 1000.0;
            p.p95_ms = next(8000) as f64 / 1000.0;
            p.max_ms = next(20000) as f64 / 1000.0;
        }
    }
    for p in &mut r.probes {
        p.duration_micros = 50 + next(4_000);
    }
}
