//! The node conditions this agent owns, decided from its reports (no I/O: the writer in
//! [`super::kube`] sends what [`Conditions::plan`] answers).
//!
//! - A type turns `True` once findings that raise it have held for `hold` (first to last
//!   seen, as incidents do in the collector), and `False` once none has been seen for
//!   `hold`. While its probe cannot measure (`probe.failed`), a type keeps its status.
//! - A plan is due only when a type's status or what it is about (its checks, severities
//!   and subjects) changes, plus a heartbeat of every owned type every `heartbeat` (each
//!   node's own period, ≥ 5 min, so a fleet's heartbeats spread out). Measured values in a
//!   message are refreshed with those writes, not with every report.
//! - Ownership is written in the condition: its message begins with [`MARKER`]. At start the
//!   Node's conditions are adopted: an owned `True` stays `True` (a restart does not report
//!   a node healthy); owned types no longer published (a rule file removed) are deleted;
//!   a type of the table that someone else writes (node-problem-detector's) is left alone.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime},
};

use k8s_openapi::api::core::v1::NodeCondition;
use nodemedic_proto::v1::{FindingStatus, NodeReport, Severity};
use serde_json::{Value, json};

use super::table;
pub use crate::logs::rules::RuleCondition;
use crate::units::rfc3339;

/// How every condition nodemedic writes begins, so that it knows its own.
pub const MARKER: &str = "nodemedic: ";

/// The most a condition's message holds (the subjects beyond are counted).
const MAX_MESSAGE: usize = 1024;

/// A condition type this agent publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    /// The condition's `type`.
    pub kind: String,
    /// Its reason while `True`.
    pub problem: String,
    /// Its reason while `False`.
    pub ok: String,
    /// The checks that raise it (empty for a type a rule file names: raised by reason).
    pub checks: Vec<String>,
    /// The probes that measure it; it is published when one of them runs on this node.
    pub probes: BTreeSet<String>,
}

impl Owned {
    fn of_row(row: &table::ConditionRow) -> Self {
        Owned {
            kind: row.kind.to_owned(),
            problem: row.problem.to_owned(),
            ok: row.ok.to_owned(),
            checks: row.checks.iter().map(|c| (*c).to_owned()).collect(),
            probes: row
                .checks
                .iter()
                .map(|c| c.split('.').next().unwrap_or_default().to_owned())
                .collect(),
        }
    }
}

/// The types published on a node whose agent runs `probes`: the table's rows one of the
/// probes measures, and the conditions of the kernel rule files when the kernel probe runs.
pub fn published(probes: &[String], rules: &[RuleCondition]) -> Vec<Owned> {
    let runs = |p: &BTreeSet<String>| p.iter().any(|p| probes.contains(p));
    let mut out: Vec<Owned> = table::TABLE
        .iter()
        .map(Owned::of_row)
        .filter(|o| runs(&o.probes))
        .collect();
    if probes.iter().any(|p| p == "kernel") {
        for r in rules {
            if out.iter().any(|o| o.kind == r.kind) {
                continue;
            }
            out.push(Owned {
                kind: r.kind.clone(),
                problem: r.reasons.iter().next().cloned().unwrap_or_default(),
                ok: r.ok.clone(),
                checks: vec![],
                probes: BTreeSet::from(["kernel".to_owned()]),
            });
        }
    }
    out
}

/// One finding behind a `True` condition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Cause {
    severity: i32,
    check: String,
    subject: String,
    message: String,
}

#[derive(Debug)]
struct State {
    owned: Owned,
    status: bool,
    /// Its probe has measured (or the Node had it): until then it is not written, since
    /// "False" would claim a health nobody measured.
    measured: bool,
    since: SystemTime,
    first_seen: Option<SystemTime>,
    last_seen: Option<SystemTime>,
    /// The findings of the latest report that had any (worst first).
    causes: Vec<Cause>,
    /// What the API has, as last written or adopted.
    written: Option<Written>,
}

