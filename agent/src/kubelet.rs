//! The kubelet's config file on the node (`/var/lib/kubelet/config.yaml`, a
//! KubeletConfiguration): the fields probes judge by, among them the eviction and image GC
//! lines the kubelet really uses ([`Line`]). Fields it does not name are ignored, so every
//! kubelet version's file reads.

use std::collections::BTreeMap;

use nodemedic_proto::v1::{Evidence, Finding, Severity};
use serde::Deserialize;
use tracing::debug;

use nodemedic_proto::quantity::quantity_bytes;

use crate::host::HostRoot;

/// Where kubeadm, kOps and most distributions write it.
pub const CONFIG_PATH: &str = "/var/lib/kubelet/config.yaml";

/// Where the node's config is looked for, first present wins: kubeadm's, then EKS's
/// (AL2023's nodeadm, AL2's bootstrap.sh). JSON is YAML, so both read the same way.
const CONFIG_PATHS: &[&str] = &[
    CONFIG_PATH,
    "/etc/kubernetes/kubelet/config.json",
    "/etc/kubernetes/kubelet/kubelet-config.json",
];

/// The kubelet's healthz port when its config names none.
const DEFAULT_HEALTHZ_PORT: u16 = 10248;

/// The fields of the kubelet's config the agent uses.
#[derive(Debug, Default, Deserialize)]
pub struct KubeletConfig {
    /// The nameservers the kubelet gives pods.
    #[serde(rename = "clusterDNS", default)]
    pub cluster_dns: Vec<String>,
    /// The cluster's DNS domain.
    #[serde(rename = "clusterDomain", default)]
    pub cluster_domain: Option<String>,
    /// Where `/healthz` listens (default 127.0.0.1).
    #[serde(rename = "healthzBindAddress", default)]
    pub healthz_bind_address: Option<String>,
    /// Its port (default 10248; 0 turns it off).
    #[serde(rename = "healthzPort", default)]
    pub healthz_port: Option<u16>,
    /// Its serving certificate, when given as a file (not bootstrapped).
    #[serde(rename = "tlsCertFile", default)]
    pub tls_cert_file: Option<String>,
    /// Signal → line (`nodefs.available: 10%`, `memory.available: 500Mi`).
    #[serde(rename = "evictionHard", default)]
    pub eviction_hard: BTreeMap<String, String>,
    /// Lines the kubelet evicts at after a grace period.
    #[serde(rename = "evictionSoft", default)]
    pub eviction_soft: BTreeMap<String, String>,
    /// Keep the default hard lines for the signals `evictionHard` does not name (newer
    /// kubelets; without it, naming one signal turns the others' defaults off).
    #[serde(rename = "mergeDefaultEvictionSettings", default)]
    pub merge_default_eviction_settings: bool,
    /// Image GC starts above this share of imagefs used (default 85).
    #[serde(rename = "imageGCHighThresholdPercent", default)]
    pub image_gc_high_threshold_percent: Option<f64>,
    /// ... and deletes images until this share (default 80).
    #[serde(rename = "imageGCLowThresholdPercent", default)]
    pub image_gc_low_threshold_percent: Option<f64>,
}

/// The kubelet's hard eviction lines when its config sets none (Linux).
const DEFAULT_EVICTION_HARD: &[(&str, &str)] = &[
    ("memory.available", "100Mi"),
    ("nodefs.available", "10%"),
    ("nodefs.inodesFree", "5%"),
    ("imagefs.available", "15%"),
    ("imagefs.inodesFree", "5%"),
];

/// A line's value: an amount (bytes; inodes for `inodesFree`) or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// An absolute amount.
    Absolute(u64),
    /// A percentage of the capacity.
    Percent(f64),
}

impl Amount {
    /// `10%`, `500Mi`, `100000`; `None` when it does not parse.
    fn parse(text: &str) -> Option<Self> {
        match text.trim().strip_suffix('%') {
            Some(p) => p.trim().parse().ok().map(Amount::Percent),
            None => quantity_bytes(text).map(Amount::Absolute),
        }
    }
}

