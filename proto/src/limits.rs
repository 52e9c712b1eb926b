//! What the collector accepts in a report's free strings, shared by both sides: the
//! collector refuses a report that breaks these (`validate::report`), and the agent fits
//! every report to them before sending ([`fit_report`]), so nothing a node's state holds (a
//! mount point with a line break in its name, a multi-kilobyte error) can make its reports
//! unacceptable and the node fall silent.

use crate::v1::{NodeReport, evidence::Value};

/// Metadata key on the status that ends a stream for an invalid report: the report's seq.
/// Sent again it would be refused again, so the agent drops that report.
pub const REFUSED_SEQ: &str = "nodemedic-refused-seq";

/// The highest seq a report may carry: seqs are 1 to `MAX_SEQ`, rising on each node, with
/// gaps allowed (reports dropped by the agent); the store keeps them as SQLite integers.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// Longest finding subject (part of a finding's key in the store), bytes.
pub const MAX_SUBJECT: usize = 1024;
/// Longest finding message, evidence text or probe error, bytes.
pub const MAX_TEXT: usize = 4096;
/// Longest evidence unit, bytes.
pub const MAX_UNIT: usize = 64;
/// Most evidence items on one finding, and probe runs in one report.
pub const MAX_ITEMS: usize = 64;

/// One line (a subject, a unit): no control characters but tab.
pub fn is_line(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(|c| c.is_control() && c != '\t')
}

/// Free text (a message, evidence): no control characters but tab and line breaks.
pub fn is_text(s: &str, max: usize) -> bool {
    s.len() <= max
        && !s
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// `s` made to pass `allowed` within `max` bytes: refused characters written as
/// `\u{…}`, then cut at a character boundary.
fn fit(s: &mut String, max: usize, allowed: fn(char) -> bool) {
    if s.chars().any(|c| !allowed(c)) {
        *s = s
            .chars()
            .map(|c| {
                if allowed(c) {
                    c.to_string()
                } else {
                    c.escape_unicode().to_string()
                }
            })
            .collect();
    }
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// `s` as free text (no control characters but tab and line breaks) within `max` bytes.
pub fn fit_text(s: &mut String, max: usize) {
    fit(s, max, text_char);
}

fn line_char(c: char) -> bool {
    !c.is_control() || c == '\t'
}

fn text_char(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

/// Fits a report's findings to the limits: subjects and units to one line, messages and
/// evidence text bounded, at most [`MAX_ITEMS`] evidence items.
pub fn fit_report(report: &mut NodeReport) {
    for f in &mut report.findings {
        fit(&mut f.subject, MAX_SUBJECT, line_char);
        fit(&mut f.message, MAX_TEXT, text_char);
        f.evidence.truncate(MAX_ITEMS);
        for e in &mut f.evidence {
            fit(&mut e.unit, MAX_UNIT, line_char);
            if let Some(Value::Text(t)) = &mut e.value {
                fit(t, MAX_TEXT, text_char);
            }
        }
    }
    for p in &mut report.probes {
        fit(&mut p.error, MAX_TEXT, text_char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Evidence, Finding, ProbeRun};

    #[test]
    fn a_report_is_fitted_to_what_the_collector_accepts() {
        let mut report = NodeReport {
            findings: vec![Finding {
                subject: "/mnt/evil\nname".into(),
                message: format!("\u{1b}[2J{}", "é".repeat(MAX_TEXT)),
                evidence: vec![
                    Evidence {
                        key: "mount_point".into(),
                        value: Some(Value::Text("a\nb".into())),
                        unit: String::new(),
                    };
                    MAX_ITEMS + 5
                ],
                ..Default::default()
            }],
            probes: vec![ProbeRun {
                error: "x".repeat(MAX_TEXT * 2),
                ..Default::default()
            }],
            ..Default::default()
        };
        fit_report(&mut report);
        let f = &report.findings[0];
        assert_eq!(f.subject, "/mnt/evil\\u{a}name");
        assert!(is_line(&f.subject, MAX_SUBJECT));
        assert!(f.message.starts_with("\\u{1b}[2J"));
        assert!(is_text(&f.message, MAX_TEXT), "{}", f.message.len());
        assert_eq!(f.evidence.len(), MAX_ITEMS);
        assert_eq!(
            f.evidence[0].value,
            Some(Value::Text("a\nb".into())),
            "line breaks stay in text"
        );
        assert_eq!(report.probes[0].error.len(), MAX_TEXT);
    }
}
