//! The clock probe: is the node's clock disciplined, and how far off is it (TLS
//! certificates, etcd leases and token expiry all break with skew). It reads the host's
//! clock (adjtimex(2), `HostRoot::clock`); the judging is a pure function of what it read
//! ([`judge`]).

use std::{
    sync::Mutex,
    time::{Duration, SystemTime},
};

use nodemedic_proto::{
    checks,
    v1::{ClockSection, Evidence, Finding, Severity},
};
use serde::Deserialize;

use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};

/// The clock's limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockThresholds {
    /// Unsynchronised (or a maximum error at `max_error`) this long is a warning (default
    /// 10m: a restarting time daemon is not a problem).
    #[serde(with = "humantime_serde")]
    pub unsynchronised_for: Duration,
    /// A maximum error this large counts as unsynchronised (default 16s, the kernel's own
    /// ceiling).
    #[serde(with = "humantime_serde")]
    pub max_error: Duration,
    /// An offset beyond this is a warning (default 50ms).
    #[serde(with = "humantime_serde")]
    pub offset_warn: Duration,
    /// An offset beyond this is critical (default 1s: TLS and etcd break).
    #[serde(with = "humantime_serde")]
    pub offset_critical: Duration,
}

impl Default for ClockThresholds {
    fn default() -> Self {
        ClockThresholds {
            unsynchronised_for: Duration::from_secs(600),
            max_error: Duration::from_secs(16),
            offset_warn: Duration::from_millis(50),
            offset_critical: Duration::from_secs(1),
        }
    }
}

impl ClockThresholds {
    /// The warning line comes before the critical one.
    pub fn validate(&self) -> Result<(), String> {
        if self.offset_critical < self.offset_warn {
            return Err("offset_critical must be at least offset_warn".into());
        }
        Ok(())
    }
}

/// Reads the clock; remembers since when it is unsynchronised.
#[derive(Debug)]
pub struct ClockProbe {
    thresholds: ClockThresholds,
    unsynchronised_since: Mutex<Option<SystemTime>>,
}

impl ClockProbe {
    /// A probe of the node's clock.
    pub fn new(thresholds: ClockThresholds) -> Self {
        ClockProbe {
            thresholds,
            unsynchronised_since: Mutex::new(None),
        }
    }
}

impl Probe for ClockProbe {
    fn id(&self) -> &'static str {
        "clock"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let t = ctx.host.clock()?;
        let synchronised = t.is_synchronised(self.thresholds.max_error);
        let since = {
            let mut since = self
                .unsynchronised_since
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if synchronised {
                *since = None;
            } else {
                since.get_or_insert(ctx.now);
            }
            *since
        };
        // As long as this agent has seen it: a time daemon restarting, or a node just
        // booted, is not a finding.
        let unsynchronised_for = since.map(|s| ctx.now.duration_since(s).unwrap_or_default());
        let section = ClockSection {
            synchronised,
            state: t.state,
            status: t.status,
            offset_ms: t.offset_ms(),
            max_error_ms: t.max_error_us as f64 / 1e3,
            est_error_ms: t.est_error_us as f64 / 1e3,
            unsynchronised_for_seconds: unsynchronised_for.map(|d| d.as_secs_f64()),
        };
        Ok(ProbeOutput {
            findings: judge(&section, &self.thresholds),
            section: Section::Clock(section),
        })
    }
}

