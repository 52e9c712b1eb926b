//! Diagnostics bundles: everything support needs in one `.tar.zst`, built from the store and
//! streamed file by file (memory bounded by a few nodes' folders: see `node_folders`),
//! and [`inspect`]ed on the other side.
//!
//! Layout (each section appears when its data exists):
//! - `incidents.json`, `findings.json`: in the window, for the nodes asked;
//! - `nodes/<node>/latest.json`: each node's latest report;
//! - `nodes/<node>/history.json`: its reports in the window, column by column ([`history`]);
//! - `nodes/<node>/kernel.log`: the kernel lines the agent's rules matched (the first and
//!   last of each check and subject), in time order;
//! - `nodes/<node>/journal.log`: the journal lines around what the agent's journal rules
//!   matched in the window (the kubelet's and the runtimes' lines before each match, and
//!   the first and last line of each check and subject), in time order;
//! - `nodes/<node>/pods/<namespace>/<pod>/<container>[.previous].log`: the end of the
//!   current and previous logs of each pod the incidents name, asked of the node's agent
//!   when the bundle is made ([`pod_logs`]);
//! - `summary.html`: a self-contained page: incidents with remediations, charts, nodes;
//! - `runbook/rules.yaml`: the rules in force;
//! - `collector/info.json`: version, configuration, store statistics;
//! - `manifest.json`, last: format, version, time, filters, every file with its size and
//!   SHA-256, and the redactions made per file.
//!
//! Paths are built only from node names that pass validation; a report's content never
//! chooses a path. Redaction ([`redact`]) is on unless the request turns it off.

pub mod history;
mod inspect;
pub mod pod_logs;
pub mod redact;
pub mod stream;
mod summary;

use std::{
    borrow::Cow,
    io::{Read, Write},
    sync::Arc,
    time::Duration,
};

use nodemedic_proto::{
    time::{system_time, timestamp_from_millis},
    v1::{FindingState, Incident, IncidentState, NodeReport},
};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use self::inspect::{InspectError, Inspected, inspect};
use self::{history::History, redact::Redactor, summary::Summary};
use crate::{
    doctor::Diagnosis,
    runbook::Catalog,
    store::{FindingFilter, IncidentFilter, Reader, StoreError},
    validate,
};

/// The bundle format this collector writes.
pub const FORMAT_VERSION: u32 = 2;
/// Findings read from the store at a time.
const FINDINGS_PAGE: usize = 2000;
/// zstd level: 1 is both faster and smaller than 3 on reports (BENCHMARKS.md).
const ZSTD_LEVEL: i32 = 1;
/// Each worker's page cache. A page holds reports of many nodes (stored as they came), and
/// the next few nodes a worker makes need it again (BENCHMARKS.md).
const READER_CACHE: u64 = 8 << 20;
/// Most threads making node folders.
const MAX_WORKERS: usize = 4;
/// The manifest's name in the archive.
pub const MANIFEST: &str = "manifest.json";

/// What to put in a bundle.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BundleRequest {
    /// Only these nodes (all when empty).
    pub nodes: Vec<String>,
    /// Only what happened in this window before now (everything kept when unset).
    #[serde(with = "humantime_serde")]
    pub since: Option<Duration>,
    /// Incidents (with their findings) only: no node folders.
    pub incidents_only: bool,
    /// Leave credentials in (an operator's explicit choice).
    pub no_redact: bool,
}

/// A bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the archive failed (often: the client went away).
    #[error("writing the bundle: {0}")]
    Io(#[from] std::io::Error),
    /// A node name in the request is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The builder failed (a bug).
    #[error("{0}")]
    Internal(String),
}

/// One file of the bundle, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ManifestFile {
    /// Path in the archive.
    pub path: String,
    /// Bytes (uncompressed).
    pub size: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// Values redacted in it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redacted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// The collector that built it.
    pub nodemedic_version: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// The request, as given.
    pub filters: serde_json::Value,
    /// Whether credentials were redacted, and how many in all.
    pub redaction: bool,
    /// Values redacted in all files.
    pub redacted: u64,
    /// Every other file, in archive order.
    pub files: Vec<ManifestFile>,
}

/// What the builder needs besides the store.
pub struct Sources<'a> {
    /// The store.
    pub reader: &'a Reader,
    /// The runbook rules in force.
    pub catalog: &'a Catalog,
    /// `collector/info.json`: version, configuration (no secrets in it), anything else.
    pub info: serde_json::Value,
    /// The pods' logs the agents sent for this bundle.
    pub pod_logs: &'a [pod_logs::NodeLogs],
}

