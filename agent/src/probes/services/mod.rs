//! The services probe: the node's services as they answer for themselves. The kubelet's
//! `/healthz` (critical after 3 failures in a row, counted only once the kubelet has run for
//! a minute, so a restart is not an outage: node-problem-detector's health checker raises
//! KubeletUnhealthy during every kubelet restart), and each CRI runtime's `Status`
//! (RuntimeReady false: the runtime cannot run containers; NetworkReady false: the CNI
//! plugin is not set up, so no pod gets a network).

mod kubelet;

use std::{sync::Mutex, time::Duration};

use nodemedic_proto::{
    checks,
    v1::{Evidence, Finding, RuntimeHealth, RuntimeHealthCondition, ServicesSection, Severity},
};
use serde::Deserialize;

use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{
    kubelet::KubeletConfig,
    runtime::{
        cri,
        endpoint::{Endpoint, Sockets},
        inventory::RuntimeKind,
    },
};

/// Whether the node should have a kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// When its config file or its process is on the node (default).
    Auto,
    /// Always: a node without one is unhealthy.
    Always,
    /// Never ask.
    Never,
}

/// What the probe asks and when it calls a failure.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServicesConfig {
    /// Ask at all (default true).
    pub enabled: bool,
    /// Whether to ask the kubelet (default auto).
    pub kubelet: Expect,
    /// Deadline of each question (default 2s).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Failed `/healthz` answers in a row that make the kubelet unhealthy (default 3).
    pub kubelet_failures: u32,
    /// A kubelet that started less than this ago is not judged (default 1m).
    #[serde(with = "humantime_serde")]
    pub kubelet_grace: Duration,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            enabled: true,
            kubelet: Expect::Auto,
            timeout: Duration::from_secs(2),
            kubelet_failures: 3,
            kubelet_grace: Duration::from_secs(60),
        }
    }
}

impl ServicesConfig {
    /// At least one failure, a deadline of more than nothing.
    pub fn validate(&self) -> Result<(), String> {
        if self.kubelet_failures == 0 {
            return Err("kubelet_failures must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be more than 0s".into());
        }
        Ok(())
    }
}

/// Asks the kubelet and the runtimes; counts the kubelet's failures in a row and remembers
/// its process.
#[derive(Debug)]
pub struct ServicesProbe {
    config: ServicesConfig,
    sockets: Sockets,
    failures: Mutex<u32>,
    kubelet_pid: Mutex<Option<u32>>,
}

impl ServicesProbe {
    /// A probe with `config`, asking the CRI runtime at `sockets` (the images probe's).
    pub fn new(config: ServicesConfig, sockets: Sockets) -> Self {
        ServicesProbe {
            config,
            sockets,
            failures: Mutex::new(0),
            kubelet_pid: Mutex::new(None),
        }
    }

    fn kubelet(&self, ctx: &ProbeContext, section: &mut ServicesSection) {
        let file = KubeletConfig::read(&ctx.host);
        let up = {
            let mut pid = self.kubelet_pid.lock().unwrap_or_else(|p| p.into_inner());
            let found = kubelet::up_seconds(&ctx.host, *pid);
            *pid = found.map(|(p, _)| p);
            found.map(|(_, up)| up)
        };
        section.kubelet_up_seconds = up;
        section.kubelet_expected = match self.config.kubelet {
            Expect::Always => true,
            Expect::Never => false,
            Expect::Auto => file.is_some() || up.is_some(),
        };
        if !section.kubelet_expected {
            return;
        }
        let Some(address) = file.unwrap_or_default().healthz_address() else {
            section.kubelet_answer = "healthzPort is 0 in the kubelet's config: not asked".into();
            section.kubelet_healthy = true;
            return;
        };
        let answer = kubelet::healthz(&address, self.config.timeout);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let starting = up.is_some_and(|s| s < self.config.kubelet_grace.as_secs_f64());
        match &answer {
            Ok(()) => *failures = 0,
            Err(_) if starting => *failures = 0,
            Err(_) => *failures += 1,
        }
        section.kubelet_healthz = address;
        section.kubelet_healthy = answer.is_ok();
        section.kubelet_answer = answer.err().unwrap_or_else(|| "ok".into());
        section.kubelet_failures_in_a_row = *failures;
    }

