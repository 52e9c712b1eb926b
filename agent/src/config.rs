//! The agent's configuration file (YAML) and the thresholds findings are judged against.
//!
//! Every field has a default, so an empty file (or none) is valid; an unknown field or an
//! out-of-range value fails at start-up with the field's name. The defaults follow the
//! kubelet: warn before it acts, go critical at the line where it acts.

use std::{path::Path, time::Duration};

use serde::Deserialize;

/// A bad configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML of this shape.
    #[error("invalid config file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with the line where the parser knows it.
        reason: String,
    },
}

/// A percentage from 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(try_from = "f64")]
pub struct Percent(f64);

impl Percent {
    /// The value, 0 to 100.
    pub const fn get(self) -> f64 {
        self.0
    }

    const fn of(value: f64) -> Self {
        Percent(value)
    }
}

impl TryFrom<f64> for Percent {
    type Error = String;
    fn try_from(value: f64) -> Result<Self, String> {
        if (0.0..=100.0).contains(&value) {
            Ok(Percent(value))
        } else {
            Err(format!("{value} is not a percentage from 0 to 100"))
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Deadline of one probe run (default 5s).
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// What counts as a problem.
    pub thresholds: Thresholds,
    /// What the DNS probe asks, and whom.
    pub dns: DnsConfig,
    /// Where the image probe finds container runtimes, and its thresholds.
    pub images: ImagesConfig,
    /// Which kernel log the kernel probe follows, and with which rules.
    pub kernel: KernelConfig,
    /// What the pods probe judges from the Kubernetes API.
    pub kubernetes: KubernetesConfig,
    /// The pods' memory and ephemeral storage from their cgroups and directories.
    pub cgroups: CgroupsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            probe_timeout: Duration::from_secs(5),
            thresholds: Thresholds::default(),
            dns: DnsConfig::default(),
            images: ImagesConfig::default(),
            kernel: KernelConfig::default(),
            kubernetes: KubernetesConfig::default(),
            cgroups: CgroupsConfig::default(),
        }
    }
}

/// The cgroups probe: pod memory against limits, and pod ephemeral storage.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupsConfig {
    /// Walk the pod cgroups at all.
    pub enabled: bool,
    /// Walk them at most this often; reports in between repeat the last walk's result
    /// (default 30s: one walk of 300 containers costs about 15 ms, see BENCHMARKS.md).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// `pod.memory_near_limit` when a working set is above this share of its limit
    /// (percent, default 90) ...
    pub near_limit_percent: Percent,
    /// ... or will reach the limit within this time at its growth (default 30m).
    #[serde(with = "humantime_serde")]
    pub limit_within: Duration,
    /// Growth is fitted to the samples of this window (default 10m) ...
    #[serde(with = "humantime_serde")]
    pub growth_window: Duration,
    /// ... once they span this long (default 1m).
    #[serde(with = "humantime_serde")]
    pub growth_min_span: Duration,
    /// `pod.memory_throttled` at this many limit hits or memory.high events ... (default 10)
    pub throttle_events: u64,
    /// ... within this time, with no OOM kill (default 5m).
    #[serde(with = "humantime_serde")]
    pub throttle_window: Duration,
    /// `pod.oom_kills` stays open this long after the last kill (default 1h).
    #[serde(with = "humantime_serde")]
    pub oom_window: Duration,
    /// `pod.ephemeral_storage` above this share of the pod's ephemeral-storage limit
    /// (percent, default 80).
    pub ephemeral_warn_percent: Percent,
    /// Ephemeral storage is measured this often, as it walks directories (default 1m).
    #[serde(with = "humantime_serde")]
    pub ephemeral_every: Duration,
    /// The pods using the most ephemeral storage named when nodefs is filling (default 3).
    pub ephemeral_top: usize,
    /// Containers kept in the report, closest to their limits first (default 10).
    pub top: usize,
}

