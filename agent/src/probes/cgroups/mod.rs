//! The cgroups probe: each pod's and container's memory against its limit, read from the
//! memory cgroups the kubelet makes ([`walk`]), so an OOM kill or an eviction is seen
//! coming — the working set near the limit, its growth and the minutes left, limit hits
//! without a kill yet, and kills counted by the kernel even when the pod object is gone —
//! containers the kernel keeps stopping at their CPU limit (CFS throttling, from the same
//! cgroups' `cpu.stat`), and each pod's ephemeral storage ([`ephemeral`]) against its limit. Cgroups are named
//! by the CRI runtime's labels or the Kubernetes API ([`names`]).

pub mod config;
pub mod ephemeral;
pub mod names;
pub mod walk;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use nodemedic_proto::checks;
use nodemedic_proto::v1::{CgroupsSection, Evidence, Finding, PodUsage, Severity};

use self::{
    config::CgroupsConfig,
    names::{Name, Names},
    walk::Found,
};
use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{
    forecast::History,
    kubernetes::view::KubeSlot,
    parse::{cgroup_cpu::CgroupCpu, cgroup_memory::CgroupMemory},
    runtime::{
        endpoint::{Endpoint, Sockets},
        inventory::RuntimeKind,
    },
    units::{Percent, percent},
};

/// Counters of one cgroup at one sample.
#[derive(Debug, Clone, Copy)]
struct Counters {
    at: SystemTime,
    oom_kills: u64,
    pressure_events: u64,
}

/// CFS counters of one CPU cgroup at one sample.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: SystemTime,
    periods: u64,
    throttled: u64,
}

#[derive(Debug, Default)]
struct State {
    history: History,
    counters: HashMap<PathBuf, VecDeque<Counters>>,
    cpu: HashMap<PathBuf, VecDeque<CpuSample>>,
    /// When each cgroup's OOM kill counter last rose (or was first seen above zero), and
    /// whether that was seen happen.
    kills: HashMap<PathBuf, (SystemTime, bool)>,
    names: Names,
    /// The last ephemeral-storage measurement: when, bytes per pod UID, budget exhausted.
    ephemeral: Option<(Instant, HashMap<String, u64>, bool)>,
    /// The last walk's result, repeated until the next walk is due.
    last: Option<(Instant, ProbeOutput)>,
}

/// Walks the pod cgroups; keeps samples between runs.
#[derive(Debug)]
pub struct CgroupsProbe {
    config: CgroupsConfig,
    sockets: Sockets,
    runtime_timeout: Duration,
    nodefs_warn_available: Percent,
    kube: KubeSlot,
    state: Mutex<State>,
}

impl CgroupsProbe {
    /// A probe with `config`; container names from the CRI runtime at `sockets` (asked
    /// with `runtime_timeout`) and from the Kubernetes view in `kube` once the agent has
    /// one; the pods using the most ephemeral storage are named when nodefs has less than
    /// `nodefs_warn_available` left (the disk probe's warning line).
    pub fn new(
        config: CgroupsConfig,
        sockets: Sockets,
        runtime_timeout: Duration,
        nodefs_warn_available: Percent,
        kube: KubeSlot,
    ) -> Self {
        CgroupsProbe {
            config,
            sockets,
            runtime_timeout,
            nodefs_warn_available,
            kube,
            state: Mutex::default(),
        }
    }
}

/// One measured cgroup, named.
struct Measured<'a> {
    found: &'a Found,
    name: Name,
    memory: CgroupMemory,
    /// Its CPU bandwidth files, when the node has a CPU controller and they read.
    cpu: Option<CgroupCpu>,
    growth_per_minute: f64,
    limit_in_minutes: Option<f64>,
    /// Periods run and throttled over the throttle window (from the oldest sample in it).
    cpu_window: Option<(u64, u64, Duration)>,
}

