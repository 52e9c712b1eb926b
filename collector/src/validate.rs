//! What the collector accepts: node names that are safe as keys, paths and labels, and
//! reports that are what they claim to be.

use nodemedic_proto::{
    limits::{MAX_ITEMS, MAX_SEQ, MAX_SUBJECT, MAX_TEXT, MAX_UNIT, is_line, is_text},
    v1::NodeReport,
};

use crate::error::Error;

/// Limits on one report's contents (the byte size is enforced by the gRPC decoder).
#[derive(Debug, Clone, Copy)]
pub struct ReportLimits {
    /// Findings in one report.
    pub max_findings: usize,
}

impl Default for ReportLimits {
    fn default() -> Self {
        ReportLimits { max_findings: 1000 }
    }
}

/// A Kubernetes node name: a DNS-1123 subdomain (at most 253 characters of lower-case
/// letters, digits, `-` and `.`, each label starting and ending with a letter or digit).
pub fn node_name(name: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::Invalid(format!(
            "invalid node name {:?}: {why}",
            truncate(name)
        )))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 253 {
        return bad("longer than 253 characters");
    }
    for label in name.split('.') {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label must be 1 to 63 characters");
        }
        if !label.chars().all(|c| ok_char(c) || c == '-') {
            return bad("only lower-case letters, digits, '-' and '.' are allowed (DNS-1123)");
        }
        if !label.starts_with(ok_char) || !label.ends_with(ok_char) {
            return bad("labels must start and end with a letter or digit");
        }
    }
    Ok(())
}

