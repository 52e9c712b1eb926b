//! Temporary problems as Kubernetes Events (events.k8s.io/v1), decided from the reports and
//! from applied remediations (no I/O: the writer in [`super::kube`] sends what
//! [`Events::due`] answers).
//!
//! - A kernel finding's `total` rising between two reports is that many occurrences of its
//!   rule's reason (`OOMKilling`, `TaskHung`, `KernelOops`: node-problem-detector's), on the
//!   Node and, when the finding names a pod, on the Pod too. The first report only sets the
//!   baseline: what happened before this agent started was written by the one before it.
//! - Occurrences of one reason about one object within [`SERIES_WINDOW`] are one Event whose
//!   `series.count` grows; a series is written at most every `series_every`.
//! - Every write takes a token from the node's bucket (`burst`, one back per `refill`); an
//!   occurrence without a token waits in its series (counted, not lost), so a kernel storm
//!   costs the API server a bounded number of writes, whatever its length.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use nodemedic_proto::v1::{ActionOutcome, NodeReport};
use serde_json::{Value, json};

use super::conditions::elapsed;
use crate::units::rfc3339;

/// Occurrences this far apart or closer are one Event (client-go's and kube's window).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// The `reportingController` of every Event nodemedic writes.
pub const CONTROLLER: &str = "nodemedic.io/agent";

/// The most series kept; past it the oldest written one is forgotten.
const MAX_SERIES: usize = 256;

/// How Events are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Writes a node may make at once.
    pub burst: u32,
    /// Time for one more write.
    pub refill: Duration,
    /// Least time between two writes of one series.
    pub series_every: Duration,
}

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Regarding {
    /// `Node` or `Pod`.
    pub kind: &'static str,
    /// The pod's namespace; "" for the node.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID, when known.
    pub uid: String,
}

impl Regarding {
    /// The node `name`.
    pub fn node(name: &str) -> Self {
        Regarding {
            kind: "Node",
            namespace: String::new(),
            name: name.to_owned(),
            uid: String::new(),
        }
    }

    /// The namespace its Event is written in (cluster-scoped objects' go to `default`).
    pub fn event_namespace(&self) -> &str {
        if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }

    fn reference(&self) -> Value {
        let mut r = json!({"apiVersion": "v1", "kind": self.kind, "name": self.name});
        if !self.namespace.is_empty() {
            r["namespace"] = json!(self.namespace);
        }
        if !self.uid.is_empty() {
            r["uid"] = json!(self.uid);
        }
        r
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    regarding: Regarding,
    reason: String,
}

#[derive(Debug)]
struct Series {
    warning: bool,
    action: &'static str,
    note: String,
    count: u64,
    first: SystemTime,
    last: SystemTime,
    /// The Event's name once created, and the count and time it was last written with.
    name: Option<String>,
    written_count: u64,
    written_at: SystemTime,
}

/// One write the API server should receive.
#[derive(Debug, Clone)]
pub enum EventWrite {
    /// POST a new Event.
    Create {
        /// Its namespace.
        namespace: String,
        /// The Event.
        body: Value,
    },
    /// A JSON merge patch of an Event's `series`.
    Patch {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The patch.
        body: Value,
    },
}

/// A write handed out by [`Events::due`], to report back with [`Events::written`].
#[derive(Debug, Clone)]
pub struct Due {
    key: Key,
    count: u64,
    name: String,
    /// The request.
    pub write: EventWrite,
}

/// The Events of one node.
#[derive(Debug)]
pub struct Events {
    node: String,
    instance: String,
    pace: Pace,
    series: BTreeMap<Key, Series>,
    /// The last `total` of each kernel finding (check, subject); `None` before the first report.
    totals: Option<BTreeMap<(String, String), u64>>,
    tokens: f64,
    refilled: SystemTime,
    /// Occurrences forgotten because the series table was full of unwritten series.
    pub dropped: u64,
}

impl Events {
    /// The Events of `node`, paced by `pace`.
    pub fn new(node: &str, pace: Pace, now: SystemTime) -> Self {
        Events {
            node: node.to_owned(),
            instance: format!("nodemedic-agent-{node}"),
            pace,
            series: BTreeMap::new(),
            totals: None,
            tokens: f64::from(pace.burst),
            refilled: now,
            dropped: 0,
        }
    }

