//! The kernel probe's settings (`kernel:` in the agent's config file).

use std::time::Duration;

use serde::Deserialize;

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

impl KernelConfig {
    /// Checks the values and loads the rule files once, so a bad one fails at start.
    pub fn validate(&self) -> Result<(), String> {
        if self.window.is_zero() || self.max_subjects == 0 {
            return Err("window and max_subjects must be more than 0".into());
        }
        crate::logs::rules::RuleSet::load(crate::logs::rules::KERNEL, &self.rule_files)
            .map_err(|e| format!("rule_files: {e}"))?;
        Ok(())
    }
}