/// A check id: `probe.condition`, lower-case letters, digits and `_`.
pub fn check_id(check: &str) -> bool {
    check.len() <= 128
        && check.contains('.')
        && check.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// A key of evidence or a probe id: ASCII letters, digits, `_`, `-` and `.`, at most 64
/// (kernel rules name evidence after their regex groups, which may be upper case).
fn word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks a report that arrived on `stream_node`'s stream after `previous_seq`.
pub fn report(
    report: &NodeReport,
    stream_node: &str,
    previous_seq: u64,
    limits: ReportLimits,
) -> Result<(), Error> {
    if report.node != stream_node {
        return Err(Error::Invalid(format!(
            "report for node {:?} on the stream of node {stream_node:?}",
            truncate(&report.node)
        )));
    }
    if report.seq == 0 {
        return Err(Error::Invalid("report seq must be at least 1".into()));
    }
    if report.seq > MAX_SEQ {
        return Err(Error::Invalid(format!(
            "report seq {} is above {MAX_SEQ}, the highest a seq may be",
            report.seq
        )));
    }
    if report.seq <= previous_seq {
        return Err(Error::Invalid(format!(
            "report seq {} is not above {previous_seq}, the previous one on this stream: seq must increase",
            report.seq
        )));
    }
    if report.collected_at.is_none() {
        return Err(Error::Invalid(format!(
            "report seq {} has no collected_at",
            report.seq
        )));
    }
    if report.findings.len() > limits.max_findings {
        return Err(Error::Invalid(format!(
            "report seq {} has {} findings, more than the limit of {}",
            report.seq,
            report.findings.len(),
            limits.max_findings
        )));
    }
    if let Some(f) = report.findings.iter().find(|f| !check_id(&f.check)) {
        return Err(Error::Invalid(format!(
            "finding check {:?} is not a check id like \"disk.space\"",
            truncate(&f.check)
        )));
    }
    if let Some(f) = report.findings.iter().find(|f| f.node != stream_node) {
        return Err(Error::Invalid(format!(
            "finding for node {:?} in a report of {stream_node:?}",
            truncate(&f.node)
        )));
    }
    for f in &report.findings {
        let bad = |what: String| {
            Err(Error::Invalid(format!(
                "finding {} of report seq {}: {what}",
                f.check, report.seq
            )))
        };
        if !is_line(&f.subject, MAX_SUBJECT) {
            return bad(format!(
                "subject {:?} is longer than {MAX_SUBJECT} bytes or has control characters",
                truncate(&f.subject)
            ));
        }
        if !is_text(&f.message, MAX_TEXT) {
            return bad(format!(
                "message is longer than {MAX_TEXT} bytes or has control characters"
            ));
        }
        if f.evidence.len() > MAX_ITEMS {
            return bad(format!(
                "{} evidence items, more than {MAX_ITEMS}",
                f.evidence.len()
            ));
        }
        for e in &f.evidence {
            if !word(&e.key) || !is_line(&e.unit, MAX_UNIT) {
                return bad(format!(
                    "evidence key {:?} or its unit {:?} is not a word of at most 64 letters, digits, '_', '-' or '.'",
                    truncate(&e.key),
                    truncate(&e.unit)
                ));
            }
            if let Some(nodemedic_proto::v1::evidence::Value::Text(t)) = &e.value
                && !is_text(t, MAX_TEXT)
            {
                return bad(format!(
                    "evidence {} is longer than {MAX_TEXT} bytes or has control characters",
                    e.key
                ));
            }
        }
    }
    if report.probes.len() > MAX_ITEMS {
        return Err(Error::Invalid(format!(
            "report seq {} has {} probe runs, more than {MAX_ITEMS}",
            report.seq,
            report.probes.len()
        )));
    }
    for p in &report.probes {
        if !word(&p.probe) || !p.checks.iter().all(|c| check_id(c)) || !is_text(&p.error, MAX_TEXT)
        {
            return Err(Error::Invalid(format!(
                "probe run {:?} of report seq {}: the probe id is not a word of at most 64, a check id is malformed, or the error is longer than {MAX_TEXT} bytes or has control characters",
                truncate(&p.probe),
                report.seq
            )));
        }
    }
    // Every other value: enums known, times and numbers within bounds, strings free of
    // control characters (whatever the section: mounts, processes, kernel lines, pods).
    nodemedic_proto::values::check(report, std::time::SystemTime::now()).map_err(|e| {
        Error::Invalid(format!(
            "report seq {}: {}",
            report.seq,
            shorten(&e.to_string(), 300)
        ))
    })?;
    Ok(())
}

/// At most `max` characters of `s`, for errors and logs.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// At most 64 characters of a hostile string, for error messages and logs.
pub fn truncate(s: &str) -> String {
    shorten(s, 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodemedic_proto::v1::{Finding, Severity};

    #[test]
    fn node_names_are_dns_1123_subdomains() {
        for ok in ["node-1", "ip-10-0-0-1.ec2.internal", "a", "0n"] {
            node_name(ok).unwrap();
        }
        for bad in [
            "",
            "Node1",
            "node_1",
            "-node",
            "node-",
            "a..b",
            "../etc/passwd",
            "node 1",
            "nöde",
            &"a".repeat(254),
        ] {
            assert!(node_name(bad).is_err(), "{bad:?} accepted");
        }
        let err = node_name(&"x".repeat(300)).unwrap_err().to_string();
        assert!(
            err.len() < 200,
            "hostile names are truncated in errors: {err}"
        );
    }

    fn report_of(node: &str, seq: u64) -> NodeReport {
        NodeReport {
            node: node.into(),
            seq,
            collected_at: Some(nodemedic_proto::time::timestamp(
                std::time::SystemTime::now(),
            )),
            findings: vec![Finding {
                node: node.into(),
                ..Finding::fail("disk.space", Severity::Warning, "/", "x".into())
            }],
            ..Default::default()
        }
    }

    #[test]
    fn reports_must_match_their_stream() {
        let limits = ReportLimits::default();
        report(&report_of("n1", 5), "n1", 4, limits).unwrap();
        assert!(
            report(&report_of("n2", 5), "n1", 4, limits)
                .unwrap_err()
                .to_string()
                .contains("stream of node")
        );
        assert!(
            report(&report_of("n1", 4), "n1", 4, limits)
                .unwrap_err()
                .to_string()
                .contains("must increase")
        );
        let mut r = report_of("n1", 5);
        r.findings[0].check = "DROP TABLE".into();
        assert!(report(&r, "n1", 0, limits).is_err());
        let mut r = report_of("n1", 5);
        r.findings = vec![r.findings[0].clone(); 2];
        assert!(
            report(&r, "n1", 0, ReportLimits { max_findings: 1 })
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
    }

    #[test]
    fn strings_that_become_keys_and_evidence_are_bounded() {
        use nodemedic_proto::v1::{Evidence, ProbeRun, evidence::Value};
        let limits = ReportLimits::default();
        let refused = |change: &dyn Fn(&mut NodeReport)| {
            let mut r = report_of("n1", 5);
            change(&mut r);
            report(&r, "n1", 0, limits).is_err()
        };
        assert!(!refused(&|_| ()));
        assert!(refused(
            &|r| r.findings[0].subject = "x".repeat(MAX_SUBJECT + 1)
        ));
        assert!(refused(&|r| r.findings[0].subject = "/var\n/lib".into()));
        assert!(refused(
            &|r| r.findings[0].message = "m".repeat(MAX_TEXT + 1)
        ));
        assert!(!refused(
            &|r| r.findings[0].message = "failed:\n  caused by: EOF".into()
        ));
        assert!(refused(
            &|r| r.findings[0].message = "\u{1b}[2J cleared".into()
        ));
        let evidence = |key: &str, text: &str| Evidence {
            key: key.into(),
            value: Some(Value::Text(text.into())),
            unit: String::new(),
        };
        assert!(!refused(
            &|r| r.findings[0].evidence = vec![evidence("mount_point", "/var")]
        ));
        assert!(refused(
            &|r| r.findings[0].evidence = vec![evidence("mount point", "/var")]
        ));
        assert!(refused(
            &|r| r.findings[0].evidence = vec![evidence("k", &"t".repeat(MAX_TEXT + 1))]
        ));
        assert!(refused(
            &|r| r.findings[0].evidence = vec![evidence("k", "x"); MAX_ITEMS + 1]
        ));
        let probe = |id: &str| ProbeRun {
            probe: id.into(),
            ok: true,
            ..Default::default()
        };
        assert!(!refused(&|r| r.probes = vec![probe("disk")]));
        assert!(refused(&|r| r.probes = vec![probe("../disk")]));
        assert!(refused(&|r| r.probes = vec![probe("disk"); MAX_ITEMS + 1]));
        // What the agent sends is fitted first, so a node's odd state never makes its
        // reports unacceptable.
        let mut hostile = report_of("n1", 5);
        hostile.findings[0].subject = format!("/mnt/a\nb{}", "x".repeat(2 * MAX_SUBJECT));
        hostile.findings[0].message = "\u{1b}[31mred".into();
        hostile.findings[0].evidence = vec![evidence("k", "\u{0}"); 2 * MAX_ITEMS];
        assert!(report(&hostile, "n1", 0, limits).is_err());
        nodemedic_proto::limits::fit_report(&mut hostile);
        report(&hostile, "n1", 0, limits).unwrap();
    }
}
