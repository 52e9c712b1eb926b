//! The certs probe: the certificates the node runs on. The kubelet's client certificate
//! (`/var/lib/kubelet/pki/kubelet-client-current.pem`, or what its kubeconfig names) and
//! serving certificate (`kubelet-server-current.pem`, `kubelet.crt`, or its config's
//! `tlsCertFile`), the agent's own client certificate, and configured PEM files or
//! directories. Under 7 days left is a warning, under 24 hours (or expired) critical; past
//! 80 % of its lifetime with no newer file in its place is info (the kubelet rotates
//! between 70 % and 90 % when rotation is on and its signing requests are approved).
//!
//! Only `CERTIFICATE` blocks are parsed: the kubelet's client file holds its key too,
//! which is never looked at. The kubelet leaves old dated files (`kubelet-client-2024-…`)
//! beside the current one; only the current one is judged.

use std::time::{Duration, SystemTime};

use nodemedic_proto::{
    checks,
    time::{system_time, timestamp},
    v1::{CertificateFile, CertsSection, Evidence, Finding, Severity},
};
use serde::Deserialize;
use x509_parser::pem::Pem;

use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{host::HostRoot, kubelet::KubeletConfig};

/// The kubelet's certificate directory.
const PKI_DIR: &str = "/var/lib/kubelet/pki";
/// The kubeconfig kubeadm writes for the kubelet.
const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";

/// What to read and when a certificate is too close to its end.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CertsConfig {
    /// Look at all (default true).
    pub enabled: bool,
    /// More PEM files, or directories of them (host paths).
    pub paths: Vec<String>,
    /// Less than this left is a warning (default 7 days).
    #[serde(with = "humantime_serde")]
    pub warn_within: Duration,
    /// Less than this left is critical (default 24h).
    #[serde(with = "humantime_serde")]
    pub critical_within: Duration,
    /// Past this share of the lifetime is info: it should have been rotated (default 80%).
    pub rotate_after: crate::units::Percent,
    /// The agent's own client certificate (its `--cert`, a path in the agent's own
    /// filesystem, not under the host root); set by the agent, not the file.
    #[serde(skip)]
    pub agent_certificate: Option<String>,
}

impl Default for CertsConfig {
    fn default() -> Self {
        CertsConfig {
            enabled: true,
            paths: vec![],
            warn_within: Duration::from_secs(7 * 86_400),
            critical_within: Duration::from_secs(86_400),
            rotate_after: crate::units::Percent::of(80.0),
            agent_certificate: None,
        }
    }
}

impl CertsConfig {
    /// The warning line comes before the critical one.
    pub fn validate(&self) -> Result<(), String> {
        if self.warn_within < self.critical_within {
            return Err("warn_within must be at least critical_within".into());
        }
        Ok(())
    }
}

/// Reads the certificates; keeps nothing between runs.
#[derive(Debug)]
pub struct CertsProbe {
    config: CertsConfig,
}

impl CertsProbe {
    /// A probe with `config`.
    pub fn new(config: CertsConfig) -> Self {
        CertsProbe { config }
    }
}

/// A file to read: its path, its role, and whether it must be there.
struct Source {
    path: String,
    role: &'static str,
    required: bool,
    /// `path` is the agent's own, not a host path.
    own: bool,
}

impl Probe for CertsProbe {
    fn id(&self) -> &'static str {
        "certs"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let mut section = CertsSection::default();
        for s in sources(&ctx.host, &self.config) {
            if section.certificates.iter().any(|c| c.path == s.path) {
                continue;
            }
            section.certificates.extend(read(&ctx.host, &s, ctx.now));
        }
        Ok(ProbeOutput {
            findings: judge(&section, &self.config, ctx.now),
            section: Section::Certs(section),
        })
    }
}

/// Every certificate file to read, in order, the kubelet's first.
fn sources(host: &HostRoot, c: &CertsConfig) -> Vec<Source> {
    let mut out = vec![];
    let pki = |name: &str| format!("{PKI_DIR}/{name}");
    let exists = |p: &str| host.resolve(p).exists();
    // The kubelet's kubeconfig names its client certificate (kubeadm: the pki's current).
    let named_client = host
        .read_if_present(KUBELET_KUBECONFIG)
        .ok()
        .flatten()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix("client-certificate:"))
                .map(|p| p.trim().trim_matches('"').to_owned())
        });
    match named_client {
        Some(path) => out.push(Source {
            path,
            role: "kubelet-client",
            required: true,
            own: false,
        }),
        None if exists(&pki("kubelet-client-current.pem")) => out.push(Source {
            path: pki("kubelet-client-current.pem"),
            role: "kubelet-client",
            required: true,
            own: false,
        }),
        None => {}
    }
    let kubelet = KubeletConfig::read(host).unwrap_or_default();
    if let Some(path) = kubelet.tls_cert_file {
        out.push(Source {
            path,
            role: "kubelet-serving",
            required: true,
            own: false,
        });
    } else if let Some(name) = ["kubelet-server-current.pem", "kubelet.crt"]
        .into_iter()
        .find(|n| exists(&pki(n)))
    {
        out.push(Source {
            path: pki(name),
            role: "kubelet-serving",
            required: true,
            own: false,
        });
    }
    if let Some(path) = &c.agent_certificate {
        out.push(Source {
            path: path.clone(),
            role: "agent-client",
            required: true,
            own: true,
        });
    }
    for path in &c.paths {
        match std::fs::read_dir(host.path(path)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|n| [".pem", ".crt", ".cert"].iter().any(|x| n.ends_with(x)))
                    .collect();
                names.sort();
                out.extend(names.into_iter().map(|n| Source {
                    path: format!("{}/{n}", path.trim_end_matches('/')),
                    role: "configured",
                    // A directory may hold keys beside certificates.
                    required: false,
                    own: false,
                }));
            }
            Err(_) => out.push(Source {
                path: path.clone(),
                role: "configured",
                required: true,
                own: false,
            }),
        }
    }
    out
}