impl Measured<'_> {
    fn subject(&self) -> String {
        let pod = if self.name.pod.is_empty() {
            format!("pod {}", self.found.pod.pod_uid)
        } else {
            format!("{}/{}", self.name.namespace, self.name.pod)
        };
        match &self.found.pod.container_id {
            None => pod,
            Some(_) if !self.name.container.is_empty() => format!("{pod}/{}", self.name.container),
            Some(id) => format!("{pod}/{}", &id[..12.min(id.len())]),
        }
    }

    fn finding(&self, check: &str, severity: Severity, message: String) -> Finding {
        let mut f = Finding::fail(check, severity, &self.subject(), message)
            .with(Evidence::text("pod_uid", self.found.pod.pod_uid.clone()));
        for (key, value) in [
            ("namespace", &self.name.namespace),
            ("pod", &self.name.pod),
            ("container", &self.name.container),
        ] {
            if !value.is_empty() {
                f = f.with(Evidence::text(key, value.clone()));
            }
        }
        if let Some(id) = &self.found.pod.container_id {
            f = f.with(Evidence::text("container_id", id.clone()));
        }
        f
    }

    fn share(&self) -> Option<f64> {
        self.memory
            .limit
            .map(|l| percent(self.memory.working_set, l))
    }
}

impl Probe for CgroupsProbe {
    fn id(&self) -> &'static str {
        "cgroups"
    }

    fn checks(&self) -> &'static [&'static str] {
        &[
            checks::POD_MEMORY_NEAR_LIMIT,
            checks::POD_MEMORY_THROTTLED,
            checks::POD_CPU_THROTTLED,
            checks::POD_OOM_KILLS,
            checks::POD_EPHEMERAL_STORAGE,
        ]
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, output)) = &state.last
            && at.elapsed() < self.config.every
        {
            return Ok(output.clone());
        }
        let output = self.walk(&mut state, ctx)?;
        state.last = Some((Instant::now(), output.clone()));
        Ok(output)
    }
}