/// Where a line came from, as findings name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The agent's own thresholds: there is no kubelet config on the node.
    Nodemedic,
    /// The kubelet's built-in default: its config does not set it.
    KubeletDefault,
    /// `evictionHard` in the kubelet's config.
    EvictionHard,
    /// `evictionSoft` in the kubelet's config.
    EvictionSoft,
    /// `imageGCHighThresholdPercent` / `imageGCLowThresholdPercent` in the kubelet's config.
    ImageGc,
}

impl Source {
    /// How a finding's evidence says it.
    pub fn label(self) -> &'static str {
        match self {
            Source::Nodemedic => "nodemedic",
            Source::KubeletDefault => "kubelet_default",
            Source::EvictionHard => "kubelet_config_evictionHard",
            Source::EvictionSoft => "kubelet_config_evictionSoft",
            Source::ImageGc => "kubelet_config_imageGC",
        }
    }
}

/// One line the node is judged against: its signal, value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// `nodefs.available`, `memory.available`, `imagefs.used` (image GC), ...
    pub signal: &'static str,
    /// Its value.
    pub amount: Amount,
    /// Where it came from.
    pub source: Source,
}

impl Line {
    /// A line of the agent's own (no kubelet config on the node).
    pub fn nodemedic(signal: &'static str, amount: Amount) -> Self {
        Line {
            signal,
            amount,
            source: Source::Nodemedic,
        }
    }

    /// The line as a share of `capacity` (percent).
    pub fn percent_of(&self, capacity: u64) -> f64 {
        match self.amount {
            Amount::Percent(p) => p,
            Amount::Absolute(_) if capacity == 0 => 0.0,
            Amount::Absolute(n) => n as f64 * 100.0 / capacity as f64,
        }
    }

    /// The line as an amount of `capacity`.
    pub fn amount_of(&self, capacity: u64) -> u64 {
        match self.amount {
            Amount::Percent(p) => (capacity as f64 * p / 100.0) as u64,
            Amount::Absolute(n) => n,
        }
    }

    /// `nodefs.available<10%`, as the kubelet writes its lines.
    pub fn text(&self) -> String {
        let value = match self.amount {
            Amount::Percent(p) => format!("{p}%"),
            Amount::Absolute(n) if self.signal.ends_with("inodesFree") => n.to_string(),
            Amount::Absolute(n) => nodemedic_proto::finding::human_bytes(n as f64),
        };
        format!("{}<{value}", self.signal)
    }

    /// Where the line came from, in a message's words (` (the kubelet's default)`).
    pub fn origin(&self) -> &'static str {
        match self.source {
            Source::Nodemedic => "",
            Source::KubeletDefault => " (the kubelet's default)",
            Source::EvictionHard => " (evictionHard in the kubelet's config)",
            Source::EvictionSoft => " (evictionSoft in the kubelet's config)",
            Source::ImageGc => " (imageGCHighThresholdPercent in the kubelet's config)",
        }
    }
}

impl KubeletConfig {
    /// The hard eviction line of `signal`: from `evictionHard`; the kubelet's default when
    /// the config sets no `evictionHard` (or merges the defaults); `None` when the kubelet
    /// does not evict on it (its `evictionHard` names other signals only, which turns the
    /// defaults off, or sets it to an unreadable value, logged).
    pub fn hard_eviction(&self, signal: &'static str) -> Option<Line> {
        if let Some(text) = self.eviction_hard.get(signal) {
            return self.parsed(signal, text, Source::EvictionHard);
        }
        if !self.eviction_hard.is_empty() && !self.merge_default_eviction_settings {
            return None;
        }
        let (_, text) = DEFAULT_EVICTION_HARD.iter().find(|(s, _)| *s == signal)?;
        self.parsed(signal, text, Source::KubeletDefault)
    }