/// The incidents a bundle for `request` holds, as of `now` (unix ms).
pub fn incident_filter(request: &BundleRequest, now: i64) -> IncidentFilter {
    IncidentFilter {
        nodes: request.nodes.clone(),
        state: IncidentState::Unspecified,
        since: since(request, now),
        limit: 1 << 40,
        ..Default::default()
    }
}

/// The start of the request's window (unix ms), when it has one.
fn since(request: &BundleRequest, now: i64) -> Option<i64> {
    request
        .since
        .map(|d| now.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

/// Writes a bundle for `request` into `out`, as of `now` (unix ms); calls `progress` with
/// the number of files written after each one. Answers the manifest.
pub fn write(
    sources: &Sources<'_>,
    request: &BundleRequest,
    now: i64,
    out: impl Write,
    mut progress: impl FnMut(usize),
) -> Result<Manifest, BundleError> {
    for node in &request.nodes {
        validate::node_name(node).map_err(|e| BundleError::Invalid(e.to_string()))?;
    }
    let since = since(request, now);
    let mut archive = Archive::new(
        out,
        !request.no_redact,
        now,
        Some(sources.reader.dir().to_owned()),
    )?;

    let (incidents, _) = sources.reader.incidents(&incident_filter(request, now))?;
    archive.json("incidents.json", &incidents)?;
    progress(archive.files.len());

    // Findings can be many (every opening is one): paged from the store into a temporary
    // file, one JSON object a line inside the array, so memory stays bounded.
    let members: Option<std::collections::HashSet<u64>> = request.incidents_only.then(|| {
        incidents
            .iter()
            .flat_map(|i| i.findings.iter().map(|f| f.id))
            .collect()
    });
    archive.lines("findings.json", |line| {
        let mut after = 0;
        loop {
            let (page, _) = sources.reader.findings(&FindingFilter {
                nodes: request.nodes.clone(),
                state: FindingState::Unspecified,
                since,
                limit: FINDINGS_PAGE,
                after_id: Some(after),
                ..Default::default()
            })?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.id;
            for f in page
                .iter()
                .filter(|f| members.as_ref().is_none_or(|m| m.contains(&f.id)))
            {
                line(&serde_json::to_vec(f).map_err(std::io::Error::other)?)?;
            }
        }
    })?;
    progress(archive.files.len());

    let window = (since.unwrap_or(now - 86_400_000), now);
    let mut summary = Summary::new(window);
    if !request.incidents_only {
        // Stored names were validated at ingest; checked again, as they become paths.
        let names: Vec<String> = sources
            .reader
            .nodes()?
            .into_iter()
            .map(|row| row.name)
            .filter(|n| request.nodes.is_empty() || request.nodes.contains(n))
            .filter(|n| validate::node_name(n).is_ok())
            .collect();
        node_folders(
            &mut archive,
            sources.reader.dir(),
            &names,
            (since.unwrap_or(0), window),
            &mut summary,
            &mut progress,
        )?;
        for answer in sources.pod_logs {
            for log in &answer.logs.logs {
                let Some(path) = pod_logs::path(&answer.node, log) else {
                    continue;
                };
                archive.add(prepare(
                    archive.redactor.as_deref(),
                    path,
                    log.text.clone().into_bytes(),
                ))?;
            }
        }
        progress(archive.files.len());
    }
    let mut info = sources.info.clone();
    info["store"] = serde_json::to_value(sources.reader.stats()?).map_err(std::io::Error::other)?;
    let manifest = archive.finish(request, summary, &incidents, sources.catalog, &info)?;
    progress(manifest.files.len());
    Ok(manifest)
}

/// A bundle of one node's diagnosis, without a collector (`nodemedic doctor --bundle`):
/// the same layout as a collector's bundle, made from the report and the incidents the
/// diagnosis already has (no store, no second correlation).
pub fn of_diagnosis(
    diagnosis: &Diagnosis,
    catalog: &Catalog,
    info: &serde_json::Value,
    out: impl Write,
) -> Result<Manifest, BundleError> {
    let report = &diagnosis.report;
    validate::node_name(&report.node).map_err(|e| BundleError::Invalid(e.to_string()))?;
    let now = diagnosis.at;
    let mut archive = Archive::new(out, true, now, None)?;
    archive.json("incidents.json", &diagnosis.incidents)?;
    archive.lines("findings.json", |line| {
        for f in &diagnosis.findings {
            line(&serde_json::to_vec(f).map_err(std::io::Error::other)?)?;
        }
        Ok(())
    })?;
    let window = (now - 86_400_000, now);
    let mut history = History::new(archive.redactor.as_deref());
    let folder = node_files(
        &report.node,
        Some(report),
        |each| each(report),
        window,
        archive.redactor.as_deref(),
        &mut history,
    )?;
    let mut summary = Summary::new(window);
    summary.merge(folder.summary);
    for file in folder.files {
        archive.add(file)?;
    }
    let request = BundleRequest {
        nodes: vec![report.node.clone()],
        ..Default::default()
    };
    archive.finish(&request, summary, &diagnosis.incidents, catalog, info)
}

/// Makes the node folders on `workers` threads, each with its own store connection, and
/// writes them here in order: worker `w` makes nodes `w`, `w + workers`, ..., and holds at
/// most one made node until it is written, so memory holds a few nodes' files at a time.
/// This thread only compresses; reading, decoding, JSON, redaction and hashing (nearly all
/// the work) run beside it.
fn node_folders<W: Write>(
    archive: &mut Archive<W>,
    store: &std::path::Path,
    names: &[String],
    (since, window): (i64, (i64, i64)),
    summary: &mut Summary,
    progress: &mut impl FnMut(usize),
) -> Result<(), BundleError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS)
        .min(names.len().max(1));
    std::thread::scope(|scope| {
        let mut made = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            made.push(rx);
            let redactor = archive.redactor.clone();
            scope.spawn(move || {
                let reader = match Reader::open(store).and_then(|r| {
                    r.set_cache_size(READER_CACHE)?;
                    Ok(r)
                }) {
                    Ok(reader) => reader,
                    Err(e) => return drop(tx.send(Err(e.into()))),
                };
                let mut history = History::new(redactor.as_deref());
                for name in names.iter().skip(w).step_by(workers) {
                    let files = stored_node_files(
                        &reader,
                        name,
                        (since, window),
                        redactor.as_deref(),
                        &mut history,
                    );
                    // The writer stopped (an error): so do we.
                    if tx.send(files).is_err() {
                        return;
                    }
                }
            });
        }
        for i in 0..names.len() {
            let node = made[i % workers]
                .recv()
                .map_err(|_| std::io::Error::other("a bundle worker stopped"))??;
            summary.merge(node.summary);
            for file in node.files {
                archive.add(file)?;
            }
            progress(archive.files.len());
        }
        Ok(())
    })
}

