//! The store: nodes, reports and findings in an embedded SQLite database (WAL) under the
//! data directory.
//!
//! All writes go through one [`writer`] thread that batches them into transactions, so
//! ingest pays one fsync per batch, not per report; a report is acknowledged only after
//! the commit that holds it. Reads use their own connection ([`Reader`]) and never wait
//! for the writer (WAL readers see the last commit).

mod delta;
pub mod usable;
pub mod writer;

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use nodemedic_proto::{
    time::timestamp_from_millis,
    v1::{Finding, FindingState, Incident, IncidentState, NodeReport, RemediationRecord, Severity},
};
use prost::Message;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params_from_iter, types::Value};

use self::usable::{Table, keep};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A stored protobuf does not decode: the database was changed outside nodemedic.
    #[error("corrupt stored {what}: {source}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// The decode error.
        #[source]
        source: prost::DecodeError,
    },
    /// A report stored by its changes cannot be restored.
    #[error("corrupt stored report {id}: {reason}")]
    CorruptReport {
        /// Its row.
        id: i64,
        /// What is wrong.
        reason: String,
    },
    /// The database file cannot be used as it is (empty, not a database, corrupt).
    #[error("{path}: {reason}")]
    Database {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// The database was written by a newer nodemedic.
    #[error(
        "the database schema version {0} is newer than this collector understands ({SCHEMA_VERSION})"
    )]
    SchemaTooNew(i64),
    /// The transaction holding this write failed to commit.
    #[error("the batch holding this write failed: {0}")]
    Batch(String),
    /// The writer thread has stopped.
    #[error("the store writer has stopped")]
    WriterGone,
}

impl StoreError {
    /// A failure of the storage itself, not of one write's content: the disk is full, the
    /// file cannot be written, or the database is corrupt.
    pub fn is_storage(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                DiskFull | SystemIoFailure | DatabaseCorrupt | NotADatabase | ReadOnly | CannotOpen
            ),
            StoreError::DataDir { .. } => true,
            _ => false,
        }
    }
}

/// The schema version `schema.sql` creates.
const SCHEMA_VERSION: i64 = 3;

/// The database file in a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("nodemedic.db")
}

/// Opens (creating if needed) the database for writing, with the schema in place.
pub fn open_for_writing(data_dir: &Path) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let path = database_path(data_dir);
    // SQLite takes an empty file for a new database: starting on one that lost its
    // content would begin an empty store and silently drop all history.
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
        return Err(StoreError::Database {
            path,
            reason: "the database file is empty (0 bytes): it lost its content. Not starting on it, which would begin an empty store; restore it from a backup, or move it away to start afresh".into(),
        });
    }
    let unusable = |e: rusqlite::Error| StoreError::Database {
        path: path.clone(),
        reason: format!(
            "cannot use it as nodemedic's store: {e}. Restore it from a backup, or move it away to start afresh"
        ),
    };
    let conn = Connection::open(&path).map_err(unusable)?;
    // Reading the schema is what tells a file that is not a database (or a corrupt header).
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(unusable)?;
    // FULL: a committed (and so acknowledged) report survives power loss, not just a crash.
    // Each write has a savepoint of its own: its statement journal lives in memory
    // (temp_store), not in a temporary file written and read back per write; the page
    // cache (64 MiB) holds a batch of 10,000 nodes' writes without spilling mid-transaction.
    // Both measured in BENCHMARKS.md ("10,000 agents").
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536;",
    )?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew(version));
    }
    if (1..3).contains(&version) {
        // Version 3 stores reports by their changes (`delta`); older rows are whole.
        conn.execute_batch("ALTER TABLE reports ADD COLUMN base_id INTEGER")?;
    }
    conn.execute_batch(include_str!("schema.sql"))?;
    Ok(conn)
}

/// One node as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    /// Node name.
    pub name: String,
    /// First Hello, unix ms.
    pub first_seen: i64,
    /// Latest report received, unix ms.
    pub last_report: Option<i64>,
    /// Highest stored seq.
    pub last_seq: u64,
    /// Version the agent announced.
    pub agent_version: String,
    /// Open findings by severity: critical, warning, info.
    pub open: [u32; 3],
}

impl NodeRow {
    /// The severity of its worst open finding (`Unspecified`: none open).
    pub fn worst(&self) -> Severity {
        worst_of(self.open)
    }
}

/// The worst severity of open-finding counts `[critical, warning, info]`.
pub fn worst_of(open: [u32; 3]) -> Severity {
    match open {
        [c, _, _] if c > 0 => Severity::Critical,
        [_, w, _] if w > 0 => Severity::Warning,
        [_, _, i] if i > 0 => Severity::Info,
        _ => Severity::Unspecified,
    }
}

