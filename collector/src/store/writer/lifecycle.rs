//! The finding lifecycle of one report: its findings opened, refreshed, changed or resolved
//! against what is open on its node, the report stored (as a base or a delta), and the
//! incidents the correlator derives from the change stored with it.

use std::collections::HashMap;

use nodemedic_proto::{
    time::timestamp_millis,
    v1::{Finding, FindingEvent, IncidentEvent, NodeReport, finding_event::Kind},
};
use prost::Message;
use rusqlite::{Connection, params};

use super::state::NodeState;
use crate::{
    incidents::Change,
    open_finding::OpenFinding,
    store::{
        StoreError,
        delta::{Base, Encoder, Stored},
    },
};

/// What a batch announces once it has committed.
#[derive(Default)]
pub(super) struct Announcements {
    pub(super) findings: Vec<FindingEvent>,
    pub(super) incidents: Vec<IncidentEvent>,
}

/// Stores incident changes (as part of the current write).
pub(super) fn store_incidents(
    db: &Connection,
    changes: Vec<Change>,
    now: i64,
    events: &mut Vec<IncidentEvent>,
) -> Result<(), StoreError> {
    for change in changes {
        let Some(incident) = &change.event.incident else {
            continue;
        };
        let first_seen = incident.first_seen.as_ref().map_or(now, timestamp_millis);
        let resolved_at = incident.resolved_at.as_ref().map(timestamp_millis);
        db.prepare_cached(
            "INSERT INTO incidents (id, key, severity, first_seen, updated_at, resolved_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET key = excluded.key, severity = excluded.severity,
                 updated_at = excluded.updated_at, resolved_at = excluded.resolved_at, body = excluded.body",
        )?
        .execute(params![
            incident.id as i64,
            change.key,
            incident.severity,
            first_seen,
            now,
            resolved_at,
            incident.encode_to_vec()
        ])?;
        db.prepare_cached("DELETE FROM incident_nodes WHERE incident_id = ?1")?
            .execute([incident.id as i64])?;
        for node in &incident.nodes {
            db.prepare_cached("INSERT INTO incident_nodes (node, incident_id) VALUES (?1, ?2)")?
                .execute(params![node, incident.id as i64])?;
        }
        events.push(change.event);
    }
    Ok(())
}

pub(super) fn severity_index(f: &Finding) -> usize {
    f.severity.clamp(0, 3) as usize
}

/// The probe that owns `check` failed in this report: its findings are unknown, not gone.
/// A probe owns the checks it lists, or (listing none) every `<probe>.*` check.
pub(super) fn probe_failed(check: &str, report: &NodeReport) -> bool {
    let prefix = check.split('.').next().unwrap_or_default();
    report.probes.iter().any(|p| {
        let owns = if p.checks.is_empty() {
            p.probe == prefix
        } else {
            p.checks.iter().any(|c| c == check)
        };
        owns && !p.ok
    })
}

pub(super) fn event(kind: Kind, o: &OpenFinding, resolved_at: Option<i64>) -> FindingEvent {
    FindingEvent {
        kind: kind as i32,
        finding: Some(o.stamped(resolved_at)),
    }
}

pub(super) fn store_report(
    db: &Connection,
    state: &mut NodeState,
    encoder: &mut Encoder,
    open_counts: &mut [i64; 4],
    report: &NodeReport,
    received_at: i64,
    events: &mut Vec<FindingEvent>,
) -> Result<(), StoreError> {
    let collected_at = report
        .collected_at
        .as_ref()
        .map_or(received_at, timestamp_millis);
    let stored = encoder.encode(report, received_at, state.base.as_ref());
    let (base_id, body) = match &stored {
        Stored::Base(body) => (None, body),
        Stored::Delta { base_id, body } => (Some(*base_id), body),
    };
    db.prepare_cached("INSERT INTO reports (node, seq, collected_at, received_at, base_id, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(params![report.node, report.seq as i64, collected_at, received_at, base_id, body])?;
    let report_id = db.last_insert_rowid();
    db.prepare_cached(
        "INSERT INTO nodes (name, first_seen, last_report, last_seq, agent_version, latest_report_id)
         VALUES (?1, ?2, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET last_report = excluded.last_report, last_seq = excluded.last_seq,
             agent_version = excluded.agent_version, latest_report_id = excluded.latest_report_id",
    )?
    .execute(params![report.node, received_at, report.seq as i64, report.agent_version, report_id])?;

    let mut open: HashMap<(String, String), OpenFinding> =
        HashMap::with_capacity(report.findings.len());
    let mut new_events = Vec::new();
    for f in &report.findings {
        let key = (f.check.clone(), f.subject.clone());
        if open.contains_key(&key) {
            continue; // the same finding twice in one report: the first counts
        }
        let mut finding = f.clone();
        finding.id = 0;
        finding.first_seen = None;
        finding.last_seen = None;
        finding.resolved_at = None;
        let body = finding.encode_to_vec();
        let entry = match state.open.get(&key) {
            Some(prev) => {
                db.prepare_cached(
                    "UPDATE findings SET severity = ?1, last_seen = ?2, body = ?3 WHERE id = ?4",
                )?
                .execute(params![finding.severity, received_at, body, prev.id])?;
                let changed = prev.finding.severity != finding.severity
                    || prev.finding.message != finding.message;
                let entry = OpenFinding {
                    id: prev.id,
                    first_seen: prev.first_seen,
                    last_seen: received_at,
                    finding,
                };
                if changed {
                    new_events.push(event(Kind::Changed, &entry, None));
                }
                entry
            }
            None => {
                db.prepare_cached(
                    "INSERT INTO findings (node, check_id, subject, severity, first_seen, last_seen, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                )?
                .execute(params![report.node, finding.check, finding.subject, finding.severity, received_at, body])?;
                let entry = OpenFinding {
                    id: db.last_insert_rowid(),
                    first_seen: received_at,
                    last_seen: received_at,
                    finding,
                };
                new_events.push(event(Kind::Opened, &entry, None));
                entry
            }
        };
        open.insert(key, entry);
    }
    let mut resolved = Vec::new();
    for (key, prev) in &state.open {
        if open.contains_key(key) {
            continue;
        }
        if probe_failed(&key.0, report) {
            open.insert(key.clone(), prev.clone());
        } else {
            db.prepare_cached("UPDATE findings SET resolved_at = ?1 WHERE id = ?2")?
                .execute(params![received_at, prev.id])?;
            let mut gone = prev.clone();
            gone.last_seen = received_at;
            new_events.push(event(Kind::Resolved, &gone, Some(received_at)));
            resolved.push(key.clone());
        }
    }
    // Every statement succeeded: now the in-memory view may change.
    for prev in state.open.values() {
        open_counts[severity_index(&prev.finding)] -= 1;
    }
    for now_open in open.values() {
        open_counts[severity_index(&now_open.finding)] += 1;
    }
    state.open = open;
    if let Stored::Base(body) = stored {
        state.base = Some(Base {
            id: report_id,
            received_at,
            body,
        });
    }
    state.last_seq = report.seq;
    state.last_report = Some(received_at);
    events.extend(new_events);
    Ok(())
}
