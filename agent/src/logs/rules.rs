//! Log rules as data, for the kernel log and for the systemd journal ([`LogKind`]):
//! node-problem-detector's monitor files (`kernel-monitor.json`, and for the journal
//! `systemd-monitor.json`, `docker-monitor.json`) load as they are, and nodemedic's own files
//! (`agent/kernel-rules/nodemedic.json`, `agent/journal-rules/nodemedic.json`) are the same
//! format with a few more fields: `check`, `severity`, `subject`, `ignore`,
//! `continues` (the line that begins the event a line belongs to, so one oops counts once), a
//! `reasons` table that says which check a rule without `check` counts towards, and
//! `minor_devices`, the devices whose errors are worth no more than info.
//!
//! As in node-problem-detector, a pattern matches the end of a message; a pattern with a
//! line break matches the end of the last few messages joined by line breaks ([`Recent`]).
//! A journal file's rules apply to the messages of its `pluginConfig.source` (the
//! `SYSLOG_IDENTIFIER`, as in node-problem-detector); a file for the other log, and rules
//! that run programs, are skipped, each with a warning ([`RuleSet::skipped`]).

use std::{
    collections::{BTreeMap, VecDeque},
    path::Path,
};

use nodemedic_proto::checks;
use nodemedic_proto::v1::Severity;
use regex::{Regex, RegexSet};

use super::tally;
use serde::Deserialize;

/// Which log a rule set reads, and what follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogKind {
    /// How the log is named in messages.
    pub name: &'static str,
    /// Files of node-problem-detector's `journald` plugin are for this log.
    pub journald: bool,
    /// Every check of its rules starts with this.
    pub check_prefix: &'static str,
    /// The check a rule whose reason nothing maps counts towards.
    pub unmapped: &'static str,
    /// nodemedic's built-in rules for it.
    pub builtin: &'static str,
}

/// The kernel log (`/dev/kmsg`, kern.log).
pub const KERNEL: LogKind = LogKind {
    name: "kernel",
    journald: false,
    check_prefix: "kernel.",
    unmapped: checks::KERNEL_EVENT,
    builtin: include_str!("../../kernel-rules/nodemedic.json"),
};

/// The systemd journal.
pub const JOURNAL: LogKind = LogKind {
    name: "journal",
    journald: true,
    check_prefix: "journal.",
    unmapped: checks::JOURNAL_EVENT,
    builtin: include_str!("../../journal-rules/nodemedic.json"),
};

/// A rule file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("kernel rule file {file}: {reason}")]
pub struct RuleError {
    /// The file.
    pub file: String,
    /// What is wrong, naming the rule.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
struct RuleFile {
    #[serde(default)]
    source: String,
    /// node-problem-detector's log source: `kmsg`, `filelog`, `journald`, `custom`.
    #[serde(default)]
    plugin: String,
    #[serde(default, rename = "pluginConfig")]
    plugin_config: PluginConfig,
    #[serde(default)]
    reasons: BTreeMap<String, ReasonMap>,
    /// A pattern on the message naming a device that is not storage the node depends on.
    minor_devices: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
    /// node-problem-detector's node conditions, each with its reason when there is no problem.
    #[serde(default)]
    conditions: Vec<RawCondition>,
}

/// A condition a rule file declares (node-problem-detector's permanent rules): its type,
/// the reasons of the rules that raise it, and its reason when there is no problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCondition {
    /// The condition's `type`.
    pub kind: String,
    /// Its reason while `False` (the file's, else `No<type>`).
    pub ok: String,
    /// The rule reasons that raise it.
    pub reasons: std::collections::BTreeSet<String>,
}

