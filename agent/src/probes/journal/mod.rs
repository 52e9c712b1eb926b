//! The journal probe: what the node's services logged to the systemd journal. The
//! kubelet (PLEG not healthy, certificate rotation failing, the eviction manager reclaiming,
//! image garbage collection failing), containerd and Docker (errors, a corrupt overlay2),
//! and systemd itself: a unit started 5 times in 20 minutes is a restart loop
//! (node-problem-detector's FrequentKubeletRestart). The rules are data
//! (`agent/journal-rules/nodemedic.json`, node-problem-detector's journald format: its own
//! `systemd-monitor.json` and `docker-monitor.json` load as they are), counted in the same
//! bounded tally as the kernel log's, so a storm costs what one line does.
//!
//! Each run reads the entries logged since the last one ([`reader`], from a cursor, across
//! rotations), at most `max_entries` per run.

pub mod reader;

use std::{path::PathBuf, sync::Mutex, time::Duration};

use nodemedic_proto::{
    checks,
    time::timestamp,
    v1::{Finding, JournalLine, JournalSection, KernelEvent},
};
use serde::Deserialize;

use self::reader::Reader;
use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{
    host::HostError,
    logs::{
        rules::{JOURNAL, Recent, RuleSet},
        tally::{Hit, Tally},
    },
};

/// Where journald keeps its files: persistent, then volatile.
pub const DIRECTORIES: &[&str] = &["/var/log/journal", "/run/log/journal"];

/// Whose lines make the excerpt around a match: the kubelet's and the runtimes'.
const EXCERPT_UNITS: &[&str] = &[
    "kubelet.service",
    "containerd.service",
    "docker.service",
    "crio.service",
];
/// Lines before a matching one kept for its excerpt.
const EXCERPT_BEFORE: usize = 20;
/// Lines of excerpt one run sends at most.
const EXCERPT_MAX: usize = 200;
/// An excerpt line is cut to this many bytes.
const EXCERPT_LINE: usize = 1024;

/// What the journal probe reads and how it counts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Read at all (default true).
    pub enabled: bool,
    /// How far back the first read starts (default 20m).
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// Matches count this long (default 20m: five starts within it are a restart loop).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Entries read per run at most (default 50000); the rest wait for the next run.
    pub max_entries: usize,
    /// More rule files, e.g. node-problem-detector's systemd-monitor.json.
    pub rule_files: Vec<PathBuf>,
    /// Distinct (check, subject) pairs kept; the rest count under "(other)".
    pub max_subjects: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            enabled: true,
            lookback: Duration::from_secs(20 * 60),
            window: Duration::from_secs(20 * 60),
            max_entries: 50_000,
            rule_files: vec![],
            max_subjects: 256,
        }
    }
}

impl JournalConfig {
    /// The rule files load; the window is more than nothing.
    pub fn validate(&self) -> Result<(), String> {
        if self.window.is_zero() {
            return Err("window must be more than 0s".into());
        }
        RuleSet::load(JOURNAL, &self.rule_files).map_err(|e| format!("rule_files: {e}"))?;
        Ok(())
    }
}

/// The reader, the rules and the counts, kept between runs.
#[derive(Debug)]
struct State {
    reader: Reader,
    rules: RuleSet,
    recent: Recent,
    tally: Tally,
    /// The kubelet's and runtimes' last lines, for the next match's excerpt.
    before: std::collections::VecDeque<JournalLine>,
}

/// Reads the journal from its first run on.
#[derive(Debug)]
pub struct JournalProbe {
    config: JournalConfig,
    state: Mutex<Option<State>>,
}

impl JournalProbe {
    /// A probe with `config`; it starts reading at its first run.
    pub fn new(config: JournalConfig) -> Self {
        JournalProbe {
            config,
            state: Mutex::new(None),
        }
    }

