//! The net probe: the node's own links. The interface the default route leaves by without
//! carrier cuts the node off (critical); an interface losing more than 1 % of its packets
//! to errors or drops over a window, and a bond running on fewer slaves than it has, are
//! warnings (node-mixin's NodeNetworkReceiveErrs and NodeBondingDegraded, judged on the
//! node). Looked at: interfaces a device backs, bonds, the default route's and the
//! configured ones; virtual interfaces (veth pairs, CNI bridges, tunnels) come and go with
//! pods and are left out.

mod links;

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, SystemTime},
};

use nodemedic_proto::{
    checks,
    v1::{Evidence, Finding, NetBond, NetInterface, NetSection, Severity},
};
use serde::Deserialize;

use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::units::{Percent, percent};

/// Which interfaces, and what is too lossy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Look at all (default true).
    pub enabled: bool,
    /// Name prefixes of interfaces left out even with a device behind them (a spare NIC
    /// without a cable); the default route's interface is always looked at.
    pub exclude: Vec<String>,
    /// Names always looked at, whatever they are.
    pub include: Vec<String>,
    /// Errors and drops at this share of the packets over the window are a warning
    /// (default 1%).
    pub loss_warn: Percent,
    /// The span the share is counted over (default 5m).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Fewer packets than this over the window are not judged (default 1000).
    pub min_packets: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            enabled: true,
            exclude: vec![],
            include: vec![],
            loss_warn: Percent::of(1.0),
            window: Duration::from_secs(300),
            min_packets: 1000,
        }
    }
}

impl NetConfig {
    /// The window must be more than nothing.
    pub fn validate(&self) -> Result<(), String> {
        if self.window.is_zero() {
            return Err("window must be more than 0s".into());
        }
        Ok(())
    }

    fn excluded(&self, name: &str) -> bool {
        self.exclude.iter().any(|p| name.starts_with(p.as_str()))
    }
}

/// An interface's counters at one time: rx packets, errors, drops; tx the same.
type Sample = (SystemTime, [u64; 6]);

/// Reads the links; keeps each interface's recent counters for the loss share.
#[derive(Debug)]
pub struct NetProbe {
    config: NetConfig,
    samples: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl NetProbe {
    /// A probe with `config`.
    pub fn new(config: NetConfig) -> Self {
        NetProbe {
            config,
            samples: Mutex::default(),
        }
    }

    /// Which interfaces to look at.
    fn wanted(&self, name: &str, defaults: &BTreeSet<String>, physical: bool, bond: bool) -> bool {
        self.config.include.iter().any(|i| i == name)
            || defaults.contains(name)
            || ((bond || physical) && !self.config.excluded(name))
    }
}

impl Probe for NetProbe {
    fn id(&self) -> &'static str {
        "net"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let host = &ctx.host;
        let defaults = links::default_route_interfaces(host)?;
        let stats = links::counters(host)?;
        let mut section = NetSection {
            default_route_interfaces: defaults.iter().cloned().collect(),
            ..Default::default()
        };
        for name in links::names(host)? {
            let (physical, bond) = (links::is_physical(host, &name), links::is_bond(host, &name));
            if !self.wanted(&name, &defaults, physical, bond) {
                continue;
            }
            if let Some(i) = links::interface(host, &name, physical, &stats, &defaults)? {
                section.interfaces.push(i);
            }
            if bond {
                section.bonds.push(links::bond(host, &name)?);
            }
        }
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.retain(|name, _| section.interfaces.iter().any(|i| &i.name == name));
        for i in &mut section.interfaces {
            let kept = samples.entry(i.name.clone()).or_default();
            loss(i, kept, ctx.now, &self.config);
        }
        drop(samples);
        Ok(ProbeOutput {
            findings: judge(&section, &self.config),
            section: Section::Net(section),
        })
    }
}