impl CgroupsProbe {
    /// One walk: measure every pod cgroup and judge.
    fn walk(&self, state: &mut State, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let started = Instant::now();
        let mut section = CgroupsSection::default();
        let mut findings = Vec::new();
        let Some((version, found)) = walk::find(&ctx.host) else {
            return Ok(ProbeOutput {
                section: Section::Cgroups(section),
                findings,
            });
        };
        section.cgroup_version = version.name().to_owned();
        let cgroups: Vec<_> = found.iter().map(|f| &f.pod).collect();
        let cri = Endpoint::discover(&ctx.host, &self.sockets)
            .into_iter()
            .find(|e| e.kind == RuntimeKind::Cri)
            .map(|e| ctx.host.path(&e.host_path));
        let kube = self.kube.get().map(|k| &**k);
        state
            .names
            .learn(&cgroups, kube, cri.as_deref(), self.runtime_timeout);
        state.names.retain(&cgroups);

        let mut measured = Vec::new();
        for f in &found {
            // A container that exits mid-walk takes its cgroup with it.
            let Ok(memory) = walk::read(version, &f.dir) else {
                continue;
            };
            let key = f.dir.to_string_lossy();
            let forecast = memory.limit.and_then(|limit| {
                state.history.record(
                    &key,
                    ctx.now,
                    memory.working_set,
                    limit.saturating_sub(memory.working_set),
                    self.config.growth_window,
                    self.config.growth_min_span,
                )
            });
            let cpu = f
                .cpu_dir
                .as_deref()
                .and_then(|dir| walk::read_cpu(version, dir).ok());
            measured.push(Measured {
                found: f,
                name: state.names.of(&f.pod),
                growth_per_minute: forecast.map_or(0.0, |f| f.bytes_per_hour / 60.0),
                limit_in_minutes: forecast.and_then(|f| f.full_in_hours).map(|h| h * 60.0),
                cpu_window: cpu.map(|c| self.cpu_window(state, &f.dir, c, ctx.now)),
                memory,
                cpu,
            });
        }
        section.pods = found
            .iter()
            .filter(|f| f.pod.container_id.is_none())
            .count() as u32;
        section.containers = found.len() as u32 - section.pods;
        // Forget the cgroups that are gone (a set: hundreds of them, at every walk).
        let dirs: HashSet<&Path> = measured.iter().map(|m| m.found.dir.as_path()).collect();
        state.history.retain(|k| dirs.contains(Path::new(k)));
        state.counters.retain(|k, _| dirs.contains(k.as_path()));
        state.cpu.retain(|k, _| dirs.contains(k.as_path()));
        state.kills.retain(|k, _| dirs.contains(k.as_path()));

        for m in &measured {
            findings.extend(self.near_limit(m));
            findings.extend(self.counters(state, m, ctx.now));
            findings.extend(self.cpu_throttled(m));
        }
        findings.extend(self.ephemeral(state, ctx, &measured)?);

        let mut ranked: Vec<&Measured> = measured.iter().collect();
        ranked.sort_by(|a, b| {
            let key = |m: &Measured| (m.share().unwrap_or(-1.0), m.memory.working_set as f64);
            key(b)
                .partial_cmp(&key(a))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        section.top = ranked
            .into_iter()
            .take(self.config.top)
            .map(|m| usage(m, state))
            .collect();
        section.walk_micros = started.elapsed().as_micros() as u64;
        Ok(ProbeOutput {
            section: Section::Cgroups(section),
            findings,
        })
    }
}

fn usage(m: &Measured, state: &State) -> PodUsage {
    let eph = state
        .ephemeral
        .as_ref()
        .and_then(|(_, bytes, _)| bytes.get(&m.found.pod.pod_uid).copied())
        .unwrap_or(0);
    PodUsage {
        namespace: m.name.namespace.clone(),
        pod: m.name.pod.clone(),
        pod_uid: m.found.pod.pod_uid.clone(),
        container: m.name.container.clone(),
        container_id: m.found.pod.container_id.clone().unwrap_or_default(),
        usage_bytes: m.memory.usage,
        working_set_bytes: m.memory.working_set,
        limit_bytes: m.memory.limit.unwrap_or(0),
        rss_bytes: m.memory.rss,
        cache_bytes: m.memory.cache,
        oom_kills: m.memory.oom_kills,
        limit_hits: m.memory.limit_hits,
        high_events: m.memory.high_events,
        growth_bytes_per_minute: m.growth_per_minute,
        limit_in_minutes: m.limit_in_minutes.unwrap_or(0.0),
        memory_pressure: m.memory.pressure,
        ephemeral_bytes: eph,
        ephemeral_limit_bytes: 0,
        cpu_limit_cores: m.cpu.and_then(|c| c.limit_cpus).unwrap_or(0.0),
        cpu_throttled_percent: m
            .cpu_window
            .map_or(0.0, |(periods, throttled, _)| percent(throttled, periods)),
    }
}

/// A CPU limit as Kubernetes writes it: `200m`, `2`.
fn cores(limit: f64) -> String {
    if limit.fract() == 0.0 {
        format!("{limit}")
    } else {
        format!("{:.0}m", limit * 1000.0)
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1 << 20) as f64)
}

impl CgroupsProbe {
    /// `pod.memory_near_limit`: the working set near the limit, or reaching it soon.
    fn near_limit(&self, m: &Measured) -> Option<Finding> {
        let limit = m.memory.limit?;
        let share = m.share()?;
        let soon = m
            .limit_in_minutes
            .filter(|min| *min <= self.config.limit_within.as_secs_f64() / 60.0);
        if share < self.config.near_limit_percent.get() && soon.is_none() {
            return None;
        }
        let severity = if share >= 97.0 || soon.is_some_and(|min| min <= 5.0) {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let when = match soon.or(m.limit_in_minutes) {
            Some(min) => format!(
                ", growing {}/min: limit reached in {min:.0} minutes",
                mib(m.growth_per_minute)
            ),
            None => String::new(),
        };
        let mut f = m
            .finding(
                checks::POD_MEMORY_NEAR_LIMIT,
                severity,
                format!(
                    "{} uses {} of its {} memory limit ({share:.0}%){when}; the kernel OOM-kills it at the limit",
                    m.subject(),
                    mib(m.memory.working_set as f64),
                    mib(limit as f64),
                ),
            )
            .with(Evidence::bytes("working_set_bytes", m.memory.working_set))
            .with(Evidence::bytes("limit_bytes", limit))
            .with(Evidence::percent("used_percent", share))
            .with(Evidence::bytes("rss_bytes", m.memory.rss))
            .with(Evidence::bytes("cache_bytes", m.memory.cache))
            .with(Evidence::number(
                "growth_bytes_per_minute",
                m.growth_per_minute,
                "bytes_per_minute",
            ));
        if let Some(min) = m.limit_in_minutes {
            f = f.with(Evidence::number("limit_in_minutes", min, "minutes"));
        }
        Some(f)
    }

    /// `pod.oom_kills` and `pod.memory_throttled`, from the counters' history.
    fn counters(&self, state: &mut State, m: &Measured, now: SystemTime) -> Vec<Finding> {
        let mut out = Vec::new();
        let samples = state.counters.entry(m.found.dir.clone()).or_default();
        let previous = samples.back().copied();
        samples.push_back(Counters {
            at: now,
            oom_kills: m.memory.oom_kills,
            pressure_events: m.memory.limit_hits + m.memory.high_events,
        });
        let keep_from = now
            .checked_sub(self.config.throttle_window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        while samples.len() > 2 && samples.front().is_some_and(|s| s.at < keep_from) {
            samples.pop_front();
        }
        match previous {
            Some(p) if m.memory.oom_kills > p.oom_kills => {
                state.kills.insert(m.found.dir.clone(), (now, true));
            }
            None if m.memory.oom_kills > 0 => {
                state.kills.insert(m.found.dir.clone(), (now, false));
            }
            _ => {}
        }
        if let Some((at, seen)) = state.kills.get(&m.found.dir).copied()
            && at + self.config.oom_window >= now
        {
            let (severity, when) = if seen {
                (Severity::Warning, "recently")
            } else {
                (
                    Severity::Info,
                    "since its cgroup was made (before the agent looked)",
                )
            };
            out.push(
                m.finding(
                    checks::POD_OOM_KILLS,
                    severity,
                    format!(
                        "the kernel OOM-killed {} process(es) in {} {when}; memory limit {}",
                        m.memory.oom_kills,
                        m.subject(),
                        m.memory.limit.map_or("none".into(), |l| mib(l as f64)),
                    ),
                )
                .with(Evidence::count("oom_kills", m.memory.oom_kills))
                .with(Evidence::bytes("limit_bytes", m.memory.limit.unwrap_or(0))),
            );
        }
        let oldest = samples.front().copied();
        if let Some(first) = oldest.filter(|f| f.at < now) {
            let events =
                (m.memory.limit_hits + m.memory.high_events).saturating_sub(first.pressure_events);
            let killed = m.memory.oom_kills > first.oom_kills;
            if events >= self.config.throttle_events && !killed {
                out.push(
                    m.finding(
                        checks::POD_MEMORY_THROTTLED,
                        Severity::Warning,
                        format!(
                            "{} hit its memory limit {events} times in the last {} without an OOM kill yet: the kernel reclaims its memory and slows it",
                            m.subject(),
                            humantime::format_duration(Duration::from_secs(
                                now.duration_since(first.at).unwrap_or_default().as_secs()
                            )),
                        ),
                    )
                    .with(Evidence::count("limit_events", events))
                    .with(Evidence::bytes("working_set_bytes", m.memory.working_set))
                    .with(Evidence::bytes("limit_bytes", m.memory.limit.unwrap_or(0))),
                );
            }
        }
        out
    }

    /// Records a CPU sample of the cgroup at `dir`; the periods run and throttled since the
    /// oldest sample within the throttle window, and the time they span.
    fn cpu_window(
        &self,
        state: &mut State,
        dir: &Path,
        cpu: CgroupCpu,
        now: SystemTime,
    ) -> (u64, u64, Duration) {
        let samples = state.cpu.entry(dir.to_owned()).or_default();
        samples.push_back(CpuSample {
            at: now,
            periods: cpu.periods,
            throttled: cpu.throttled_periods,
        });
        let keep_from = now
            .checked_sub(self.config.cpu_throttle_window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        while samples.len() > 2 && samples.front().is_some_and(|s| s.at < keep_from) {
            samples.pop_front();
        }
        let first = samples.front().copied().filter(|f| f.at < now);
        first.map_or((0, 0, Duration::ZERO), |f| {
            (
                cpu.periods.saturating_sub(f.periods),
                cpu.throttled_periods.saturating_sub(f.throttled),
                now.duration_since(f.at).unwrap_or_default(),
            )
        })
    }

    /// `pod.cpu_throttled`: a container the kernel keeps stopping at its CPU limit.
    fn cpu_throttled(&self, m: &Measured) -> Option<Finding> {
        m.found.pod.container_id.as_ref()?;
        let limit = m.cpu?.limit_cpus?;
        let (periods, throttled, span) = m.cpu_window?;
        let share = percent(throttled, periods);
        if periods < self.config.cpu_min_periods || share <= self.config.cpu_throttled_percent.get()
        {
            return None;
        }
        Some(
            m.finding(
                checks::POD_CPU_THROTTLED,
                Severity::Warning,
                format!(
                    "{} was stopped at its CPU limit of {} in {share:.0}% of its scheduling periods over the last {} ({throttled} of {periods}): it runs slower than it asks to (latency, failing probes)",
                    m.subject(),
                    cores(limit),
                    humantime::format_duration(Duration::from_secs(span.as_secs())),
                ),
            )
            .with(Evidence::number("cpu_limit_cores", limit, "cores"))
            .with(Evidence::percent("throttled_percent", share))
            .with(Evidence::count("periods", periods))
            .with(Evidence::count("throttled_periods", throttled)),
        )
    }

    /// `pod.ephemeral_storage`: pods near their ephemeral-storage limit, and the largest
    /// consumers of a nodefs that is filling.
    fn ephemeral(
        &self,
        state: &mut State,
        ctx: &ProbeContext,
        measured: &[Measured],
    ) -> Result<Vec<Finding>, ProbeError> {
        let pods: Vec<&Measured> = measured
            .iter()
            .filter(|m| m.found.pod.container_id.is_none())
            .collect();
        let due = state
            .ephemeral
            .as_ref()
            .is_none_or(|(at, _, _)| at.elapsed() >= self.config.ephemeral_every);
        if due {
            let uids: Vec<&str> = pods.iter().map(|m| m.found.pod.pod_uid.as_str()).collect();
            let (bytes, partial) = ephemeral::measure(&ctx.host, &uids);
            state.ephemeral = Some((Instant::now(), bytes, partial));
        }
        let Some((_, bytes, partial)) = &state.ephemeral else {
            return Ok(Vec::new());
        };
        let limits = self.ephemeral_limits();
        let mut out = Vec::new();
        for m in &pods {
            let used = bytes.get(&m.found.pod.pod_uid).copied().unwrap_or(0);
            let Some(limit) = limits.get(&m.found.pod.pod_uid).copied() else {
                continue;
            };
            let share = percent(used, limit);
            if share >= self.config.ephemeral_warn_percent.get() {
                let severity = if share >= 100.0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                out.push(
                    m.finding(
                        checks::POD_EPHEMERAL_STORAGE,
                        severity,
                        format!(
                            "{} holds {} in emptyDir volumes and logs, {share:.0}% of its ephemeral-storage limit {}: the kubelet evicts it at the limit",
                            m.subject(),
                            mib(used as f64),
                            mib(limit as f64)
                        ),
                    )
                    .with(Evidence::bytes("ephemeral_bytes", used))
                    .with(Evidence::bytes("ephemeral_limit_bytes", limit))
                    .with(Evidence::percent("used_percent", share)),
                );
            }
        }
        // A filling nodefs: who holds most of it.
        let nodefs = ctx
            .host
            .fs_usage("/var/lib/kubelet")
            .or_else(|_| ctx.host.fs_usage("/"))?;
        let available = percent(nodefs.bytes_available, nodefs.bytes_total);
        if available < self.nodefs_warn_available.get() {
            let mut largest: Vec<(&Measured, u64)> = pods
                .iter()
                .map(|m| (*m, bytes.get(&m.found.pod.pod_uid).copied().unwrap_or(0)))
                .filter(|(_, b)| *b > 0)
                .collect();
            largest.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
            for (m, used) in largest.into_iter().take(self.config.ephemeral_top) {
                if out.iter().any(|f| f.subject == m.subject()) {
                    continue;
                }
                out.push(
                    m.finding(
                        checks::POD_EPHEMERAL_STORAGE,
                        Severity::Warning,
                        format!(
                            "nodefs has {available:.1}% available and {} holds {} of it in emptyDir volumes and logs{}",
                            m.subject(),
                            mib(used as f64),
                            if *partial { " (at least: too many files to count all)" } else { "" }
                        ),
                    )
                    .with(Evidence::bytes("ephemeral_bytes", used))
                    .with(Evidence::percent("nodefs_available_percent", available)),
                );
            }
        }
        Ok(out)
    }

    /// Each pod's ephemeral-storage limit (the sum of its containers'), when the
    /// Kubernetes API says.
    fn ephemeral_limits(&self) -> HashMap<String, u64> {
        let Some(kube) = self.kube.get() else {
            return HashMap::new();
        };
        kube.with(|cluster| {
            cluster
                .pods
                .values()
                .filter_map(|p| {
                    let limits: Vec<u64> = p
                        .containers
                        .iter()
                        .filter_map(|c| c.ephemeral_limit)
                        .collect();
                    (!limits.is_empty()).then(|| (p.uid.clone(), limits.iter().sum()))
                })
                .collect()
        })
    }
}