    /// The soft eviction line of `signal`, when `evictionSoft` sets one.
    pub fn soft_eviction(&self, signal: &'static str) -> Option<Line> {
        let text = self.eviction_soft.get(signal)?;
        self.parsed(signal, text, Source::EvictionSoft)
    }

    /// The share of imagefs used above which the kubelet's image GC runs.
    pub fn image_gc_high(&self) -> Line {
        match self.image_gc_high_threshold_percent {
            Some(p) => Line {
                signal: "imagefs.used",
                amount: Amount::Percent(p),
                source: Source::ImageGc,
            },
            None => Line {
                signal: "imagefs.used",
                amount: Amount::Percent(85.0),
                source: Source::KubeletDefault,
            },
        }
    }

    fn parsed(&self, signal: &'static str, text: &str, source: Source) -> Option<Line> {
        let amount = Amount::parse(text);
        if amount.is_none() {
            debug!(
                message = "Ignoring an unreadable eviction line.",
                signal,
                value = text
            );
        }
        Some(Line {
            signal,
            amount: amount?,
            source,
        })
    }
}

impl KubeletConfig {
    /// The node's file (the first of [`CONFIG_PATHS`] present); `None` when it has none. A
    /// file that does not parse counts as one with no fields set (logged): a probe then
    /// judges by the kubelet's defaults.
    pub fn read(host: &HostRoot) -> Option<Self> {
        CONFIG_PATHS
            .iter()
            .find_map(|path| match host.read_if_present(path) {
                Ok(Some(text)) => Some(serde_saphyr::from_str(&text).unwrap_or_else(|e| {
                    debug!(message = "Ignoring an unreadable kubelet config.", path, error = %e);
                    KubeletConfig::default()
                })),
                _ => None,
            })
    }

    /// `host:port` of the kubelet's `/healthz`; `None` when the config turns it off.
    pub fn healthz_address(&self) -> Option<String> {
        let port = self.healthz_port.unwrap_or(DEFAULT_HEALTHZ_PORT);
        if port == 0 {
            return None;
        }
        let host = match self.healthz_bind_address.as_deref() {
            None | Some("") | Some("0.0.0.0") => "127.0.0.1",
            Some("::") => "::1",
            Some(a) => a,
        };
        Some(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }
}

/// A verdict against the kubelet's lines: how bad, why, and the line crossed (or neared).
pub type Verdict<'a> = (Severity, String, Option<&'a Line>);

/// The verdict on `available` (percent of `total`) against a hard and a soft eviction line
/// and the agent's warning line `warn` (raised to the kubelet's line when that is higher);
/// `evicts` says what the kubelet does there.
pub fn eviction<'a>(
    available: f64,
    total: u64,
    hard: Option<&'a Line>,
    soft: Option<&'a Line>,
    warn: f64,
    evicts: &str,
) -> Option<Verdict<'a>> {
    if let Some(line) = hard.filter(|l| available < l.percent_of(total)) {
        return Some((
            Severity::Critical,
            format!(
                "below the kubelet's eviction line {}{}: it is {evicts}",
                line.text(),
                line.origin()
            ),
            Some(line),
        ));
    }
    if let Some(line) = soft.filter(|l| available < l.percent_of(total)) {
        return Some((
            Severity::Critical,
            format!(
                "below the kubelet's soft eviction line {}{}: it starts {evicts} after its grace period",
                line.text(),
                line.origin()
            ),
            Some(line),
        ));
    }
    let first = soft.or(hard)?;
    (available < warn.max(first.percent_of(total))).then(|| {
        (
            Severity::Warning,
            format!(
                "the kubelet starts {evicts} at {}{}",
                first.text(),
                first.origin()
            ),
            Some(first),
        )
    })
}