/// One node's folder, made ready to write, and its part of the summary.
struct NodeFolder {
    files: Vec<Prepared>,
    summary: Summary,
}

/// A node's folder from the store: its latest report and its reports since `since`.
fn stored_node_files(
    reader: &Reader,
    name: &str,
    (since, window): (i64, (i64, i64)),
    redactor: Option<&Redactor>,
    history: &mut History<'_>,
) -> Result<NodeFolder, BundleError> {
    let latest = reader.node(name)?.and_then(|(_, l)| l);
    node_files(
        name,
        latest.as_ref(),
        |each| reader.each_report(name, since, each),
        window,
        redactor,
        history,
    )
}

/// A node's folder: `latest.json`, `history.json` from the reports `reports` hands to the
/// function it gets, `kernel.log`. `history` is the worker's, used node after node (nodes
/// are alike: its columns and buffers fit the next one).
fn node_files(
    name: &str,
    latest: Option<&NodeReport>,
    reports: impl FnOnce(
        &mut dyn FnMut(&NodeReport) -> Result<(), BundleError>,
    ) -> Result<(), BundleError>,
    window: (i64, i64),
    redactor: Option<&Redactor>,
    history: &mut History<'_>,
) -> Result<NodeFolder, BundleError> {
    let mut summary = Summary::new(window);
    let mut files = Vec::new();
    if let Some(latest) = latest {
        let body = serde_json::to_vec_pretty(latest).map_err(std::io::Error::other)?;
        files.push(prepare(redactor, format!("nodes/{name}/latest.json"), body));
    }
    summary.node(name, latest);
    let mut kernel = LogLines::default();
    let mut journal = LogLines::default();
    let added = reports(&mut |report| {
        summary.report(report);
        kernel.add_kernel(report);
        journal.add_journal(report);
        history.add(report).map_err(std::io::Error::other)?;
        Ok(())
    });
    // Taken even after an error, so the worker's history starts the next node empty.
    let (body, redacted) = history.take();
    added?;
    if let Some(body) = body {
        files.push(Prepared::new(
            format!("nodes/{name}/history.json"),
            body,
            redacted,
        ));
    }
    if let Some(latest) = latest {
        kernel.add_kernel(latest);
        journal.add_journal(latest);
    }
    if let Some(log) = kernel.text() {
        files.push(prepare(redactor, format!("nodes/{name}/kernel.log"), log));
    }
    if let Some(log) = journal.text() {
        files.push(prepare(redactor, format!("nodes/{name}/journal.log"), log));
    }
    Ok(NodeFolder { files, summary })
}

