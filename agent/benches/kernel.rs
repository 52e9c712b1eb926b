//! The kernel log probe under a storm: what following and matching cost per line, and what
//! a sustained 10,000 lines a minute costs the follower thread in CPU and the agent in
//! memory.
//!
//! `cargo bench -p nodemedic-agent --bench kernel` (root: the fake host is a tmpfs).
//! `STORM_SECONDS` (default 60) sets the sustained part's length.

use std::{
    io::Write,
    time::{Duration, Instant, SystemTime},
};

use nodemedic_agent::{
    config::KernelConfig,
    probes::kernel::KernelProbe,
    probes::{Probe, ProbeContext, Section},
    testing::{FakeHost, fixture},
};

/// Real lines: the benign boot log with the real trouble of the other fixtures mixed in,
/// one trouble line in ten.
fn corpus() -> Vec<String> {
    let benign: Vec<String> = fixture("kernel/hotsos-k8s-node-dmesg-boot-baseline.log")
        .lines()
        .map(str::to_owned)
        .collect();
    let mut trouble = Vec::new();
    for file in [
        "issue-k8s-18604-nf-conntrack-table-full.log",
        "issue-kubeasz-300-nmi-soft-lockup-syslog.log",
        "issue-longhorn-6650-ext4-journal-aborted-syslog.log",
        "issue-appstream-90-print-req-error-io-error-k8snode.log",
        "issue-docker-for-linux-1001-memcg-oom-syslog.log",
        "issue-moby-34283-xfs-metadata-io-error.log",
    ] {
        trouble.extend(
            fixture(&format!("kernel/{file}"))
                .lines()
                .map(str::to_owned),
        );
    }
    let mut out = Vec::new();
    for (i, line) in benign.iter().enumerate() {
        out.push(line.clone());
        if i % 9 == 8 {
            out.push(trouble[i / 9 % trouble.len()].clone());
        }
    }
    out
}

fn run(probe: &KernelProbe, host: &FakeHost) -> (u64, usize) {
    let out = probe
        .run(&ProbeContext {
            host: host.root(),
            now: SystemTime::now(),
        })
        .expect("probe runs");
    let Section::Kernel(s) = out.section else {
        unreachable!()
    };
    (s.lines_read, s.events.len())
}

/// CPU seconds of this process's thread named `name`, from /proc.
fn thread_cpu(name: &str) -> f64 {
    let tick = rustix::param::clock_ticks_per_second() as f64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split(' ').collect();
            let (u, s): (f64, f64) = (f[11].parse().unwrap(), f[12].parse().unwrap());
            return (u + s) / tick;
        }
    }
    panic!("no thread {name}")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn main() {
    let corpus = corpus();
    let host = FakeHost::new();
    let log = host.root().path("/var/log/kern.log");
    let probe = KernelProbe::new(KernelConfig {
        log_file: Some("/var/log/kern.log".into()),
        ..KernelConfig::default()
    });
    run(&probe, &host);

    // 1. Throughput: 1,000,000 lines appended at once, followed and matched.
    let lines = 1_000_000usize;
    let mut file = std::fs::File::options().append(true).open(&log).unwrap();
    let mut text = String::new();
    for line in corpus.iter().cycle().take(lines) {
        text.push_str(line);
        text.push('\n');
    }
    file.write_all(text.as_bytes()).unwrap();
    drop(text);
    let cpu0 = thread_cpu("kernel-log");
    let start = Instant::now();
    let mut read = 0;
    let mut events = 0;
    while read < lines as u64 {
        (read, events) = run(&probe, &host);
    }
    let wall = start.elapsed();
    let cpu = thread_cpu("kernel-log") - cpu0;
    println!(
        "throughput: {lines} lines ({} MB) in {:.2} s wall, {:.2} s CPU: {:.2} µs CPU per line, {:.0} lines/s; {events} events kept",
        std::fs::metadata(&log).unwrap().len() / 1_000_000,
        wall.as_secs_f64(),
        cpu,
        cpu * 1e6 / lines as f64,
        lines as f64 / cpu,
    );

    // 2. Storm: 10,000 lines a minute, written every 100 ms, a report every 10 s.
    let seconds: u64 = std::env::var("STORM_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    std::fs::write(&log, "").unwrap();
    run(&probe, &host);
    let rss0 = rss_kib();
    let cpu0 = thread_cpu("kernel-log");
    let start = Instant::now();
    let mut written = 0u64;
    let mut lines_iter = corpus.iter().cycle();
    let mut next_report = Duration::from_secs(10);
    let mut tick = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        tick += 1;
        // 16.7 lines per 100 ms, the remainder carried.
        let due = tick * 10_000 / 600;
        let mut batch = String::new();
        while written < due {
            batch.push_str(lines_iter.next().unwrap());
            batch.push('\n');
            written += 1;
        }
        file.write_all(batch.as_bytes()).unwrap();
        if start.elapsed() >= next_report {
            run(&probe, &host);
            next_report += Duration::from_secs(10);
        }
        let next = Duration::from_millis(100 * tick);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let (_, events) = run(&probe, &host);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = thread_cpu("kernel-log") - cpu0;
    println!(
        "storm: {written} lines in {elapsed:.0} s ({:.0} lines/min): follower {:.3}% of a core, RSS {} KiB -> {} KiB, {events} events kept",
        written as f64 * 60.0 / elapsed,
        cpu * 100.0 / elapsed,
        rss0,
        rss_kib()
    );
}