/// The line a finding crossed (or nears) and where it came from, as evidence.
pub fn with_line(f: Finding, line: Option<&Line>) -> Finding {
    match line {
        Some(l) => f
            .with(Evidence::text("threshold", l.text()))
            .with(Evidence::text("threshold_source", l.source.label())),
        None => f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eks_node_s_config_is_found_where_nodeadm_writes_it() {
        let host = crate::testing::FakeHost::new();
        assert!(KubeletConfig::read(&host.root()).is_none());
        host.write(
            "/etc/kubernetes/kubelet/config.json",
            include_str!("../../tests/fixtures/real/kubelet/eks-al2023-config.json"),
        );
        let c = KubeletConfig::read(&host.root()).expect("the EKS file");
        assert_eq!(c.cluster_dns, ["0.0.0.0", "1.1.1.1"]);
        let memory = c.hard_eviction("memory.available").unwrap();
        assert_eq!(
            (memory.amount, memory.source),
            (Amount::Absolute(100 << 20), Source::EvictionHard)
        );
        // nodeadm names three signals: the kubelet then has no imagefs line at all.
        assert_eq!(c.hard_eviction("imagefs.available"), None);
        assert_eq!(c.image_gc_high().source, Source::KubeletDefault);
    }

    #[test]
    fn eviction_lines_from_the_config_the_defaults_and_none() {
        let none = KubeletConfig::default();
        let line = none.hard_eviction("nodefs.available").unwrap();
        assert_eq!(
            (line.amount, line.source),
            (Amount::Percent(10.0), Source::KubeletDefault)
        );
        assert_eq!(line.text(), "nodefs.available<10%");
        assert_eq!(
            none.hard_eviction("memory.available").unwrap().amount,
            Amount::Absolute(100 << 20)
        );
        assert_eq!(none.image_gc_high().amount, Amount::Percent(85.0));

        let c: KubeletConfig = serde_saphyr::from_str(
            "evictionHard:\n  memory.available: 500Mi\n  nodefs.available: 5Gi\nevictionSoft:\n  nodefs.available: 15%\nimageGCHighThresholdPercent: 70\n",
        )
        .unwrap();
        let nodefs = c.hard_eviction("nodefs.available").unwrap();
        assert_eq!(
            (nodefs.amount, nodefs.source),
            (Amount::Absolute(5 << 30), Source::EvictionHard)
        );
        assert_eq!(nodefs.percent_of(50 << 30), 10.0);
        assert_eq!(nodefs.text(), "nodefs.available<5.0 GiB");
        // Naming some signals turns the other defaults off ...
        assert_eq!(c.hard_eviction("imagefs.available"), None);
        // ... unless the defaults are merged.
        let merged = KubeletConfig {
            merge_default_eviction_settings: true,
            ..c
        };
        assert_eq!(
            merged.hard_eviction("imagefs.available").unwrap().source,
            Source::KubeletDefault
        );
        assert_eq!(
            merged.soft_eviction("nodefs.available").unwrap().amount,
            Amount::Percent(15.0)
        );
        assert_eq!(merged.image_gc_high().source, Source::ImageGc);
        assert_eq!(merged.image_gc_high().percent_of(0), 70.0);
    }

    #[test]
    fn healthz_from_a_real_kubeadm_config_and_the_defaults() {
        let c: KubeletConfig = serde_saphyr::from_str(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\nhealthzBindAddress: 127.0.0.1\nhealthzPort: 10248\nevictionHard:\n  memory.available: 100Mi\n",
        )
        .unwrap();
        assert_eq!(c.cluster_dns, ["10.96.0.10"]);
        assert_eq!(c.healthz_address().as_deref(), Some("127.0.0.1:10248"));
        assert_eq!(
            KubeletConfig::default().healthz_address().as_deref(),
            Some("127.0.0.1:10248")
        );
        let off = KubeletConfig {
            healthz_port: Some(0),
            ..Default::default()
        };
        assert_eq!(off.healthz_address(), None);
        let v6 = KubeletConfig {
            healthz_bind_address: Some("::".into()),
            ..Default::default()
        };
        assert_eq!(v6.healthz_address().as_deref(), Some("[::1]:10248"));
    }
}
