//! What the writer does on its tick, not on a report: `node.silent` for nodes that missed
//! their intervals, and retention.

use std::time::Duration;

use nodemedic_proto::v1::{Evidence, Finding, Severity, finding_event::Kind};
use prost::Message;
use rusqlite::{Connection, params};
use tracing::{info, warn};

use super::{
    lifecycle::{Announcements, event, severity_index, store_incidents},
    state::{View, WriterConfig},
};

/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
use crate::{
    incidents::SILENT_CHECK,
    open_finding::OpenFinding,
    store::{StoreError, delta::BASE_SPAN_MS},
};

pub(super) fn mark_silent(
    db: &Connection,
    view: &mut View,
    config: &WriterConfig,
    now: i64,
    events: &mut Announcements,
) -> Result<(), StoreError> {
    let key = (SILENT_CHECK.to_owned(), String::new());
    for (name, state) in view.nodes.iter_mut() {
        let Some(last) = state.last_report else {
            continue;
        };
        let limit = state
            .interval_ms
            .saturating_mul(i64::from(config.silent_after));
        if now - last <= limit || state.open.contains_key(&key) {
            continue;
        }
        let silent_for = Duration::from_millis((now - last) as u64);
        let finding = Finding {
            node: name.clone(),
            ..Finding::unknown(
                SILENT_CHECK,
                Severity::Warning,
                "",
                format!(
                    "No report from {name} for {} ({} intervals of {}): the agent, the node or the network between them is down; its findings are unknown.",
                    humantime::format_duration(Duration::from_secs(silent_for.as_secs())),
                    config.silent_after,
                    humantime::format_duration(Duration::from_millis(state.interval_ms as u64)),
                ),
            )
        }
        .with(Evidence::number("silent_for", silent_for.as_secs_f64(), "seconds"))
        .with(Evidence::number("interval", state.interval_ms as f64 / 1000.0, "seconds"));
        db.prepare_cached(
            "INSERT INTO findings (node, check_id, subject, severity, first_seen, last_seen, body)
             VALUES (?1, ?5, '', ?2, ?3, ?3, ?4)",
        )?
        .execute(params![
            name,
            finding.severity,
            now,
            finding.encode_to_vec(),
            SILENT_CHECK
        ])?;
        let entry = OpenFinding {
            id: db.last_insert_rowid(),
            first_seen: now,
            last_seen: now,
            finding,
        };
        warn!(message = "Node is silent.", node = %name, last_report_ms_ago = now - last);
        events.findings.push(event(Kind::Opened, &entry, None));
        view.open_counts[severity_index(&entry.finding)] += 1;
        state.open.insert(key.clone(), entry);
        let changes = view.correlator.observe(name, state.open.values(), now);
        store_incidents(db, changes, now, &mut events.incidents)?;
    }
    Ok(())
}

/// Deletes reports and resolved findings older than the retention, once a minute; the
/// latest report of every node stays.
pub(super) fn retention(
    db: &Connection,
    view: &mut View,
    config: &WriterConfig,
    now: i64,
) -> Result<(), StoreError> {
    if view
        .last_retention
        .is_some_and(|last| now - last < RETENTION_EVERY.as_millis() as i64)
    {
        return Ok(());
    }
    let cutoff = now - config.retention.as_millis() as i64;
    // A base outlives the deltas stored against it (see `delta`).
    let reports = db.execute(
        "DELETE FROM reports WHERE received_at < ?1
         AND (base_id IS NOT NULL OR received_at < ?1 - ?2)
         AND id NOT IN (SELECT latest_report_id FROM nodes WHERE latest_report_id IS NOT NULL)
         AND id NOT IN (SELECT r.base_id FROM nodes n JOIN reports r ON r.id = n.latest_report_id
                        WHERE r.base_id IS NOT NULL)",
        params![cutoff, BASE_SPAN_MS],
    )?;
    let findings = db.execute("DELETE FROM findings WHERE resolved_at < ?1", [cutoff])?;
    db.execute(
        "DELETE FROM incident_nodes WHERE incident_id IN (SELECT id FROM incidents WHERE resolved_at < ?1)",
        [cutoff],
    )?;
    let incidents = db.execute("DELETE FROM incidents WHERE resolved_at < ?1", [cutoff])?;
    if reports + findings + incidents > 0 {
        info!(
            message = "Retention deleted old data.",
            reports, findings, incidents
        );
    }
    view.last_retention = Some(now);
    Ok(())
}