/// The findings of one reading.
pub fn judge(s: &ClockSection, t: &ClockThresholds) -> Vec<Finding> {
    let mut findings = vec![];
    if let Some(secs) = s.unsynchronised_for_seconds
        && secs >= t.unsynchronised_for.as_secs_f64()
    {
        findings.push(
            Finding::fail(
                checks::CLOCK_UNSYNCHRONISED,
                Severity::Warning,
                "",
                format!(
                    "The clock has not been synchronised for {} (adjtimex: state {}, maximum error {:.0} ms): no time daemon disciplines it, or it cannot reach its servers; certificates and tokens fail once it drifts.",
                    humantime::format_duration(Duration::from_secs(secs as u64)),
                    s.state,
                    s.max_error_ms
                ),
            )
            .with(Evidence::number("unsynchronised_for", secs, "s"))
            .with(Evidence::number("max_error", s.max_error_ms, "ms")),
        );
    }
    let off = s.offset_ms.abs();
    let severity = if off > t.offset_critical.as_secs_f64() * 1e3 {
        Some(Severity::Critical)
    } else if off > t.offset_warn.as_secs_f64() * 1e3 {
        Some(Severity::Warning)
    } else {
        None
    };
    if let Some(severity) = severity {
        findings.push(
            Finding::fail(
                checks::CLOCK_OFFSET,
                severity,
                "",
                format!(
                    "The clock is {:.0} ms off and still being corrected; TLS handshakes and etcd leases fail beyond about a second of skew.",
                    s.offset_ms
                ),
            )
            .with(Evidence::number("offset", s.offset_ms, "ms")),
        );
    }
    findings
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::host::{HostRoot, Timex};

    fn at(clock: Timex, secs: u64) -> ProbeContext {
        ProbeContext {
            host: HostRoot::new("/").with_clock(Arc::new(Mutex::new(clock))),
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs),
        }
    }

    /// What this project's build machine answered (a container on a VM without a time
    /// daemon): state TIME_ERROR, STA_UNSYNC, maximum error 16 s.
    const UNSYNCHRONISED: Timex = Timex {
        state: 5,
        status: 0x40,
        offset: 0,
        max_error_us: 16_000_000,
        est_error_us: 16_000_000,
    };

    /// A time daemon stopped a minute ago: the kernel's maximum error has grown 30 ms.
    const JUST_STOPPED: Timex = Timex {
        state: 5,
        status: 0x40,
        offset: 0,
        max_error_us: 30_000,
        est_error_us: 1_000,
    };

    /// chrony-disciplined, nanosecond mode, 1.8 s still to correct.
    const FAR_OFF: Timex = Timex {
        state: 0,
        status: 0x2001,
        offset: 1_800_000_000,
        max_error_us: 250_000,
        est_error_us: 1_000,
    };

    fn checks_of(out: &ProbeOutput) -> Vec<(&str, i32)> {
        out.findings
            .iter()
            .map(|f| (f.check.as_str(), f.severity))
            .collect()
    }

    #[test]
    fn the_real_clock_reads() {
        let t = HostRoot::new("/")
            .clock()
            .expect("adjtimex(2) with no modes needs no privilege");
        assert!((0..=5).contains(&t.state), "{t:?}");
        assert!(t.max_error_us >= 0, "{t:?}");
    }

    #[test]
    fn unsynchronised_is_a_warning_only_once_it_lasts() {
        let probe = ClockProbe::new(ClockThresholds::default());
        let first = probe.run(&at(JUST_STOPPED, 0)).unwrap();
        assert!(first.findings.is_empty(), "a time daemon may be restarting");
        let later = probe.run(&at(JUST_STOPPED, 601)).unwrap();
        assert_eq!(
            checks_of(&later),
            [(checks::CLOCK_UNSYNCHRONISED, Severity::Warning as i32)]
        );
        let Section::Clock(s) = later.section else {
            panic!("a clock section")
        };
        assert!(!s.synchronised && s.unsynchronised_for_seconds == Some(601.0));
        // Synchronised again: gone, and the count starts over.
        let synced = probe.run(&at(Timex::synchronised(), 700)).unwrap();
        assert!(synced.findings.is_empty());
        assert!(
            probe
                .run(&at(JUST_STOPPED, 800))
                .unwrap()
                .findings
                .is_empty()
        );
    }

    #[test]
    fn one_reading_shows_the_state_and_raises_nothing_yet() {
        let probe = ClockProbe::new(ClockThresholds::default());
        let out = probe.run(&at(UNSYNCHRONISED, 0)).unwrap();
        assert!(out.findings.is_empty(), "not yet 10 minutes");
        let Section::Clock(s) = out.section else {
            panic!("a clock section")
        };
        assert!(!s.synchronised && s.max_error_ms == 16_000.0 && s.state == 5);
    }

    #[test]
    fn an_offset_beyond_a_second_is_critical() {
        let probe = ClockProbe::new(ClockThresholds::default());
        let out = probe.run(&at(FAR_OFF, 0)).unwrap();
        assert_eq!(
            checks_of(&out),
            [(checks::CLOCK_OFFSET, Severity::Critical as i32)]
        );
        assert!(
            out.findings[0].message.contains("1800 ms"),
            "{}",
            out.findings[0].message
        );
    }
}