impl Default for CgroupsConfig {
    fn default() -> Self {
        CgroupsConfig {
            enabled: true,
            every: Duration::from_secs(30),
            near_limit_percent: Percent(90.0),
            limit_within: Duration::from_secs(1800),
            growth_window: Duration::from_secs(600),
            growth_min_span: Duration::from_secs(60),
            throttle_events: 10,
            throttle_window: Duration::from_secs(300),
            oom_window: Duration::from_secs(3600),
            ephemeral_warn_percent: Percent(80.0),
            ephemeral_every: Duration::from_secs(60),
            ephemeral_top: 3,
            top: 10,
        }
    }
}

/// The pods probe (when the agent has a kubeconfig or runs in a pod).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// OOM kills, evictions and the restarts a crash loop reports count this far back
    /// (default 1h).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// `pod.restarts` at this many restarts ... (default 5)
    pub restarts_warn: u32,
    /// ... within this time, when not in back-off now (default 30m).
    #[serde(with = "humantime_serde")]
    pub restarts_within: Duration,
    /// `pod.probe_failing` at this many failed liveness/readiness probes ... (default 3)
    pub probe_failures: u32,
    /// ... within this time (default 10m).
    #[serde(with = "humantime_serde")]
    pub probe_failures_within: Duration,
    /// `pod.terminating_stuck` this long after the pod's deletion time (default 5m).
    #[serde(with = "humantime_serde")]
    pub terminating_after: Duration,
    /// Also watch pods no node has yet, for `pod.pending` (default false: turn it on for
    /// one agent, or a few; each watching agent reports them).
    pub unscheduled_pods: bool,
    /// Watch Warning events about pods (probe failures, pull errors). Every agent
    /// receives the cluster's Warning pod events and keeps only its own pods' (default
    /// true).
    pub pod_events: bool,
    /// Warning events kept at most (default 1000).
    pub max_events: usize,
    /// How long a report waits for the first list from the API server (default 3s; at most
    /// three quarters of `probe_timeout`).
    #[serde(with = "humantime_serde")]
    pub sync_timeout: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            window: Duration::from_secs(3600),
            restarts_warn: 5,
            restarts_within: Duration::from_secs(1800),
            probe_failures: 3,
            probe_failures_within: Duration::from_secs(600),
            terminating_after: Duration::from_secs(300),
            unscheduled_pods: false,
            pod_events: true,
            max_events: 1000,
            sync_timeout: Duration::from_secs(3),
        }
    }
}

/// The kernel log probe: what it reads and which rules it applies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelConfig {
    /// Follow the kernel log at all.
    pub enabled: bool,
    /// Read this log file (a host path, e.g. `/var/log/kern.log`) instead of `/dev/kmsg`.
    /// Default: `/dev/kmsg`, else the first of `/var/log/kern.log`, `/var/log/messages`.
    pub log_file: Option<String>,
    /// Start this far back in `/dev/kmsg` (default 5m, as node-problem-detector).
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// Start at most this many bytes before a log file's end (default 1 MiB).
    pub lookback_bytes: u64,
    /// A finding stays open this long after its last matching line (default 1h).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// More rule files, node-problem-detector's (`kernel-monitor.json`) or nodemedic's
    /// format, on the agent's own filesystem; added after the built-in rules.
    pub rule_files: Vec<std::path::PathBuf>,
    /// Distinct (check, subject) pairs kept; matches beyond are counted under `(other)`
    /// (default 256).
    pub max_subjects: usize,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            enabled: true,
            log_file: None,
            lookback: Duration::from_secs(300),
            lookback_bytes: 1 << 20,
            window: Duration::from_secs(3600),
            rule_files: Vec::new(),
            max_subjects: 256,
        }
    }
}

