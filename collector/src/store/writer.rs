//! The single writer: one thread owns the write connection and the in-memory view of what
//! is open (last seq per node, open findings), applies writes in batches, and answers each
//! write only after the transaction holding it has committed.
//!
//! Finding lifecycle, per report of a node:
//! - a finding in the report that is not open is **opened** (first_seen = now);
//! - one that is open is refreshed (last_seen, evidence), **changed** if its severity or
//!   message differ;
//! - an open finding absent from the report is **resolved**, unless the probe that owns its
//!   check failed in this report (then nothing is known, and it stays open).
//!
//! After a node's findings change, the [`Correlator`] says which incidents opened, changed
//! or resolved; they are stored in the same transaction as the report.
//!
//! Maintenance runs on [`WriterHandle::tick`]: `node.silent` for nodes that missed
//! `silent_after` intervals, and deletion of reports, resolved findings and resolved
//! incidents past retention (the latest report of each node is always kept).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use nodemedic_proto::{
    time::timestamp_millis,
    v1::{
        Evidence, Finding, FindingEvent, Incident, IncidentEvent, NodeReport, RemediationRecord,
        Severity, finding_event::Kind,
    },
};
use prost::Message;
use rusqlite::{Connection, params};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{error, info, warn};

use super::{
    OpenFinding, StoreError,
    delta::{BASE_SPAN_MS, Base, Encoder, Stored},
};
use crate::{
    incidents::{Change, Correlator, IncidentConfig, SILENT_CHECK},
    metrics::{Metrics, SeverityLabel},
    runbook::Catalog,
};

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// What the writer needs to know besides its connection.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Reports and resolved findings older than this are deleted.
    pub retention: Duration,
    /// A node is silent after this many of its intervals without a report.
    pub silent_after: u32,
    /// The rules that describe findings and correlate them.
    pub catalog: Arc<Catalog>,
    /// When findings become incidents.
    pub incidents: IncidentConfig,
}

/// Where the writer announces committed changes.
#[derive(Debug, Clone)]
pub struct Events {
    /// Findings opened, changed, resolved.
    pub findings: broadcast::Sender<FindingEvent>,
    /// Incidents opened, updated, resolved.
    pub incidents: broadcast::Sender<IncidentEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            findings: broadcast::channel(4096).0,
            incidents: broadcast::channel(1024).0,
        }
    }
}

/// The result of ingesting one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// The report's seq.
    pub seq: u64,
    /// It was stored before; nothing was written.
    pub duplicate: bool,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Op {
    Hello {
        node: String,
        agent_version: String,
        interval_ms: i64,
        now: i64,
        reply: Reply<u64>,
    },
    Report {
        report: Box<NodeReport>,
        received_at: i64,
        received: Instant,
        reply: Reply<Ingested>,
    },
    Tick {
        now: i64,
        reply: Reply<()>,
    },
    Remediation {
        record: Box<RemediationRecord>,
        reply: Reply<u64>,
    },
}

/// The async side of the writer. Cloning is cheap; the thread stops when every handle is
/// dropped, after committing what it was given.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Op>,
    alive: Arc<AtomicBool>,
}

impl WriterHandle {
    /// Records an agent's Hello; answers the highest stored seq of the node.
    pub async fn hello(
        &self,
        node: &str,
        agent_version: &str,
        interval: Duration,
        now: i64,
    ) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        let interval_ms = i64::try_from(interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1000);
        self.send(Op::Hello {
            node: node.to_owned(),
            agent_version: agent_version.to_owned(),
            interval_ms,
            now,
            reply,
        })
        .await?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Queues a report; the returned future resolves once it is committed (or known to be
    /// a replay). Queuing waits while the writer is behind: that is the back-pressure.
    pub async fn ingest(
        &self,
        report: NodeReport,
        received_at: i64,
    ) -> Result<impl Future<Output = Result<Ingested, StoreError>> + use<>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Report {
            report: Box::new(report),
            received_at,
            received: Instant::now(),
            reply,
        })
        .await?;
        Ok(async move { rx.await.map_err(|_| StoreError::WriterGone)? })
    }

    /// Runs maintenance (silence, retention) as of `now`; returns once it has committed.
    pub async fn tick(&self, now: i64) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Tick { now, reply }).await?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Stores a remediation record (a new one when its id is 0, else replacing that one);
    /// answers its id once committed.
    pub async fn remediation(&self, record: RemediationRecord) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Remediation {
            record: Box::new(record),
            reply,
        })
        .await?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// The writer thread is running.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    async fn send(&self, op: Op) -> Result<(), StoreError> {
        self.tx.send(op).await.map_err(|_| StoreError::WriterGone)
    }
}

