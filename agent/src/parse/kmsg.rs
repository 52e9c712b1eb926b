//! Kernel log lines: `/dev/kmsg` records, and the message inside a line of any of the log
//! formats the kernel's words end up in (dmesg, `dmesg -T`, syslog's kern.log, RFC 5424
//! with a `<priority>` prefix, journalctl, or the bare message).

use super::ParseError;

/// One `/dev/kmsg` record: `6,1234,5678901,-;message` followed by ` KEY=value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The syslog level, 0 (emergency) to 7 (debug).
    pub level: u8,
    /// The record's sequence number; a gap means the kernel overwrote records unread.
    pub seq: u64,
    /// When it was logged, in microseconds since boot.
    pub micros: u64,
    /// The message, without the dictionary lines.
    pub message: &'a str,
}

/// Parses one record as one `read()` of `/dev/kmsg` returns it.
pub fn record(text: &str) -> Result<Record<'_>, ParseError> {
    let (header, rest) = text
        .split_once(';')
        .ok_or_else(|| ParseError::new(1, format!("no ';' after the header in {text:?}")))?;
    let mut fields = header.split(',');
    let mut number = |what: &str| {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| ParseError::new(1, format!("no {what} in header {header:?}")))
    };
    let prefix = number("priority")?;
    let seq = number("sequence number")?;
    let micros = number("timestamp")?;
    // Dictionary lines (` SUBSYSTEM=scsi`) follow the first newline.
    let message = rest.split('\n').next().unwrap_or_default();
    Ok(Record {
        level: (prefix & 7) as u8,
        seq,
        micros,
        message: message.trim_end(),
    })
}

/// The kernel's message inside a log line, without what a logger put around it:
///
/// - `<6>2024-04-17T00:26:33.540821+05:30 host kernel: [   29.75] msg` (RFC 5424)
/// - `Jun 29 07:24:44 compute-11 kernel: msg` (syslog), `...kernel:msg` (wall message)
/// - `[ 5128.549167] msg` (dmesg), `[Thu Dec  7 00:05:14 2017] msg` (`dmesg -T`)
/// - `msg`
pub fn message(line: &str) -> &str {
    let mut rest = without_priority(line.trim_end());
    // A logger's prefix ends with the "kernel:" tag, within the first few dozen bytes.
    if let Some(at) = rest
        .get(..rest.len().min(120))
        .and_then(|head| head.find("kernel:"))
    {
        rest = &rest[at + "kernel:".len()..];
    }
    rest = rest.trim_start();
    if let Some(after) = rest.strip_prefix('[')
        && let Some((stamp, tail)) = after.split_once(']')
        && is_timestamp(stamp)
    {
        rest = tail.trim_start();
    }
    rest
}

/// `line` without a leading RFC 5424 `<priority>`.
pub fn without_priority(line: &str) -> &str {
    if let Some(after) = line.strip_prefix('<')
        && let Some((priority, tail)) = after.split_once('>')
        && !priority.is_empty()
        && priority.bytes().all(|b| b.is_ascii_digit())
    {
        tail
    } else {
        line
    }
}

/// `   29.751657` (seconds since boot) or `Thu Dec  7 00:05:14 2017` (`dmesg -T`).
fn is_timestamp(stamp: &str) -> bool {
    let stamp = stamp.trim();
    let seconds = stamp
        .split_once('.')
        .is_some_and(|(s, us)| is_digits(s) && is_digits(us));
    let calendar = stamp.len() >= 20
        && stamp.as_bytes()[3] == b' '
        && stamp.as_bytes()[..3].iter().all(u8::is_ascii_alphabetic)
        && stamp.contains(':')
        && stamp
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b':');
    seconds || calendar
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kmsg_record_with_its_dictionary() {
        let r = record("3,1234,5678901,-;sd 1:0:0:0: [sdb] Medium Error\n SUBSYSTEM=scsi\n DEVICE=+scsi:1:0:0:0\n")
            .unwrap();
        assert_eq!(
            r,
            Record {
                level: 3,
                seq: 1234,
                micros: 5_678_901,
                message: "sd 1:0:0:0: [sdb] Medium Error"
            }
        );
        // Facility bits are above the level.
        assert_eq!(record("14,1,2,-;x").unwrap().level, 6);
        assert!(record("garbage").is_err());
        assert!(record("6,x,2,-;m").is_err());
    }

    #[test]
    fn the_message_inside_every_log_format_of_the_fixtures() {
        for (line, want) in [
            (
                "<3>2024-04-17T00:26:33.540832+05:30 host-name kernel: [   29.782109] print_req_error: critical medium error, dev sdb, sector 8724376",
                "print_req_error: critical medium error, dev sdb, sector 8724376",
            ),
            (
                "Jun 29 07:24:44 compute-11 kernel: memory: usage 1048576kB, limit 1048576kB, failcnt 141",
                "memory: usage 1048576kB, limit 1048576kB, failcnt 141",
            ),
            (
                "[Thu Dec  7 00:05:15 2017] Killed process 28438 (java) total-vm:20255636kB",
                "Killed process 28438 (java) total-vm:20255636kB",
            ),
            (
                "[ 5128.789091] EXT4-fs (sda9): Remounting filesystem read-only",
                "EXT4-fs (sda9): Remounting filesystem read-only",
            ),
            (
                "kernel:watchdog: BUG: soft lockup - CPU#5 stuck for 715s! [flb-pipeline:15343]",
                "watchdog: BUG: soft lockup - CPU#5 stuck for 715s! [flb-pipeline:15343]",
            ),
            (
                "[2834232.639992] nf_conntrack: nf_conntrack: table full, dropping packet ",
                "nf_conntrack: nf_conntrack: table full, dropping packet",
            ),
            // A bracket that is not a timestamp stays.
            ("[sdb] tag#6 FAILED", "[sdb] tag#6 FAILED"),
            (
                "Killed process 1012 (heapster)",
                "Killed process 1012 (heapster)",
            ),
        ] {
            assert_eq!(message(line), want, "{line}");
        }
    }
}