#[derive(Debug, Deserialize)]
struct RawCondition {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
struct PluginConfig {
    #[serde(default)]
    source: String,
}

#[derive(Debug, Clone, Deserialize)]
struct ReasonMap {
    check: String,
    severity: SeverityName,
}

#[derive(Debug, Deserialize)]
struct RawRule {
    #[serde(rename = "type", default)]
    kind: String,
    reason: String,
    /// Absent in node-problem-detector's `custom` plugin rules, which run a program.
    pattern: Option<String>,
    check: Option<String>,
    severity: Option<SeverityName>,
    subject: Option<String>,
    ignore: Option<String>,
    /// A pattern for the line that begins the event this line belongs to: when one of the
    /// last [`CONTINUES_WITHIN`] lines matches it, this line is not counted again.
    continues: Option<String>,
    /// node-problem-detector's: the node condition a `permanent` rule sets.
    condition: Option<String>,
    /// nodemedic's: matches in the window before there is a finding.
    at_least: Option<u64>,
    /// nodemedic's: the journal source (`SYSLOG_IDENTIFIER`) this rule reads, instead of
    /// its file's.
    source: Option<String>,
}

/// How many lines back a rule's `continues` pattern is looked for.
const CONTINUES_WITHIN: usize = 8;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SeverityName {
    Info,
    Warning,
    Critical,
}

impl From<SeverityName> for Severity {
    fn from(s: SeverityName) -> Self {
        match s {
            SeverityName::Info => Severity::Info,
            SeverityName::Warning => Severity::Warning,
            SeverityName::Critical => Severity::Critical,
        }
    }
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Messages the pattern spans: 1, or more for a pattern with line breaks.
    pub lines: usize,
    /// The finding it counts towards: `kernel.oom_kill`, ...
    pub check: String,
    /// node-problem-detector's reason, e.g. `OOMKilling`.
    pub reason: String,
    /// How bad a match is.
    pub severity: Severity,
    /// The file and source it came from.
    pub origin: String,
    /// The journal's `SYSLOG_IDENTIFIER` whose messages it reads (its file's
    /// `pluginConfig.source`); `None`: every message.
    pub identifier: Option<String>,
    /// Matches in the window that make a finding (`at_least`, default 1): a restart is
    /// normal, five in twenty minutes are a loop.
    pub at_least: u64,
    subject: Option<String>,
    regex: Regex,
    ignore: Option<Regex>,
    continues: Option<Regex>,
}

/// What one rule said about one message.
#[derive(Debug, Clone)]
pub struct Match<'r> {
    /// The rule.
    pub rule: &'r Rule,
    /// What it is about: the rule's subject filled from the pattern's groups; "" for the
    /// node as a whole.
    pub subject: String,
    /// The pattern's named groups, as evidence.
    pub fields: Vec<(String, String)>,
    /// How bad: the rule's severity, or info for a minor device.
    pub severity: Severity,
}

/// Every rule, tried in one pass per message.
#[derive(Debug)]
pub struct RuleSet {
    /// One-line rules first (in file order, the indexes of `set`), then multi-line ones.
    rules: Vec<Rule>,
    set: RegexSet,
    minor_devices: Option<Regex>,
    skipped: Vec<String>,
    conditions: Vec<RuleCondition>,
}

/// The messages before the current one, as many as the longest multi-line rule needs.
#[derive(Debug, Default)]
pub struct Recent {
    lines: VecDeque<String>,
    keep: usize,
}

impl Recent {
    /// A buffer long enough for `rules`.
    pub fn for_rules(rules: &RuleSet) -> Self {
        let keep = rules
            .rules
            .iter()
            .map(|r| match r.continues {
                Some(_) => CONTINUES_WITHIN.max(r.lines - 1),
                None => r.lines - 1,
            })
            .max()
            .unwrap_or(0);
        Recent {
            lines: VecDeque::with_capacity(keep),
            keep,
        }
    }

    /// Remembers `message` as the latest one.
    pub fn push(&mut self, message: &str) {
        if self.keep == 0 {
            return;
        }
        // The oldest line's buffer is reused: this runs for every line read.
        let mut line = match self.lines.len() == self.keep {
            true => self.lines.pop_front().unwrap_or_default(),
            false => String::new(),
        };
        line.clear();
        line.push_str(tally::truncate(message, 4096));
        self.lines.push_back(line);
    }

