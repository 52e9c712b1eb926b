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
//!
//! Here: the handle, the batching and what the writer loads at start; the lifecycle of a
//! report's findings in `lifecycle`, silence and retention in `maintenance`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use nodemedic_proto::{
    time::timestamp_millis,
    v1::{Finding, FindingEvent, Incident, IncidentEvent, NodeReport, RemediationRecord, Severity},
};
use prost::Message;
use rusqlite::{Connection, params};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{error, info, warn};

mod lifecycle;
mod maintenance;
mod state;
#[cfg(test)]
mod tests;

pub use self::state::{Ingested, WriterConfig};
use self::{
    lifecycle::{Announcements, severity_index, store_incidents, store_report},
    maintenance::{mark_silent, retention},
    state::{Completion, NodeState, Op, View},
};

use super::StoreError;
use crate::{
    incidents::Correlator,
    metrics::{Metrics, SeverityLabel},
    open_finding::OpenFinding,
};

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;

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

/// The async side of the writer. Cloning is cheap; the thread stops when every handle is
/// dropped, after committing what it was given.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Op>,
    alive: Arc<AtomicBool>,
    failing: Failing,
}

/// Why the store cannot write now (a full disk, a corrupt table), while it cannot.
type Failing = Arc<std::sync::Mutex<Option<String>>>;

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

    /// Why the store's last writes failed, while they fail for the storage's sake (the disk
    /// is full, the database file is corrupt or read-only): `/readyz` says so. Cleared by
    /// the next write that commits.
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
    let failing = Failing::default();
    let mut writer = Writer {
        conn,
        config,
        events,
        metrics,
        view,
        failing: Arc::clone(&failing),
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
    Ok((WriterHandle { tx, alive, failing }, thread))
}

struct Writer {
    conn: Connection,
    config: WriterConfig,
    events: Events,
    metrics: Arc<Metrics>,
    view: View,
    failing: Failing,
}

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
        // Whether a write (not a tick) committed, and the storage's own failure if one did
        // not: what `/readyz` reports.
        let mut wrote = false;
        let mut storage_failure: Option<String> = None;
        let result = (|| -> Result<(), StoreError> {
            let mut tx = self.conn.transaction()?;
            for op in batch {
                let savepoint = tx.savepoint()?;
                let is_write = !matches!(op, Op::Tick { .. });
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
                        wrote |= is_write;
                    }
                    Err((e, fail)) => {
                        // Dropping the savepoint rolls the op back.
                        drop(savepoint);
                        warn!(message = "A write failed; the rest of its batch goes on.", error = %e);
                        if e.is_storage() {
                            storage_failure = Some(e.to_string());
                        }
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
                if e.is_storage() {
                    storage_failure = Some(e.to_string());
                }
                wrote = false;
                for done in completions {
                    done(Err(&e));
                }
                self.view.stale = true;
            }
        }
        {
            let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(reason) = storage_failure {
                *failing = Some(reason);
            } else if wrote {
                *failing = None;
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
                    // A store written before seqs were bounded may hold one above the
                    // highest (stored negative): that node starts its numbering again.
                    last_seq: u64::try_from(last_seq).unwrap_or(0),
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