/// Starts the writer thread on `conn`, loading what is open from the database.
pub fn spawn(
    conn: Connection,
    config: WriterConfig,
    events: Events,
    metrics: Arc<Metrics>,
) -> Result<(WriterHandle, std::thread::JoinHandle<()>), StoreError> {
    let view = View::new(&config);
    let mut writer = Writer {
        conn,
        config,
        events,
        metrics,
        view,
    };
    writer.load()?;
    let (tx, rx) = mpsc::channel(8 * MAX_BATCH);
    let alive = Arc::new(AtomicBool::new(true));
    let thread_alive = Arc::clone(&alive);
    let thread = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            writer.run(rx);
            thread_alive.store(false, Ordering::Release);
        })
        .map_err(|source| StoreError::DataDir {
            path: "store-writer thread".into(),
            source,
        })?;
    Ok((WriterHandle { tx, alive }, thread))
}

#[derive(Debug, Default)]
struct NodeState {
    last_seq: u64,
    last_report: Option<i64>,
    interval_ms: i64,
    open: HashMap<(String, String), OpenFinding>,
    /// What the node's next reports are stored against (none after a start).
    base: Option<Base>,
}

struct Writer {
    conn: Connection,
    config: WriterConfig,
    events: Events,
    metrics: Arc<Metrics>,
    view: View,
}

/// What the writer knows without reading the database: loaded at start, changed only after
/// the statements of a write succeed, reloaded after a failed commit.
struct View {
    nodes: HashMap<String, NodeState>,
    /// Open findings by severity value (0..=3).
    open_counts: [i64; 4],
    /// When retention last ran (unix ms).
    last_retention: Option<i64>,
    correlator: Correlator,
    /// The correlator changed for a write that was rolled back: reload after the batch.
    stale: bool,
    encoder: Encoder,
}

impl View {
    fn new(config: &WriterConfig) -> Self {
        View {
            nodes: HashMap::new(),
            open_counts: [0; 4],
            last_retention: None,
            correlator: Correlator::new(Arc::clone(&config.catalog), config.incidents.clone(), 0),
            stale: false,
            encoder: Encoder::default(),
        }
    }
}

