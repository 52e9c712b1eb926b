//! What the templates show, made from the store's messages: times as clock times with
//! their age, severities as words (also the CSS class), and a node's latest report as
//! tables and charts. Pure functions of their inputs and `now`.

use nodemedic_proto::{
    finding::human_bytes,
    time::{system_time, timestamp_from_millis, timestamp_millis},
    v1::{Finding, Incident, NodeReport, Remediation, Severity},
};

use super::{
    plots::{self, Chart},
    series::{History, Series, Window},
};

/// A severity as a word and a CSS class (`ok` for none).
pub fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Unspecified => "ok",
        s => s.label(),
    }
}

/// `ms` (unix) as `2026-12-07 13:40:02Z`.
pub fn clock(ms: i64) -> String {
    humantime::format_rfc3339_seconds(system_time(&timestamp_from_millis(ms)))
        .to_string()
        .replacen('T', " ", 1)
}

/// How long before `now` `ms` was, as `42s ago`, `5m ago`, `3h ago`, `2d ago`.
pub fn ago(ms: i64, now: i64) -> String {
    let s = (now - ms).max(0) / 1000;
    match s {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// A time with its age: `2026-12-07 13:40:02Z (5m ago)`; `-` for none.
pub fn when(ms: Option<i64>, now: i64) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |t| format!("{} ({})", clock(t), ago(t, now)),
    )
}

fn at(t: &Option<nodemedic_proto::Timestamp>) -> Option<i64> {
    t.as_ref().map(timestamp_millis)
}

/// A finding as a table row.
pub struct FindingView {
    pub node: String,
    pub check: String,
    pub severity: &'static str,
    pub subject: String,
    pub message: String,
    pub since: String,
}

impl FindingView {
    /// `f` as of `now`.
    pub fn new(f: &Finding, now: i64) -> Self {
        FindingView {
            node: f.node.clone(),
            check: f.check.clone(),
            severity: severity_word(f.severity()),
            subject: f.subject.clone(),
            message: f.message.clone(),
            since: when(at(&f.first_seen), now),
        }
    }
}

/// An incident as a row of the incidents page.
pub struct IncidentRow {
    pub id: u64,
    pub severity: &'static str,
    pub state: &'static str,
    pub title: String,
    pub nodes: usize,
    pub since: String,
    pub last_seen: String,
}

fn state_word(i: &Incident) -> &'static str {
    if i.resolved_at.is_some() {
        "resolved"
    } else {
        "open"
    }
}

impl IncidentRow {
    /// `i` as of `now`.
    pub fn new(i: &Incident, now: i64) -> Self {
        IncidentRow {
            id: i.id,
            severity: severity_word(i.severity()),
            state: state_word(i),
            title: i.title.clone(),
            nodes: i.nodes.len(),
            since: when(at(&i.first_seen), now),
            last_seen: when(at(&i.last_seen), now),
        }
    }
}

/// One incident, whole.
pub struct IncidentView {
    pub id: u64,
    pub severity: &'static str,
    pub state: &'static str,
    pub title: String,
    pub summary: String,
    pub severity_reason: String,
    pub rule: String,
    pub group: String,
    pub since: String,
    pub last_seen: String,
    pub resolved: String,
    pub failure_expected: String,
    pub nodes: Vec<String>,
    /// The node a remediation command names (`NODE` when there is none).
    pub first_node: String,
    pub objects: Vec<String>,
    pub remediation: Option<Remediation>,
    pub findings: Vec<FindingView>,
    pub timeline: Vec<(String, String)>,
}

impl IncidentView {
    /// `i` as of `now`.
    pub fn new(i: Incident, now: i64) -> Self {
        let opt = |t: &Option<nodemedic_proto::Timestamp>| {
            at(t).map_or_else(String::new, |t| when(Some(t), now))
        };
        IncidentView {
            id: i.id,
            severity: severity_word(i.severity()),
            state: state_word(&i),
            since: when(at(&i.first_seen), now),
            last_seen: when(at(&i.last_seen), now),
            resolved: opt(&i.resolved_at),
            failure_expected: opt(&i.failure_expected_at),
            findings: i
                .findings
                .iter()
                .map(|f| FindingView::new(f, now))
                .collect(),
            timeline: i
                .timeline
                .iter()
                .map(|e| (at(&e.at).map_or_else(|| "-".into(), clock), e.text.clone()))
                .collect(),
            title: i.title,
            summary: i.summary,
            severity_reason: i.severity_reason,
            rule: i.rule,
            group: i.group,
            first_node: i.nodes.first().cloned().unwrap_or_else(|| "NODE".into()),
            nodes: i.nodes,
            objects: i.objects,
            remediation: i.remediation,
        }
    }
}

