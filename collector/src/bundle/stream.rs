//! A bundle built on a blocking thread and handed out as chunks over a bounded channel: the
//! builder waits while the client is slow (memory stays bounded), and stops when the client
//! goes away. First the agents of the nodes the bundle's incidents name are asked for their
//! pods' logs ([`super::pod_logs`]); who answered is the first thing sent.

use std::{io::Write, sync::Arc};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    BundleError, BundleRequest, Sources, incident_filter,
    pod_logs::{self, Gathered},
    write,
};
use crate::{registry::Registry, runbook::Catalog, store::Reader};

/// Bytes per chunk.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between builder and client.
const IN_FLIGHT: usize = 8;

/// What a bundle's stream carries.
#[derive(Debug)]
pub enum Piece {
    /// First: the nodes whose agents sent their pods' logs, and those that did not (why).
    Logs {
        /// Nodes that answered.
        from: Vec<String>,
        /// `node: why` of those that did not.
        missing: Vec<String>,
    },
    /// A piece of the archive, and the files written so far.
    Data(Bytes, usize),
}

/// One item of a bundle's stream; an error last if it failed.
pub type Chunk = Result<Piece, BundleError>;

/// What the collector builds bundles from, for the gRPC and the HTTP endpoint alike.
#[derive(Clone)]
pub struct Bundler {
    /// The store.
    pub reader: Arc<Reader>,
    /// The rules in force.
    pub catalog: Arc<Catalog>,
    /// `collector/info.json`.
    pub info: serde_json::Value,
    /// The agents' streams, to ask for pods' logs.
    pub registry: Arc<Registry>,
}

impl Bundler {
    /// Starts building a bundle as of now; the chunks come out of the receiver, an error
    /// last if it failed.
    pub fn start(&self, request: BundleRequest) -> mpsc::Receiver<Chunk> {
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let bundler = self.clone();
        let now = nodemedic_proto::time::unix_millis(std::time::SystemTime::now());
        tokio::spawn(async move {
            let gathered = bundler.pod_logs(&request, now).await;
            let logs = Piece::Logs {
                from: gathered.from.clone(),
                missing: gathered.missing.clone(),
            };
            if tx.send(Ok(logs)).await.is_err() {
                return;
            }
            build(
                bundler.reader,
                bundler.catalog,
                bundler.info,
                (request, gathered),
                now,
                tx,
            );
        });
        rx
    }

    /// The logs of the pods the bundle's incidents name, from their nodes' agents (none
    /// for a bundle without node folders).
    async fn pod_logs(&self, request: &BundleRequest, now: i64) -> Gathered {
        if request.incidents_only {
            return Gathered::default();
        }
        let reader = Arc::clone(&self.reader);
        let filter = incident_filter(request, now);
        let incidents = tokio::task::spawn_blocking(move || reader.incidents(&filter)).await;
        match incidents {
            Ok(Ok((incidents, _))) => {
                pod_logs::gather(&self.registry, pod_logs::wanted(&incidents)).await
            }
            // The bundle itself reads them again and reports the error.
            _ => Gathered::default(),
        }
    }
}

/// Builds the bundle on a blocking thread, sending its pieces to `tx`.
fn build(
    reader: Arc<Reader>,
    catalog: Arc<Catalog>,
    info: serde_json::Value,
    (request, gathered): (BundleRequest, Gathered),
    now: i64,
    tx: mpsc::Sender<Chunk>,
) {
    tokio::task::spawn_blocking(move || {
        let files = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut out = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
            files: Arc::clone(&files),
        };
        let sources = Sources {
            reader: &reader,
            catalog: &catalog,
            info,
            pod_logs: &gathered.nodes,
        };
        // A bug that panics must reach the client as an error, not as an end of stream
        // that looks like a complete (empty) bundle.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write(&sources, &request, now, &mut out, |n| {
                files.store(n, std::sync::atomic::Ordering::Relaxed);
            })
            .and_then(|manifest| {
                out.flush()?;
                Ok(manifest)
            })
        }));
        let result = built.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(BundleError::Internal(format!(
                "the bundle builder failed: {what}"
            )))
        });
        match result {
            Ok(m) => info!(
                message = "Bundle sent.",
                files = m.files.len(),
                redacted = m.redacted
            ),
            Err(e) => {
                warn!(message = "Bundle stopped.", error = %e);
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
}

struct ChunkWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
    files: Arc<std::sync::atomic::AtomicUsize>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let files = self.files.load(std::sync::atomic::Ordering::Relaxed);
        self.tx
            .blocking_send(Ok(Piece::Data(chunk, files)))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}
