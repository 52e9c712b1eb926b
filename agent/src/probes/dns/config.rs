//! The DNS probe's settings (`dns:` in the agent's config file).

use std::time::Duration;

use serde::Deserialize;

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

impl DnsConfig {
    /// Checks the values: nameservers are addresses, budgets are more than 0.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(bad) = self
            .nameservers
            .iter()
            .find(|n| super::nameserver_addr(n, self.port).is_none())
        {
            return Err(format!(
                "nameservers: {bad:?} is not an IP address or ip:port"
            ));
        }
        if self.query_timeout.is_zero()
            || self.concurrency == 0
            || self.max_queries == 0
            || self.window == 0
        {
            return Err(
                "query_timeout, concurrency, max_queries and window must be more than 0".into(),
            );
        }
        if self.tcp_every == 0 || self.search_every == 0 {
            return Err("tcp_every and search_every must be at least 1".into());
        }
        Ok(())
    }
}