    /// The kernel occurrences in a report; `pod` names a pod by UID (from the watch).
    pub fn observe(
        &mut self,
        report: &NodeReport,
        now: SystemTime,
        pod: impl Fn(&str) -> Option<Regarding>,
    ) {
        let baseline = self.totals.is_none();
        let totals = self.totals.get_or_insert_with(BTreeMap::new);
        let mut occurred = vec![];
        for f in &report.findings {
            if !f.check.starts_with("kernel.") {
                continue;
            }
            let Some(total) = f.number("total").map(|t| t as u64) else {
                continue;
            };
            let before = totals.insert((f.check.clone(), f.subject.clone()), total);
            // A total that went down belongs to a new count (the log file was replaced).
            let new = match before {
                Some(b) if total >= b => total - b,
                _ if baseline => 0,
                _ => total,
            };
            if new > 0 {
                let reason = f.text("reason").unwrap_or(&f.check).to_owned();
                occurred.push((reason, f.subject.clone(), f.message.clone(), new));
            }
        }
        for (reason, subject, note, count) in occurred {
            let on_pod = subject.strip_prefix("pod ").and_then(&pod);
            self.occur(
                Regarding::node(&self.node.clone()),
                &reason,
                &note,
                true,
                "Observed",
                count,
                now,
            );
            if let Some(pod) = on_pod {
                self.occur(pod, &reason, &note, true, "Observed", count, now);
            }
        }
    }

