//! Reports stored by their changes.
//!
//! Between two collections of a node most of a report stays the same: the mounts, the
//! resolver, the images, the kernel release; what changes are numbers (bytes used, memory
//! available, pressure, durations). So a node's report is stored whole now and then (a
//! *base*: `reports.base_id IS NULL`, the body is the protobuf), and every report after it
//! as a zstd frame compressed with the base as its dictionary (`base_id` names the base):
//! what such a frame holds is what differs from the base.
//!
//! Rules that keep every stored report readable:
//! - a delta names a base of the same node, received at most [`BASE_SPAN_MS`] before it;
//! - a new base is stored when the node has none (the collector started, or its last base
//!   is too old) or when the delta would be more than half the report;
//! - retention deletes a base only once it is older than the retention **plus**
//!   [`BASE_SPAN_MS`] (so after every delta on it), and never the base of a node's latest
//!   report.

use nodemedic_proto::v1::NodeReport;
use prost::Message;
use rusqlite::{Connection, OptionalExtension};
use zstd::zstd_safe::{self, CCtx, DCtx};

use super::StoreError;

/// Longest a base serves, by receive time: one hour (360 reports at a 10 s interval).
pub const BASE_SPAN_MS: i64 = 3_600_000;

/// zstd level of the deltas: the fastest; the dictionary does the work.
const LEVEL: i32 = 1;

/// Largest report a delta may restore to (the gateway accepts 4 MiB messages).
const MAX_REPORT: u64 = 16 << 20;

/// The base a node's next reports are stored against.
#[derive(Debug, Clone)]
pub struct Base {
    /// Its row in `reports`.
    pub id: i64,
    /// When it was received, unix ms.
    pub received_at: i64,
    /// Its protobuf.
    pub body: Vec<u8>,
}

/// How one report is stored.
pub enum Stored {
    /// Whole: it becomes the node's base.
    Base(Vec<u8>),
    /// As a delta against the node's base, row `base_id`.
    Delta {
        /// The base's row.
        base_id: i64,
        /// The zstd frame.
        body: Vec<u8>,
    },
}

/// Makes deltas; one per writer, reused for every report.
pub struct Encoder {
    cctx: CCtx<'static>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            cctx: CCtx::create(),
        }
    }
}

impl Encoder {
    /// How to store `report`, received at `received_at`, given the node's base.
    pub fn encode(&mut self, report: &NodeReport, received_at: i64, base: Option<&Base>) -> Stored {
        let full = report.encode_to_vec();
        let Some(base) =
            base.filter(|b| (0..BASE_SPAN_MS).contains(&(received_at - b.received_at)))
        else {
            return Stored::Base(full);
        };
        let mut delta = Vec::with_capacity(zstd_safe::compress_bound(full.len()));
        match self
            .cctx
            .compress_using_dict(&mut delta, &full, &base.body, LEVEL)
        {
            Ok(_) if delta.len() <= full.len() / 2 => Stored::Delta {
                base_id: base.id,
                body: delta,
            },
            Ok(_) => Stored::Base(full),
            Err(code) => {
                tracing::warn!(
                    message = "Could not compress a report against its base; storing it whole.",
                    error = zstd_safe::get_error_name(code)
                );
                Stored::Base(full)
            }
        }
    }
}

/// Reads stored reports back, holding the last base it read (a node's reports in order
/// need one base an hour).
pub struct Restorer<'c> {
    conn: &'c Connection,
    dctx: DCtx<'static>,
    /// The last base read: its row and protobuf.
    base: Option<(i64, Vec<u8>)>,
    /// The last restored protobuf (reused).
    restored: Vec<u8>,
}

impl<'c> Restorer<'c> {
    /// Reads bases through `conn`.
    pub fn new(conn: &'c Connection) -> Self {
        Restorer {
            conn,
            dctx: DCtx::create(),
            base: None,
            restored: Vec::new(),
        }
    }

    /// The report of row `id`, stored as `body` against `base_id` (none: whole).
    pub fn report(
        &mut self,
        id: i64,
        base_id: Option<i64>,
        body: &[u8],
    ) -> Result<NodeReport, StoreError> {
        let mut report = NodeReport::default();
        self.restore(id, base_id, body, &mut report)?;
        Ok(report)
    }

    /// [`Restorer::report`] into `report` (cleared first), reusing what it holds.
    pub fn restore(
        &mut self,
        id: i64,
        base_id: Option<i64>,
        body: &[u8],
        report: &mut NodeReport,
    ) -> Result<(), StoreError> {
        let corrupt = |reason: String| StoreError::CorruptReport { id, reason };
        let bytes = match base_id {
            None => body,
            Some(base_id) => {
                if self.base.as_ref().is_none_or(|(id, _)| *id != base_id) {
                    let base: Vec<u8> = self
                        .conn
                        .prepare_cached(
                            "SELECT body FROM reports WHERE id = ?1 AND base_id IS NULL",
                        )?
                        .query_row([base_id], |r| r.get(0))
                        .optional()?
                        .ok_or_else(|| corrupt(format!("its base {base_id} is missing")))?;
                    self.base = Some((base_id, base));
                }
                let (_, base) = self.base.as_ref().expect("read just above");
                let size = zstd_safe::get_frame_content_size(body)
                    .ok()
                    .flatten()
                    .filter(|&n| n <= MAX_REPORT)
                    .ok_or_else(|| corrupt("not a delta of a known size".into()))?;
                self.restored.clear();
                self.restored.reserve(size as usize);
                self.dctx
                    .decompress_using_dict(&mut self.restored, body, base)
                    .map_err(|code| corrupt(zstd_safe::get_error_name(code).into()))?;
                &self.restored
            }
        };
        report.clear();
        report.merge(bytes).map_err(|source| StoreError::Corrupt {
            what: "report",
            source,
        })
    }
}