/// Which findings to list.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    /// Only these nodes (all when empty).
    pub nodes: Vec<String>,
    /// Only these checks (all when empty).
    pub checks: Vec<String>,
    /// At least this severity.
    pub min_severity: Option<Severity>,
    /// Open, resolved, or both.
    pub state: FindingState,
    /// Open at some moment at or after this (unix ms).
    pub since: Option<i64>,
    /// First seen at or before this (unix ms).
    pub until: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
    /// Paging through everything instead: ids above this one, in id order.
    pub after_id: Option<u64>,
}

/// Which incidents to list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only incidents affecting one of these nodes (all when empty).
    pub nodes: Vec<String>,
    /// Open, resolved, or both.
    pub state: IncidentState,
    /// At least this severity.
    pub min_severity: Option<Severity>,
    /// Open at some moment at or after this (unix ms).
    pub since: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// How much the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Nodes known.
    pub nodes: u64,
    /// Reports kept.
    pub reports: u64,
    /// Findings kept, and the open ones.
    pub findings: u64,
    /// Open findings.
    pub open_findings: u64,
    /// Incidents kept.
    pub incidents: u64,
    /// Recorded remediation applies.
    pub remediations: u64,
    /// The database file's size.
    pub database_bytes: u64,
}

/// The fleet's open state, as [`Reader::fleet`] reads it.
#[derive(Debug, Default)]
pub struct Fleet {
    /// (node, check, severity value, open findings).
    pub findings: Vec<(String, String, i32, i64)>,
    /// (correlation key, severity value) of each open incident.
    pub incidents: Vec<(String, i32)>,
    /// Every node's name.
    pub nodes: Vec<String>,
}

/// Read-only queries, on their own connection.
pub struct Reader {
    conn: Mutex<Connection>,
    dir: PathBuf,
}

const FINDING_COLUMNS: &str = "id, first_seen, last_seen, resolved_at, body";