/// A file ready to be written: redacted, measured and hashed.
struct Prepared {
    path: String,
    body: Vec<u8>,
    sha256: String,
    redacted: u64,
}

impl Prepared {
    /// A file already redacted (`redacted` values), hashed.
    fn new(path: String, body: Vec<u8>, redacted: u64) -> Self {
        Prepared {
            sha256: sha256_hex(&body),
            path,
            body,
            redacted,
        }
    }
}

fn prepare(redactor: Option<&Redactor>, path: String, body: Vec<u8>) -> Prepared {
    let (changed, redacted) = match redacted(redactor, &body) {
        (Cow::Owned(changed), n) => (Some(changed), n),
        (Cow::Borrowed(_), n) => (None, n),
    };
    Prepared::new(path, changed.unwrap_or(body), redacted)
}

struct Archive<W: Write> {
    tar: tar::Builder<zstd::stream::write::Encoder<'static, W>>,
    redactor: Option<Arc<Redactor>>,
    files: Vec<ManifestFile>,
    mtime: u64,
    /// As of when (unix ms).
    now: i64,
    /// Where temporary files go: the store's directory (the root filesystem may be
    /// read-only); the system's temporary directory when there is no store.
    scratch: Option<std::path::PathBuf>,
}

impl<W: Write> Archive<W> {
    /// A bundle as of `now` (unix ms) into `out`, redacting when `redact`.
    fn new(
        out: W,
        redact: bool,
        now: i64,
        scratch: Option<std::path::PathBuf>,
    ) -> Result<Self, BundleError> {
        let encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
        let mut archive = Archive {
            tar: tar::Builder::new(encoder),
            redactor: redact.then(|| Arc::new(Redactor::default())),
            files: Vec::new(),
            mtime: (now / 1000).max(0) as u64,
            now,
            scratch,
        };
        archive.tar.get_mut().include_checksum(true)?;
        Ok(archive)
    }

    /// The files every bundle ends with — `summary.html`, `runbook/rules.yaml`,
    /// `collector/info.json` and the manifest last — and the end of the stream.
    fn finish(
        mut self,
        request: &BundleRequest,
        summary: Summary,
        incidents: &[Incident],
        catalog: &Catalog,
        info: &serde_json::Value,
    ) -> Result<Manifest, BundleError> {
        let created =
            humantime::format_rfc3339_seconds(system_time(&timestamp_from_millis(self.now)))
                .to_string();
        self.text(
            "summary.html",
            summary.html(incidents, &created).into_bytes(),
        )?;
        let rules: Vec<_> = catalog.rules().map(|(r, _)| r).collect();
        let yaml = serde_saphyr::to_string(&rules).map_err(std::io::Error::other)?;
        self.text("runbook/rules.yaml", yaml.into_bytes())?;
        self.json("collector/info.json", info)?;
        let manifest = Manifest {
            format: FORMAT_VERSION,
            nodemedic_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: created,
            filters: serde_json::to_value(request).map_err(std::io::Error::other)?,
            redaction: self.redactor.is_some(),
            redacted: self.files.iter().map(|f| f.redacted).sum(),
            files: self.files.clone(),
        };
        let body = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        self.append(MANIFEST, body.len() as u64, body.as_slice())?;
        self.tar.into_inner()?.finish()?.flush()?;
        Ok(manifest)
    }

    fn json(&mut self, path: &str, value: &impl Serialize) -> Result<(), BundleError> {
        let body = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        self.text(path, body)
    }

    /// Adds a text file, redacted, and lists it in the manifest.
    fn text(&mut self, path: &str, body: Vec<u8>) -> Result<(), BundleError> {
        let file = prepare(self.redactor.as_deref(), path.to_owned(), body);
        self.add(file)
    }