/// The certificates of one file: the first CERTIFICATE block (the leaf; what follows is
/// its chain). An unreadable required file is an entry with its error; an optional one
/// without a certificate is nothing.
fn read(host: &HostRoot, s: &Source, now: SystemTime) -> Option<CertificateFile> {
    let entry = |error: String| CertificateFile {
        path: s.path.clone(),
        role: s.role.to_owned(),
        error,
        ..Default::default()
    };
    let file = if s.own {
        std::path::PathBuf::from(&s.path)
    } else {
        host.resolve(&s.path)
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return s.required.then(|| entry(format!("cannot read it: {e}"))),
    };
    let leaf = Pem::iter_from_buffer(&bytes)
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE");
    let Some(pem) = leaf else {
        return s
            .required
            .then(|| entry("no CERTIFICATE block in it".into()));
    };
    let cert = match pem.parse_x509() {
        Ok(c) => c,
        Err(e) => return Some(entry(format!("not an X.509 certificate: {e}"))),
    };
    let at = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(t.timestamp().max(0) as u64))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let (from, until) = (
        at(cert.validity().not_before),
        at(cert.validity().not_after),
    );
    let lifetime = until.duration_since(from).unwrap_or_default().as_secs_f64();
    let used = now.duration_since(from).unwrap_or_default().as_secs_f64();
    Some(CertificateFile {
        path: s.path.clone(),
        role: s.role.to_owned(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: Some(timestamp(from)),
        not_after: Some(timestamp(until)),
        lifetime_used_percent: if lifetime > 0.0 {
            used / lifetime * 100.0
        } else {
            100.0
        },
        error: String::new(),
    })
}

/// What an expired or expiring certificate of this role breaks.
fn consequence(role: &str) -> &'static str {
    match role {
        "kubelet-client" => {
            "the kubelet cannot reach the API server (x509: certificate has expired), the node turns NotReady; an agent writing with the kubelet's identity (--write-kubeconfig) fails the same way"
        }
        "kubelet-serving" => {
            "kubectl logs/exec/port-forward and metrics-server's scrapes of this node fail the TLS handshake"
        }
        "agent-client" => {
            "this agent's mTLS connection to the collector is refused: the node goes silent in nodemedic"
        }
        _ => "clients of whatever serves it fail the TLS handshake",
    }
}

/// The findings of one reading.
pub fn judge(s: &CertsSection, c: &CertsConfig, now: SystemTime) -> Vec<Finding> {
    let mut out = vec![];
    for cert in &s.certificates {
        if !cert.error.is_empty() {
            out.push(
                Finding::fail(
                    checks::CERTS_UNREADABLE,
                    Severity::Warning,
                    &cert.path,
                    format!(
                        "The {} certificate {} cannot be checked: {}.",
                        cert.role, cert.path, cert.error
                    ),
                )
                .with(Evidence::text("role", cert.role.clone())),
            );
            continue;
        }
        let Some(until) = cert.not_after.as_ref().map(system_time) else {
            continue;
        };
        let left = until.duration_since(now).ok();
        let severity = match left {
            None => Some(Severity::Critical),
            Some(l) if l < c.critical_within => Some(Severity::Critical),
            Some(l) if l < c.warn_within => Some(Severity::Warning),
            _ => None,
        };
        let ends = crate::units::rfc3339(until);
        let evidence = |f: Finding| {
            f.with(Evidence::text("role", cert.role.clone()))
                .with(Evidence::text("not_after", ends.clone()))
                .with(Evidence::text("subject", cert.subject.clone()))
        };
        if let Some(severity) = severity {
            let when = match left {
                None => format!("expired at {ends}"),
                Some(l) => format!(
                    "expires at {ends}, in {}",
                    humantime::format_duration(Duration::from_secs(l.as_secs() / 60 * 60))
                ),
            };
            out.push(evidence(Finding::fail(
                checks::CERTS_EXPIRY,
                severity,
                &cert.path,
                format!(
                    "The {} certificate {} ({}) {when}: {}.",
                    cert.role,
                    cert.path,
                    cert.subject,
                    consequence(&cert.role)
                ),
            )));
        } else if cert.lifetime_used_percent >= c.rotate_after.get() {
            out.push(evidence(Finding::fail(
                checks::CERTS_ROTATION,
                Severity::Info,
                &cert.path,
                format!(
                    "The {} certificate {} is {:.0}% through its lifetime and has not been replaced (it expires at {ends}); the kubelet rotates between 70% and 90% when rotateCertificates is on and its signing requests are approved.",
                    cert.role, cert.path, cert.lifetime_used_percent
                ),
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests;