/// One chart of the node page.
pub struct ChartView {
    /// Its element id (`chart-<id>`).
    pub id: &'static str,
    pub title: &'static str,
    /// The SVG, or `None` when the window has no points.
    pub svg: Option<String>,
    /// Its lines' latest values in words, for screen readers.
    pub summary: String,
    /// (line, latest value) for the table under it.
    pub latest: Vec<(String, String)>,
}

/// The charts of a node's history.
pub fn charts(h: &History, window: Window, now: i64) -> Result<Vec<ChartView>, plots::PlotError> {
    // (id, title, unit, lines, fixed top of the value axis)
    type Spec<'h> = (
        &'static str,
        &'static str,
        &'static str,
        &'h [Series],
        Option<f64>,
    );
    let specs: [Spec<'_>; 4] = [
        (
            "disk",
            "Disk used, with the forecast to full (dashed)",
            "% used",
            &h.disk,
            Some(100.0),
        ),
        (
            "memory",
            "Memory available and memory pressure",
            "%",
            &h.memory,
            Some(100.0),
        ),
        (
            "pods",
            "Pods' memory against their limits",
            "% of limit",
            &h.pods,
            None,
        ),
        ("dns", "DNS latency (p95)", "ms", &h.dns, None),
    ];
    specs
        .into_iter()
        .map(|(id, title, unit, lines, top)| {
            let forecasts = if id == "disk" { &h.forecasts[..] } else { &[] };
            let chart = Chart {
                title,
                unit,
                lines,
                forecasts,
                top,
            };
            let latest: Vec<(String, String)> = lines
                .iter()
                .filter_map(|s| Some((s.label.clone(), format!("{:.1} {unit}", s.last()?))))
                .collect();
            Ok(ChartView {
                id,
                title,
                svg: plots::svg(&chart, window, now)?,
                summary: latest
                    .iter()
                    .map(|(l, v)| format!("{l} {v}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                latest,
            })
        })
        .collect()
}

/// A filesystem row: mount, used %, size, inodes used %, full in.
pub type MountRow = (String, String, String, String, String);
/// A DNS probe row: server, name, answered/samples, p50, p95, last outcome.
pub type DnsRow = (String, String, String, String, String, String);

/// The node's latest report as tables: facts, filesystems, DNS probes.
pub fn latest(r: &NodeReport) -> (Vec<(String, String)>, Vec<MountRow>, Vec<DnsRow>) {
    let mut facts = Vec::new();
    if let Some(m) = &r.memory {
        facts.push((
            "Memory available".to_owned(),
            format!(
                "{} of {}",
                human_bytes(m.available_bytes as f64),
                human_bytes(m.total_bytes as f64)
            ),
        ));
        if let Some(p) = &m.pressure {
            facts.push((
                "Memory pressure (some, 10 s)".to_owned(),
                format!("{:.1} %", p.some_avg10),
            ));
        }
        facts.push((
            "OOM kills since boot".to_owned(),
            m.oom_kills_total.to_string(),
        ));
    }
    if let Some(s) = &r.system {
        facts.push(("Kernel".to_owned(), s.kernel_release.clone()));
        facts.push((
            "Up".to_owned(),
            humantime::format_duration(std::time::Duration::from_secs(s.uptime_seconds))
                .to_string(),
        ));
    }
    let pct = |part: u64, whole: u64| {
        if whole == 0 {
            "-".to_owned()
        } else {
            format!("{:.1} %", part as f64 * 100.0 / whole as f64)
        }
    };
    let mounts = r
        .disk
        .iter()
        .flat_map(|d| &d.mounts)
        .map(|m| {
            (
                m.mount_point.clone(),
                m.used_percent()
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:.1} %")),
                human_bytes(m.bytes_total as f64),
                pct(m.inodes_used, m.inodes_total),
                m.full_in_hours
                    .map_or_else(|| "-".to_owned(), |h| format!("{h:.1} h")),
            )
        })
        .collect();
    let dns = r
        .dns
        .iter()
        .flat_map(|d| &d.probes)
        .map(|p| {
            (
                format!("{} {}", p.nameserver, p.protocol),
                p.name.clone(),
                format!("{}/{}", p.answered, p.samples),
                format!("{:.1}", p.p50_ms),
                format!("{:.1}", p.p95_ms),
                p.last_outcome.clone(),
            )
        })
        .collect();
    (facts, mounts, dns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_clock_and_age() {
        assert_eq!(clock(0), "1970-01-01 00:00:00Z");
        assert_eq!(ago(0, 5_000), "5s ago");
        assert_eq!(ago(0, 600_000), "10m ago");
        assert_eq!(ago(0, 3 * 3_600_000), "3h ago");
        assert_eq!(ago(0, 3 * 86_400_000), "3d ago");
        assert_eq!(ago(10, 0), "0s ago", "a clock behind is not the future");
        assert_eq!(when(None, 0), "-");
    }
}
