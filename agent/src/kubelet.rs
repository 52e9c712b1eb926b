//! The kubelet's config file on the node (`/var/lib/kubelet/config.yaml`, a
//! KubeletConfiguration): the fields probes judge by. Fields it does not name are ignored,
//! so every kubelet version's file reads.

use serde::Deserialize;
use tracing::debug;

use crate::host::HostRoot;

/// Where kubeadm, kOps and most distributions write it.
pub const CONFIG_PATH: &str = "/var/lib/kubelet/config.yaml";

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
}

impl KubeletConfig {
    /// The node's file; `None` when it has none. A file that does not parse counts as one
    /// with no fields set (logged): a probe then judges by the kubelet's defaults.
    pub fn read(host: &HostRoot) -> Option<Self> {
        match host.read_if_present(CONFIG_PATH) {
            Ok(Some(text)) => Some(serde_saphyr::from_str(&text).unwrap_or_else(|e| {
                debug!(message = "Ignoring an unreadable kubelet config.", error = %e);
                KubeletConfig::default()
            })),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
