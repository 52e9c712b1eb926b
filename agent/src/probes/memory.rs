//! The memory probe: MemAvailable against the kubelet's `memory.available<100Mi` eviction
//! line, swap, pressure stall information, kernel OOM kills and the largest processes.
//!
//! The kubelet's own `memory.available` is computed from the root cgroup (capacity minus
//! working set) and reads a little lower than MemAvailable; the warning threshold leaves room
//! for that.

use std::{
    sync::Mutex,
    time::{Duration, SystemTime},
};

use nodemedic_proto::{
    checks,
    finding::human_bytes,
    v1::{Evidence, Finding, MemorySection, ProcessMemory, Severity},
};

use serde::Deserialize;

use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{
    host::HostError,
    kubelet::{Amount, KubeletConfig, Line, eviction, with_line},
    parse::psi,
    units::{Percent, percent},
};

/// Memory limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryThresholds {
    /// Critical below this MemAvailable: the kubelet's `memory.available<100Mi` line, used
    /// when the node has no kubelet config (else the config's line, or its default).
    pub eviction_available_bytes: u64,
    /// Warn when MemAvailable falls below this share of MemTotal (default 10%).
    pub warn_available: Percent,
    /// Warn when some task stalled on memory this share of the last minute (default 10%).
    pub pressure_warn_some_avg60: Percent,
    /// Critical when all tasks stalled on memory this share of the last minute (default 5%).
    pub pressure_critical_full_avg60: Percent,
    /// Warn when this share of swap is in use (default 50%).
    pub swap_warn_used: Percent,
    /// How many of the largest processes to report (default 5).
    pub top_processes: usize,
    /// How often the largest processes are ranked again (default 1m; at once when a memory
    /// finding fires). Ranking reads every `/proc/<pid>/stat`, the costliest part of a
    /// collection on a node with many processes.
    #[serde(with = "humantime_serde")]
    pub top_processes_every: Duration,
}

impl Default for MemoryThresholds {
    fn default() -> Self {
        MemoryThresholds {
            eviction_available_bytes: 100 * 1024 * 1024,
            warn_available: Percent::of(10.0),
            pressure_warn_some_avg60: Percent::of(10.0),
            pressure_critical_full_avg60: Percent::of(5.0),
            swap_warn_used: Percent::of(50.0),
            top_processes: 5,
            top_processes_every: Duration::from_secs(60),
        }
    }
}

/// Measures memory; remembers the OOM kill counter of the previous run and the latest
/// ranking of processes.
#[derive(Debug, Default)]
pub struct MemoryProbe {
    thresholds: MemoryThresholds,
    state: Mutex<State>,
}

impl MemoryProbe {
    /// A probe judging against `thresholds`.
    pub fn new(thresholds: MemoryThresholds) -> Self {
        MemoryProbe {
            thresholds,
            state: Mutex::default(),
        }
    }
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
        let t = &self.thresholds;
        let meminfo: procfs_core::Meminfo = host.parse("/proc/meminfo")?;
        let available_bytes = meminfo.mem_available.ok_or_else(|| HostError::Parse {
            path: host.path("/proc/meminfo"),
            reason: "no MemAvailable line (MemAvailable needs Linux 3.14)".into(),
        })?;
        let vmstat: procfs_core::VmStat = host.parse("/proc/vmstat")?;
        let pressure = host
            .read_if_present("/proc/pressure/memory")?
            .map(|text| psi::parse(&text).map_err(|e| host.parse_error("/proc/pressure/memory", e)))
            .transpose()?;

        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let oom_kills_total = vmstat.0.get("oom_kill").map_or(0, |&n| n.max(0) as u64);
        // A counter that went down means the node rebooted: count from zero.
        let oom_kills_since_last = state
            .last_oom_kills
            .map(|prev| oom_kills_total.checked_sub(prev).unwrap_or(oom_kills_total));
        state.last_oom_kills = Some(oom_kills_total);

