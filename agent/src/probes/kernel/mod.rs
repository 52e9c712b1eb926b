//! The kernel log probe: what the kernel said about the node (OOM kills, hung tasks, soft
//! lockups, filesystem and I/O errors, a full conntrack table, ...).
//!
//! A follower thread ([`follow`]) reads `/dev/kmsg` (or a log file) as records arrive, so a
//! storm cannot overrun the kernel's ring buffer between two reports; each line goes
//! through the rules ([`crate::logs::rules`], data in node-problem-detector's format) once, and matches
//! are counted in a [`crate::logs::tally::Tally`] of bounded size. A probe run asks the follower to catch
//! up to "now" and turns the tally into the section and one finding per check and subject
//! with a match in the window.

pub mod config;
mod follow;
pub mod oom;
pub mod source;

use std::{sync::Mutex, time::Duration};

use nodemedic_proto::checks;
use nodemedic_proto::v1::{Finding, KernelEvent};

use self::{
    config::KernelConfig,
    follow::Follower,
    source::{Kmsg, LogFile, Source},
};
use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{
    host::{HostError, HostRoot},
    logs::rules::{KERNEL, RuleSet},
    parse::line_time::Clock,
};

/// Where kernel lines are read when no log file is configured, in order.
const SOURCES: &[&str] = &["/dev/kmsg", "/var/log/kern.log", "/var/log/messages"];

/// Follows the kernel log from the first run on.
#[derive(Debug)]
pub struct KernelProbe {
    config: KernelConfig,
    follower: Mutex<Option<Follower>>,
}

impl KernelProbe {
    /// A probe with `config`; it starts reading at its first run.
    pub fn new(config: KernelConfig) -> Self {
        KernelProbe {
            config,
            follower: Mutex::new(None),
        }
    }

    fn start(&self, host: &HostRoot) -> Result<Follower, ProbeError> {
        let (name, path) = match &self.config.log_file {
            Some(file) => (file.clone(), host.path(file)),
            None => SOURCES
                .iter()
                .map(|s| (s.to_string(), host.path(s)))
                .find(|(_, p)| p.exists())
                .ok_or_else(|| HostError::Io {
                    path: host.path(SOURCES[0]),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("no kernel log: none of {} exists", SOURCES.join(", ")),
                    ),
                })?,
        };
        let io_err = |source| HostError::Io {
            path: path.clone(),
            source,
        };
        let source = if name == "/dev/kmsg" {
            let uptime = uptime(host)?;
            Source::Kmsg(Kmsg::open(path.clone(), uptime, self.config.lookback).map_err(io_err)?)
        } else {
            // Fail now, naming the file, rather than in the follower.
            std::fs::metadata(&path).map_err(io_err)?;
            Source::File(LogFile::new(
                path.clone(),
                self.config.lookback_bytes,
                clock(host),
            ))
        };
        let rules =
            RuleSet::load(KERNEL, &self.config.rule_files).map_err(|e| HostError::Parse {
                path: e.file.clone().into(),
                reason: e.reason,
            })?;
        Ok(Follower::start(name, source, rules, &self.config))
    }
}

/// The host's uptime (`/proc/uptime`).
fn uptime(host: &HostRoot) -> Result<Duration, HostError> {
    let uptime: procfs_core::Uptime = host.parse("/proc/uptime")?;
    Duration::try_from_secs_f64(uptime.uptime).map_err(|e| HostError::Parse {
        path: host.path("/proc/uptime"),
        reason: e.to_string(),
    })
}

/// What dates a log file's lines: the host's zone (`/etc/localtime`, UTC without one) and
/// boot time (unknown without `/proc/uptime`), each said once when missing.
fn clock(host: &HostRoot) -> Clock {
    let localtime = host.path("/etc/localtime");
    let zone = match std::fs::read(&localtime) {
        Ok(bytes) => jiff::tz::TimeZone::tzif("localtime", &bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %localtime.display(), error = %e, "cannot read the host's time zone; log lines without an offset are read as UTC");
            jiff::tz::TimeZone::UTC
        }),
        Err(_) => jiff::tz::TimeZone::UTC,
    };
    let boot = match uptime(host) {
        Ok(up) => std::time::SystemTime::now().checked_sub(up),
        Err(e) => {
            tracing::warn!(error = %e, "no boot time: log lines stamped in seconds since boot are dated when read");
            None
        }
    };
    Clock { zone, boot }
}

impl Probe for KernelProbe {
    fn id(&self) -> &'static str {
        "kernel"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let mut follower = self.follower.lock().unwrap_or_else(|p| p.into_inner());
        if follower.is_none() {
            *follower = Some(self.start(&ctx.host)?);
        }
        let Some(running) = follower.as_ref() else {
            unreachable!("started above")
        };
        let section = match running.catch_up(ctx.now) {
            Ok(section) => section,
            Err(e) => {
                // Start afresh at the next run (the file may come back).
                *follower = None;
                return Err(e);
            }
        };
        let findings = section
            .events
            .iter()
            .filter(|e| e.count > 0)
            .map(|e| finding(e, self.config.window))
            .collect();
        Ok(ProbeOutput {
            section: Section::Kernel(section),
            findings,
        })
    }
}

fn finding(e: &KernelEvent, window: Duration) -> Finding {
    let what = match e.check.as_str() {
        checks::KERNEL_OOM_KILL => "OOM kills",
        checks::KERNEL_HUNG_TASK => "hung task reports",
        checks::KERNEL_SOFT_LOCKUP => "CPU lockups or RCU stalls",
        checks::KERNEL_FS_ERROR => "filesystem errors",
        checks::KERNEL_READONLY_REMOUNT => "read-only remounts",
        checks::KERNEL_IO_ERROR => "I/O errors",
        checks::KERNEL_CONNTRACK_FULL => "packets dropped: conntrack table full",
        checks::KERNEL_UNREGISTER_NETDEVICE => "network devices stuck unregistering",
        checks::KERNEL_OOPS => "kernel oopses",
        checks::KERNEL_HARDWARE_ERROR => "hardware errors",
        checks::KERNEL_PANIC => "kernel panics",
        checks::KERNEL_NIC_TX_TIMEOUT => "network transmit timeouts",
        checks::KERNEL_GPU_ERROR => "GPU Xid errors",
        _ => "matching kernel messages",
    };
    crate::logs::finding(e, what, window)
}