    fn runtimes(
        &self,
        ctx: &ProbeContext,
        section: &mut ServicesSection,
    ) -> Result<(), ProbeError> {
        let endpoints: Vec<Endpoint> = Endpoint::discover(&ctx.host, &self.sockets)
            .into_iter()
            .filter(|e| e.kind == RuntimeKind::Cri)
            .collect();
        if endpoints.is_empty() {
            return Ok(());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ProbeError::Runtime)?;
        let timeout = self.config.timeout;
        for e in endpoints {
            let socket = ctx.host.path(&e.host_path);
            let asked = rt.block_on(async {
                tokio::time::timeout(timeout, async {
                    cri::status(cri::connect(&socket, timeout).await?).await
                })
                .await
                .unwrap_or(Err(crate::runtime::RuntimeError::Timeout(timeout)))
            });
            section.runtimes.push(match asked {
                Ok((version, conditions)) => RuntimeHealth {
                    endpoint: e.host_path,
                    version,
                    error: String::new(),
                    conditions: conditions
                        .into_iter()
                        .map(|c| RuntimeHealthCondition {
                            r#type: c.r#type,
                            status: c.status,
                            reason: c.reason,
                            message: c.message,
                        })
                        .collect(),
                },
                // The images probe says the runtime is unreachable; here it is unknown.
                Err(err) => RuntimeHealth {
                    endpoint: e.host_path,
                    error: err.to_string(),
                    ..Default::default()
                },
            });
        }
        Ok(())
    }
}

impl Probe for ServicesProbe {
    fn id(&self) -> &'static str {
        "services"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let mut section = ServicesSection::default();
        self.kubelet(ctx, &mut section);
        self.runtimes(ctx, &mut section)?;
        Ok(ProbeOutput {
            findings: judge(&section, &self.config),
            section: Section::Services(section),
        })
    }
}

/// The findings of one reading.
pub fn judge(s: &ServicesSection, c: &ServicesConfig) -> Vec<Finding> {
    let mut out = vec![];
    if s.kubelet_expected && s.kubelet_failures_in_a_row >= c.kubelet_failures {
        let process = match s.kubelet_up_seconds {
            Some(up) => format!(
                "its process has run for {}",
                humantime::format_duration(Duration::from_secs(up as u64))
            ),
            None => "no process named kubelet runs".to_owned(),
        };
        out.push(
            Finding::fail(
                checks::SERVICES_KUBELET_UNHEALTHY,
                Severity::Critical,
                "kubelet",
                format!(
                    "The kubelet's /healthz at {} failed {} times in a row ({}; {process}): pods on this node are not started, probed or reported, and the node turns NotReady.",
                    s.kubelet_healthz, s.kubelet_failures_in_a_row, s.kubelet_answer
                ),
            )
            .with(Evidence::count("failures_in_a_row", u64::from(s.kubelet_failures_in_a_row)))
            .with(Evidence::text("answer", s.kubelet_answer.clone())),
        );
    }
    for r in &s.runtimes {
        for cond in r.conditions.iter().filter(|c| !c.status) {
            let (check, what) = match cond.r#type.as_str() {
                "RuntimeReady" => (
                    checks::SERVICES_RUNTIME_NOT_READY,
                    "the runtime cannot run containers",
                ),
                "NetworkReady" => (
                    checks::SERVICES_NETWORK_NOT_READY,
                    "no pod sandbox gets a network: the CNI plugin is not installed, not configured (/etc/cni/net.d) or its pod is not running",
                ),
                _ => continue,
            };
            out.push(
                Finding::fail(
                    check,
                    Severity::Critical,
                    &r.endpoint,
                    format!(
                        "{} ({}) says {}=false, {}: {}; {what}.",
                        r.endpoint, r.version, cond.r#type, cond.reason, cond.message
                    ),
                )
                .with(Evidence::text("reason", cond.reason.clone()))
                .with(Evidence::text("runtime_version", r.version.clone())),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests;