    fn start(&self, ctx: &ProbeContext) -> Result<State, ProbeError> {
        let rules =
            RuleSet::load(JOURNAL, &self.config.rule_files).map_err(|e| HostError::Parse {
                path: e.file.clone().into(),
                reason: e.reason,
            })?;
        Ok(State {
            reader: Reader::new(
                DIRECTORIES.iter().map(|d| ctx.host.path(d)).collect(),
                self.config.lookback,
                self.config.max_entries,
            ),
            recent: Recent::for_rules(&rules),
            rules,
            tally: Tally::new(self.config.window, self.config.max_subjects),
            before: std::collections::VecDeque::with_capacity(EXCERPT_BEFORE),
        })
    }
}

impl Probe for JournalProbe {
    fn id(&self) -> &'static str {
        "journal"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.is_none() {
            *state = Some(self.start(ctx)?);
        }
        let Some(s) = state.as_mut() else {
            unreachable!("started above")
        };
        let State {
            reader,
            rules,
            recent,
            tally,
            before,
        } = s;
        let mut excerpt = Vec::new();
        let read = reader
            .read(ctx.now, |entry| {
                tally.lines_read += 1;
                let identifier =
                    (!entry.identifier.is_empty()).then_some(entry.identifier.as_str());
                let matched = rules.matches_from(identifier, &entry.message, recent);
                let line = || JournalLine {
                    at: Some(timestamp(entry.at)),
                    unit: entry.unit.clone(),
                    identifier: entry.identifier.clone(),
                    message: crate::logs::tally::truncate(&entry.message, EXCERPT_LINE).to_owned(),
                };
                if !matched.is_empty() {
                    tally.lines_matched += 1;
                    if excerpt.len() < EXCERPT_MAX {
                        excerpt.extend(before.drain(..));
                        excerpt.push(line());
                        excerpt.truncate(EXCERPT_MAX);
                    }
                } else if EXCERPT_UNITS.contains(&entry.unit.as_str()) {
                    if before.len() == EXCERPT_BEFORE {
                        before.pop_front();
                    }
                    before.push_back(line());
                }
                for m in matched {
                    tally.add(
                        Hit {
                            check: &m.rule.check,
                            subject: m.subject,
                            reason: &m.rule.reason,
                            severity: m.severity,
                            fields: m.fields,
                        },
                        &entry.message,
                        entry.at,
                    );
                }
                recent.push(&entry.message);
            })
            .map_err(|e| {
                ProbeError::Host(HostError::Io {
                    path: ctx.host.path(DIRECTORIES[0]),
                    source: std::io::Error::other(e.to_string()),
                })
            })?;
        let events = tally.events(ctx.now);
        let findings = events
            .iter()
            .filter(|e| e.count >= rules.at_least(&e.check))
            .map(|e| finding(e, self.config.window))
            .collect();
        let section = JournalSection {
            directories: DIRECTORIES.iter().map(|d| d.to_string()).collect(),
            files: read.files,
            entries_read: tally.lines_read,
            entries_matched: tally.lines_matched,
            cursor: reader.cursor(),
            behind: read.behind,
            events,
            rules_skipped: rules.skipped().to_vec(),
            excerpt,
        };
        Ok(ProbeOutput {
            section: Section::Journal(section),
            findings,
        })
    }
}

fn finding(e: &KernelEvent, window: Duration) -> Finding {
    let what = match e.check.as_str() {
        checks::JOURNAL_KUBELET_RESTARTS => "starts of the kubelet",
        checks::JOURNAL_CONTAINERD_RESTARTS => "starts of containerd",
        checks::JOURNAL_DOCKER_RESTARTS => "starts of Docker",
        checks::JOURNAL_UNIT_RESTARTS => "starts of a node service",
        checks::JOURNAL_KUBELET_PLEG => "kubelet reports of PLEG not healthy",
        checks::JOURNAL_KUBELET_CERTIFICATE => "kubelet certificate failures",
        checks::JOURNAL_KUBELET_EVICTION => "kubelet eviction-manager reclaims",
        checks::JOURNAL_KUBELET_IMAGE_GC => "kubelet image garbage collection failures",
        checks::JOURNAL_RUNTIME_ERROR => "container runtime errors",
        checks::JOURNAL_DOCKER_OVERLAY2 => "corrupt overlay2 errors from Docker",
        _ => "matching journal messages",
    };
    crate::logs::finding(e, what, window)
}

#[cfg(test)]
mod tests;
