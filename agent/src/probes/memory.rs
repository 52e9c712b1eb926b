//! The memory probe: MemAvailable against the kubelet's `memory.available<100Mi` eviction
//! line, swap, pressure stall information, kernel OOM kills and the largest processes.
//!
//! The kubelet's own `memory.available` is computed from the root cgroup (capacity minus
//! working set) and reads a little lower than MemAvailable; the warning threshold leaves room
//! for that.

use std::{sync::Mutex, time::SystemTime};

use nodemedic_proto::{
    finding::human_bytes,
    v1::{Evidence, Finding, MemorySection, ProcessMemory, Severity},
};

use super::percent;
use crate::{
    config::MemoryThresholds,
    parse::{kv::KvFile, proc_stat, psi},
    probe::{Probe, ProbeContext, ProbeError, ProbeOutput, Section},
};

/// Measures memory; remembers the OOM kill counter of the previous run and the latest
/// ranking of processes.
#[derive(Debug, Default)]
pub struct MemoryProbe {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_oom_kills: Option<u64>,
    top: Vec<ProcessMemory>,
    top_ranked_at: Option<SystemTime>,
}

impl Probe for MemoryProbe {
    fn id(&self) -> &'static str {
        "memory"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let host = &ctx.host;
        let t = &ctx.thresholds.memory;
        let meminfo = KvFile::parse(&host.read("/proc/meminfo")?)
            .map_err(|e| ProbeError::parse(host, "/proc/meminfo", e))?;
        let field = |key: &str| {
            meminfo.get(key).ok_or_else(|| ProbeError::Parse {
                path: host.path("/proc/meminfo"),
                reason: format!("no {key} line (MemAvailable needs Linux 3.14)"),
            })
        };
        let vmstat = KvFile::parse(&host.read("/proc/vmstat")?)
            .map_err(|e| ProbeError::parse(host, "/proc/vmstat", e))?;
        let pressure = host
            .read_if_present("/proc/pressure/memory")?
            .map(|text| {
                psi::parse(&text).map_err(|e| ProbeError::parse(host, "/proc/pressure/memory", e))
            })
            .transpose()?;

        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let oom_kills_total = vmstat.get("oom_kill").unwrap_or(0);
        // A counter that went down means the node rebooted: count from zero.
        let oom_kills_since_last = state
            .last_oom_kills
            .map(|prev| oom_kills_total.checked_sub(prev).unwrap_or(oom_kills_total));
        state.last_oom_kills = Some(oom_kills_total);

        let mut section = MemorySection {
            total_bytes: field("MemTotal")?,
            available_bytes: field("MemAvailable")?,
            swap_total_bytes: meminfo.get("SwapTotal").unwrap_or(0),
            swap_free_bytes: meminfo.get("SwapFree").unwrap_or(0),
            pressure,
            oom_kills_total,
            oom_kills_since_last,
            top_processes: state.top.clone(),
        };
        let mut findings = judge(&section, t);
        let stale = state.top_ranked_at.is_none_or(|at| {
            ctx.now
                .duration_since(at)
                .map_or(true, |age| age >= t.top_processes_every)
        });
        if stale || !findings.is_empty() {
            state.top = top_processes(ctx, t.top_processes);
            state.top_ranked_at = Some(ctx.now);
            section.top_processes = state.top.clone();
            findings = judge(&section, t);
        }
        Ok(ProbeOutput {
            section: Section::Memory(section),
            findings,
        })
    }
}

/// The largest resident processes. Processes that exit while being read are skipped.
fn top_processes(ctx: &ProbeContext, n: usize) -> Vec<ProcessMemory> {
    if n == 0 {
        return Vec::new();
    }
    let page_size = rustix::param::page_size() as u64;
    let Ok(dir) = std::fs::read_dir(ctx.host.path("/proc")) else {
        return Vec::new();
    };
    let mut all: Vec<ProcessMemory> = dir
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let stat = proc_stat::parse(&text).ok()?;
            Some(ProcessMemory {
                pid,
                name: stat.comm,
                rss_bytes: stat.rss_pages * page_size,
            })
        })
        .filter(|p| p.rss_bytes > 0)
        .collect();
    if all.len() > n {
        all.select_nth_unstable_by(n - 1, |a, b| b.rss_bytes.cmp(&a.rss_bytes));
        all.truncate(n);
    }
    all.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
    all
}