/// Adds this reading to the interface's samples and sets its loss shares from the oldest
/// sample within the window.
fn loss(i: &mut NetInterface, kept: &mut VecDeque<Sample>, now: SystemTime, c: &NetConfig) {
    let counters = [
        i.rx_packets,
        i.rx_errors,
        i.rx_dropped,
        i.tx_packets,
        i.tx_errors,
        i.tx_dropped,
    ];
    // Counters going back: the interface was made again; start over.
    if kept
        .back()
        .is_some_and(|(_, last)| last.iter().zip(&counters).any(|(a, b)| b < a))
    {
        kept.clear();
    }
    kept.push_back((now, counters));
    while kept.len() > 1
        && kept
            .get(1)
            .is_some_and(|(at, _)| now.duration_since(*at).unwrap_or_default() >= c.window)
    {
        kept.pop_front();
    }
    let Some((then, first)) = kept.front().copied() else {
        return;
    };
    let span = now.duration_since(then).unwrap_or_default();
    if span.is_zero() {
        return;
    }
    let d: Vec<u64> = counters.iter().zip(first).map(|(b, a)| b - a).collect();
    let share = |packets: u64, lost: u64| {
        (packets + lost >= c.min_packets).then(|| percent(lost, packets + lost))
    };
    i.rx_loss_percent = share(d[0], d[1] + d[2]);
    i.tx_loss_percent = share(d[3], d[4] + d[5]);
    i.window_seconds = Some(span.as_secs_f64());
}

/// The findings of one reading.
pub fn judge(s: &NetSection, c: &NetConfig) -> Vec<Finding> {
    let mut out = vec![];
    for i in &s.interfaces {
        if i.default_route && i.carrier != Some(true) {
            out.push(
                Finding::fail(
                    checks::NET_LINK_DOWN,
                    Severity::Critical,
                    &i.name,
                    format!(
                        "{} carries the default route but has no link ({}, operstate {}): the node cannot reach the cluster; check the cable, the switch port or the virtual NIC.",
                        i.name,
                        if i.admin_up { "no carrier" } else { "configured down" },
                        i.operstate
                    ),
                )
                .with(Evidence::text("operstate", i.operstate.clone()))
                .with(Evidence::text("admin_up", i.admin_up.to_string())),
            );
        }
        for (direction, dir, share, packets, errors, dropped) in [
            (
                "rx",
                "receives",
                i.rx_loss_percent,
                i.rx_packets,
                i.rx_errors,
                i.rx_dropped,
            ),
            (
                "tx",
                "sends",
                i.tx_loss_percent,
                i.tx_packets,
                i.tx_errors,
                i.tx_dropped,
            ),
        ] {
            let Some(share) = share.filter(|s| *s >= c.loss_warn.get()) else {
                continue;
            };
            out.push(
                Finding::fail(
                    checks::NET_ERRORS,
                    Severity::Warning,
                    &i.name,
                    format!(
                        "{} {dir} with {share:.1}% of its packets lost to errors or drops over the last {} (since it came up: {packets} packets, {errors} errors, {dropped} dropped): a failing cable, NIC or driver, or a ring buffer too small for the load.",
                        i.name,
                        humantime::format_duration(Duration::from_secs(
                            i.window_seconds.unwrap_or(0.0) as u64
                        )),
                    ),
                )
                .with(Evidence::percent("lost_percent", share))
                .with(Evidence::text("direction", direction)),
            );
        }
    }
    for b in &s.bonds {
        if let Some(f) = bond(b) {
            out.push(f);
        }
    }
    out
}

fn bond(b: &NetBond) -> Option<Finding> {
    let down: Vec<&str> = b
        .slaves
        .iter()
        .filter(|s| s.mii_status != "up")
        .map(|s| s.name.as_str())
        .collect();
    let (severity, message) = if b.mii_status != "up" {
        (
            Severity::Critical,
            format!(
                "Bond {} ({}) is down: none of its {} slaves has a link ({}).",
                b.name,
                b.mode,
                b.slaves.len(),
                down.join(", ")
            ),
        )
    } else if !down.is_empty() {
        (
            Severity::Warning,
            format!(
                "Bond {} ({}) runs on {} of {} slaves: {} down. One more failure and its traffic stops.",
                b.name,
                b.mode,
                b.slaves.len() - down.len(),
                b.slaves.len(),
                down.join(", ")
            ),
        )
    } else {
        return None;
    };
    Some(
        Finding::fail(checks::NET_BOND_DEGRADED, severity, &b.name, message)
            .with(Evidence::text("slaves_down", down.join(",")))
            .with(Evidence::count("slaves", b.slaves.len() as u64)),
    )
}

#[cfg(test)]
mod tests;