/// What to do once the batch holding an op has committed (or failed to).
type Completion = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Op>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
        info!(message = "Store writer stopped: all writes committed.");
    }

    fn process(&mut self, batch: Vec<Op>) {
        self.metrics.batch_size.observe(batch.len() as f64);
        let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
        let mut events = Announcements::default();
        let result = (|| -> Result<(), StoreError> {
            let mut tx = self.conn.transaction()?;
            for op in batch {
                let savepoint = tx.savepoint()?;
                match apply(
                    &savepoint,
                    &mut self.view,
                    &self.config,
                    op,
                    &mut events,
                    &self.metrics,
                ) {
                    Ok(done) => {
                        savepoint.commit()?;
                        completions.push(done);
                    }
                    Err((e, fail)) => {
                        // Dropping the savepoint rolls the op back.
                        drop(savepoint);
                        warn!(message = "A write failed; the rest of its batch goes on.", error = %e);
                        fail(Err(&e));
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                // Announced before the writes are answered: what is acknowledged has been
                // announced. No watcher is not an error.
                for event in events.findings {
                    let _ = self.events.findings.send(event);
                }
                for event in events.incidents {
                    let _ = self.events.incidents.send(event);
                }
                for done in completions {
                    done(Ok(()));
                }
            }
            Err(e) => {
                error!(message = "A store transaction failed; its writes are not acknowledged.", error = %e);
                for done in completions {
                    done(Err(&e));
                }
                self.view.stale = true;
            }
        }
        if self.view.stale
            && let Err(e) = self.load()
        {
            error!(message = "Could not reload the store's state.", error = %e);
        }
        for (severity, label) in [
            (Severity::Info, "info"),
            (Severity::Warning, "warning"),
            (Severity::Critical, "critical"),
        ] {
            self.metrics
                .open_findings
                .get_or_create(&SeverityLabel {
                    severity: label.to_owned(),
                })
                .set(self.view.open_counts[severity as usize]);
        }
    }

    /// Loads last seqs, open findings and open incidents from the database.
    fn load(&mut self) -> Result<(), StoreError> {
        self.view = View::new(&self.config);
        self.load_findings()?;
        self.load_incidents()
    }

    fn load_findings(&mut self) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, last_seq, last_report, interval_ms FROM nodes")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (name, last_seq, last_report, interval_ms) = row?;
            self.view.nodes.insert(
                name,
                NodeState {
                    last_seq: last_seq as u64,
                    last_report,
                    interval_ms,
                    ..NodeState::default()
                },
            );
        }
        let mut stmt = self.conn.prepare(
            "SELECT id, node, first_seen, last_seen, body FROM findings WHERE resolved_at IS NULL",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })?;
        for row in rows {
            let (id, node, first_seen, last_seen, body) = row?;
            let finding =
                Finding::decode(body.as_slice()).map_err(|source| StoreError::Corrupt {
                    what: "finding",
                    source,
                })?;
            self.view.open_counts[severity_index(&finding)] += 1;
            let key = (finding.check.clone(), finding.subject.clone());
            self.view.nodes.entry(node).or_default().open.insert(
                key,
                OpenFinding {
                    id,
                    first_seen,
                    last_seen,
                    finding,
                },
            );
        }
        Ok(())
    }

    /// Rebuilds the correlator from the open incidents and findings.
    fn load_incidents(&mut self) -> Result<(), StoreError> {
        let max_id: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(id), 0) FROM incidents", [], |r| {
                    r.get(0)
                })?;
        let correlator = &mut self.view.correlator;
        *correlator = Correlator::new(
            Arc::clone(&self.config.catalog),
            self.config.incidents.clone(),
            max_id as u64,
        );
        let mut stmt = self
            .conn
            .prepare("SELECT key, body FROM incidents WHERE resolved_at IS NULL")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let restored = rows.collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        for (key, body) in restored {
            let incident =
                Incident::decode(body.as_slice()).map_err(|source| StoreError::Corrupt {
                    what: "incident",
                    source,
                })?;
            correlator.restore_incident(key, incident);
        }
        for (name, state) in &self.view.nodes {
            if state.last_report.is_some() {
                let open: Vec<OpenFinding> = state.open.values().cloned().collect();
                correlator.restore_node(name, &open);
            }
        }
        Ok(())
    }
}

/// What a batch announces once it has committed.
#[derive(Default)]
struct Announcements {
    findings: Vec<FindingEvent>,
    incidents: Vec<IncidentEvent>,
}