/// The image probe: which runtimes to ask and when their image caches are a problem.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Ask the runtimes at all.
    pub enabled: bool,
    /// The Docker socket (a host path). Default `/var/run/docker.sock`, used when present;
    /// a socket named here must exist.
    pub docker_socket: Option<String>,
    /// The CRI socket (a host path, `unix://` allowed). Default: the first present of the
    /// usual containerd, k3s, CRI-O and cri-dockerd sockets; one named here must exist.
    pub cri_endpoint: Option<String>,
    /// Deadline of each runtime's requests (default 3s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// `images.reclaimable` when unused images hold this share of the image filesystem
    /// (percent, default 20) ...
    pub reclaimable_warn_percent: Percent,
    /// ... and at least this many bytes (default 1 GiB).
    pub reclaimable_min_bytes: u64,
    /// `images.dangling` when untagged images hold at least this many bytes (default 500 MiB).
    pub dangling_min_bytes: u64,
    /// The kubelet's `imageGCHighThresholdPercent`: above it, image garbage collection runs
    /// (default 85).
    pub gc_high_percent: Percent,
    /// `images.gc_imminent` also when the image filesystem will cross that line within
    /// this time at its fill rate (default 6h).
    #[serde(with = "humantime_serde")]
    pub gc_warn_within: Duration,
    /// Largest unused images named in the report and the findings (default 5).
    pub top: usize,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            enabled: true,
            docker_socket: None,
            cri_endpoint: None,
            timeout: Duration::from_secs(3),
            reclaimable_warn_percent: Percent(20.0),
            reclaimable_min_bytes: 1 << 30,
            dangling_min_bytes: 500 << 20,
            gc_high_percent: Percent(85.0),
            gc_warn_within: Duration::from_secs(6 * 3600),
            top: 5,
        }
    }
}

/// The DNS probe's targets and budget. By default it asks the cluster DNS service (the
/// kubelet's `clusterDNS`) for `kubernetes.default.svc.<clusterDomain>.`; on a machine
/// without a kubelet config and without `nameservers` it only reads resolv.conf.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Run live probes at all (resolv.conf is always read).
    pub enabled: bool,
    /// Nameservers to ask, `ip` or `ip:port`; default the kubelet's clusterDNS.
    pub nameservers: Vec<String>,
    /// Names that must resolve; default `kubernetes.default.svc.<cluster domain>.`.
    pub targets: Vec<String>,
    /// Further names outside the cluster that must resolve (absolute, with the trailing dot).
    pub external_names: Vec<String>,
    /// The cluster domain when the kubelet config does not say (default cluster.local).
    pub cluster_domain: String,
    /// Port for nameservers given without one (resolv.conf, clusterDNS).
    pub port: u16,
    /// Deadline of one query (default 1s).
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Queries at once (default 4).
    pub concurrency: usize,
    /// Most queries in one cycle, everything included (default 8).
    pub max_queries: usize,
    /// Ask over TCP too every Nth cycle (default 6: once a minute at a 10 s interval).
    pub tcp_every: u32,
    /// Resolve a short name through the search list every Nth cycle (default 6).
    pub search_every: u32,
    /// Outcomes kept per nameserver, name and protocol (default 60).
    pub window: usize,
    /// `dns.slow` when the 95th percentile of answers is above this (default 250ms).
    #[serde(with = "humantime_serde")]
    pub slow_p95: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            nameservers: Vec::new(),
            targets: Vec::new(),
            external_names: Vec::new(),
            cluster_domain: "cluster.local".into(),
            port: 53,
            query_timeout: Duration::from_secs(1),
            concurrency: 4,
            max_queries: 8,
            tcp_every: 6,
            search_every: 6,
            window: 60,
            slow_p95: Duration::from_millis(250),
        }
    }
}

/// The limits of every probe.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Filesystems.
    pub disk: DiskThresholds,
    /// Memory.
    pub memory: MemoryThresholds,
    /// Kernel limits.
    pub system: SystemThresholds,
}

