//! Rows read back are checked before anything shows them: one that does not decode, or
//! holds a value no answer could carry (an unknown enum, a time before 1970, a number
//! that is not finite: `nodemedic_proto::values`), is skipped, counted
//! (`nodemedic_rows_skipped_total{table}`) and logged at most once a minute a table. Ingest
//! refuses such values; these are rows a database written before that, or changed outside
//! nodemedic, holds. One bad row must not make every answer and bundle that would hold it
//! fail.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tracing::warn;

use super::StoreError;

/// A table rows are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `findings`.
    Findings = 0,
    /// `incidents`.
    Incidents = 1,
    /// `reports`.
    Reports = 2,
    /// `remediations`.
    Remediations = 3,
}

const TABLES: [(Table, &str); 4] = [
    (Table::Findings, "findings"),
    (Table::Incidents, "incidents"),
    (Table::Reports, "reports"),
    (Table::Remediations, "remediations"),
];

static SKIPPED: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static LOGGED: Mutex<[Option<Instant>; 4]> = Mutex::new([None; 4]);
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Rows skipped since the process started, by table.
pub fn skipped() -> [(&'static str, u64); 4] {
    TABLES.map(|(t, name)| (name, SKIPPED[t as usize].load(Ordering::Relaxed)))
}

/// `decoded` when it decoded and every value is within bounds; else `None`, counted.
pub(super) fn keep<T: Serialize>(
    table: Table,
    id: i64,
    decoded: Result<T, StoreError>,
) -> Option<T> {
    let why = match decoded {
        Ok(value) => match nodemedic_proto::values::check(&value, SystemTime::now()) {
            Ok(()) => return Some(value),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    let n = SKIPPED[table as usize].fetch_add(1, Ordering::Relaxed) + 1;
    let mut logged = LOGGED.lock().unwrap_or_else(|p| p.into_inner());
    let last = &mut logged[table as usize];
    if last.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
        *last = Some(Instant::now());
        let name = TABLES[table as usize].1;
        warn!(message = "Skipped a stored row no answer can hold.", table = name, id, error = %why, skipped_total = n);
    }
    None
}