    /// Adds a prepared file and lists it in the manifest.
    fn add(&mut self, file: Prepared) -> Result<(), BundleError> {
        self.append(&file.path, file.body.len() as u64, file.body.as_slice())?;
        self.files.push(ManifestFile {
            path: file.path,
            size: file.body.len() as u64,
            sha256: file.sha256,
            redacted: file.redacted,
        });
        Ok(())
    }

    /// Adds a JSON array written element by element (each redacted) through a temporary
    /// file: `fill` gets a function that takes one element's JSON.
    fn lines(
        &mut self,
        path: &str,
        fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> Result<(), BundleError>,
    ) -> Result<(), BundleError> {
        let mut file = match &self.scratch {
            Some(dir) => tempfile::tempfile_in(dir)?,
            None => tempfile::tempfile()?,
        };
        let mut hasher = Sha256::new();
        let (mut size, mut redacted_total, mut first) = (0u64, 0u64, true);
        {
            let mut out = std::io::BufWriter::new(&mut file);
            let mut put = |bytes: &[u8], out: &mut std::io::BufWriter<&mut std::fs::File>| {
                hasher.update(bytes);
                size += bytes.len() as u64;
                out.write_all(bytes)
            };
            put(b"[", &mut out)?;
            let redactor = self.redactor.as_deref();
            let mut element = |json: &[u8]| -> std::io::Result<()> {
                let (json, n) = redacted(redactor, json);
                redacted_total += n;
                put(if first { b"\n" } else { b",\n" }, &mut out)?;
                first = false;
                put(&json, &mut out)
            };
            fill(&mut element)?;
            put(b"\n]\n", &mut out)?;
            out.flush()?;
        }
        self.files.push(ManifestFile {
            path: path.to_owned(),
            size,
            sha256: hex(&hasher.finalize()),
            redacted: redacted_total,
        });
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
        self.append(path, size, file)
    }

    /// One regular file entry of `size` bytes read from `data`.
    fn append(&mut self, path: &str, size: u64, data: impl Read) -> Result<(), BundleError> {
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        self.tar.append_data(&mut header, path, data)?;
        Ok(())
    }
}

/// `text` with credentials replaced when there is a redactor and something to replace
/// (borrowed otherwise), and how many were.
fn redacted<'a>(redactor: Option<&Redactor>, text: &'a [u8]) -> (Cow<'a, [u8]>, u64) {
    let Some(r) = redactor else {
        return (Cow::Borrowed(text), 0);
    };
    if !r.needed(text) {
        return (Cow::Borrowed(text), 0);
    }
    let (text, n) = r.redact(text);
    (Cow::Owned(text), n as u64)
}

/// SHA-256 in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes in lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Log lines of a node's reports, each once, in time order: the kernel's or the journal's.
#[derive(Default)]
struct LogLines {
    /// (unix ms, what, about, line).
    lines: std::collections::BTreeSet<(i64, String, String, String)>,
}

impl LogLines {
    fn insert(
        &mut self,
        at: Option<&nodemedic_proto::Timestamp>,
        what: &str,
        about: &str,
        line: &str,
    ) {
        let millis = at.map_or(0, nodemedic_proto::time::timestamp_millis);
        self.lines
            .insert((millis, what.to_owned(), about.to_owned(), line.to_owned()));
    }

    fn events(&mut self, events: &[nodemedic_proto::v1::KernelEvent]) {
        for e in events {
            self.insert(e.first_at.as_ref(), &e.check, &e.subject, &e.first_line);
            self.insert(e.last_at.as_ref(), &e.check, &e.subject, &e.last_line);
        }
    }

    /// Each kernel event's first and last line.
    fn add_kernel(&mut self, report: &NodeReport) {
        if let Some(k) = &report.kernel {
            self.events(&k.events);
        }
    }

    /// The journal's excerpts (by unit and identifier) and each event's first and last
    /// line.
    fn add_journal(&mut self, report: &NodeReport) {
        let Some(j) = &report.journal else {
            return;
        };
        for l in &j.excerpt {
            self.insert(l.at.as_ref(), &l.unit, &l.identifier, &l.message);
        }
        self.events(&j.events);
    }

    /// The lines in time order, as `<time> <what> <about>: <line>`; `None` when there
    /// are none.
    fn text(&self) -> Option<Vec<u8>> {
        if self.lines.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for (millis, check, subject, line) in &self.lines {
            let at = humantime::format_rfc3339_millis(system_time(&timestamp_from_millis(*millis)));
            let _ = writeln!(out, "{at} {check} {subject}: {line}");
        }
        Some(out)
    }
}
