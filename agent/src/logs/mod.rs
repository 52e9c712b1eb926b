//! Reading logs by rules: what the kernel probe and the journal probe share. [`rules`] are
//! data in node-problem-detector's format (its files load as they are); [`tally`] counts
//! the matches per check and subject in bounded memory, so a storm costs what one line does.

pub mod rules;
pub mod tally;

use std::time::Duration;

use nodemedic_proto::v1::{Evidence, Finding, KernelEvent, Severity};

/// The finding of one check and subject's matches in the window: `what` names the
/// matches ("OOM kills"); the evidence holds the counts, the first and last line and what
/// the pattern captured.
pub fn finding(e: &KernelEvent, what: &str, window: Duration) -> Finding {
    let about = if e.subject.is_empty() {
        String::new()
    } else {
        format!(" ({})", e.subject)
    };
    let mut finding = Finding::fail(
        &e.check,
        Severity::try_from(e.severity).unwrap_or(Severity::Warning),
        &e.subject,
        String::new(),
    )
    .with(Evidence::count("count", e.count))
    .with(Evidence::count("total", e.total))
    .with(Evidence::text("reason", e.reason.clone()))
    .with(Evidence::text("first_line", e.first_line.clone()))
    .with(Evidence::text("last_line", e.last_line.clone()));
    finding.evidence.extend(e.fields.iter().cloned());
    let last = match (finding.text("process"), finding.text("pid")) {
        (Some(process), Some(pid)) => format!("{process} (pid {pid})"),
        _ => shorten(&e.last_line, 160),
    };
    finding.message = format!(
        "{} {what}{about} in the last {}; last: {last}",
        e.count,
        humantime::format_duration(window),
    );
    finding
}

/// `text` cut to at most `max` bytes, with "…" when cut.
fn shorten(text: &str, max: usize) -> String {
    let cut = tally::truncate(text, max);
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut.to_owned()
    }
}