/// Stores incident changes (as part of the current write).
fn store_incidents(
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

fn severity_index(f: &Finding) -> usize {
    f.severity.clamp(0, 3) as usize
}

type Failure = (StoreError, Box<dyn FnOnce(Result<(), &StoreError>) + Send>);

/// Applies one op inside its savepoint. In-memory state changes only after every statement
/// of the op has succeeded, so a failed op leaves nothing behind.
fn apply(
    db: &Connection,
    view: &mut View,
    config: &WriterConfig,
    op: Op,
    events: &mut Announcements,
    metrics: &Arc<Metrics>,
) -> Result<Completion, Failure> {
    match op {
        Op::Hello {
            node,
            agent_version,
            interval_ms,
            now,
            reply,
        } => {
            let result = db.execute(
                "INSERT INTO nodes (name, first_seen, agent_version, interval_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET agent_version = excluded.agent_version, interval_ms = excluded.interval_ms",
                params![node, now, agent_version, interval_ms],
            );
            if let Err(e) = result {
                return Err((
                    e.into(),
                    Box::new(move |r| {
                        let _ = reply.send(Err(to_error(r)));
                    }),
                ));
            }
            let state = view.nodes.entry(node).or_default();
            state.interval_ms = interval_ms;
            let last_seq = state.last_seq;
            Ok(Box::new(move |r| {
                let _ = reply.send(
                    r.map(|()| last_seq)
                        .map_err(|e| StoreError::Batch(e.to_string())),
                );
            }))
        }
        Op::Report {
            report,
            received_at,
            received,
            reply,
        } => {
            let seq = report.seq;
            let state = view.nodes.entry(report.node.clone()).or_default();
            if seq <= state.last_seq {
                metrics.reports_duplicate.inc();
                return Ok(Box::new(move |r| {
                    let _ = reply.send(
                        r.map(|()| Ingested {
                            seq,
                            duplicate: true,
                        })
                        .map_err(|e| StoreError::Batch(e.to_string())),
                    );
                }));
            }
            match store_report(
                db,
                state,
                &mut view.encoder,
                &mut view.open_counts,
                &report,
                received_at,
                &mut events.findings,
            )
            .and_then(|()| {
                let changes =
                    view.correlator
                        .observe(&report.node, state.open.values(), received_at);
                store_incidents(db, changes, received_at, &mut events.incidents)
                    .inspect_err(|_| view.stale = true)
            }) {
                Ok(()) => {
                    let metrics = Arc::clone(metrics);
                    Ok(Box::new(move |r| {
                        if r.is_ok() {
                            metrics.reports_ingested.inc();
                            metrics
                                .ingest_latency
                                .observe(received.elapsed().as_secs_f64());
                        }
                        let _ = reply.send(
                            r.map(|()| Ingested {
                                seq,
                                duplicate: false,
                            })
                            .map_err(|e| StoreError::Batch(e.to_string())),
                        );
                    }))
                }
                Err(e) => Err((
                    e,
                    Box::new(move |r| {
                        let _ = reply.send(Err(to_error(r)));
                    }),
                )),
            }
        }
        Op::Remediation { record, reply } => {
            let requested_at = record.requested_at.as_ref().map_or(0, timestamp_millis);
            let result = if record.id == 0 {
                db.prepare_cached(
                    "INSERT INTO remediations (node, requested_at, body) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| {
                    s.execute(params![record.node, requested_at, record.encode_to_vec()])
                })
                .map(|_| db.last_insert_rowid() as u64)
                .and_then(|id| {
                    // The body carries its own id.
                    let mut stored = (*record).clone();
                    stored.id = id;
                    db.execute(
                        "UPDATE remediations SET body = ?1 WHERE id = ?2",
                        params![stored.encode_to_vec(), id as i64],
                    )
                    .map(|_| id)
                })
            } else {
                db.execute(
                    "UPDATE remediations SET body = ?1 WHERE id = ?2",
                    params![record.encode_to_vec(), record.id as i64],
                )
                .map(|_| record.id)
            };
            match result {
                Ok(id) => Ok(Box::new(move |r| {
                    let _ =
                        reply.send(r.map(|()| id).map_err(|e| StoreError::Batch(e.to_string())));
                })),
                Err(e) => Err((
                    e.into(),
                    Box::new(move |r| {
                        let _ = reply.send(Err(to_error(r)));
                    }),
                )),
            }
        }
        Op::Tick { now, reply } => match retention(db, view, config, now)
            .and_then(|()| mark_silent(db, view, config, now, events))
            .and_then(|()| {
                let changes = view.correlator.flush(now);
                store_incidents(db, changes, now, &mut events.incidents)
            }) {
            Ok(()) => Ok(Box::new(move |r| {
                let _ = reply.send(r.map_err(|e| StoreError::Batch(e.to_string())));
            })),
            Err(e) => {
                // Part of the tick may have reached the in-memory view: reload it.
                view.stale = true;
                Err((
                    e,
                    Box::new(move |r| {
                        let _ = reply.send(Err(to_error(r)));
                    }),
                ))
            }
        },
    }
}

