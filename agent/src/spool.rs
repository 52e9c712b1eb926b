//! The on-disk spool: reports not yet acknowledged by the collector, kept across agent
//! restarts. One file per report (`<id>.pb.zst`: protobuf, zstd-compressed), written to a
//! temporary name and renamed, so a crash leaves either the whole report or none. Bounded
//! by total size and age; the oldest reports go first, and are counted.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use nodemedic_proto::v1::NodeReport;
use prost::Message;
use tracing::warn;

/// A spool that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("spool {path}: {source}")]
pub struct SpoolError {
    /// The file or directory.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Limits of the spool.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    /// Total bytes of spooled files.
    pub max_bytes: u64,
    /// Reports older than this are dropped.
    pub max_age: Duration,
}

/// One spooled report.
#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    size: u64,
    written: SystemTime,
}

/// The spool directory and what it holds, oldest first.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    entries: Vec<Entry>,
    bytes: u64,
    next_id: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError {
        path: path.to_owned(),
        source,
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`; answers it with the reports it holds, oldest
    /// first. Unreadable or corrupt files are deleted with a warning.
    pub fn open(
        dir: &Path,
        limits: SpoolLimits,
    ) -> Result<(Self, Vec<(u64, NodeReport)>), SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_suffix(".pb.zst")?.parse().ok()?;
                Some((id, e.path()))
            })
            .collect();
        found.sort();
        let mut spool = Spool {
            dir: dir.to_owned(),
            limits,
            entries: Vec::new(),
            bytes: 0,
            next_id: 1,
        };
        let mut reports = Vec::new();
        for (id, path) in found {
            spool.next_id = spool.next_id.max(id + 1);
            match read(&path) {
                Ok((report, size, written)) => {
                    spool.entries.push(Entry { id, size, written });
                    spool.bytes += size;
                    reports.push((id, report));
                }
                Err(e) => {
                    warn!(message = "Deleting an unreadable spooled report.", path = %path.display(), error = %e);
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok((spool, reports))
    }

    /// Writes a report (again, under the same id after its seq was assigned).
    pub fn write(&mut self, id: u64, report: &NodeReport) -> Result<(), SpoolError> {
        let path = self.path(id);
        let tmp = self.dir.join(format!("{id}.tmp"));
        let compressed = zstd::bulk::compress(&report.encode_to_vec(), 3).map_err(io(&tmp))?;
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&compressed).map_err(io(&tmp))?;
        file.sync_data().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        let size = compressed.len() as u64;
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                self.bytes = self.bytes - e.size + size;
                e.size = size;
            }
            None => {
                self.entries.push(Entry {
                    id,
                    size,
                    written: SystemTime::now(),
                });
                self.bytes += size;
            }
        }
        Ok(())
    }

    /// A new id, above every one in the spool.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Deletes a report (acknowledged, or dropped).
    pub fn remove(&mut self, id: u64) {
        if let Some(i) = self.entries.iter().position(|e| e.id == id) {
            let e = self.entries.remove(i);
            self.bytes -= e.size;
            let _ = fs::remove_file(self.path(id));
        }
    }

    /// The ids past the limits, oldest first: the reports to drop.
    pub fn over_limits(&self, now: SystemTime) -> Vec<u64> {
        let mut bytes = self.bytes;
        let mut out = Vec::new();
        for e in &self.entries {
            let too_old = now
                .duration_since(e.written)
                .is_ok_and(|age| age > self.limits.max_age);
            if too_old || bytes > self.limits.max_bytes {
                out.push(e.id);
                bytes -= e.size;
            }
        }
        out
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.pb.zst"))
    }
}

fn read(path: &Path) -> Result<(NodeReport, u64, SystemTime), String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    // A crash between creating and writing a file, or a full disk, leaves it empty: it
    // would decode as an empty report for no node, which no collector accepts.
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let written = fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| e.to_string())?;
    let raw = zstd::bulk::decompress(&bytes, 64 << 20).map_err(|e| e.to_string())?;
    let report = NodeReport::decode(raw.as_slice()).map_err(|e| e.to_string())?;
    if report.node.is_empty() || report.collected_at.is_none() {
        return Err("it holds no report (no node, or no collection time)".into());
    }
    Ok((report, bytes.len() as u64, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_corrupt_files_are_deleted_and_good_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            max_bytes: 1 << 20,
            max_age: std::time::Duration::from_secs(3600),
        };
        let (mut spool, found) = Spool::open(dir.path(), limits).unwrap();
        assert!(found.is_empty());
        let good = NodeReport {
            node: "n1".into(),
            seq: 7,
            collected_at: Some(nodemedic_proto::time::timestamp(SystemTime::now())),
            ..Default::default()
        };
        spool.write(1, &good).unwrap();
        fs::write(dir.path().join("2.pb.zst"), b"").unwrap();
        fs::write(dir.path().join("3.pb.zst"), b"not zstd").unwrap();
        let empty_report = zstd::bulk::compress(&NodeReport::default().encode_to_vec(), 3).unwrap();
        fs::write(dir.path().join("4.pb.zst"), empty_report).unwrap();

        let (spool, found) = Spool::open(dir.path(), limits).unwrap();
        assert_eq!(found, vec![(1, good)], "only the real report is restored");
        for gone in ["2.pb.zst", "3.pb.zst", "4.pb.zst"] {
            assert!(!dir.path().join(gone).exists(), "{gone} is deleted");
        }
        assert!(dir.path().join("1.pb.zst").exists());
        assert_eq!(spool.next_id, 5, "ids of deleted files are not reused");
    }
}
