//! Where kernel lines come from: `/dev/kmsg` (one record per `read`, non-blocking, gaps in
//! the sequence numbers counted), or a log file followed like `tail -F` (appends, rotation,
//! truncation). Both start from a bounded look-back; a log file's lines are dated by the
//! time they carry (`parse::line_time`), so an old line read at start counts as old.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::parse::{
    kmsg,
    line_time::{self, Clock},
};

/// A line read, with when it was logged.
pub type Sink<'a> = dyn FnMut(&str, SystemTime) + 'a;

/// A kernel log being followed.
#[derive(Debug)]
pub enum Source {
    /// `/dev/kmsg`.
    Kmsg(Kmsg),
    /// A log file.
    File(LogFile),
}

impl Source {
    /// Reads everything available now into `sink`; returns the records the kernel
    /// overwrote before they could be read.
    pub fn drain(&mut self, sink: &mut Sink<'_>) -> io::Result<u64> {
        match self {
            Source::Kmsg(k) => k.drain(sink),
            Source::File(f) => f.drain(sink).map(|()| 0),
        }
    }
}

/// `/dev/kmsg`, opened non-blocking.
#[derive(Debug)]
pub struct Kmsg {
    file: File,
    boot: SystemTime,
    skip_before_micros: u64,
    last_seq: Option<u64>,
    buf: Vec<u8>,
}

impl Kmsg {
    /// Opens `path`; records logged more than `lookback` before now are skipped. `uptime`
    /// is the host's `/proc/uptime` (the clock of the records' timestamps).
    pub fn open(path: PathBuf, uptime: Duration, lookback: Duration) -> io::Result<Self> {
        let file = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)?;
        Ok(Kmsg {
            file,
            boot: SystemTime::now() - uptime,
            skip_before_micros: uptime.saturating_sub(lookback).as_micros() as u64,
            last_seq: None,
            // A record is at most 8 KiB (the kernel's limit on one read is 8 KiB of text).
            buf: vec![0; 16 * 1024],
        })
    }

    /// Waits up to `timeout` for a record to arrive.
    pub fn wait(&self, timeout: Duration) {
        let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
        let timeout = Timespec::try_from(timeout).unwrap_or_default();
        // An error (EINTR) only ends this wait early.
        let _ = poll(&mut fds, Some(&timeout));
    }

    fn drain(&mut self, sink: &mut Sink<'_>) -> io::Result<u64> {
        let mut missed = 0;
        loop {
            let n = match self.file.read(&mut self.buf) {
                Ok(0) => return Ok(missed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(missed),
                // EPIPE: the next record was overwritten; the following read goes on.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) => {
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let text = String::from_utf8_lossy(&self.buf[..n]);
            let Ok(record) = kmsg::record(&text) else {
                tracing::debug!(record = %text, "skipping a kmsg record that does not parse");
                continue;
            };
            if let Some(last) = self.last_seq {
                missed += record.seq.saturating_sub(last + 1);
            }
            self.last_seq = Some(record.seq);
            if record.micros < self.skip_before_micros {
                continue;
            }
            sink(
                record.message,
                self.boot + Duration::from_micros(record.micros),
            );
        }
    }
}

/// A log file followed by name.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    lookback_bytes: u64,
    clock: Clock,
    open: Option<(File, u64)>,
    pos: u64,
    /// A line not yet ended by a newline.
    partial: Vec<u8>,
    chunk: Vec<u8>,
}

impl LogFile {
    /// Follows `path`, starting at most `lookback_bytes` before its end; `clock` dates
    /// the lines (a line without a time of its own is dated when it is read).
    pub fn new(path: PathBuf, lookback_bytes: u64, clock: Clock) -> Self {
        LogFile {
            path,
            lookback_bytes,
            clock,
            open: None,
            pos: 0,
            partial: Vec::new(),
            chunk: vec![0; 64 * 1024],
        }
    }

    fn drain(&mut self, sink: &mut Sink<'_>) -> io::Result<()> {
        let meta = std::fs::metadata(&self.path)?;
        let rotated = match &self.open {
            Some((_, inode)) => *inode != meta.ino() || meta.len() < self.pos,
            None => true,
        };
        if rotated {
            let mut file = File::open(&self.path)?;
            let first = self.open.is_none();
            // The first time, start near the end; a rotated file is read from its start.
            self.pos = if first {
                meta.len().saturating_sub(self.lookback_bytes)
            } else {
                0
            };
            file.seek(SeekFrom::Start(self.pos))?;
            self.partial.clear();
            if first && self.pos > 0 {
                // Skip to the first whole line.
                self.partial.push(b'\0');
            }
            self.open = Some((file, meta.ino()));
        }
        let Some((file, _)) = &mut self.open else {
            return Ok(());
        };
        loop {
            let n = match file.read(&mut self.chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.pos += n as u64;
            let now = SystemTime::now();
            let mut rest = &self.chunk[..n];
            while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                self.partial.extend_from_slice(&rest[..end]);
                rest = &rest[end + 1..];
                if self.partial.first() != Some(&b'\0') {
                    let line = String::from_utf8_lossy(&self.partial);
                    // Never later than now: a clock ahead or a wrong zone must not keep
                    // a line current.
                    let at =
                        line_time::logged_at(&line, &self.clock, now).map_or(now, |t| t.min(now));
                    sink(&line, at);
                }
                self.partial.clear();
            }
            self.partial.extend_from_slice(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn lines(source: &mut Source) -> Vec<String> {
        let mut out = Vec::new();
        source
            .drain(&mut |line: &str, _| out.push(line.to_owned()))
            .unwrap();
        out
    }

    #[test]
    fn a_file_is_followed_through_appends_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kern.log");
        std::fs::write(&path, "old line one\nold line two\nlast old line\n").unwrap();
        // The look-back reaches into "last old line": whole lines only.
        let mut source = Source::File(LogFile::new(path.clone(), 16, Clock::utc()));
        assert_eq!(lines(&mut source), ["last old line"]);

        let mut f = File::options().append(true).open(&path).unwrap();
        write!(f, "new one\nhalf a ").unwrap();
        assert_eq!(lines(&mut source), ["new one"]);
        writeln!(f, "line").unwrap();
        assert_eq!(lines(&mut source), ["half a line"]);

        // logrotate: moved away, a new file in its place.
        std::fs::rename(&path, dir.path().join("kern.log.1")).unwrap();
        std::fs::write(&path, "after rotation\n").unwrap();
        assert_eq!(lines(&mut source), ["after rotation"]);
        // copytruncate: the same file, shorter.
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(lines(&mut source), ["x"]);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_nothing_read() {
        let mut source = Source::File(LogFile::new(
            "/nonexistent/kern.log".into(),
            1024,
            Clock::utc(),
        ));
        assert!(source.drain(&mut |_, _| {}).is_err());
    }
}
