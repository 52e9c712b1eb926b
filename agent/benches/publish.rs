//! How many Node status patches a fleet's agents send the API server: 5,000 nodes' condition
//! logic (the agent's own `publish::conditions`, the code that decides every write) run
//! over two hours of simulated time with a report every 10 s, all nodes started at the
//! same instant (a DaemonSet rolled out at once: the worst case for heartbeats). Every
//! report carries changing values; 2% of the nodes have a problem that comes for 3 minutes
//! and goes for 7; at 60 minutes a DNS outage hits every node for 5 minutes.
//!
//! Prints patches per second: the steady state (10–55 min), the worst second and minute of
//! it, and the outage's burst. `cargo bench -p nodemedic-agent --bench publish`.

use std::time::{Duration, SystemTime};

use nodemedic_agent::publish::{
    MIN_HEARTBEAT,
    conditions::{Conditions, heartbeat_of, published},
};
use nodemedic_proto::{
    checks,
    v1::{Finding, NodeReport, Severity},
};

const NODES: usize = 5_000;
const INTERVAL: u64 = 10;
const HOURS: u64 = 2;
const HOLD: Duration = Duration::from_secs(30);

fn report(node: usize, t: u64) -> NodeReport {
    let mut findings = vec![
        // Values that change every report: an info finding (never a condition) and a
        // warning whose numbers move (one condition, written once).
        Finding::fail(
            checks::IMAGES_RECLAIMABLE,
            Severity::Info,
            "docker",
            format!("{} MiB reclaimable", 900 + (t + node as u64) % 50),
        ),
    ];
    if node.is_multiple_of(10) {
        findings.push(Finding::fail(
            checks::DISK_SPACE,
            Severity::Warning,
            "/var/lib/containerd",
            format!("{:.1}% used", 85.0 + (t % 600) as f64 / 100.0),
        ));
    }
    // 2% flap: 3 minutes on, 7 off, each at its own phase.
    if node % 50 == 1 && (t + node as u64 * 7) % 600 < 180 {
        findings.push(Finding::fail(
            checks::KERNEL_HUNG_TASK,
            Severity::Warning,
            "jbd2/sda1-8",
            "blocked for more than 120 seconds".into(),
        ));
    }
    // The outage: every node, 60–65 min.
    if (3600..3900).contains(&t) {
        findings.push(Finding::fail(
            checks::DNS_FAILING,
            Severity::Critical,
            "10.96.0.10",
            "kubernetes.default.svc.cluster.local: SERVFAIL".into(),
        ));
    }
    NodeReport {
        findings,
        ..Default::default()
    }
}

fn main() {
    let probes: Vec<String> = ["disk", "memory", "system", "dns", "images", "kernel"]
        .map(String::from)
        .to_vec();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut fleet: Vec<(Conditions, u64)> = (0..NODES)
        .map(|i| {
            let name = format!("ip-10-0-{}-{}.ec2.internal", i / 250, i % 250);
            let mut c = Conditions::new(
                published(&probes, &[]),
                &[],
                HOLD,
                heartbeat_of(MIN_HEARTBEAT, &name),
            );
            c.adopt(&[], start);
            // Each agent's reports come at its own offset within the interval.
            (c, (i as u64 * 7919) % (INTERVAL * 1000))
        })
        .collect();
    let seconds = HOURS * 3600;
    let mut per_second = vec![0u32; seconds as usize];
    let cpu = std::time::Instant::now();
    // Each agent's writer looks for due writes every second; a report every 10 s.
    for s in 0..seconds {
        for (i, (c, offset_ms)) in fleet.iter_mut().enumerate() {
            let now = start + Duration::from_secs(s) + Duration::from_millis(*offset_ms % 1000);
            if s % INTERVAL == (*offset_ms / 1000) % INTERVAL {
                c.observe(&report(i, s), now);
            }
            if let Some(plan) = c.plan(now) {
                per_second[s as usize] += 1;
                c.committed(plan, now);
            }
        }
    }
    let elapsed = cpu.elapsed();
    let steady = &per_second[600..3300];
    let mean = steady.iter().map(|&n| f64::from(n)).sum::<f64>() / steady.len() as f64;
    let worst_second = steady.iter().max().copied().unwrap_or(0);
    let worst_minute = steady
        .windows(60)
        .map(|w| w.iter().sum::<u32>())
        .max()
        .unwrap_or(0);
    let outage = &per_second[3600..3960];
    let outage_total: u32 = outage.iter().sum();
    let outage_peak = outage.iter().max().copied().unwrap_or(0);
    let first_ten: u32 = per_second[..600].iter().sum();
    println!(
        "publish: {NODES} nodes, {HOURS} h simulated, a report every {INTERVAL} s, heartbeat {MIN_HEARTBEAT:?} + up to a fifth"
    );
    println!(
        "  steady state (10-55 min): {mean:.1} status patches/s mean, worst second {worst_second}, worst minute {worst_minute} ({:.1}/s)",
        f64::from(worst_minute) / 60.0
    );
    println!(
        "  first 10 min (start-up writes included): {first_ten} patches ({:.1}/s)",
        f64::from(first_ten) / 600.0
    );
    println!(
        "  DNS outage on every node (opens and resolves): {outage_total} patches in its 6 min, peak {outage_peak}/s"
    );
    println!(
        "  decision cost: {:.2} µs of CPU per node per second simulated",
        elapsed.as_secs_f64() * 1e6 / (NODES as f64 * seconds as f64)
    );
}