impl Reader {
    /// Opens a read-only connection to the database in `data_dir` (which must exist).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            database_path(data_dir),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Reader {
            conn: Mutex::new(conn),
            dir: data_dir.to_owned(),
        })
    }

    /// Sets how much of the store this reader keeps in its own page cache (SQLite's default
    /// is 2 MiB).
    pub fn set_cache_size(&self, bytes: u64) -> Result<(), StoreError> {
        self.conn()
            .execute_batch(&format!("PRAGMA cache_size = -{}", bytes >> 10))?;
        Ok(())
    }

    /// The data directory: also where work on the store's data keeps its temporary files
    /// (a container's root filesystem is read-only).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `/metrics` says about the fleet: open findings counted by node, check and
    /// severity; open incidents' keys and severities; every node's name.
    pub fn fleet(&self) -> Result<Fleet, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT node, check_id, severity, COUNT(*) FROM findings WHERE resolved_at IS NULL
             GROUP BY node, check_id, severity",
        )?;
        let findings = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        let mut stmt =
            conn.prepare_cached("SELECT key, severity FROM incidents WHERE resolved_at IS NULL")?;
        let incidents = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare_cached("SELECT name FROM nodes ORDER BY name")?;
        let nodes = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(Fleet {
            findings,
            incidents,
            nodes,
        })
    }

    /// Every node, by name, with its open findings counted.
    pub fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        self.node_rows(None)
    }

    /// Node rows, all of them or the one named; `?1 IS NULL` selects all.
    fn node_rows(&self, name: Option<&str>) -> Result<Vec<NodeRow>, StoreError> {
        const SELECT: &str =
            "SELECT n.name, n.first_seen, n.last_report, n.last_seq, n.agent_version,
                    COUNT(f.id) FILTER (WHERE f.severity = 3),
                    COUNT(f.id) FILTER (WHERE f.severity = 2),
                    COUNT(f.id) FILTER (WHERE f.severity = 1)
             FROM nodes n LEFT JOIN findings f ON f.node = n.name AND f.resolved_at IS NULL";
        let conn = self.conn();
        // One node by its key; `?1 IS NULL OR n.name = ?1` would scan every node.
        let mut stmt = match name {
            Some(_) => {
                conn.prepare_cached(&format!("{SELECT} WHERE n.name = ?1 GROUP BY n.name"))?
            }
            None => conn.prepare_cached(&format!("{SELECT} GROUP BY n.name ORDER BY n.name"))?,
        };
        let params: Vec<&str> = name.into_iter().collect();
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok(NodeRow {
                name: r.get(0)?,
                first_seen: r.get(1)?,
                last_report: r.get(2)?,
                last_seq: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                agent_version: r.get(4)?,
                open: [r.get(5)?, r.get(6)?, r.get(7)?],
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One node's row and latest report.
    pub fn node(&self, name: &str) -> Result<Option<(NodeRow, Option<NodeReport>)>, StoreError> {
        let Some(row) = self.node_rows(Some(name))?.into_iter().next() else {
            return Ok(None);
        };
        let conn = self.conn();
        let stored: Option<(i64, Option<i64>, Vec<u8>)> = conn
            .query_row(
                "SELECT r.id, r.base_id, r.body FROM nodes n JOIN reports r ON r.id = n.latest_report_id WHERE n.name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let latest = stored.and_then(|(id, base_id, body)| {
            keep(
                Table::Reports,
                id,
                delta::Restorer::new(&conn).report(id, base_id, &body),
            )
        });
        Ok(Some((row, latest)))
    }

    /// Findings matching `filter`, newest first, and whether more matched than the limit.
    pub fn findings(&self, filter: &FindingFilter) -> Result<(Vec<Finding>, bool), StoreError> {
        let mut sql = format!("SELECT {FINDING_COLUMNS} FROM findings WHERE 1=1");
        let mut args: Vec<Value> = Vec::new();
        let mut any_of = |sql: &mut String, column: &str, values: &[String]| {
            if !values.is_empty() {
                sql.push_str(&format!(
                    " AND {column} IN ({})",
                    vec!["?"; values.len()].join(",")
                ));
                args.extend(values.iter().cloned().map(Value::Text));
            }
        };
        any_of(&mut sql, "node", &filter.nodes);
        any_of(&mut sql, "check_id", &filter.checks);
        if let Some(s) = filter.min_severity {
            sql.push_str(&format!(" AND severity >= {}", s as i32));
        }
        match filter.state {
            FindingState::Open => sql.push_str(" AND resolved_at IS NULL"),
            FindingState::Resolved => sql.push_str(" AND resolved_at IS NOT NULL"),
            FindingState::Unspecified => {}
        }
        if let Some(since) = filter.since {
            sql.push_str(&format!(
                " AND (resolved_at IS NULL OR resolved_at >= {since})"
            ));
        }
        if let Some(until) = filter.until {
            sql.push_str(&format!(" AND first_seen <= {until}"));
        }
        match filter.after_id {
            Some(after) => sql.push_str(&format!(
                " AND id > {after} ORDER BY id LIMIT {}",
                filter.limit + 1
            )),
            None => sql.push_str(&format!(
                " ORDER BY last_seen DESC, id DESC LIMIT {}",
                filter.limit + 1
            )),
        }
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let mut findings = Vec::new();
        let mut rows = 0;
        for row in stmt.query_map(params_from_iter(args), finding_from_row)? {
            let (id, finding) = row?;
            rows += 1;
            findings.extend(keep(Table::Findings, id, finding));
        }
        // Whether more matched counts the rows, skipped ones too, so paging goes on.
        let truncated = rows > filter.limit;
        findings.truncate(filter.limit);
        Ok((findings, truncated))
    }

    /// Incidents matching `filter`, newest first, and whether more matched than the limit.
    pub fn incidents(&self, filter: &IncidentFilter) -> Result<(Vec<Incident>, bool), StoreError> {
        let mut sql = "SELECT id, body FROM incidents i WHERE 1=1".to_owned();
        let mut args: Vec<Value> = Vec::new();
        if !filter.nodes.is_empty() {
            sql.push_str(&format!(
                " AND id IN (SELECT incident_id FROM incident_nodes WHERE node IN ({}))",
                vec!["?"; filter.nodes.len()].join(",")
            ));
            args.extend(filter.nodes.iter().cloned().map(Value::Text));
        }
        if let Some(s) = filter.min_severity {
            sql.push_str(&format!(" AND severity >= {}", s as i32));
        }
        if let Some(since) = filter.since {
            sql.push_str(&format!(
                " AND (resolved_at IS NULL OR resolved_at >= {since})"
            ));
        }
        match filter.state {
            IncidentState::Open => sql.push_str(" AND resolved_at IS NULL"),
            IncidentState::Resolved => sql.push_str(" AND resolved_at IS NOT NULL"),
            IncidentState::Unspecified => {}
        }
        sql.push_str(&format!(
            " ORDER BY (resolved_at IS NULL) DESC, updated_at DESC, id DESC LIMIT {}",
            filter.limit + 1
        ));
        let conn = self.conn();
        let bodies: Vec<(i64, Vec<u8>)> = conn
            .prepare(&sql)?
            .query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let truncated = bodies.len() > filter.limit;
        let incidents = bodies
            .iter()
            .take(filter.limit)
            .filter_map(|(id, b)| keep(Table::Incidents, *id, current(&conn, b)))
            .collect();
        Ok((incidents, truncated))
    }

    /// One incident by id.
    pub fn incident(&self, id: u64) -> Result<Option<Incident>, StoreError> {
        let conn = self.conn();
        let body: Option<Vec<u8>> = conn
            .query_row(
                "SELECT body FROM incidents WHERE id = ?1",
                [id as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(body.and_then(|b| keep(Table::Incidents, id as i64, current(&conn, &b))))
    }

    /// How much the store holds.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let conn = self.conn();
        let count = |sql: &str| -> Result<u64, StoreError> {
            Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        Ok(StoreStats {
            nodes: count("SELECT COUNT(*) FROM nodes")?,
            reports: count("SELECT COUNT(*) FROM reports")?,
            findings: count("SELECT COUNT(*) FROM findings")?,
            open_findings: count("SELECT COUNT(*) FROM findings WHERE resolved_at IS NULL")?,
            incidents: count("SELECT COUNT(*) FROM incidents")?,
            remediations: count("SELECT COUNT(*) FROM remediations")?,
            database_bytes: count(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            )?,
        })
    }

    /// Recorded remediation applies, newest first: of one node, or all.
    pub fn remediations(
        &self,
        node: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RemediationRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, body FROM remediations WHERE ?1 IS NULL OR node = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![node, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut records = Vec::new();
        for row in rows {
            let (id, body) = row?;
            let decoded =
                RemediationRecord::decode(body.as_slice()).map_err(|source| StoreError::Corrupt {
                    what: "remediation",
                    source,
                });
            records.extend(keep(Table::Remediations, id, decoded));
        }
        Ok(records)
    }

    /// A node's stored reports received at or after `since` (unix ms), oldest first.
    pub fn history(&self, node: &str, since: i64) -> Result<Vec<NodeReport>, StoreError> {
        let mut reports = Vec::new();
        self.each_report(node, since, |r| {
            reports.push(r.clone());
            Ok::<_, StoreError>(())
        })?;
        Ok(reports)
    }

    /// Calls `each` with a node's stored reports received at or after `since` (unix ms),
    /// oldest first, one at a time: what a node's whole history would hold is never in
    /// memory at once, and each report is decoded into the same message.
    pub fn each_report<E: From<StoreError>>(
        &self,
        node: &str,
        since: i64,
        mut each: impl FnMut(&NodeReport) -> Result<(), E>,
    ) -> Result<(), E> {
        let conn = self.conn();
        let mut restorer = delta::Restorer::new(&conn);
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, base_id, body FROM reports WHERE node = ?1 AND received_at >= ?2 ORDER BY seq",
            )
            .map_err(StoreError::from)?;
        let mut rows = stmt
            .query(rusqlite::params![node, since])
            .map_err(StoreError::from)?;
        let mut report = NodeReport::default();
        while let Some(r) = rows.next().map_err(StoreError::from)? {
            let row = || -> Result<(i64, Option<i64>, &[u8]), rusqlite::Error> {
                Ok((r.get(0)?, r.get(1)?, r.get_ref(2)?.as_blob()?))
            };
            let (id, base_id, body) = row().map_err(StoreError::from)?;
            let restored = restorer
                .restore(id, base_id, body, &mut report)
                .map(|()| &report);
            if let Some(report) = keep(Table::Reports, id, restored) {
                each(report)?;
            }
        }
        Ok(())
    }
}

/// A stored incident with, while it is open, its findings as last reported (the stored
/// body keeps them as of the incident's last change) and its last seen from them.
fn current(conn: &Connection, body: &[u8]) -> Result<Incident, StoreError> {
    let mut incident = Incident::decode(body).map_err(|source| StoreError::Corrupt {
        what: "incident",
        source,
    })?;
    if incident.state() == IncidentState::Open {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {FINDING_COLUMNS} FROM findings WHERE id = ?1"
        ))?;
        for f in &mut incident.findings {
            if let Some((_, now)) = stmt.query_row([f.id as i64], finding_from_row).optional()? {
                *f = now?;
            }
        }
        incident.last_seen = incident
            .findings
            .iter()
            .filter_map(|f| f.last_seen)
            .max_by_key(|t| (t.seconds, t.nanos));
    }
    Ok(incident)
}

/// A finding row: its id, and the stored body with the collector's fields set.
fn finding_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Result<Finding, StoreError>)> {
    let body: Vec<u8> = r.get(4)?;
    let id: i64 = r.get(0)?;
    let first_seen: i64 = r.get(1)?;
    let last_seen: i64 = r.get(2)?;
    let resolved_at: Option<i64> = r.get(3)?;
    Ok((
        id,
        Finding::decode(body.as_slice())
            .map_err(|source| StoreError::Corrupt {
                what: "finding",
                source,
            })
            .map(|mut f| {
                f.id = id as u64;
                f.first_seen = Some(timestamp_from_millis(first_seen));
                f.last_seen = Some(timestamp_from_millis(last_seen));
                f.resolved_at = resolved_at.map(timestamp_from_millis);
                f
            }),
    ))
}
