//! The journal probe: what one run costs on a node whose journal grows between runs (the
//! kubelet and containerd chatty, one line in twenty a problem), and on a quiet node. The
//! journal files are real, written by systemd-journal-remote.
//!
//! `cargo bench -p nodemedic-agent --bench journal` (root: the fake host is a tmpfs).

use std::time::{Duration, SystemTime};

use nodemedic_agent::{
    probes::journal::{JournalConfig, JournalProbe},
    probes::{Probe, ProbeContext, Section},
    testing::{FakeHost, JournalEntry, write_journal},
};

fn cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

const DIR: &str = "/var/log/journal/0f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// `n` entries as a busy node logs them, `seconds_ago` before now.
fn batch(n: usize, seconds_ago: u64) -> Vec<JournalEntry> {
    let start = SystemTime::now() - Duration::from_secs(seconds_ago);
    (0..n)
        .map(|i| (i, start + Duration::from_micros(i as u64 * 50)))
        .map(|(i, at)| match i % 20 {
            0 => JournalEntry::new("kubelet", "kubelet.service", "PLEG is not healthy: pleg was last seen active 3m2s ago; threshold is 3m0s", at),
            1..=12 => JournalEntry::new("kubelet", "kubelet.service", &format!(r#"I1207 06:00:00.000000    2114 kubelet.go:2421] "SyncLoop (PLEG): event for pod" pod="default/web-{i}" event={{"ID":"4f1c","Type":"ContainerStarted"}}"#), at),
            13..=17 => JournalEntry::new("containerd", "containerd.service", &format!(r#"time="2026-12-07T06:00:00Z" level=info msg="StartContainer for \"{i:064x}\" returns successfully""#), at),
            _ => JournalEntry::new("systemd", "init.scope", "Started session-42.scope - Session 42 of User admin.", at),
        })
        .collect()
}

fn main() {
    let host = FakeHost::new();
    let file = host.root().path(&format!("{DIR}/system.journal"));
    // Ten minutes of history before the agent starts.
    write_journal(&file, &batch(20_000, 600));
    let probe = JournalProbe::new(JournalConfig::default());
    let ctx = || ProbeContext {
        host: host.root(),
        now: SystemTime::now(),
    };
    let cpu0 = cpu_time();
    let first = probe.run(&ctx()).unwrap();
    let Section::Journal(s) = first.section else {
        unreachable!()
    };
    println!(
        "journal first run (20 min look-back): {} entries, {:.1} ms CPU",
        s.entries_read,
        (cpu_time() - cpu0).as_secs_f64() * 1e3
    );
    for per_run in [0usize, 100, 1_000] {
        let runs = 20;
        let mut cpu = Duration::ZERO;
        let mut excerpt = 0;
        for _ in 0..runs {
            if per_run > 0 {
                write_journal(&file, &batch(per_run, 0));
            }
            let start = cpu_time();
            let out = probe.run(&ctx()).unwrap();
            cpu += cpu_time() - start;
            if let Section::Journal(s) = out.section {
                excerpt += s.excerpt.len();
            }
        }
        println!(
            "journal run with {per_run:>5} new entries: {:>8.2} ms CPU ({:.2} us an entry), {} excerpt lines a run",
            cpu.as_secs_f64() * 1e3 / runs as f64,
            if per_run == 0 {
                0.0
            } else {
                cpu.as_secs_f64() * 1e6 / (runs * per_run) as f64
            },
            excerpt / runs
        );
    }
}