fn top_text(s: &MemorySection) -> String {
    let names: Vec<String> = s
        .top_processes
        .iter()
        .take(3)
        .map(|p| format!("{} ({})", p.name, human_bytes(p.rss_bytes as f64)))
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" Largest: {}.", names.join(", "))
    }
}

/// The findings for a memory section.
pub fn judge(s: &MemorySection, t: &MemoryThresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let avail_pct = percent(s.available_bytes, s.total_bytes);
    let line = human_bytes(t.eviction_available_bytes as f64);
    let available = if s.available_bytes < t.eviction_available_bytes {
        Some((
            Severity::Critical,
            format!(
                "below the kubelet's eviction line memory.available<{line}: it is evicting pods"
            ),
        ))
    } else if avail_pct < t.warn_available.get() {
        Some((
            Severity::Warning,
            format!(
                "the kubelet evicts pods at memory.available<{line}, the kernel OOM-kills soon after"
            ),
        ))
    } else {
        None
    };
    if let Some((severity, why)) = available {
        out.push(
            Finding::fail(
                "memory.available",
                severity,
                "",
                format!(
                    "{} of {} memory available ({avail_pct:.1}%): {why}.{}",
                    human_bytes(s.available_bytes as f64),
                    human_bytes(s.total_bytes as f64),
                    top_text(s)
                ),
            )
            .with(Evidence::bytes("available_bytes", s.available_bytes))
            .with(Evidence::bytes("total_bytes", s.total_bytes))
            .with(Evidence::percent("available_percent", avail_pct)),
        );
    }

    if let Some(p) = &s.pressure {
        let verdict = if p.full_avg60 >= t.pressure_critical_full_avg60.get() {
            Some((
                Severity::Critical,
                format!(
                    "every task stalled on memory {:.1}% of the last minute",
                    p.full_avg60
                ),
            ))
        } else if p.some_avg60 >= t.pressure_warn_some_avg60.get() {
            Some((
                Severity::Warning,
                format!(
                    "some task stalled on memory {:.1}% of the last minute",
                    p.some_avg60
                ),
            ))
        } else {
            None
        };
        if let Some((severity, what)) = verdict {
            out.push(
                Finding::fail(
                    "memory.pressure",
                    severity,
                    "",
                    format!("Memory pressure: {what}; the node is reclaiming pages instead of working.{}", top_text(s)),
                )
                .with(Evidence::percent("some_avg60", p.some_avg60))
                .with(Evidence::percent("full_avg60", p.full_avg60))
                .with(Evidence::percent("some_avg10", p.some_avg10)),
            );
        }
    }

    match s.oom_kills_since_last {
        Some(n) if n > 0 => out.push(
            Finding::fail(
                "memory.oom_kills",
                Severity::Warning,
                "",
                format!("The kernel OOM-killed {n} process(es) since the last report ({} since boot); the kernel log names them.", s.oom_kills_total),
            )
            .with(Evidence::count("oom_kills", n))
            .with(Evidence::count("oom_kills_since_boot", s.oom_kills_total)),
        ),
        None if s.oom_kills_total > 0 => out.push(
            Finding::fail(
                "memory.oom_kills",
                Severity::Info,
                "",
                format!("The kernel has OOM-killed {} process(es) since boot; the kernel log names them.", s.oom_kills_total),
            )
            .with(Evidence::count("oom_kills_since_boot", s.oom_kills_total)),
        ),
        _ => {}
    }

    if s.swap_total_bytes > 0 {
        let used = s.swap_total_bytes.saturating_sub(s.swap_free_bytes);
        let used_pct = percent(used, s.swap_total_bytes);
        if used_pct >= t.swap_warn_used.get() {
            out.push(
                Finding::fail(
                    "memory.swap",
                    Severity::Warning,
                    "",
                    format!(
                        "{} of {} swap in use ({used_pct:.0}%): memory limits and eviction do not see swapped pages, and swapping slows pods down.",
                        human_bytes(used as f64),
                        human_bytes(s.swap_total_bytes as f64)
                    ),
                )
                .with(Evidence::bytes("swap_used_bytes", used))
                .with(Evidence::bytes("swap_total_bytes", s.swap_total_bytes))
                .with(Evidence::percent("swap_used_percent", used_pct)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodemedic_proto::v1::Psi;

    const MIB: u64 = 1024 * 1024;

    fn section(total: u64, avail: u64) -> MemorySection {
        MemorySection {
            total_bytes: total,
            available_bytes: avail,
            ..Default::default()
        }
    }

    fn checks(s: &MemorySection) -> Vec<(String, Severity)> {
        judge(s, &MemoryThresholds::default())
            .into_iter()
            .map(|f| (f.check.clone(), f.severity()))
            .collect()
    }

    #[test]
    fn available_memory_against_the_eviction_line() {
        assert_eq!(checks(&section(8192 * MIB, 4096 * MIB)), []);
        assert_eq!(
            checks(&section(8192 * MIB, 500 * MIB)),
            [("memory.available".into(), Severity::Warning)]
        );
        assert_eq!(
            checks(&section(8192 * MIB, 90 * MIB)),
            [("memory.available".into(), Severity::Critical)]
        );
        let f = &judge(&section(8192 * MIB, 90 * MIB), &MemoryThresholds::default())[0];
        assert!(
            f.message.contains("memory.available<100.0 MiB"),
            "{}",
            f.message
        );
    }

    #[test]
    fn processes_are_ranked_once_a_minute_or_at_once_on_trouble() {
        let host = crate::testing::FakeHost::new();
        host.write(
            "/proc/4242/stat",
            &format!("4242 (hog) S {}", "0 ".repeat(20) + "1000 0"),
        );
        let probe = MemoryProbe::default();
        let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let run = |secs: u64| {
            let ctx = ProbeContext {
                host: host.root(),
                now: t0 + std::time::Duration::from_secs(secs),
                thresholds: Default::default(),
            };
            let Section::Memory(m) = probe.run(&ctx).unwrap().section else {
                panic!()
            };
            m.top_processes
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(0), ["hog"]);
        host.write(
            "/proc/4243/stat",
            &format!("4243 (bigger) S {}", "0 ".repeat(20) + "9000 0"),
        );
        assert_eq!(run(30), ["hog"], "the ranking is reused within a minute");
        assert_eq!(run(60), ["bigger", "hog"]);
        host.write(
            "/proc/4244/stat",
            &format!("4244 (biggest) S {}", "0 ".repeat(20) + "99000 0"),
        );
        host.set_memory(8 * 1024 * 1024, 10 * 1024, 0, 0);
        assert_eq!(
            run(70),
            ["biggest", "bigger", "hog"],
            "low memory ranks again at once"
        );
    }

    #[test]
    fn pressure_oom_and_swap() {
        let mut s = section(8192 * MIB, 4096 * MIB);
        s.pressure = Some(Psi {
            some_avg60: 12.0,
            ..Default::default()
        });
        s.oom_kills_total = 7;
        s.oom_kills_since_last = Some(2);
        s.swap_total_bytes = 1000 * MIB;
        s.swap_free_bytes = 100 * MIB;
        assert_eq!(
            checks(&s),
            [
                ("memory.pressure".into(), Severity::Warning),
                ("memory.oom_kills".into(), Severity::Warning),
                ("memory.swap".into(), Severity::Warning),
            ]
        );
        s.pressure = Some(Psi {
            full_avg60: 6.0,
            ..Default::default()
        });
        s.oom_kills_since_last = None;
        s.swap_total_bytes = 0;
        assert_eq!(
            checks(&s),
            [
                ("memory.pressure".into(), Severity::Critical),
                ("memory.oom_kills".into(), Severity::Info)
            ]
        );
    }
}
