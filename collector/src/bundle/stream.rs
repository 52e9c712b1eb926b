//! A bundle built on a blocking thread and handed out as chunks over a bounded channel: the
//! builder waits while the client is slow (memory stays bounded), and stops when the client
//! goes away.

use std::{io::Write, sync::Arc};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{BundleError, BundleRequest, Sources, write};
use crate::{runbook::Catalog, store::Reader};

/// Bytes per chunk.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between builder and client.
const IN_FLIGHT: usize = 8;

/// A piece of the archive, and the files written so far.
pub type Chunk = Result<(Bytes, usize), BundleError>;

/// What the collector builds bundles from, for the gRPC and the HTTP endpoint alike.
#[derive(Clone)]
pub struct Bundler {
    /// The store.
    pub reader: Arc<Reader>,
    /// The rules in force.
    pub catalog: Arc<Catalog>,
    /// `collector/info.json`.
    pub info: serde_json::Value,
}

impl Bundler {
    /// Starts building a bundle as of now; the chunks come out of the receiver, an error
    /// last if it failed.
    pub fn start(&self, request: BundleRequest) -> mpsc::Receiver<Chunk> {
        spawn(
            Arc::clone(&self.reader),
            Arc::clone(&self.catalog),
            self.info.clone(),
            request,
            nodemedic_proto::time::unix_millis(std::time::SystemTime::now()),
        )
    }
}

fn spawn(
    reader: Arc<Reader>,
    catalog: Arc<Catalog>,
    info: serde_json::Value,
    request: BundleRequest,
    now: i64,
) -> mpsc::Receiver<Chunk> {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
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
    rx
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
        self.tx.blocking_send(Ok((chunk, files))).map_err(|_| {
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