        let mut section = MemorySection {
            total_bytes: meminfo.mem_total,
            available_bytes,
            swap_total_bytes: meminfo.swap_total,
            swap_free_bytes: meminfo.swap_free,
            pressure,
            oom_kills_total,
            oom_kills_since_last,
            top_processes: state.top.clone(),
        };
        let lines = MemoryLines::new(KubeletConfig::read(host).as_ref(), t);
        let mut findings = judge(&section, t, &lines);
        let stale = state.top_ranked_at.is_none_or(|at| {
            ctx.now
                .duration_since(at)
                .map_or(true, |age| age >= t.top_processes_every)
        });
        if stale || !findings.is_empty() {
            state.top = top_processes(ctx, t.top_processes);
            state.top_ranked_at = Some(ctx.now);
            section.top_processes = state.top.clone();
            findings = judge(&section, t, &lines);
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
            let stat = <procfs_core::process::Stat as procfs_core::FromRead>::from_file(
                entry.path().join("stat"),
            )
            .ok()?;
            Some(ProcessMemory {
                pid,
                name: stat.comm,
                rss_bytes: stat.rss.saturating_mul(page_size),
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
/// The kubelet's `memory.available` lines in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryLines {
    /// The hard line: from the kubelet's config, else its default (or the agent's
    /// `eviction_available_bytes` when the node has no kubelet config).
    pub hard: Option<Line>,
    /// The soft line, when the kubelet's config sets one.
    pub soft: Option<Line>,
}

impl MemoryLines {
    /// The lines of a node with `kubelet` (its config file), else the agent's `t`.
    pub fn new(kubelet: Option<&KubeletConfig>, t: &MemoryThresholds) -> Self {
        match kubelet {
            Some(k) => MemoryLines {
                hard: k.hard_eviction("memory.available"),
                soft: k.soft_eviction("memory.available"),
            },
            None => MemoryLines {
                hard: Some(Line::nodemedic(
                    "memory.available",
                    Amount::Absolute(t.eviction_available_bytes),
                )),
                soft: None,
            },
        }
    }
}

/// The findings for a memory section, against the agent's thresholds `t` and the run's
/// eviction `lines`.
pub fn judge(s: &MemorySection, t: &MemoryThresholds, lines: &MemoryLines) -> Vec<Finding> {
    let mut out = Vec::new();
    let avail_pct = percent(s.available_bytes, s.total_bytes);
    let available = eviction(
        avail_pct,
        s.total_bytes,
        lines.hard.as_ref(),
        lines.soft.as_ref(),
        t.warn_available.get(),
        "evicting pods (the kernel OOM-kills soon after)",
    );
    if let Some((severity, why, line)) = available {
        let f = Finding::fail(
            checks::MEMORY_AVAILABLE,
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
        .with(Evidence::percent("available_percent", avail_pct));
        out.push(with_line(f, line));
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
                    checks::MEMORY_PRESSURE,
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
                checks::MEMORY_OOM_KILLS,
                Severity::Warning,
                "",
                format!("The kernel OOM-killed {n} process(es) since the last report ({} since boot); the kernel log names them.", s.oom_kills_total),
            )
            .with(Evidence::count("oom_kills", n))
            .with(Evidence::count("oom_kills_since_boot", s.oom_kills_total)),
        ),
        None if s.oom_kills_total > 0 => out.push(
            Finding::fail(
                checks::MEMORY_OOM_KILLS,
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
                    checks::MEMORY_SWAP,
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
        let t = MemoryThresholds::default();
        judge(s, &t, &MemoryLines::new(None, &t))
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
        let t = MemoryThresholds::default();
        let f = &judge(
            &section(8192 * MIB, 90 * MIB),
            &t,
            &MemoryLines::new(None, &t),
        )[0];
        assert!(
            f.message.contains("memory.available<100.0 MiB"),
            "{}",
            f.message
        );
    }

    #[test]
    fn the_kubelet_s_soft_and_percentage_lines() {
        let t = MemoryThresholds::default();
        let kubelet: crate::kubelet::KubeletConfig = serde_saphyr::from_str(
            "evictionHard:\n  memory.available: 5%\nevictionSoft:\n  memory.available: 1Gi\n",
        )
        .unwrap();
        let lines = MemoryLines::new(Some(&kubelet), &t);
        let judged = |available| judge(&section(8192 * MIB, available), &t, &lines);
        let soft = &judged(900 * MIB)[0];
        assert_eq!(soft.severity(), Severity::Critical);
        assert!(
            soft.message
                .contains("soft eviction line memory.available<1.0 GiB (evictionSoft"),
            "{}",
            soft.message
        );
        let hard = &judged(400 * MIB)[0];
        assert!(
            hard.message.contains("memory.available<5% (evictionHard"),
            "{}",
            hard.message
        );
        assert_eq!(
            hard.text("threshold_source"),
            Some("kubelet_config_evictionHard")
        );
        assert_eq!(judged(2048 * MIB), []);
    }

    /// A `/proc/<pid>/stat` line as Linux 6.x writes it (52 fields), for `pid` named
    /// `comm` with `rss` pages resident.
    fn stat_line(pid: u32, comm: &str, rss: u64) -> String {
        format!(
            "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 1073 0 0 0 12 3 0 0 20 0 1 0 1185 9187328 \
             {rss} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    #[test]
    fn real_meminfo_and_vmstat_of_a_kubernetes_worker() {
        let host = crate::testing::FakeHost::new();
        host.write(
            "/proc/meminfo",
            &crate::testing::fixture("proc/hotsos-k8s-node-meminfo"),
        );
        host.write(
            "/proc/vmstat",
            &crate::testing::fixture("proc/hotsos-k8s-node-vmstat"),
        );
        let ctx = ProbeContext {
            host: host.root(),
            now: SystemTime::now(),
        };
        let Section::Memory(m) = MemoryProbe::default().run(&ctx).unwrap().section else {
            panic!()
        };
        assert_eq!(m.total_bytes, 4_026_036 * 1024);
        assert_eq!(m.available_bytes, 2_775_844 * 1024);
        assert_eq!(m.oom_kills_total, 0);
    }

    #[test]
    fn a_meminfo_without_memavailable_or_broken_is_an_error_naming_the_file() {
        let host = crate::testing::FakeHost::new();
        let ctx = ProbeContext {
            host: host.root(),
            now: SystemTime::now(),
        };
        // prometheus/procfs's own fixture has no MemAvailable line, as kernels before 3.14.
        host.write(
            "/proc/meminfo",
            &crate::testing::fixture("proc/procfs-go-fixture-meminfo"),
        );
        let err = MemoryProbe::default().run(&ctx).unwrap_err().to_string();
        assert!(
            err.contains("meminfo") && err.contains("Linux 3.14"),
            "{err}"
        );
        host.write("/proc/meminfo", "MemTotal: lots kB\n");
        let err = MemoryProbe::default().run(&ctx).unwrap_err().to_string();
        assert!(
            err.contains("/proc/meminfo") && err.contains("lots"),
            "{err}"
        );
        assert!(!err.contains("procfs bug"), "{err}");
    }

    #[test]
    fn a_process_named_with_spaces_and_parentheses_is_ranked_whole() {
        let host = crate::testing::FakeHost::new();
        host.write(
            "/proc/4242/stat",
            &stat_line(4242, "tmux: server) (x)", 1234),
        );
        let ctx = ProbeContext {
            host: host.root(),
            now: SystemTime::now(),
        };
        let top = top_processes(&ctx, 5);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].name, "tmux: server) (x)");
        assert_eq!(top[0].rss_bytes, 1234 * rustix::param::page_size() as u64);
    }

    #[test]
    fn processes_are_ranked_once_a_minute_or_at_once_on_trouble() {
        let host = crate::testing::FakeHost::new();
        host.write("/proc/4242/stat", &stat_line(4242, "hog", 1000));
        let probe = MemoryProbe::default();
        let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let run = |secs: u64| {
            let ctx = ProbeContext {
                host: host.root(),
                now: t0 + std::time::Duration::from_secs(secs),
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
        host.write("/proc/4243/stat", &stat_line(4243, "bigger", 9000));
        assert_eq!(run(30), ["hog"], "the ranking is reused within a minute");
        assert_eq!(run(60), ["bigger", "hog"]);
        host.write("/proc/4244/stat", &stat_line(4244, "biggest", 99000));
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