    /// An applied remediation, as a Normal Event on the node.
    pub fn remediated(&mut self, outcome: &ActionOutcome, now: SystemTime) {
        let reason = match outcome.action.split('.').next() {
            Some("images") => "ImagesPruned",
            _ => "RemediationApplied",
        };
        let note = format!(
            "{} freed {}: {} removed, {} skipped, {} failed (plan {})",
            outcome.action,
            nodemedic_proto::finding::human_bytes(outcome.freed_bytes as f64),
            outcome.removed,
            outcome.skipped,
            outcome.failed,
            outcome.plan_id
        );
        let warning = outcome.failed > 0;
        self.occur(
            Regarding::node(&self.node.clone()),
            reason,
            &note,
            warning,
            "Remediate",
            1,
            now,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn occur(
        &mut self,
        regarding: Regarding,
        reason: &str,
        note: &str,
        warning: bool,
        action: &'static str,
        count: u64,
        now: SystemTime,
    ) {
        let key = Key {
            regarding,
            reason: reason.to_owned(),
        };
        if let Some(s) = self.series.get_mut(&key)
            && elapsed(s.last, now) <= SERIES_WINDOW
        {
            s.count += count;
            s.last = now;
            s.note = note.to_owned();
            return;
        }
        if !self.series.contains_key(&key) && self.series.len() >= MAX_SERIES && !self.forget_one()
        {
            self.dropped += count;
            return;
        }
        self.series.insert(
            key,
            Series {
                warning,
                action,
                note: note.to_owned(),
                count,
                first: now,
                last: now,
                name: None,
                written_count: 0,
                written_at: SystemTime::UNIX_EPOCH,
            },
        );
    }

    /// Forgets the series written longest ago whose every occurrence is written.
    fn forget_one(&mut self) -> bool {
        let oldest = self
            .series
            .iter()
            .filter(|(_, s)| s.name.is_some() && s.written_count == s.count)
            .min_by_key(|(_, s)| s.last)
            .map(|(k, _)| k.clone());
        oldest.is_some_and(|k| self.series.remove(&k).is_some())
    }

    /// The writes due now, as many as the bucket allows (each takes a token now).
    pub fn due(&mut self, now: SystemTime) -> Vec<Due> {
        let refill = self.pace.refill.as_secs_f64().max(1e-3);
        self.tokens = (self.tokens + elapsed(self.refilled, now).as_secs_f64() / refill)
            .min(f64::from(self.pace.burst));
        self.refilled = now;
        // Series idle past the window and fully written are done with.
        self.series.retain(|_, s| {
            !(s.name.is_some()
                && s.written_count == s.count
                && elapsed(s.last, now) > SERIES_WINDOW)
        });
        let mut out = vec![];
        // New Events first (oldest first), then series updates.
        let mut pending: Vec<(&Key, &Series)> = self
            .series
            .iter()
            .filter(|(_, s)| match s.name {
                None => true,
                Some(_) => {
                    s.count > s.written_count
                        && elapsed(s.written_at, now) >= self.pace.series_every
                }
            })
            .collect();
        pending.sort_by_key(|(_, s)| (s.name.is_some(), s.first));
        for (key, s) in pending {
            if self.tokens < 1.0 {
                break;
            }
            self.tokens -= 1.0;
            let namespace = key.regarding.event_namespace().to_owned();
            let series = (s.count > 1)
                .then(|| json!({"count": s.count, "lastObservedTime": micro_time(s.last)}));
            let (name, write) = match &s.name {
                None => {
                    let nanos = now
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos();
                    let name = format!("{}.{nanos:x}", key.regarding.name);
                    let mut body = json!({
                        "apiVersion": "events.k8s.io/v1",
                        "kind": "Event",
                        "metadata": {"name": name, "namespace": namespace},
                        "eventTime": micro_time(s.first),
                        "reportingController": CONTROLLER,
                        "reportingInstance": self.instance,
                        "action": s.action,
                        "reason": key.reason,
                        "note": note(&s.note),
                        "type": if s.warning { "Warning" } else { "Normal" },
                        "regarding": key.regarding.reference(),
                    });
                    if let Some(series) = series {
                        body["series"] = series;
                    }
                    (name, EventWrite::Create { namespace, body })
                }
                Some(name) => (
                    name.clone(),
                    EventWrite::Patch {
                        namespace,
                        name: name.clone(),
                        body: json!({"series": series, "note": note(&s.note)}),
                    },
                ),
            };
            out.push(Due {
                key: key.clone(),
                count: s.count,
                name,
                write,
            });
        }
        out
    }

    /// Records that the API server accepted `due` at `now`.
    pub fn written(&mut self, due: Due, now: SystemTime) {
        if let Some(s) = self.series.get_mut(&due.key) {
            s.name = Some(due.name);
            s.written_count = due.count;
            s.written_at = now;
        }
    }

    /// Gives back the token of a write that failed (it is retried at the next round).
    pub fn failed(&mut self) {
        self.tokens = (self.tokens + 1.0).min(f64::from(self.pace.burst));
    }

    /// Occurrences waiting to be written (for tests and metrics).
    pub fn unwritten(&self) -> u64 {
        self.series
            .values()
            .map(|s| s.count - s.written_count)
            .sum()
    }
}

/// An Event's note: at most 1 KiB, as the API server requires.
fn note(text: &str) -> String {
    let mut end = text.len().min(1024);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A Kubernetes `MicroTime` (RFC 3339 with microseconds).
fn micro_time(t: SystemTime) -> String {
    let micros = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let secs = rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs((micros / 1_000_000) as u64));
    format!("{}.{:06}Z", secs.trim_end_matches('Z'), micros % 1_000_000)
}

#[cfg(test)]
mod tests {
    use nodemedic_proto::{
        checks,
        v1::{Evidence, Finding, Severity},
    };

    use super::*;

    const PACE: Pace = Pace {
        burst: 5,
        refill: Duration::from_secs(10),
        series_every: Duration::from_secs(30),
    };

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn kernel(check: &str, reason: &str, subject: &str, total: u64) -> Finding {
        Finding::fail(check, Severity::Warning, subject, format!("{total} so far"))
            .with(Evidence::count("total", total))
            .with(Evidence::text("reason", reason))
    }

    fn report(findings: Vec<Finding>) -> NodeReport {
        NodeReport {
            findings,
            ..Default::default()
        }
    }

    fn pod(uid: &str) -> Option<Regarding> {
        Some(Regarding {
            kind: "Pod",
            namespace: "shop".into(),
            name: format!("web-{uid}"),
            uid: uid.into(),
        })
    }

    #[test]
    fn the_first_report_is_the_baseline_then_rises_are_events_on_node_and_pod() {
        let mut e = Events::new("n1", PACE, at(0));
        let oom = |t| kernel(checks::KERNEL_OOM_KILL, "OOMKilling", "pod u1", t);
        e.observe(&report(vec![oom(3)]), at(0), pod);
        assert!(e.due(at(0)).is_empty(), "before this agent: not again");
        e.observe(&report(vec![oom(5)]), at(10), pod);
        let due = e.due(at(10));
        assert_eq!(due.len(), 2, "node and pod");
        let bodies: Vec<&Value> = due
            .iter()
            .map(|d| match &d.write {
                EventWrite::Create { body, .. } => body,
                EventWrite::Patch { .. } => panic!("new"),
            })
            .collect();
        assert!(bodies.iter().all(|b| b["reason"] == "OOMKilling"));
        assert!(bodies.iter().all(|b| b["series"]["count"] == 2));
        assert!(
            bodies
                .iter()
                .any(|b| b["regarding"]["kind"] == "Pod" && b["metadata"]["namespace"] == "shop")
        );
        assert!(
            bodies.iter().any(
                |b| b["regarding"]["kind"] == "Node" && b["metadata"]["namespace"] == "default"
            )
        );
        for d in due {
            e.written(d, at(10));
        }
        assert_eq!(e.unwritten(), 0);
    }

    #[test]
    fn a_storm_costs_a_bounded_number_of_writes_and_loses_no_count() {
        let mut e = Events::new("n1", PACE, at(0));
        e.observe(&report(vec![]), at(0), pod);
        let mut writes = 0;
        let mut total = 0;
        // Ten minutes of a storm: 100 hung-task lines a second, one report a second.
        for s in 1..=600 {
            total += 100;
            let hung = kernel(checks::KERNEL_HUNG_TASK, "TaskHung", "", total);
            e.observe(&report(vec![hung]), at(s), pod);
            for d in e.due(at(s)) {
                writes += 1;
                e.written(d, at(s));
            }
        }
        // One create, then a series patch at most every 30 s.
        assert!(writes <= 1 + 600 / 30, "{writes} writes");
        assert!(e.unwritten() < 100 * 30 + 1);
        for d in e.due(at(700)) {
            e.written(d, at(700));
        }
        assert_eq!(e.unwritten(), 0, "the final count is written");
    }

    #[test]
    fn the_bucket_limits_new_events_and_keeps_the_rest_waiting() {
        let mut e = Events::new("n1", PACE, at(0));
        e.observe(&report(vec![]), at(0), |_| None);
        let findings = (0..20)
            .map(|i| {
                let reason = format!("Reason{i}");
                kernel(checks::KERNEL_EVENT, &reason, &reason, 1)
            })
            .collect();
        e.observe(&report(findings), at(1), |_| None);
        assert_eq!(e.due(at(1)).len(), 5, "the burst");
        assert!(e.due(at(2)).is_empty(), "no token yet");
        assert_eq!(e.due(at(12)).len(), 1, "one back after 10 s");
    }

    #[test]
    fn a_remediation_is_a_normal_event() {
        let mut e = Events::new("n1", PACE, at(0));
        let outcome = ActionOutcome {
            action: "images.prune_unused".into(),
            freed_bytes: 3 << 30,
            removed: 4,
            ..Default::default()
        };
        e.remediated(&outcome, at(0));
        let due = e.due(at(0));
        let EventWrite::Create { body, .. } = &due[0].write else {
            panic!("new")
        };
        assert_eq!(
            (body["reason"].as_str(), body["type"].as_str()),
            (Some("ImagesPruned"), Some("Normal"))
        );
        assert!(body["note"].as_str().unwrap().contains("3.0 GiB"), "{body}");
    }
}