/// What a condition says, as compared for "changed".
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    status: bool,
    reason: String,
    /// Checks, severities and subjects (not the measured values).
    about: String,
}

/// One patch of the Node's status: the body and what it records once it is accepted.
#[derive(Debug, Clone)]
pub struct Plan {
    /// A strategic merge patch of `nodes/<node>/status`.
    pub body: Value,
    /// The types it writes.
    pub writes: Vec<String>,
    /// The types it deletes.
    pub deletes: Vec<String>,
    /// Whether it is the heartbeat (every owned type).
    pub heartbeat: bool,
    written: Vec<(String, Written)>,
}

/// The conditions of one node.
#[derive(Debug)]
pub struct Conditions {
    hold: Duration,
    heartbeat: Duration,
    states: BTreeMap<String, State>,
    /// Kernel rule reason → the type it raises.
    by_reason: BTreeMap<String, String>,
    /// Types of the table someone else writes on this node.
    foreign: BTreeSet<String>,
    /// Owned types to delete.
    stale: BTreeSet<String>,
    adopted: bool,
    next_heartbeat: SystemTime,
    /// When, after the first write, the first heartbeat comes: a phase of its own per node,
    /// so a fleet started at once does not beat at once.
    first_beat: Duration,
}

impl Conditions {
    /// The `published` types, raised after `hold`, with a heartbeat every `heartbeat` (the
    /// first `first_beat` after the first write).
    pub fn new(
        published: Vec<Owned>,
        rules: &[RuleCondition],
        hold: Duration,
        (heartbeat, first_beat): (Duration, Duration),
    ) -> Self {
        let by_reason = rules
            .iter()
            .flat_map(|r| {
                r.reasons
                    .iter()
                    .map(|reason| (reason.clone(), r.kind.clone()))
            })
            .collect();
        let states = published
            .into_iter()
            .map(|owned| {
                let state = State {
                    owned: owned.clone(),
                    status: false,
                    measured: false,
                    since: SystemTime::UNIX_EPOCH,
                    first_seen: None,
                    last_seen: None,
                    causes: vec![],
                    written: None,
                };
                (owned.kind, state)
            })
            .collect();
        Conditions {
            hold,
            heartbeat,
            states,
            by_reason,
            foreign: BTreeSet::new(),
            stale: BTreeSet::new(),
            adopted: false,
            next_heartbeat: SystemTime::UNIX_EPOCH,
            first_beat,
        }
    }

