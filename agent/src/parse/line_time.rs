//! When a kernel log line read from a file was logged, from the line itself, so that a
//! line from yesterday is not counted as current when the agent starts reading the file:
//!
//! - `2024-04-17T00:26:33.540821+05:30 host kernel: …` (RFC 3339, with or without a
//!   `<priority>` before it; without an offset, in the node's zone);
//! - `Jun 29 07:24:44 host kernel: …` (syslog: no year, so the latest one that is not in
//!   the future; in the node's zone);
//! - `Tue Aug 12 16:40:43 2025 kern.crit kernel: …` (busybox/OpenWrt `logread`) and
//!   `[Thu Dec  7 00:05:14 2017] …` (`dmesg -T`), in the node's zone;
//! - `[ 5128.549167] …` (dmesg: seconds since boot), given the boot time; a value above
//!   the current uptime is from an earlier boot, and is dated at the boot.
//!
//! A logger's wall clock is preferred to the kernel's seconds in the same line. A line with
//! none of these has no time of its own.

use std::time::{Duration, SystemTime};

use jiff::{
    Timestamp,
    civil::{Date, DateTime, Time},
    tz::TimeZone,
};

/// What dating a line needs: the node's time zone and boot time.
#[derive(Debug, Clone)]
pub struct Clock {
    /// The node's zone (its `/etc/localtime`), for times printed without an offset.
    pub zone: TimeZone,
    /// When the node booted, for `[seconds]` stamps; `None` when unknown.
    pub boot: Option<SystemTime>,
}