fn to_error(r: Result<(), &StoreError>) -> StoreError {
    StoreError::Batch(
        r.err()
            .map_or_else(|| "write failed".to_owned(), ToString::to_string),
    )
}

/// The probe that owns `check` failed in this report: its findings are unknown, not gone.
/// A probe owns the checks it lists, or (listing none) every `<probe>.*` check.
fn probe_failed(check: &str, report: &NodeReport) -> bool {
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

fn event(kind: Kind, o: &OpenFinding, resolved_at: Option<i64>) -> FindingEvent {
    FindingEvent {
        kind: kind as i32,
        finding: Some(o.stamped(resolved_at)),
    }
}

fn store_report(
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

fn mark_silent(
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
                "node.silent",
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
             VALUES (?1, 'node.silent', '', ?2, ?3, ?3, ?4)",
        )?
        .execute(params![
            name,
            finding.severity,
            now,
            finding.encode_to_vec()
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
fn retention(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FindingFilter, Reader, open_for_writing};
    use nodemedic_proto::{
        time::timestamp_from_millis,
        v1::{FindingState, ProbeRun},
    };

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_700_000_000_000;

    fn report(node: &str, seq: u64, at: i64, checks: &[&str]) -> NodeReport {
        NodeReport {
            node: node.into(),
            seq,
            collected_at: Some(timestamp_from_millis(at)),
            findings: checks
                .iter()
                .map(|c| Finding {
                    node: node.into(),
                    ..Finding::fail(c, Severity::Warning, "/", "x".into())
                })
                .collect(),
            probes: vec![ProbeRun {
                probe: "disk".into(),
                ok: true,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A writer on the store in `dir` with an hour's retention.
    fn start_writer(dir: &std::path::Path) -> (WriterHandle, std::thread::JoinHandle<()>) {
        let config = WriterConfig {
            retention: Duration::from_secs(3600),
            silent_after: 3,
            catalog: Arc::new(Catalog::builtin()),
            incidents: IncidentConfig::default(),
        };
        spawn(
            open_for_writing(dir).unwrap(),
            config,
            Events::default(),
            Arc::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn retention_keeps_each_nodes_latest_report_and_open_findings() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, thread) = start_writer(dir.path());
        for node in ["n1", "n2"] {
            writer
                .hello(node, "test", Duration::from_secs(3600), NOW - 6 * HOUR)
                .await
                .unwrap();
        }
        // n1: a finding opens 3h ago and resolves 2h ago; its latest report is recent. (Each
        // report is a base, which is kept an hour past the retention for its deltas.)
        for (seq, at, checks) in [
            (1, NOW - 3 * HOUR, &["disk.space"][..]),
            (2, NOW - 2 * HOUR - 60_000, &[][..]),
            (3, NOW - 60_000, &[][..]),
        ] {
            writer
                .ingest(report("n1", seq, at, checks), at)
                .await
                .unwrap()
                .await
                .unwrap();
        }
        // n2: one old report with a finding still open.
        writer
            .ingest(
                report("n2", 1, NOW - 5 * HOUR, &["disk.inodes"]),
                NOW - 5 * HOUR,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        writer.tick(NOW).await.unwrap();
        drop(writer);
        thread.join().unwrap();

        let reader = Reader::open(dir.path()).unwrap();
        let seqs = |node| {
            reader
                .history(node, 0)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(seqs("n1"), [3], "reports older than 1h are gone");
        assert_eq!(seqs("n2"), [1], "a node's latest report stays, however old");
        let all = FindingFilter {
            limit: 100,
            ..Default::default()
        };
        let (resolved, _) = reader
            .findings(&FindingFilter {
                state: FindingState::Resolved,
                ..all.clone()
            })
            .unwrap();
        assert!(
            resolved.is_empty(),
            "findings resolved before the cutoff are gone: {resolved:?}"
        );
        let (open, _) = reader
            .findings(&FindingFilter {
                state: FindingState::Open,
                ..all
            })
            .unwrap();
        let mut open: Vec<_> = open
            .iter()
            .map(|f| (f.node.as_str(), f.check.as_str()))
            .collect();
        open.sort();
        // n2 missed 3 hourly intervals: silent. n1 reported a minute ago: not.
        assert_eq!(open, [("n2", "disk.inodes"), ("n2", "node.silent")]);
    }

    /// A report as an agent sends one every interval: the same mounts and processes, the
    /// numbers moved a little since the last one.
    fn drifting(node: &str, seq: u64, at: i64) -> NodeReport {
        use nodemedic_proto::v1::{DiskSection, MemorySection, Mount, ProcessMemory, Psi};
        let step = seq * 7919 % 1013;
        NodeReport {
            disk: Some(DiskSection {
                mounts: (0..8)
                    .map(|m| Mount {
                        mount_point: format!("/var/lib/kubelet/pods/{m}/volumes"),
                        device: format!("/dev/nvme0n1p{m}"),
                        fs_type: "ext4".into(),
                        bytes_total: 100 << 30,
                        bytes_used: (40 << 30) + step * 4096 * (m + 1),
                        bytes_available: (60 << 30) - step * 4096 * (m + 1),
                        inodes_total: 6_553_600,
                        inodes_used: 300_000 + step,
                        inodes_available: 6_253_600 - step,
                        ..Default::default()
                    })
                    .collect(),
            }),
            memory: Some(MemorySection {
                total_bytes: 16 << 30,
                available_bytes: (6 << 30) + step * 65_536,
                pressure: Some(Psi {
                    some_avg10: step as f64 / 100.0,
                    ..Default::default()
                }),
                top_processes: (0..10)
                    .map(|p| ProcessMemory {
                        pid: 1000 + p,
                        name: format!("process-{p}"),
                        rss_bytes: (100 << 20) + step * 4096 * p as u64,
                    })
                    .collect(),
                ..Default::default()
            }),
            ..report(node, seq, at, &["memory.swap"])
        }
    }

    #[tokio::test]
    async fn reports_are_stored_by_their_changes_and_read_back_whole() {
        const MINUTE: i64 = 60_000;
        let dir = tempfile::tempdir().unwrap();
        let (writer, thread) = start_writer(dir.path());
        // Three hours of a report a minute, the last one a minute ago.
        let first = NOW - 180 * MINUTE;
        let sent: Vec<NodeReport> = (1..=180)
            .map(|seq| drifting("n1", seq, first + (seq as i64 - 1) * MINUTE))
            .collect();
        let mut acks = Vec::new();
        for r in &sent {
            let at = timestamp_millis(r.collected_at.as_ref().unwrap());
            acks.push(writer.ingest(r.clone(), at).await.unwrap());
        }
        for ack in acks {
            assert!(!ack.await.unwrap().duplicate);
        }

        let reader = Reader::open(dir.path()).unwrap();
        assert_eq!(
            reader.history("n1", 0).unwrap(),
            sent,
            "every report reads back whole"
        );
        let (_, latest) = reader.node("n1").unwrap().unwrap();
        assert_eq!(latest.as_ref(), sent.last());
        let db = open_for_writing(dir.path()).unwrap();
        let (bases, delta_bytes, deltas): (i64, i64, i64) = db
            .query_row(
                "SELECT COUNT(*) FILTER (WHERE base_id IS NULL),
                        SUM(length(body)) FILTER (WHERE base_id IS NOT NULL),
                        COUNT(*) FILTER (WHERE base_id IS NOT NULL) FROM reports",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(bases, 3, "one whole report an hour");
        assert_eq!(deltas, 177);
        let whole = sent[0].encoded_len() as i64;
        assert!(
            delta_bytes / deltas * 5 < whole,
            "a delta ({} bytes on average) holds what changed, not the report ({whole} bytes)",
            delta_bytes / deltas
        );

        // Retention (1 h) keeps every report of the last hour readable, the base an hour
        // before them included.
        writer.tick(NOW).await.unwrap();
        let cutoff = NOW - HOUR;
        let kept: Vec<_> = sent
            .iter()
            .filter(|r| timestamp_millis(r.collected_at.as_ref().unwrap()) >= cutoff)
            .cloned()
            .collect();
        assert_eq!(reader.history("n1", cutoff).unwrap(), kept);
        let older = reader.history("n1", 0).unwrap();
        assert_eq!(
            older.len(),
            kept.len() + 1,
            "and the base they need: {older:?}"
        );

        // After a restart the writer knows no base: the next report is stored whole.
        drop(writer);
        thread.join().unwrap();
        let (writer, thread) = start_writer(dir.path());
        writer
            .ingest(drifting("n1", 181, NOW), NOW)
            .await
            .unwrap()
            .await
            .unwrap();
        drop(writer);
        thread.join().unwrap();
        let base: Option<i64> = db
            .query_row("SELECT base_id FROM reports WHERE seq = 181", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(base, None);
        assert_eq!(
            reader.history("n1", NOW).unwrap(),
            [drifting("n1", 181, NOW)]
        );
    }

    #[test]
    fn a_version_2_store_is_upgraded_and_its_whole_reports_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let old = report("n1", 1, NOW, &[]);
        {
            // Make a version 2 store: no base_id, reports stored whole.
            let db = open_for_writing(dir.path()).unwrap();
            db.execute_batch("ALTER TABLE reports DROP COLUMN base_id; PRAGMA user_version = 2;")
                .unwrap();
            db.execute(
                "INSERT INTO reports (node, seq, collected_at, received_at, body) VALUES ('n1', 1, ?1, ?1, ?2)",
                params![NOW, old.encode_to_vec()],
            )
            .unwrap();
            db.execute(
                "INSERT INTO nodes (name, first_seen, last_report, last_seq, latest_report_id) VALUES ('n1', ?1, ?1, 1, 1)",
                [NOW],
            )
            .unwrap();
        }
        let db = open_for_writing(dir.path()).unwrap();
        let version: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 3);
        let reader = Reader::open(dir.path()).unwrap();
        assert_eq!(reader.history("n1", 0).unwrap(), std::slice::from_ref(&old));
        assert_eq!(reader.node("n1").unwrap().unwrap().1, Some(old));
    }

    #[test]
    fn a_failed_probe_keeps_the_checks_it_owns() {
        use nodemedic_proto::v1::ProbeRun;
        let failed = |probe: &str, checks: &[&str]| NodeReport {
            probes: vec![ProbeRun {
                probe: probe.into(),
                ok: false,
                checks: checks.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        // Listing none: every "<probe>.*" check.
        assert!(probe_failed("memory.swap", &failed("memory", &[])));
        assert!(!probe_failed("disk.space", &failed("memory", &[])));
        // The pods probe owns pod.* checks and node.condition, which its id does not name.
        let pods = failed("pods", &["pod.crashloop", "node.condition"]);
        assert!(probe_failed("pod.crashloop", &pods));
        assert!(probe_failed("node.condition", &pods));
        assert!(!probe_failed("node.silent", &pods));
        assert!(
            !probe_failed("pod.memory_near_limit", &pods),
            "another probe's pod check"
        );
    }
}