    /// The types published (owned, not someone else's).
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.states
            .keys()
            .filter(|k| !self.foreign.contains(*k))
            .map(String::as_str)
    }

    /// Types of the table left alone because someone else writes them.
    pub fn foreign(&self) -> &BTreeSet<String> {
        &self.foreign
    }

    /// Whether the Node's conditions have been read.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// The Node is gone: read it again before the next write (a new Node has none of
    /// what was written to the old one).
    pub fn forget_node(&mut self) {
        self.adopted = false;
    }

    /// Takes over what the Node says now (read at start, before any write, and again after
    /// the Node was gone): whatever was written before is forgotten.
    pub fn adopt(&mut self, existing: &[NodeCondition], now: SystemTime) {
        self.foreign.clear();
        self.stale.clear();
        for state in self.states.values_mut() {
            state.written = None;
        }
        for c in existing {
            let ours = c.message.as_deref().is_some_and(|m| m.starts_with(MARKER));
            match (self.states.get_mut(&c.type_), ours) {
                (Some(state), true) => {
                    state.status = c.status == "True";
                    state.measured = true;
                    state.since = c
                        .last_transition_time
                        .as_ref()
                        .map_or(now, |t| SystemTime::from(t.0));
                    if state.status {
                        // Still a problem until `hold` without its findings.
                        state.first_seen = Some(now - self.hold);
                        state.last_seen = Some(now);
                    }
                    state.written = Some(Written {
                        status: state.status,
                        reason: c.reason.clone().unwrap_or_default(),
                        about: if state.status {
                            c.message.clone().unwrap_or_default()
                        } else {
                            String::new()
                        },
                    });
                }
                (None, true) => {
                    self.stale.insert(c.type_.clone());
                }
                (Some(_), false) => {
                    tracing::warn!(
                        message = "A condition type nodemedic would publish is written by something else on this node; leaving it alone.",
                        condition = %c.type_,
                        its_message = c.message.as_deref().unwrap_or_default(),
                    );
                    self.foreign.insert(c.type_.clone());
                }
                (None, false) => {}
            }
        }
        self.adopted = true;
    }

    /// Judges one report.
    pub fn observe(&mut self, report: &NodeReport, now: SystemTime) {
        let failed: BTreeSet<&str> = report
            .findings
            .iter()
            .filter(|f| f.check == nodemedic_proto::checks::PROBE_FAILED)
            .map(|f| f.subject.as_str())
            .collect();
        let mut causes: BTreeMap<&str, Vec<Cause>> = BTreeMap::new();
        for f in &report.findings {
            if f.status != FindingStatus::Fail as i32 || f.severity < Severity::Warning as i32 {
                continue;
            }
            let kind = match table::row_of(&f.check) {
                Some(row) => Some(row.kind),
                None if f.check == nodemedic_proto::checks::KERNEL_EVENT => f
                    .text("reason")
                    .and_then(|r| self.by_reason.get(r))
                    .map(String::as_str),
                None => None,
            };
            if let Some(kind) = kind {
                causes.entry(kind).or_default().push(Cause {
                    severity: f.severity,
                    check: f.check.clone(),
                    subject: f.subject.clone(),
                    message: f.message.clone(),
                });
            }
        }
        let hold = self.hold;
        for (kind, state) in &mut self.states {
            match causes.remove(kind.as_str()) {
                Some(mut found) => {
                    state.measured = true;
                    found.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.cmp(b)));
                    state.causes = found;
                    let first = *state.first_seen.get_or_insert(now);
                    state.last_seen = Some(now);
                    if !state.status && elapsed(first, now) >= hold {
                        state.status = true;
                        state.since = now;
                    }
                }
                None if state
                    .owned
                    .probes
                    .iter()
                    .any(|p| failed.contains(p.as_str())) => {}
                None => {
                    state.measured = true;
                    let gone_for = state.last_seen.map(|t| elapsed(t, now));
                    if state.status && gone_for.is_some_and(|g| g >= hold) {
                        state.status = false;
                        state.since = now;
                    }
                    if !state.status {
                        state.first_seen = None;
                    }
                }
            }
        }
    }

    /// The patch due now, if any.
    pub fn plan(&self, now: SystemTime) -> Option<Plan> {
        if !self.adopted {
            return None;
        }
        let first = self.next_heartbeat == SystemTime::UNIX_EPOCH;
        let heartbeat = !first && now >= self.next_heartbeat;
        let stamp = rfc3339(now);
        let mut conditions = vec![];
        let (mut writes, mut written) = (vec![], vec![]);
        for (kind, state) in &self.states {
            if self.foreign.contains(kind) || !state.measured {
                continue;
            }
            let want = state.wanted();
            if !heartbeat && state.written.as_ref() == Some(&want) {
                continue;
            }
            conditions.push(json!({
                "type": kind,
                "status": if want.status { "True" } else { "False" },
                "reason": want.reason,
                "message": state.message(),
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": rfc3339(if state.since == SystemTime::UNIX_EPOCH { now } else { state.since }),
            }));
            writes.push(kind.clone());
            written.push((kind.clone(), want));
        }
        let deletes: Vec<String> = self.stale.iter().cloned().collect();
        for kind in &deletes {
            conditions.push(json!({"type": kind, "$patch": "delete"}));
        }
        if conditions.is_empty() {
            return None;
        }
        Some(Plan {
            body: json!({"status": {"conditions": conditions}}),
            writes,
            deletes,
            heartbeat,
            written,
        })
    }

    /// Records a plan the API server accepted at `now`.
    pub fn committed(&mut self, plan: Plan, now: SystemTime) {
        for (kind, written) in plan.written {
            if let Some(state) = self.states.get_mut(&kind) {
                if state.since == SystemTime::UNIX_EPOCH {
                    state.since = now;
                }
                state.written = Some(written);
            }
        }
        for kind in &plan.deletes {
            self.stale.remove(kind);
        }
        if self.next_heartbeat == SystemTime::UNIX_EPOCH {
            self.next_heartbeat = now + self.first_beat;
        } else if plan.heartbeat {
            self.next_heartbeat = now + self.heartbeat;
        }
    }

    /// The status a type has now (for tests and `kubectl`-like output).
    pub fn status(&self, kind: &str) -> Option<bool> {
        self.states.get(kind).map(|s| s.status)
    }
}