/// Filesystem limits. "nodefs" is any filesystem holding `/`, `/var/lib/kubelet` or
/// `/var/log`; "imagefs" one holding an image store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskThresholds {
    /// Warn when nodefs available falls below this (default 20%).
    pub nodefs_warn_available: Percent,
    /// Critical below this: the kubelet's `nodefs.available<10%` eviction line.
    pub nodefs_critical_available: Percent,
    /// Warn when imagefs use passes this (default 80%): image GC starts at 85%.
    pub imagefs_warn_used: Percent,
    /// The kubelet's `imageGCHighThresholdPercent` (default 85%), named in messages.
    pub imagefs_gc_used: Percent,
    /// Critical below this: the kubelet's `imagefs.available<15%` eviction line.
    pub imagefs_critical_available: Percent,
    /// Warn when any other filesystem's use passes this (default 90%).
    pub other_warn_used: Percent,
    /// Critical when any other filesystem's use passes this (default 95%).
    pub other_critical_used: Percent,
    /// Warn when free inodes fall below this (default 10%).
    pub inodes_warn_free: Percent,
    /// Critical below this: the kubelet's `nodefs.inodesFree<5%` eviction line.
    pub inodes_critical_free: Percent,
    /// Warn when the fill rate says full within this (default 24h).
    #[serde(with = "humantime_serde")]
    pub fill_warn_within: Duration,
    /// Critical when the fill rate says full within this (default 2h).
    #[serde(with = "humantime_serde")]
    pub fill_critical_within: Duration,
    /// The samples the fill rate is fitted to (default the last 1h).
    #[serde(with = "humantime_serde")]
    pub fill_window: Duration,
    /// The shortest span of samples that gives a rate (default 5m).
    #[serde(with = "humantime_serde")]
    pub fill_min_span: Duration,
}

impl Default for DiskThresholds {
    fn default() -> Self {
        DiskThresholds {
            nodefs_warn_available: Percent::of(20.0),
            nodefs_critical_available: Percent::of(10.0),
            imagefs_warn_used: Percent::of(80.0),
            imagefs_gc_used: Percent::of(85.0),
            imagefs_critical_available: Percent::of(15.0),
            other_warn_used: Percent::of(90.0),
            other_critical_used: Percent::of(95.0),
            inodes_warn_free: Percent::of(10.0),
            inodes_critical_free: Percent::of(5.0),
            fill_warn_within: Duration::from_secs(24 * 3600),
            fill_critical_within: Duration::from_secs(2 * 3600),
            fill_window: Duration::from_secs(3600),
            fill_min_span: Duration::from_secs(300),
        }
    }
}

/// Memory limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryThresholds {
    /// Critical below this MemAvailable: the kubelet's `memory.available<100Mi` line.
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

/// Kernel table limits, as a share of the kernel's maximum.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemThresholds {
    /// PIDs (threads) against `kernel.pid_max`: warn (default 80%).
    pub pids_warn_used: Percent,
    /// PIDs: critical (default 90%).
    pub pids_critical_used: Percent,
    /// File handles against `fs.file-max`: warn (default 80%).
    pub files_warn_used: Percent,
    /// File handles: critical (default 90%).
    pub files_critical_used: Percent,
    /// Conntrack entries against `nf_conntrack_max`: warn (default 75%).
    pub conntrack_warn_used: Percent,
    /// Conntrack: critical (default 90%); at 100% the kernel drops new connections.
    pub conntrack_critical_used: Percent,
    /// Warn when some task waited for a CPU this share of the last minute (default 50%).
    pub cpu_pressure_warn_some_avg60: Percent,
}

impl Default for SystemThresholds {
    fn default() -> Self {
        SystemThresholds {
            pids_warn_used: Percent::of(80.0),
            pids_critical_used: Percent::of(90.0),
            files_warn_used: Percent::of(80.0),
            files_critical_used: Percent::of(90.0),
            conntrack_warn_used: Percent::of(75.0),
            conntrack_critical_used: Percent::of(90.0),
            cpu_pressure_warn_some_avg60: Percent::of(50.0),
        }
    }
}