    /// The last `n - 1` messages and `message`, joined by line breaks; `None` when fewer
    /// have been read.
    fn joined(&self, message: &str, n: usize) -> Option<String> {
        let before = n.checked_sub(1)?;
        let start = self.lines.len().checked_sub(before)?;
        let mut text = String::new();
        for line in self.lines.range(start..) {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(message);
        Some(text)
    }
}

impl RuleSet {
    /// The built-in rules, then each file in order (their `reasons` tables merge, the first
    /// file's entry winning). Rules of node-problem-detector's `custom` plugin (programs to
    /// run, no pattern) are skipped with a warning.
    pub fn load(kind: LogKind, files: &[impl AsRef<Path>]) -> Result<RuleSet, RuleError> {
        let mut texts = vec![(
            "built-in nodemedic.json".to_owned(),
            kind.builtin.to_owned(),
        )];
        for file in files {
            let file = file.as_ref();
            let text = std::fs::read_to_string(file).map_err(|e| RuleError {
                file: file.display().to_string(),
                reason: e.to_string(),
            })?;
            texts.push((file.display().to_string(), text));
        }
        Self::from_texts(kind, &texts)
    }

    /// Rules from `(name, JSON)` pairs, the built-in file not included.
    pub fn from_texts(kind: LogKind, texts: &[(String, String)]) -> Result<RuleSet, RuleError> {
        let mut parsed = Vec::new();
        let mut reasons: BTreeMap<String, ReasonMap> = BTreeMap::new();
        let mut minor_devices = None;
        let mut skipped = Vec::new();
        for (name, text) in texts {
            let file: RuleFile = serde_json::from_str(text).map_err(|e| RuleError {
                file: name.clone(),
                reason: e.to_string(),
            })?;
            if (file.plugin == "journald") != kind.journald {
                let other = if kind.journald {
                    "the kernel log"
                } else {
                    "the systemd journal"
                };
                skipped.push(format!(
                    "{name}: its rules are for {other} (source {:?}), not {} lines; none applied",
                    file.plugin_config.source, kind.name
                ));
                continue;
            }
            for (reason, map) in &file.reasons {
                reasons.entry(reason.clone()).or_insert_with(|| map.clone());
            }
            if minor_devices.is_none()
                && let Some(pattern) = &file.minor_devices
            {
                minor_devices = Some(Regex::new(pattern).map_err(|e| RuleError {
                    file: name.clone(),
                    reason: format!("minor_devices: {e}"),
                })?);
            }
            parsed.push((name, file));
        }
        let mut rules = Vec::new();
        let mut conditions: BTreeMap<String, RuleCondition> = BTreeMap::new();
        for (name, file) in parsed {
            let before = rules.len();
            for c in &file.conditions {
                conditions
                    .entry(c.kind.clone())
                    .or_insert_with(|| RuleCondition {
                        kind: c.kind.clone(),
                        ok: c.reason.clone(),
                        reasons: Default::default(),
                    });
            }
            for (index, raw) in file.rules.into_iter().enumerate() {
                let err = |reason: String| RuleError {
                    file: name.clone(),
                    reason: format!("rule {} ({}): {reason}", index + 1, raw.reason),
                };
                let Some(pattern) = &raw.pattern else {
                    skipped.push(format!(
                        "{name}: rule {} ({}) has no pattern (node-problem-detector's custom plugin runs programs; nodemedic does not)",
                        index + 1,
                        raw.reason
                    ));
                    continue;
                };
                let regex = anchored(pattern).map_err(&err)?;
                let ignore = raw
                    .ignore
                    .as_deref()
                    .map(|p| Regex::new(p).map_err(|e| err(format!("ignore: {e}"))))
                    .transpose()?;
                let continues = raw
                    .continues
                    .as_deref()
                    .map(|p| Regex::new(p).map_err(|e| err(format!("continues: {e}"))))
                    .transpose()?;
                if let Some(subject) = &raw.subject {
                    for group in placeholders(subject) {
                        if !regex.capture_names().flatten().any(|n| n == group) {
                            return Err(err(format!(
                                "subject names {{{group}}}, which the pattern does not capture"
                            )));
                        }
                    }
                }
                if raw.kind == "permanent"
                    && let Some(kind) = &raw.condition
                {
                    let condition =
                        conditions
                            .entry(kind.clone())
                            .or_insert_with(|| RuleCondition {
                                kind: kind.clone(),
                                ok: String::new(),
                                reasons: Default::default(),
                            });
                    condition.reasons.insert(raw.reason.clone());
                }
                let mapped = reasons.get(&raw.reason);
                let check = raw
                    .check
                    .clone()
                    .or_else(|| mapped.map(|m| m.check.clone()))
                    .unwrap_or_else(|| kind.unmapped.to_owned());
                if !check.starts_with(kind.check_prefix) {
                    return Err(err(format!(
                        "check {check:?} must start with \"{}\"",
                        kind.check_prefix
                    )));
                }
                let severity = raw
                    .severity
                    .or(mapped.map(|m| m.severity))
                    .map(Severity::from)
                    .unwrap_or(match raw.kind.as_str() {
                        "permanent" => Severity::Critical,
                        _ => Severity::Warning,
                    });
                // A rule nothing maps is about its reason, so unrelated rules stay apart.
                let subject = raw
                    .subject
                    .clone()
                    .or_else(|| (check == kind.unmapped).then(|| raw.reason.replace('{', "(")));
                rules.push(Rule {
                    lines: pattern.matches("\\n").count() + pattern.matches('\n').count() + 1,
                    check,
                    reason: raw.reason,
                    severity,
                    origin: format!("{name} ({})", file.source),
                    identifier: raw.source.clone().filter(|_| kind.journald).or_else(|| {
                        (kind.journald && !file.plugin_config.source.is_empty())
                            .then(|| file.plugin_config.source.clone())
                    }),
                    at_least: raw.at_least.unwrap_or(1).max(1),
                    subject,
                    regex,
                    ignore,
                    continues,
                });
            }
            if rules.len() == before {
                skipped.push(format!(
                    "{name}: no rule in it applies to {} lines",
                    kind.name
                ));
            }
        }
        for warning in &skipped {
            tracing::warn!(message = "A log rule file's rules are skipped.", log = kind.name, %warning);
        }
        // One-line rules first, in file order: their indexes are the set's.
        rules.sort_by_key(|r| r.lines > 1);
        let one_line = rules.iter().take_while(|r| r.lines == 1);
        let set = RegexSet::new(one_line.map(|r| r.regex.as_str())).map_err(|e| RuleError {
            file: "(all rules)".into(),
            reason: e.to_string(),
        })?;
        // A condition no rule raises (its file's rules were all skipped) is not published.
        let conditions = conditions
            .into_values()
            .filter(|c| !c.reasons.is_empty())
            .map(|mut c| {
                if c.ok.is_empty() {
                    c.ok = format!("No{}", c.kind);
                }
                c
            })
            .collect();
        Ok(RuleSet {
            rules,
            set,
            minor_devices,
            skipped,
            conditions,
        })
    }