impl State {
    fn wanted(&self) -> Written {
        if self.status {
            let about: Vec<String> = self
                .causes
                .iter()
                .map(|c| format!("{} {} {}", severity_label(c.severity), c.check, c.subject))
                .collect();
            Written {
                status: true,
                reason: self.owned.problem.clone(),
                // Adopted and not yet seen again: what it said then.
                about: if about.is_empty() {
                    self.written
                        .as_ref()
                        .map(|w| w.about.clone())
                        .unwrap_or_default()
                } else {
                    about.join("; ")
                },
            }
        } else {
            Written {
                status: false,
                reason: self.owned.ok.clone(),
                about: String::new(),
            }
        }
    }

    fn message(&self) -> String {
        if !self.status {
            let by = if self.owned.checks.is_empty() {
                "its kernel rules".to_owned()
            } else {
                self.owned.checks.join(", ")
            };
            return format!("{MARKER}no problem seen by {by}");
        }
        if self.causes.is_empty() {
            // Adopted at start: what the condition said (it begins with the marker).
            return self
                .written
                .as_ref()
                .map(|w| w.about.clone())
                .unwrap_or_else(|| MARKER.to_owned());
        }
        let mut out = MARKER.to_owned();
        for (i, c) in self.causes.iter().enumerate() {
            let about = if c.subject.is_empty() {
                String::new()
            } else {
                format!(" on {}", c.subject)
            };
            let part = format!(
                "{}{} {}{about}: {}",
                if i == 0 { "" } else { "; " },
                severity_label(c.severity),
                c.check,
                c.message
            );
            if out.len() + part.len() > MAX_MESSAGE {
                out.push_str(&format!("; and {} more", self.causes.len() - i));
                break;
            }
            out.push_str(&part);
        }
        out
    }
}

fn severity_label(severity: i32) -> &'static str {
    Severity::try_from(severity).map_or("?", Severity::label)
}