impl Config {
    /// The file at `path` when one is given, else the defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self, ConfigError> {
        path.map_or_else(|| Ok(Config::default()), Config::load)
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| ConfigError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| e.to_string())?
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let d = &self.thresholds.disk;
        let s = &self.thresholds.system;
        let ordered = [
            (
                "disk.nodefs_warn_available",
                "disk.nodefs_critical_available",
                d.nodefs_warn_available >= d.nodefs_critical_available,
            ),
            (
                "disk.inodes_warn_free",
                "disk.inodes_critical_free",
                d.inodes_warn_free >= d.inodes_critical_free,
            ),
            (
                "disk.other_critical_used",
                "disk.other_warn_used",
                d.other_critical_used >= d.other_warn_used,
            ),
            (
                "disk.fill_warn_within",
                "disk.fill_critical_within",
                d.fill_warn_within >= d.fill_critical_within,
            ),
            (
                "system.pids_critical_used",
                "system.pids_warn_used",
                s.pids_critical_used >= s.pids_warn_used,
            ),
            (
                "system.files_critical_used",
                "system.files_warn_used",
                s.files_critical_used >= s.files_warn_used,
            ),
            (
                "system.conntrack_critical_used",
                "system.conntrack_warn_used",
                s.conntrack_critical_used >= s.conntrack_warn_used,
            ),
        ];
        if let Some((a, b, _)) = ordered.iter().find(|(_, _, ok)| !ok) {
            return Err(format!("thresholds.{a} must be at least thresholds.{b}"));
        }
        if self.probe_timeout.is_zero() {
            return Err("probe_timeout must be more than 0".into());
        }
        if self.kernel.window.is_zero() || self.kernel.max_subjects == 0 {
            return Err("kernel.window and kernel.max_subjects must be more than 0".into());
        }
        crate::probes::kernel::rules::RuleSet::load(&self.kernel.rule_files)
            .map_err(|e| format!("kernel.rule_files: {e}"))?;
        let dns = &self.dns;
        if let Some(bad) = dns
            .nameservers
            .iter()
            .find(|n| crate::probes::dns::nameserver_addr(n, dns.port).is_none())
        {
            return Err(format!(
                "dns.nameservers: {bad:?} is not an IP address or ip:port"
            ));
        }
        if dns.query_timeout.is_zero()
            || dns.concurrency == 0
            || dns.max_queries == 0
            || dns.window == 0
        {
            return Err("dns.query_timeout, dns.concurrency, dns.max_queries and dns.window must be more than 0".into());
        }
        if dns.tcp_every == 0 || dns.search_every == 0 {
            return Err("dns.tcp_every and dns.search_every must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn overrides_some_fields_and_keeps_the_rest() {
        let c = Config::parse(
            "probe_timeout: 2s\nthresholds:\n  disk:\n    nodefs_warn_available: 30\n    fill_window: 30m\n",
        )
        .unwrap();
        assert_eq!(c.probe_timeout, Duration::from_secs(2));
        assert_eq!(c.thresholds.disk.nodefs_warn_available.get(), 30.0);
        assert_eq!(c.thresholds.disk.fill_window, Duration::from_secs(1800));
        assert_eq!(c.thresholds.memory, MemoryThresholds::default());
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = Config::parse("thresholds:\n  disk:\n    nodefs_warn: 30\n").unwrap_err();
        assert!(err.contains("nodefs_warn"), "{err}");
    }

    #[test]
    fn out_of_range_and_inverted_thresholds_are_refused() {
        let err = Config::parse("thresholds:\n  memory:\n    warn_available: 140\n").unwrap_err();
        assert!(err.contains("140"), "{err}");
        let err =
            Config::parse("thresholds:\n  disk:\n    nodefs_warn_available: 5\n").unwrap_err();
        assert!(
            err.contains("nodefs_warn_available must be at least"),
            "{err}"
        );
    }

    #[test]
    fn load_names_the_file() {
        let err = Config::load(Path::new("/nonexistent/agent.yaml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/agent.yaml"));
    }
}
