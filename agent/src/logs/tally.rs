//! Matching lines counted per check and subject, in bounded memory: a storm of a million
//! lines costs the same as one line per (check, subject), and distinct subjects beyond the
//! bound fold into `(other)`. Counts are never dropped.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use nodemedic_proto::{
    time::timestamp,
    v1::{Evidence, KernelEvent, Severity},
};

/// Where folded subjects are counted.
pub const OTHER: &str = "(other)";

/// A line is kept as evidence up to this many bytes.
const MAX_LINE: usize = 512;

/// One counted match.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<'a> {
    /// The check it counts towards.
    pub check: &'a str,
    /// What it is about.
    pub subject: String,
    /// The rule's reason.
    pub reason: &'a str,
    /// How bad.
    pub severity: Severity,
    /// Captured fields.
    pub fields: Vec<(String, String)>,
}

#[derive(Debug)]
struct Event {
    reason: String,
    severity: Severity,
    total: u64,
    /// Matches per minute (minutes since the epoch), oldest first, the window's worth.
    minutes: VecDeque<(u64, u64)>,
    first_line: String,
    last_line: String,
    first_at: SystemTime,
    last_at: SystemTime,
    fields: Vec<(String, String)>,
}

/// The counts.
#[derive(Debug)]
pub struct Tally {
    window: Duration,
    max_subjects: usize,
    events: BTreeMap<(String, String), Event>,
    /// Lines read.
    pub lines_read: u64,
    /// Lines that at least one rule matched.
    pub lines_matched: u64,
    /// Records lost before they were read.
    pub records_missed: u64,
    /// Matches counted under [`OTHER`].
    pub subjects_folded: u64,
}

impl Tally {
    /// Counts over `window`, keeping at most `max_subjects` distinct (check, subject) pairs.
    pub fn new(window: Duration, max_subjects: usize) -> Self {
        Tally {
            window,
            max_subjects: max_subjects.max(1),
            events: BTreeMap::new(),
            lines_read: 0,
            lines_matched: 0,
            records_missed: 0,
            subjects_folded: 0,
        }
    }

    /// Counts one match of `line`, logged at `at`.
    pub fn add(&mut self, hit: Hit<'_>, line: &str, at: SystemTime) {
        let mut key = (hit.check.to_owned(), hit.subject);
        if !self.events.contains_key(&key) && self.events.len() >= self.max_subjects {
            key.1 = OTHER.to_owned();
            self.subjects_folded += 1;
        }
        let line = truncate(line, MAX_LINE);
        let event = self.events.entry(key).or_insert_with(|| Event {
            reason: hit.reason.to_owned(),
            severity: hit.severity,
            total: 0,
            minutes: VecDeque::new(),
            first_line: line.to_owned(),
            last_line: String::new(),
            first_at: at,
            last_at: at,
            fields: Vec::new(),
        });
        event.total += 1;
        event.severity = event.severity.max(hit.severity);
        event.last_line.clear();
        event.last_line.push_str(line);
        event.last_at = event.last_at.max(at);
        event.fields = hit.fields;
        let minute = minute(at);
        match event.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n += 1,
            _ => event.minutes.push_back((minute, 1)),
        }
        let keep = self.window.as_secs().div_ceil(60) as usize + 1;
        while event.minutes.len() > keep {
            event.minutes.pop_front();
        }
    }

    /// The events with a match in the window ending at `now`; older ones are forgotten.
    pub fn events(&mut self, now: SystemTime) -> Vec<KernelEvent> {
        let since = now.checked_sub(self.window).unwrap_or(UNIX_EPOCH);
        self.events.retain(|_, e| e.last_at >= since);
        let first_minute = minute(since);
        self.events
            .iter()
            .map(|((check, subject), e)| KernelEvent {
                check: check.clone(),
                subject: subject.clone(),
                reason: e.reason.clone(),
                severity: e.severity as i32,
                count: e
                    .minutes
                    .iter()
                    .filter(|(m, _)| *m >= first_minute)
                    .map(|(_, n)| n)
                    .sum(),
                total: e.total,
                first_line: e.first_line.clone(),
                last_line: e.last_line.clone(),
                first_at: Some(timestamp(e.first_at)),
                last_at: Some(timestamp(e.last_at)),
                fields: e
                    .fields
                    .iter()
                    .map(|(k, v)| Evidence::text(k, v.clone()))
                    .collect(),
            })
            .collect()
    }
}

fn minute(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 60
}

/// `line` cut to at most `max` bytes, at a character boundary.
pub fn truncate(line: &str, max: usize) -> &str {
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(check: &str, subject: &str) -> Hit<'static> {
        Hit {
            check: if check == "a" { "kernel.a" } else { "kernel.b" },
            subject: subject.into(),
            reason: "R",
            severity: Severity::Warning,
            fields: vec![],
        }
    }

    #[test]
    fn counts_in_the_window_and_since_the_start() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut t = Tally::new(Duration::from_secs(3600), 10);
        t.add(hit("a", "sda"), "first", t0);
        t.add(hit("a", "sda"), "second", t0 + Duration::from_secs(1800));
        t.add(hit("a", "sda"), "third", t0 + Duration::from_secs(3000));
        let later = t0 + Duration::from_secs(5000);
        let events = t.events(later);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].count, events[0].total), (2, 3));
        assert_eq!(
            (events[0].first_line.as_str(), events[0].last_line.as_str()),
            ("first", "third")
        );
        assert!(
            t.events(t0 + Duration::from_secs(3000 + 3601)).is_empty(),
            "forgotten an hour after the last match"
        );
    }

    #[test]
    fn subjects_beyond_the_bound_fold_and_are_still_counted() {
        let now = SystemTime::now();
        let mut t = Tally::new(Duration::from_secs(3600), 3);
        for i in 0..1000 {
            t.add(hit("a", &format!("dev{i}")), &"x".repeat(10_000), now);
        }
        let events = t.events(now);
        assert_eq!(events.len(), 4);
        let other = events.iter().find(|e| e.subject == OTHER).unwrap();
        assert_eq!(other.count, 997);
        assert_eq!(t.subjects_folded, 997);
        assert_eq!(events.iter().map(|e| e.count).sum::<u64>(), 1000);
        assert!(events.iter().all(|e| e.last_line.len() == MAX_LINE));
    }
}
