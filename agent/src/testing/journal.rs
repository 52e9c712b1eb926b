//! Real journal files for the tests, written by systemd's own `systemd-journal-remote`
//! (Debian's `systemd-journal-remote` package) from entries in the journal export format,
//! so the journal probe reads files of the format journald writes.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::SystemTime,
};

/// Where Debian installs it.
const JOURNAL_REMOTE: &[&str] = &[
    "/lib/systemd/systemd-journal-remote",
    "/usr/lib/systemd/systemd-journal-remote",
];

/// One entry to write.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// `SYSLOG_IDENTIFIER`.
    pub identifier: String,
    /// `_SYSTEMD_UNIT`.
    pub unit: String,
    /// `MESSAGE` (one line).
    pub message: String,
    /// When it was logged.
    pub at: SystemTime,
}

impl JournalEntry {
    /// An entry of `identifier` in `unit`.
    pub fn new(identifier: &str, unit: &str, message: &str, at: SystemTime) -> Self {
        JournalEntry {
            identifier: identifier.into(),
            unit: unit.into(),
            message: message.into(),
            at,
        }
    }
}

/// Writes `entries` into the journal file `file` (made, or appended to) with
/// systemd-journal-remote. Panics, never skips, when it is not installed (scripts/test
/// installs it).
pub fn write_journal(file: &Path, entries: &[JournalEntry]) {
    let binary = JOURNAL_REMOTE
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("systemd-journal-remote is not installed: apt-get install systemd-journal-remote (scripts/test does)");
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).expect("the journal's directory");
    }
    let mut export = String::new();
    for (i, e) in entries.iter().enumerate() {
        let usec =
            e.at.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros();
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={usec}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=6c2d0f6a9e1b4d3c8f7a5b4c3d2e1f00\n_HOSTNAME=node-1\n_TRANSPORT=journal\nPRIORITY=6\nSYSLOG_IDENTIFIER={}\n_SYSTEMD_UNIT={}\nMESSAGE={}\n\n",
            1_000_000 + i,
            e.identifier,
            e.unit,
            e.message.replace('\n', " "),
        ));
    }
    let mut child = Command::new(binary)
        .arg(format!("--output={}", file.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start systemd-journal-remote");
    child
        .stdin
        .take()
        .expect("its stdin")
        .write_all(export.as_bytes())
        .expect("write the export stream");
    let out = child
        .wait_with_output()
        .expect("systemd-journal-remote ran");
    assert!(
        out.status.success(),
        "systemd-journal-remote failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
