//! The agent's configuration file (YAML): the settings of every probe, gathered.
//!
//! Each probe's settings and their checks live in its own module (`probes::disk::config`,
//! `probes::dns::config`, ...); this file only puts them in the file's shape and loads it.
//! Every field has a default, so an empty file (or none) is valid; an unknown field or an
//! out-of-range value fails at start-up with the field's name. The defaults follow the
//! kubelet: warn before it acts, go critical at the line where it acts.

use std::{path::Path, time::Duration};

use serde::Deserialize;

pub use crate::probes::{
    certs::CertsConfig, cgroups::config::CgroupsConfig, clock::ClockThresholds,
    disk::config::DiskThresholds, dns::config::DnsConfig, images::config::ImagesConfig,
    inotify::InotifyConfig, journal::JournalConfig, kernel::config::KernelConfig,
    memory::MemoryThresholds, net::NetConfig, pods::config::KubernetesConfig,
    services::ServicesConfig, system::SystemThresholds,
};
pub use crate::publish::PublishConfig;

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
    /// Each user's inotify use against the kernel's limits.
    pub inotify: InotifyConfig,
    /// The network interfaces looked at, and what is too lossy.
    pub net: NetConfig,
    /// The kubelet's and the runtimes' own health.
    pub services: ServicesConfig,
    /// The node's certificates.
    pub certs: CertsConfig,
    /// What the journal probe reads, with which rules.
    pub journal: JournalConfig,
    /// The node conditions and Events the agent writes into the cluster.
    pub publish: PublishConfig,
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
            inotify: InotifyConfig::default(),
            net: NetConfig::default(),
            services: ServicesConfig::default(),
            certs: CertsConfig::default(),
            journal: JournalConfig::default(),
            publish: PublishConfig::default(),
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
    /// The clock's synchronisation and offset.
    pub clock: ClockThresholds,
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

    /// Each part's own checks, its errors named by where the part is in the file.
    fn validate(&self) -> Result<(), String> {
        if self.probe_timeout.is_zero() {
            return Err("probe_timeout must be more than 0".into());
        }
        let t = &self.thresholds;
        let parts: [(&str, Result<(), String>); 12] = [
            ("thresholds.disk", t.disk.validate()),
            ("thresholds.system", t.system.validate()),
            ("thresholds.clock", t.clock.validate()),
            ("kernel", self.kernel.validate()),
            ("dns", self.dns.validate()),
            ("cgroups", self.cgroups.validate()),
            ("inotify", self.inotify.validate()),
            ("net", self.net.validate()),
            ("services", self.services.validate()),
            ("certs", self.certs.validate()),
            ("journal", self.journal.validate()),
            ("publish", self.publish.validate()),
        ];
        for (name, result) in parts {
            result.map_err(|e| format!("{name}.{e}"))?;
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
    fn each_part_is_checked_and_named_where_it_is_in_the_file() {
        for (yaml, want) in [
            (
                "thresholds:\n  system:\n    pids_warn_used: 95\n",
                "thresholds.system.pids_critical_used must be at least pids_warn_used",
            ),
            ("dns:\n  window: 0\n", "dns.query_timeout, concurrency"),
            (
                "dns:\n  nameservers: [nowhere]\n",
                "dns.nameservers: \"nowhere\"",
            ),
            (
                "kernel:\n  max_subjects: 0\n",
                "kernel.window and max_subjects",
            ),
            ("probe_timeout: 0s\n", "probe_timeout must be more than 0"),
            (
                "cgroups:\n  every: 0s\n",
                "cgroups.every must be more than 0s",
            ),
            (
                "publish:\n  heartbeat: 10s\n",
                "publish.heartbeat must be at least 5m, got 10s",
            ),
        ] {
            let err = Config::parse(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let err = Config::load(Path::new("/nonexistent/agent.yaml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/agent.yaml"));
    }
}