/// Time from `from` to `to`; none when the clock went back.
pub(super) fn elapsed(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

/// This node's heartbeat: its period (`base` plus up to a fifth of it) and the time from
/// its first write to its first heartbeat (somewhere in one period), both by the node's
/// name, so the nodes of a fleet started together neither beat together nor drift together.
pub fn heartbeat_of(base: Duration, node: &str) -> (Duration, Duration) {
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let period = base + base.mul_f64((hash % 1000) as f64 / 5000.0);
    let phase = period.mul_f64(((hash >> 20) % 1000) as f64 / 1000.0);
    (period, phase)
}

#[cfg(test)]
mod tests {
    use nodemedic_proto::{checks, v1::Finding};

    use super::*;

    const HOLD: Duration = Duration::from_secs(30);
    const BEAT: Duration = Duration::from_secs(300);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn conditions() -> Conditions {
        let probes = ["disk", "dns", "kernel"].map(String::from);
        let mut c = Conditions::new(published(&probes, &[]), &[], HOLD, (BEAT, BEAT));
        c.adopt(&[], at(0));
        c
    }

    fn report(findings: &[(&str, Severity, &str)]) -> NodeReport {
        NodeReport {
            findings: findings
                .iter()
                .map(|(check, sev, subject)| {
                    Finding::fail(check, *sev, subject, format!("{subject} is bad"))
                })
                .collect(),
            ..Default::default()
        }
    }

    fn status_of<'a>(plan: &'a Plan, kind: &str) -> Option<&'a str> {
        plan.body["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)?["status"]
            .as_str()
    }

    #[test]
    fn only_probes_that_run_publish_their_types() {
        let c = conditions();
        let types: Vec<&str> = c.types().collect();
        assert!(types.contains(&"DiskFilling") && types.contains(&"KernelDeadlock"));
        assert!(!types.contains(&"MemoryLow"), "no memory probe here");
    }

    #[test]
    fn true_after_hold_false_after_hold_and_writes_only_on_change() {
        let mut c = conditions();
        assert!(c.plan(at(0)).is_none(), "nothing measured yet");
        c.observe(&report(&[]), at(0));
        let first = c
            .plan(at(0))
            .expect("the first write says every type is False");
        assert_eq!(status_of(&first, "DiskFilling"), Some("False"));
        c.committed(first, at(0));
        let full = report(&[(checks::DISK_SPACE, Severity::Critical, "/var")]);
        c.observe(&full, at(10));
        assert!(c.plan(at(10)).is_none(), "not held yet");
        c.observe(&full, at(40));
        let raised = c.plan(at(40)).expect("held for 30 s");
        assert_eq!(raised.writes, ["DiskFilling"]);
        assert_eq!(status_of(&raised, "DiskFilling"), Some("True"));
        let message = raised.body["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with(MARKER) && message.contains("/var"),
            "{message}"
        );
        c.committed(raised, at(40));
        // The same problem again (new values): nothing to write until the heartbeat.
        c.observe(&full, at(50));
        assert!(c.plan(at(50)).is_none());
        // Another filesystem joins: a change.
        c.observe(
            &report(&[
                (checks::DISK_SPACE, Severity::Critical, "/var"),
                (checks::DISK_INODES, Severity::Warning, "/"),
            ]),
            at(60),
        );
        let joined = c.plan(at(60)).expect("what it is about changed");
        c.committed(joined, at(60));
        // Gone: False only after the hold.
        c.observe(&report(&[]), at(70));
        assert!(c.plan(at(70)).is_none());
        c.observe(&report(&[]), at(95));
        let cleared = c.plan(at(95)).expect("gone for 35 s");
        assert_eq!(status_of(&cleared, "DiskFilling"), Some("False"));
        c.committed(cleared, at(95));
        // The heartbeat writes every owned type (the first one period after the first write).
        assert!(c.plan(at(299)).is_none());
        let beat = c.plan(at(300)).expect("heartbeat due");
        assert!(beat.heartbeat && beat.writes.len() == c.types().count());
    }

    #[test]
    fn a_failed_probe_keeps_the_status() {
        let mut c = conditions();
        let hung = report(&[(checks::KERNEL_HUNG_TASK, Severity::Warning, "kworker")]);
        c.observe(&hung, at(0));
        c.observe(&hung, at(30));
        assert_eq!(c.status("KernelDeadlock"), Some(true));
        let mut failed = Finding::unknown(
            checks::PROBE_FAILED,
            Severity::Warning,
            "kernel",
            "cannot read".into(),
        );
        failed.status = FindingStatus::Unknown as i32;
        let report = NodeReport {
            findings: vec![failed],
            ..Default::default()
        };
        c.observe(&report, at(100));
        assert_eq!(
            c.status("KernelDeadlock"),
            Some(true),
            "unknown is not healthy"
        );
    }

    fn condition(kind: &str, status: &str, message: &str) -> NodeCondition {
        NodeCondition {
            type_: kind.to_owned(),
            status: status.to_owned(),
            message: Some(message.to_owned()),
            reason: Some("R".to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn a_restart_keeps_true_deletes_stale_and_leaves_others_alone() {
        let probes = ["disk", "kernel"].map(String::from);
        let mut c = Conditions::new(published(&probes, &[]), &[], HOLD, (BEAT, BEAT));
        c.adopt(
            &[
                condition("Ready", "True", "kubelet is posting ready status"),
                condition("DiskFilling", "True", "nodemedic: critical disk.space /var"),
                condition(
                    "FrobnicatorProblem",
                    "True",
                    "nodemedic: a rule now removed",
                ),
                condition("KernelDeadlock", "False", "kernel has no deadlock"),
            ],
            at(0),
        );
        let plan = c.plan(at(0)).unwrap();
        assert_eq!(plan.deletes, ["FrobnicatorProblem"]);
        assert_eq!(status_of(&plan, "DiskFilling"), Some("True"), "not reset");
        for untouched in ["Ready", "KernelDeadlock"] {
            assert_eq!(status_of(&plan, untouched), None, "{untouched} is not ours");
        }
        c.committed(plan, at(0));
        // The problem is gone after the restart: False after the hold.
        c.observe(&report(&[]), at(10));
        assert_eq!(c.status("DiskFilling"), Some(true));
        c.observe(&report(&[]), at(40));
        assert_eq!(c.status("DiskFilling"), Some(false));
    }

    #[test]
    fn a_node_made_again_gets_every_condition_again() {
        let mut c = conditions();
        c.observe(&report(&[]), at(0));
        let first = c.plan(at(0)).unwrap();
        let written = first.writes.len();
        c.committed(first, at(0));
        assert!(c.plan(at(10)).is_none());
        c.forget_node();
        assert!(c.plan(at(20)).is_none(), "not before the new Node is read");
        c.adopt(&[], at(20));
        assert_eq!(c.plan(at(20)).unwrap().writes.len(), written);
    }

    #[test]
    fn a_rule_files_condition_is_raised_by_its_reason() {
        let rules = [RuleCondition {
            kind: "FrobnicatorProblem".into(),
            ok: "FrobnicatorFine".into(),
            reasons: BTreeSet::from(["FrobnicatorStuck".to_owned()]),
        }];
        let probes = ["kernel".to_owned()];
        let mut c = Conditions::new(published(&probes, &rules), &rules, HOLD, (BEAT, BEAT));
        c.adopt(&[], at(0));
        let event = Finding::fail(
            checks::KERNEL_EVENT,
            Severity::Critical,
            "FrobnicatorStuck",
            "frobnicator stuck".into(),
        )
        .with(nodemedic_proto::v1::Evidence::text(
            "reason",
            "FrobnicatorStuck",
        ));
        let r = NodeReport {
            findings: vec![event],
            ..Default::default()
        };
        c.observe(&r, at(0));
        c.observe(&r, at(30));
        assert_eq!(c.status("FrobnicatorProblem"), Some(true));
    }

    #[test]
    fn heartbeats_of_a_fleet_spread_over_periods_and_phases() {
        let beats: Vec<(u64, u64)> = (0..1000)
            .map(|i| heartbeat_of(BEAT, &format!("node-{i}")))
            .map(|(p, f)| (p.as_secs(), f.as_secs()))
            .collect();
        assert!(beats.iter().all(|(p, f)| (300..360).contains(p) && f < p));
        let periods: BTreeSet<u64> = beats.iter().map(|b| b.0).collect();
        let phases: BTreeSet<u64> = beats.iter().map(|b| b.1 / 30).collect();
        assert!(periods.len() > 50, "periods: {periods:?}");
        assert_eq!(phases.len(), 12, "phases over the whole period: {phases:?}");
    }
}