impl Clock {
    /// UTC and no boot time.
    pub fn utc() -> Self {
        Clock {
            zone: TimeZone::UTC,
            boot: None,
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// When `line` says it was logged, read at `now`; `None` when it does not say.
pub fn logged_at(line: &str, clock: &Clock, now: SystemTime) -> Option<SystemTime> {
    let rest = super::kmsg::without_priority(line.trim_start());
    if let Some(t) = rfc3339(rest, &clock.zone)
        .or_else(|| syslog(rest, &clock.zone, now))
        .or_else(|| ctime(rest, &clock.zone))
    {
        return Some(t);
    }
    // `[Thu Dec  7 00:05:14 2017]` or `[ 5128.549167]`, at the start or after a logger's
    // `kernel:` tag.
    let stamp = bracketed(rest).or_else(|| {
        let head = rest.get(..rest.len().min(120))?;
        let at = head.find("kernel:")?;
        bracketed(rest[at + "kernel:".len()..].trim_start())
    })?;
    ctime(stamp, &clock.zone).or_else(|| since_boot(stamp, clock.boot?))
}

/// The text inside a leading `[…]`.
fn bracketed(text: &str) -> Option<&str> {
    text.strip_prefix('[')?
        .split_once(']')
        .map(|(s, _)| s.trim())
}

/// `2024-04-17T00:26:33.540821+05:30`, the first word.
fn rfc3339(text: &str, zone: &TimeZone) -> Option<SystemTime> {
    let word = text.split_whitespace().next()?;
    if word.len() < 19 || word.as_bytes()[10] != b'T' {
        return None;
    }
    if let Ok(t) = word.parse::<Timestamp>() {
        return Some(t.into());
    }
    let civil: DateTime = word.parse().ok()?;
    Some(civil.to_zoned(zone.clone()).ok()?.timestamp().into())
}

/// `Jun 29 07:24:44` (the day may be space-padded): the latest such time not after `now`
/// (a day of grace for clocks apart).
fn syslog(text: &str, zone: &TimeZone, now: SystemTime) -> Option<SystemTime> {
    let mut words = text.split_whitespace();
    let month = month(words.next()?)?;
    let day: i8 = words.next()?.parse().ok()?;
    let time = clock_time(words.next()?)?;
    let this_year = Timestamp::try_from(now).ok()?.to_zoned(zone.clone()).year();
    let grace = now + Duration::from_secs(86_400);
    (0..2).find_map(|back| {
        let date = Date::new(this_year - back, month, day).ok()?;
        let t: SystemTime = date
            .to_datetime(time)
            .to_zoned(zone.clone())
            .ok()?
            .timestamp()
            .into();
        (t <= grace).then_some(t)
    })
}

/// `Thu Dec  7 00:05:14 2017`.
fn ctime(text: &str, zone: &TimeZone) -> Option<SystemTime> {
    let mut words = text.split_whitespace();
    if !DAYS.contains(&words.next()?) {
        return None;
    }
    let month = month(words.next()?)?;
    let day: i8 = words.next()?.parse().ok()?;
    let time = clock_time(words.next()?)?;
    let year: i16 = words.next()?.parse().ok()?;
    let date = Date::new(year, month, day).ok()?;
    Some(
        date.to_datetime(time)
            .to_zoned(zone.clone())
            .ok()?
            .timestamp()
            .into(),
    )
}

/// `5128.549167` seconds after `boot`; a stamp past now is from an earlier boot.
fn since_boot(stamp: &str, boot: SystemTime) -> Option<SystemTime> {
    let (s, us) = stamp.split_once('.')?;
    if !(s.bytes().all(|b| b.is_ascii_digit()) && us.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let at = boot.checked_add(Duration::from_secs(s.parse().ok()?))?;
    Some(if at > SystemTime::now() { boot } else { at })
}

fn month(word: &str) -> Option<i8> {
    MONTHS.iter().position(|m| *m == word).map(|i| i as i8 + 1)
}

/// `07:24:44`, with any fraction of a second dropped.
fn clock_time(word: &str) -> Option<Time> {
    let mut parts = word.split('.').next()?.split(':');
    let mut next = || parts.next()?.parse::<i8>().ok();
    let (h, m, s) = (next()?, next()?, next()?);
    if parts.next().is_some() {
        return None;
    }
    Time::new(h, m, s, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        rfc3339.parse::<Timestamp>().unwrap().into()
    }

    #[test]
    fn every_format_of_the_real_logs_is_dated() {
        let now = at("2025-03-01T12:00:00Z");
        let clock = Clock {
            zone: TimeZone::UTC,
            boot: Some(at("2025-03-01T10:00:00Z")),
        };
        for (line, want) in [
            (
                "<3>2024-04-17T00:26:33.540832+05:30 host kernel: [   29.782109] print_req_error",
                "2024-04-16T18:56:33Z",
            ),
            (
                "2016-09-12T14:15:22.100770+01:00 ok kernel: [ 1099.228378] EXT4-fs error",
                "2016-09-12T13:15:22Z",
            ),
            // No year: this year's, or last year's when this year's is ahead.
            (
                "Feb 23 03:28:16 kernel: EDAC MC1: 1 CE memory scrubbing error",
                "2025-02-23T03:28:16Z",
            ),
            (
                "Dec  7 06:45:12 errol kernel: [21584690.529862] mce: [Hardware Error]",
                "2024-12-07T06:45:12Z",
            ),
            (
                "Tue Aug 12 16:40:43 2025 kern.crit kernel: [1317557.006117] mtk_soc_eth",
                "2025-08-12T16:40:43Z",
            ),
            (
                "[Mon Jul 19 10:37:35 2021] XFS (nbd0): Unmount and run xfs_repair",
                "2021-07-19T10:37:35Z",
            ),
            (
                "[  209.639283] BUG: kernel NULL pointer",
                "2025-03-01T10:03:29Z",
            ),
        ] {
            let got = logged_at(line, &clock, now).unwrap_or_else(|| panic!("{line}"));
            let second = Timestamp::try_from(got).unwrap().as_second();
            let got = Timestamp::from_second(second).unwrap();
            assert_eq!(got.to_string(), want, "{line}");
        }
    }

    #[test]
    fn a_zone_applies_to_times_without_an_offset() {
        let clock = Clock {
            zone: TimeZone::fixed(jiff::tz::offset(2)),
            boot: None,
        };
        let now = at("2025-03-01T12:00:00Z");
        let t = logged_at("Mar  1 11:00:00 node kernel: x", &clock, now).unwrap();
        assert_eq!(t, at("2025-03-01T09:00:00Z"));
    }

    #[test]
    fn seconds_since_boot_need_the_boot_and_an_earlier_boot_is_dated_at_the_boot() {
        let now = SystemTime::now();
        let boot = now - Duration::from_secs(100);
        assert_eq!(logged_at("[ 50.000001] x", &Clock::utc(), now), None);
        let clock = Clock {
            boot: Some(boot),
            ..Clock::utc()
        };
        assert_eq!(
            logged_at("[ 50.000001] x", &clock, now),
            Some(boot + Duration::from_secs(50))
        );
        assert_eq!(logged_at("[ 5000000.1] x", &clock, now), Some(boot));
    }

    #[test]
    fn lines_without_a_time_of_their_own() {
        let now = SystemTime::now();
        for line in [
            "",
            "Killed process 1012 (heapster)",
            "[sdb] tag#6 FAILED",
            "Feb 30 10:00:00 x kernel: no such day",
            "Jun 29 25:61:00 x",
            "Thu Dec 7 00:05:14",
            "2024-04-17 not a time",
        ] {
            assert_eq!(logged_at(line, &Clock::utc(), now), None, "{line:?}");
        }
    }
}
