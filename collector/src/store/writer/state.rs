//! What the writer's parts share: its settings, the operations it is sent, and its
//! in-memory view of what is open (last seq per node, open findings).

use std::{collections::HashMap, sync::Arc, time::Duration};

use nodemedic_proto::v1::{NodeReport, RemediationRecord};
use tokio::sync::oneshot;

use crate::{
    incidents::{Correlator, IncidentConfig},
    open_finding::OpenFinding,
    runbook::Catalog,
    store::{
        StoreError,
        delta::{Base, Encoder},
    },
};

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

/// The result of ingesting one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// The report's seq.
    pub seq: u64,
    /// It was stored before; nothing was written.
    pub duplicate: bool,
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Op {
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
        received: std::time::Instant,
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

#[derive(Debug, Default)]
pub(super) struct NodeState {
    pub(super) last_seq: u64,
    pub(super) last_report: Option<i64>,
    pub(super) interval_ms: i64,
    pub(super) open: HashMap<(String, String), OpenFinding>,
    /// What the node's next reports are stored against (none after a start).
    pub(super) base: Option<Base>,
}

/// What the writer knows without reading the database: loaded at start, changed only after
/// the statements of a write succeed, reloaded after a failed commit.
pub(super) struct View {
    pub(super) nodes: HashMap<String, NodeState>,
    /// Open findings by severity value (0..=3).
    pub(super) open_counts: [i64; 4],
    /// When retention last ran (unix ms).
    pub(super) last_retention: Option<i64>,
    pub(super) correlator: Correlator,
    /// The correlator changed for a write that was rolled back: reload after the batch.
    pub(super) stale: bool,
    pub(super) encoder: Encoder,
}

impl View {
    pub(super) fn new(config: &WriterConfig) -> Self {
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
pub(super) type Completion = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;