    /// What was not applied, and why: journal rule files, rules that run programs, files
    /// with no kernel rule.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The node conditions the files' `permanent` rules set (node-problem-detector's
    /// `condition`), each with the reasons that raise it.
    pub fn conditions(&self) -> &[RuleCondition] {
        &self.conditions
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Matches of `check` in the window that make a finding: the largest `at_least` of its
    /// rules (1 when none says).
    pub fn at_least(&self, check: &str) -> u64 {
        self.rules
            .iter()
            .filter(|r| r.check == check)
            .map(|r| r.at_least)
            .max()
            .unwrap_or(1)
    }

    /// What the rules say about one kernel message, `recent` holding the messages before
    /// it: at most one match per check, the most severe (the first in file order among
    /// equals), so a line that nodemedic's rule and node-problem-detector's both match
    /// counts once, and a `permanent` problem of a user's file is not lowered by a
    /// built-in rule. A match about a minor device (a CD-ROM, a floppy, a loop device) is
    /// info at most.
    pub fn matches(&self, message: &str, recent: &Recent) -> Vec<Match<'_>> {
        self.matches_from(None, message, recent)
    }

    /// [`RuleSet::matches`] for a journal message of `identifier` (its
    /// `SYSLOG_IDENTIFIER`): a rule of a file with a source reads only that source's
    /// messages.
    pub fn matches_from(
        &self,
        identifier: Option<&str>,
        message: &str,
        recent: &Recent,
    ) -> Vec<Match<'_>> {
        let one_line = self.set.matches(message).into_iter().map(|i| (i, None));
        let multi_line = (self.set.len()..self.rules.len()).filter_map(|i| {
            let text = recent.joined(message, self.rules[i].lines)?;
            self.rules[i]
                .regex
                .is_match(&text)
                .then_some((i, Some(text)))
        });
        let mut out: Vec<Match<'_>> = Vec::new();
        for (index, text) in one_line.chain(multi_line) {
            let rule = &self.rules[index];
            if rule
                .identifier
                .as_deref()
                .is_some_and(|want| identifier != Some(want))
            {
                continue;
            }
            let text = text.as_deref().unwrap_or(message);
            if rule.ignore.as_ref().is_some_and(|i| i.is_match(text))
                || rule
                    .continues
                    .as_ref()
                    .is_some_and(|c| recent.lines.iter().any(|l| c.is_match(l)))
            {
                continue;
            }
            let replaced = match out.iter().position(|m| m.rule.check == rule.check) {
                Some(kept) if out[kept].rule.severity >= rule.severity => continue,
                Some(kept) => Some(out.remove(kept)),
                None => None,
            };
            let mut fields = Vec::new();
            if let Some(caps) = rule.regex.captures(text) {
                for name in rule.regex.capture_names().flatten() {
                    if let Some(value) = caps.name(name) {
                        fields.push((name.to_owned(), value.as_str().to_owned()));
                    }
                }
            }
            let mut subject = rule
                .subject
                .as_deref()
                .map(|template| fill(template, &fields))
                .unwrap_or_default();
            // A more severe rule that names nothing keeps what the rule it outranks named.
            if let Some(lower) = replaced
                && subject.is_empty()
            {
                subject = lower.subject;
                if fields.is_empty() {
                    fields = lower.fields;
                }
            }
            out.push(Match {
                rule,
                subject,
                fields,
                severity: rule.severity,
            });
        }
        if !out.is_empty()
            && let Some(minor) = &self.minor_devices
            && minor.is_match(message)
        {
            for m in &mut out {
                m.severity = m.severity.min(Severity::Info);
            }
        }
        out
    }
}

