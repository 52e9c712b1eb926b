//! Reading the systemd journal's files with sdjournal (pure Rust: no libsystemd, no
//! journalctl), from where the last read stopped: each read opens the directories afresh,
//! so files journald rotated (renamed to `system@….journal`) or created since are seen, and
//! seeks by time to the last entry read (the journal's entry arrays are ordered by time, so
//! this costs a search, not a walk from the head as a cursor seek does), skipping the
//! entries of that microsecond already read. The first read starts `lookback` before now.
//! A read takes at most `max_entries`; the rest wait for the next one.

use std::{collections::HashSet, path::PathBuf, time::SystemTime};

use sdjournal::{Journal, SdJournalError};

/// One journal entry, as the rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `SYSLOG_IDENTIFIER` (`kubelet`, `containerd`, `systemd`); empty when absent.
    pub identifier: String,
    /// `_SYSTEMD_UNIT`; empty when absent.
    pub unit: String,
    /// `MESSAGE`, invalid UTF-8 replaced.
    pub message: String,
    /// When it was logged (`__REALTIME_TIMESTAMP`).
    pub at: SystemTime,
}

/// What one read did.
#[derive(Debug, Default)]
pub struct Read {
    /// Journal files in the directories.
    pub files: u32,
    /// Entries read.
    pub entries: u64,
    /// `max_entries` were read and more may wait.
    pub behind: bool,
}

/// Where reading goes on.
#[derive(Debug)]
pub struct Reader {
    dirs: Vec<PathBuf>,
    /// The time of the last entry read, and the cursors of the entries of that
    /// microsecond read so far.
    last: Option<(u64, HashSet<String>)>,
    /// The last entry's cursor.
    cursor: String,
    lookback: std::time::Duration,
    max_entries: usize,
}

/// Why the journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// None of the directories exists.
    #[error("no journal: none of {0} exists")]
    NoJournal(String),
    /// sdjournal could not read the files.
    #[error("cannot read the journal in {dirs}: {source}")]
    Journal {
        /// The directories.
        dirs: String,
        /// Its error.
        #[source]
        source: SdJournalError,
    },
}

impl Reader {
    /// A reader of `dirs` (those that exist at each read).
    pub fn new(dirs: Vec<PathBuf>, lookback: std::time::Duration, max_entries: usize) -> Self {
        Reader {
            dirs,
            last: None,
            cursor: String::new(),
            lookback,
            max_entries: max_entries.max(1),
        }
    }

    /// The cursor of the last entry read (sdjournal's form, not journalctl's).
    pub fn cursor(&self) -> String {
        self.cursor.clone()
    }

    /// Reads the entries after the last one read (or from `lookback` before `now`), in
    /// order, handing each to `each`.
    pub fn read(
        &mut self,
        now: SystemTime,
        mut each: impl FnMut(Entry),
    ) -> Result<Read, ReadError> {
        let dirs: Vec<PathBuf> = self.dirs.iter().filter(|d| d.is_dir()).cloned().collect();
        let names = || {
            self.dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if dirs.is_empty() {
            return Err(ReadError::NoJournal(names()));
        }
        let err = |source| ReadError::Journal {
            dirs: names(),
            source,
        };
        let journal = match Journal::open_dirs(&dirs) {
            Ok(j) => j,
            // Directories without a file yet (journald not started, or volatile storage).
            Err(SdJournalError::NotFound) => return Ok(Read::default()),
            Err(e) => return Err(err(e)),
        };
        let files = count_files(&dirs);
        let mut query = journal.query();
        let since = match &self.last {
            Some((usec, _)) => *usec,
            None => micros(
                now.checked_sub(self.lookback)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            ),
        };
        query.since_realtime(since);
        // The entries of the last microsecond read come again: room for them, and for one
        // more that says whether entries are left.
        let again = self.last.as_ref().map_or(0, |(_, seen)| seen.len());
        query.limit(self.max_entries + again + 1);
        let mut read = Read {
            files,
            ..Read::default()
        };
        for item in query.iter().map_err(err)? {
            let entry = item.map_err(err)?;
            let usec = entry.realtime_usec();
            let cursor = entry.cursor().map_err(err)?.to_string();
            let new_microsecond = match &self.last {
                Some((last, seen)) if *last == usec => {
                    if seen.contains(&cursor) {
                        continue;
                    }
                    false
                }
                // Older than the last entry read (a clock set back): already past.
                Some((last, _)) if usec < *last => continue,
                _ => true,
            };
            if read.entries as usize == self.max_entries {
                read.behind = true;
                break;
            }
            match (&mut self.last, new_microsecond) {
                (Some((_, seen)), false) => {
                    seen.insert(cursor.clone());
                }
                _ => self.last = Some((usec, HashSet::from([cursor.clone()]))),
            }
            self.cursor = cursor;
            let text = |field: &str| {
                entry
                    .get(field)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            read.entries += 1;
            each(Entry {
                identifier: text("SYSLOG_IDENTIFIER"),
                unit: text("_SYSTEMD_UNIT"),
                message: text("MESSAGE"),
                at: SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(usec),
            });
        }
        Ok(read)
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `*.journal` files in the directories and their machine-ID subdirectories.
fn count_files(dirs: &[PathBuf]) -> u32 {
    let journal_files = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    dirs.iter()
        .flat_map(|d| journal_files(d))
        .flat_map(|p| {
            if p.is_dir() {
                journal_files(&p)
            } else {
                vec![p]
            }
        })
        .filter(|p| p.extension().is_some_and(|x| x == "journal"))
        .count() as u32
}