/// node-problem-detector matches a pattern against the end of the log.
fn anchored(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("(?:{pattern})$")).map_err(|e| format!("pattern: {e}"))
}

fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(name, _)| name))
}

fn fill(template: &str, fields: &[(String, String)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in fields {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(extra: &str) -> Vec<(String, String)> {
        vec![
            ("built-in".into(), KERNEL.builtin.into()),
            ("extra.json".into(), extra.into()),
        ]
    }

    #[test]
    fn the_builtin_rules_compile_and_name_kernel_checks() {
        let set = RuleSet::load(KERNEL, &[] as &[&Path]).unwrap();
        assert!(set.rules().len() > 15);
        assert!(set.rules().iter().all(|r| r.check.starts_with("kernel.")));
        // Each is a check of the one list, so the runbook catalog's test covers it.
        for r in set.rules() {
            assert!(
                nodemedic_proto::checks::ALL.contains(&r.check.as_str()),
                "{} is not in nodemedic_proto::checks::ALL",
                r.check
            );
        }
    }

    #[test]
    fn a_subject_is_filled_from_the_pattern() {
        let set = RuleSet::load(KERNEL, &[] as &[&Path]).unwrap();
        let m = set.matches("EXT4-fs error (device sda9): ext4_lookup:1602: inode #67005: comm docker: deleted inode referenced: 3186320", &Recent::default());
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].rule.check, "kernel.fs_error");
        assert_eq!(m[0].subject, "sda9");
        assert_eq!(m[0].fields, vec![("device".into(), "sda9".into())]);
    }

    #[test]
    fn an_ignore_pattern_keeps_a_line_from_counting() {
        let set = RuleSet::load(KERNEL, &[] as &[&Path]).unwrap();
        let loop_dev = "blk_update_request: I/O error, dev loop11, sector 0 op 0x1:(WRITE) flags 0x800 phys_seg 0 prio class 0";
        assert!(set.matches(loop_dev, &Recent::default()).is_empty());
        let disk = "blk_update_request: I/O error, dev sdk, sector 130611915 op 0x1:(WRITE) flags 0x0 phys_seg 13 prio class 0";
        assert_eq!(set.matches(disk, &Recent::default())[0].subject, "sdk");
    }

    #[test]
    fn errors_of_minor_devices_are_info_at_most() {
        let set = RuleSet::load(KERNEL, &[] as &[&Path]).unwrap();
        for (line, subject) in [
            ("blk_update_request: I/O error, dev fd0, sector 0", "fd0"),
            (
                "Buffer I/O error on dev sr0, logical block 0, async page read",
                "sr0",
            ),
            (
                "EXT4-fs error (device loop3): ext4_find_entry:1455: inode #2: comm snapd: reading directory lblock 0",
                "loop3",
            ),
        ] {
            let m = set.matches(line, &Recent::default());
            assert_eq!(m.len(), 1, "{line}");
            assert_eq!(
                (m[0].subject.as_str(), m[0].severity),
                (subject, Severity::Info),
                "{line}"
            );
            assert_eq!(
                m[0].rule.severity,
                Severity::Critical,
                "the rule itself stays"
            );
        }
        // A disk whose name merely starts alike is not minor.
        let m = set.matches(
            "Buffer I/O error on dev sdr1, logical block 0",
            &Recent::default(),
        );
        assert_eq!(m[0].severity, Severity::Critical);
    }

    #[test]
    fn an_unmapped_reason_counts_as_a_kernel_event_about_that_reason() {
        let set = RuleSet::from_texts(KERNEL, &texts(
            r#"{"rules":[{"type":"permanent","reason":"FrobnicatorStuck","pattern":"frobnicator stuck"}]}"#,
        ))
        .unwrap();
        let m = set.matches("frobnicator stuck", &Recent::default());
        assert_eq!(m[0].rule.check, KERNEL.unmapped);
        assert_eq!(m[0].rule.severity, Severity::Critical);
        assert_eq!(m[0].subject, "FrobnicatorStuck");
    }

    #[test]
    fn permanent_rules_name_the_conditions_they_set() {
        let set = RuleSet::from_texts(KERNEL, &texts(
            r#"{"conditions":[{"type":"FrobnicatorProblem","reason":"FrobnicatorFine","message":"ok"},
                              {"type":"NothingRaisesIt","reason":"Fine"}],
                "rules":[{"type":"permanent","condition":"FrobnicatorProblem","reason":"FrobnicatorStuck","pattern":"frobnicator stuck"},
                         {"type":"temporary","condition":"NothingRaisesIt","reason":"Blip","pattern":"blip"}]}"#,
        ))
        .unwrap();
        let c = set.conditions();
        assert_eq!(c.len(), 1, "a temporary rule sets no condition: {c:?}");
        assert_eq!(
            (c[0].kind.as_str(), c[0].ok.as_str()),
            ("FrobnicatorProblem", "FrobnicatorFine")
        );
        assert!(c[0].reasons.contains("FrobnicatorStuck"));
    }

    #[test]
    fn bad_files_are_refused_naming_file_and_rule() {
        for (file, want) in [
            (
                r#"{"rules":[{"reason":"X","pattern":"("}]}"#,
                "rule 1 (X): pattern",
            ),
            (
                r#"{"rules":[{"reason":"X","pattern":"a","subject":"{dev}"}]}"#,
                "does not capture",
            ),
            (
                r#"{"rules":[{"reason":"X","pattern":"a","check":"disk.space"}]}"#,
                "must start with",
            ),
            (r#"{"rules":[{"pattern":"a"}]}"#, "missing field `reason`"),
            ("not json", "expected"),
        ] {
            let err = RuleSet::from_texts(KERNEL, &texts(file))
                .unwrap_err()
                .to_string();
            assert!(err.contains("extra.json") && err.contains(want), "{err}");
        }
    }
}
