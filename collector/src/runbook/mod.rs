//! The runbook catalog: rules, as data, that say what a finding (and later an incident)
//! means and exactly what to run.
//!
//! Rules are YAML (`rules: [...]`, see `collector/runbooks/*.yaml` for the built-in ones).
//! The built-in catalog is compiled in; a directory of user files adds rules or replaces a
//! built-in one with the same id. Loading refuses unknown fields, unknown placeholders and
//! inconsistent scopes, naming the file and line.

pub mod alerts;
mod render;

use std::{collections::BTreeMap, path::Path, time::Duration};

use nodemedic_proto::v1::{Finding, RemediationStep, Severity};
use serde::{Deserialize, Serialize};

pub use render::render;

use crate::validate;

/// The built-in rule files, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("disk.yaml", include_str!("../../runbooks/disk.yaml")),
    ("memory.yaml", include_str!("../../runbooks/memory.yaml")),
    ("system.yaml", include_str!("../../runbooks/system.yaml")),
    ("dns.yaml", include_str!("../../runbooks/dns.yaml")),
    ("images.yaml", include_str!("../../runbooks/images.yaml")),
    ("pods.yaml", include_str!("../../runbooks/pods.yaml")),
    ("nodes.yaml", include_str!("../../runbooks/nodes.yaml")),
    ("kernel.yaml", include_str!("../../runbooks/kernel.yaml")),
    ("host.yaml", include_str!("../../runbooks/host.yaml")),
    (
        "services.yaml",
        include_str!("../../runbooks/services.yaml"),
    ),
    ("cluster.yaml", include_str!("../../runbooks/cluster.yaml")),
];

/// Placeholders a command or step may use; filled from the finding.
pub const PLACEHOLDERS: &[&str] = &[
    "node",
    "subject",
    "mount",
    "nameserver",
    "name",
    "namespace",
    "pod",
    "container",
    "image",
    "bytes",
    "endpoint",
    "top_reclaimable",
    "device",
    "task",
    "resource",
    "missing",
    "probe",
    "process",
    "pod_uid",
    "container_id",
    "cgroup",
    "kubelet_version",
    "since",
    "cause",
    "claim",
    "quota",
    "owner",
    "secret",
    "certificate",
];

/// A rule file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct RuleError {
    /// The file (a built-in name or a path).
    pub file: String,
    /// What is wrong, with the line where known.
    pub reason: String,
}

/// Whether a rule looks at one node or at the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Findings of one node.
    #[default]
    Node,
    /// The same check on many nodes at once.
    Cluster,
}

/// A severity as written in a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSeverity {
    /// Info.
    Info,
    /// Warning.
    Warning,
    /// Critical.
    Critical,
}

impl From<RuleSeverity> for Severity {
    fn from(s: RuleSeverity) -> Severity {
        match s {
            RuleSeverity::Info => Severity::Info,
            RuleSeverity::Warning => Severity::Warning,
            RuleSeverity::Critical => Severity::Critical,
        }
    }
}

/// Bounds on a number of a finding's evidence.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    /// Strictly above.
    pub above: Option<f64>,
    /// Strictly below.
    pub below: Option<f64>,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Any of these checks.
    pub checks: Vec<String>,
    /// The finding's subject, with `*` matching any run of characters.
    #[serde(default)]
    pub subject: Option<String>,
    /// Bounds on the finding's evidence numbers; a missing number does not match.
    #[serde(default)]
    pub evidence: BTreeMap<String, Bound>,
    /// Patterns (`*` globs) on the finding's text evidence, e.g. `roles: "*images*"`.
    #[serde(default)]
    pub text: BTreeMap<String, String>,
    /// Checks that must be open on the same node too.
    #[serde(default)]
    pub with: Vec<String>,
    /// Cluster scope: at least this many nodes.
    #[serde(default)]
    pub min_nodes: Option<u32>,
    /// Cluster scope: at least this share (0 to 1) of reporting nodes.
    #[serde(default)]
    pub min_share: Option<f64>,
    /// Cluster scope: the findings opened within this time of each other.
    #[serde(default, with = "humantime_serde")]
    pub within: Option<Duration>,
}

/// One step of a remediation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What to do, in a sentence.
    pub text: String,
    /// The command that does it, with placeholders.
    #[serde(default)]
    pub command: Option<String>,
    /// The automated action that performs it, when nodemedic has one.
    #[serde(default)]
    pub action: Option<String>,
}

/// What to do about it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Remediation {
    /// Ordered steps.
    pub steps: Vec<Step>,
    /// How long recovery takes once the steps are done.
    pub recovery: String,
    /// What the steps can lose.
    pub data_loss: String,
    /// How to tell it worked.
    pub verify: String,
}

/// A runbook rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable id, lower-case words joined by `-`.
    pub id: String,
    /// One line.
    pub title: String,
    /// Node or cluster.
    #[serde(default)]
    pub scope: Scope,
    /// A severity above the worst of its findings for what it describes (a node out of
    /// memory is critical even when each kill is a warning); only with `because`.
    #[serde(default)]
    pub severity: Option<RuleSeverity>,
    /// Why `severity` is above the findings': shown with the incident.
    #[serde(default)]
    pub because: Option<String>,
    /// What it matches.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// Checks that are consequences of this rule's trouble on the same node: while a
    /// finding of this rule is open there, findings of these checks join its incident
    /// instead of opening their own (disk pressure -> evictions -> crash loops).
    #[serde(default)]
    pub consequences: Vec<String>,
    /// Cluster scope: nodes are counted per value of this text evidence (e.g. `registry`),
    /// one incident per value; a finding without it does not match.
    #[serde(default)]
    pub group_by: Option<String>,
    /// An evidence number (in hours) that says how far away the failure is, e.g. `full_in`:
    /// the incident then carries the expected time of failure.
    #[serde(default)]
    pub forecast: Option<String>,
    /// What to run.
    pub remediation: Remediation,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rules: Vec<Rule>,
}

/// The rules in force, built-in first, in the order they are tried.
#[derive(Debug, Clone)]
pub struct Catalog {
    rules: Vec<(Rule, String)>,
}

impl Catalog {
    /// The built-in catalog.
    pub fn builtin() -> Self {
        let mut catalog = Catalog { rules: Vec::new() };
        for (name, text) in BUILTIN {
            catalog
                .add_file(name, text)
                .unwrap_or_else(|e| panic!("built-in runbook {e}"));
        }
        catalog
    }

    /// The built-in catalog with every `*.yaml` file of `dir` added (a rule with a built-in
    /// id replaces it).
    pub fn with_dir(dir: &Path) -> Result<Self, RuleError> {
        let mut catalog = Self::builtin();
        let read_err = |reason: String| RuleError {
            file: dir.display().to_string(),
            reason,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| read_err(format!("cannot read the directory: {e}")))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(read_err("no *.yaml rule files".into()));
        }
        // A file may be a link (a ConfigMap volume's files are), but only to somewhere
        // inside the directory: a link out of it is not read, and its target never appears
        // in an error.
        let home = dir
            .canonicalize()
            .map_err(|e| read_err(format!("cannot resolve the directory: {e}")))?;
        for path in files {
            let inside = path
                .canonicalize()
                .is_ok_and(|real| real.starts_with(&home));
            if !inside {
                return Err(RuleError {
                    file: path.display().to_string(),
                    reason: "it is a link to a file outside the runbook directory (or a broken link): not read".into(),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(|e| RuleError {
                file: path.display().to_string(),
                reason: e.to_string(),
            })?;
            catalog.add_file(&path.display().to_string(), &text)?;
        }
        Ok(catalog)
    }

    fn add_file(&mut self, file: &str, text: &str) -> Result<(), RuleError> {
        let err = |reason: String| RuleError {
            file: file.to_owned(),
            reason,
        };
        let parsed: RuleFile = serde_saphyr::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut seen = Vec::new();
        for rule in parsed.rules {
            validate(&rule).map_err(|reason| err(format!("rule {:?}: {reason}", rule.id)))?;
            if seen.contains(&rule.id) {
                return Err(err(format!(
                    "rule {:?} is defined twice in this file",
                    rule.id
                )));
            }
            seen.push(rule.id.clone());
            match self.rules.iter_mut().find(|(r, _)| r.id == rule.id) {
                Some(slot) => *slot = (rule, file.to_owned()),
                None => self.rules.push((rule, file.to_owned())),
            }
        }
        Ok(())
    }

    /// Every rule with the file it came from.
    pub fn rules(&self) -> impl Iterator<Item = (&Rule, &str)> {
        self.rules.iter().map(|(r, f)| (r, f.as_str()))
    }

    /// A rule by id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().map(|(r, _)| r).find(|r| r.id == id)
    }

    /// The node rule for `finding`, given the checks open on its node: the most specific
    /// match (co-occurring checks count most, then evidence conditions, then a subject
    /// pattern); among equals the first in the catalog.
    pub fn for_finding(&self, finding: &Finding, open_checks: &[&str]) -> Option<&Rule> {
        self.node_rule(finding, open_checks).map(|i| self.at(i))
    }

    /// [`Catalog::for_finding`], as a position in the catalog.
    pub fn node_rule(&self, finding: &Finding, open_checks: &[&str]) -> Option<usize> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| {
                r.scope == Scope::Node && matches(&r.matcher, finding, open_checks)
            })
            .max_by_key(|(i, (r, _))| {
                let m = &r.matcher;
                // max_by_key keeps the last of equals: negate the position to keep the first.
                (
                    m.with.len() * 4
                        + (m.evidence.len() + m.text.len()) * 2
                        + usize::from(m.subject.is_some()),
                    std::cmp::Reverse(*i),
                )
            })
            .map(|(i, _)| i)
    }

    /// The cluster rules `finding` counts toward, by position in the catalog, each with
    /// its group (the `group_by` evidence, or empty).
    pub fn cluster_matches<'a>(
        &'a self,
        finding: &'a Finding,
    ) -> impl Iterator<Item = (usize, String)> + 'a {
        self.rules.iter().enumerate().filter_map(|(i, (r, _))| {
            if r.scope != Scope::Cluster || !matches(&r.matcher, finding, &[]) {
                return None;
            }
            match &r.group_by {
                None => Some((i, String::new())),
                Some(key) => finding.text(key).map(|g| (i, g.to_owned())),
            }
        })
    }

    /// The rule at `position` (as given by [`Catalog::node_rule`] and
    /// [`Catalog::cluster_matches`]).
    pub fn at(&self, position: usize) -> &Rule {
        &self.rules[position].0
    }
}

fn matches(m: &Match, f: &Finding, open_checks: &[&str]) -> bool {
    m.checks.contains(&f.check)
        && m.subject
            .as_deref()
            .is_none_or(|pattern| glob(pattern, &f.subject))
        && m.evidence.iter().all(|(key, bound)| {
            f.number(key).is_some_and(|v| {
                bound.above.is_none_or(|a| v > a) && bound.below.is_none_or(|b| v < b)
            })
        })
        && m.text
            .iter()
            .all(|(key, pattern)| f.text(key).is_some_and(|t| glob(pattern, t)))
        && m.with.iter().all(|c| open_checks.contains(&c.as_str()))
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

fn validate(rule: &Rule) -> Result<(), String> {
    if rule.id.is_empty()
        || !rule
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("id must be lower-case letters, digits and '-'".into());
    }
    if rule.severity.is_some()
        != rule
            .because
            .as_deref()
            .is_some_and(|b| !b.trim().is_empty())
    {
        return Err(
            "severity and because go together: an incident is as severe as its worst finding unless the rule says why it is more".into(),
        );
    }
    let m = &rule.matcher;
    if m.checks.is_empty() {
        return Err("match.checks is empty".into());
    }
    if let Some(bad) = m
        .checks
        .iter()
        .chain(&m.with)
        .find(|c| !validate::check_id(c))
    {
        return Err(format!("{bad:?} is not a check id like disk.space"));
    }
    if let Some(bad) = rule.consequences.iter().find(|c| !validate::check_id(c)) {
        return Err(format!(
            "consequence {bad:?} is not a check id like pod.evicted"
        ));
    }
    match rule.scope {
        Scope::Node if m.min_nodes.is_some() || m.min_share.is_some() => {
            return Err("min_nodes and min_share belong to scope: cluster".into());
        }
        Scope::Node if rule.group_by.is_some() || m.within.is_some() => {
            return Err("group_by and within belong to scope: cluster".into());
        }
        Scope::Cluster if !m.with.is_empty() || !rule.consequences.is_empty() => {
            return Err("with and consequences belong to scope: node".into());
        }
        Scope::Cluster if m.min_nodes.is_none() && m.min_share.is_none() => {
            return Err("scope: cluster needs min_nodes or min_share".into());
        }
        _ => {}
    }
    if m.min_nodes == Some(0) {
        return Err("min_nodes must be at least 1".into());
    }
    if m.min_share.is_some_and(|s| !(s > 0.0 && s <= 1.0)) {
        return Err("min_share must be above 0 and at most 1".into());
    }
    if rule.remediation.steps.is_empty() {
        return Err("remediation.steps is empty".into());
    }
    for step in &rule.remediation.steps {
        for text in [Some(&step.text), step.command.as_ref()]
            .into_iter()
            .flatten()
        {
            render::placeholders(text).try_for_each(|p| {
                if PLACEHOLDERS.contains(&p) {
                    Ok(())
                } else {
                    Err(format!(
                        "unknown placeholder {{{{{p}}}}} in {text:?}; known: {}",
                        PLACEHOLDERS.join(", ")
                    ))
                }
            })?;
        }
    }
    Ok(())
}

/// `rule`'s remediation with its placeholders filled from `finding`.
pub fn remediation(rule: &Rule, finding: &Finding) -> nodemedic_proto::v1::Remediation {
    let r = &rule.remediation;
    nodemedic_proto::v1::Remediation {
        rule: rule.id.clone(),
        title: rule.title.clone(),
        steps: r
            .steps
            .iter()
            .map(|s| RemediationStep {
                text: render(&s.text, finding),
                command: s
                    .command
                    .as_ref()
                    .map(|c| render(c, finding))
                    .unwrap_or_default(),
                action: s.action.clone().unwrap_or_default(),
            })
            .collect(),
        recovery: r.recovery.clone(),
        data_loss: r.data_loss.clone(),
        verify: render(&r.verify, finding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodemedic_proto::v1::Evidence;

    #[test]
    fn the_builtin_catalog_loads_and_covers_every_check() {
        let c = Catalog::builtin();
        // Every check there is: a new one without a rule fails here.
        for &check in nodemedic_proto::checks::ALL {
            // Image findings always say which runtime they are about.
            let f = Finding::fail(check, Severity::Warning, "/", String::new())
                .with(Evidence::text("runtime", "cri"));
            assert!(c.for_finding(&f, &[check]).is_some(), "no rule for {check}");
        }
        assert!(
            c.rules().any(|(r, _)| r.scope == Scope::Cluster),
            "cluster rules are in the catalog"
        );
        // A consequence names a check something emits, or it never folds anything in.
        for (r, _) in c.rules() {
            for check in r.consequences.iter().chain(&r.matcher.checks) {
                assert!(
                    nodemedic_proto::checks::ALL.contains(&check.as_str()),
                    "rule {} names {check}, which no probe emits",
                    r.id
                );
            }
        }
    }

    #[test]
    fn node_conditions_find_their_rule() {
        let c = Catalog::builtin();
        for (condition, rule) in [
            ("Ready", "node-not-ready"),
            ("DiskPressure", "node-pressure"),
            ("PIDPressure", "node-pressure"),
            ("NetworkUnavailable", "node-network-unavailable"),
            ("KernelDeadlock", "node-condition-other"),
        ] {
            let f = Finding::fail(
                "node.condition",
                Severity::Critical,
                condition,
                String::new(),
            )
            .with(Evidence::text("condition", condition));
            let found = c.for_finding(&f, &["node.condition"]).unwrap();
            assert_eq!(found.id, rule, "{condition}");
        }
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let c = Catalog::builtin();
        let images = Finding::fail(
            "disk.space",
            Severity::Critical,
            "/var/lib/containerd",
            String::new(),
        )
        .with(Evidence::text("roles", "images"));
        assert_eq!(
            c.for_finding(&images, &["disk.space"]).unwrap().id,
            "disk-full-images"
        );
        let kubelet = Finding::fail(
            "disk.space",
            Severity::Critical,
            "/var/lib/kubelet",
            String::new(),
        );
        assert_eq!(
            c.for_finding(&kubelet, &["disk.space"]).unwrap().id,
            "disk-full"
        );
        let oom = Finding::fail("memory.available", Severity::Critical, "", String::new());
        assert_eq!(
            c.for_finding(&oom, &["memory.available", "memory.oom_kills"])
                .unwrap()
                .id,
            "memory-pressure-oom-kills"
        );
        assert_eq!(
            c.for_finding(&oom, &["memory.available"]).unwrap().id,
            "memory-pressure"
        );
    }

    #[test]
    fn user_rules_replace_builtin_ones_and_bad_files_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ours.yaml"),
            "rules:\n  - id: disk-full\n    title: Ours\n    match:\n      checks: [disk.space]\n    remediation:\n      steps:\n        - text: Call the storage team about {{node}}\n      recovery: an hour\n      data_loss: none\n      verify: the finding resolves\n",
        )
        .unwrap();
        let c = Catalog::with_dir(dir.path()).unwrap();
        assert_eq!(c.get("disk-full").unwrap().title, "Ours");
        assert_eq!(c.rules().count(), Catalog::builtin().rules().count());

        std::fs::write(
            dir.path().join("bad.yaml"),
            "rules:\n  - id: x\n    title: t\n    match:\n      checkz: [disk.space]\n",
        )
        .unwrap();
        let err = Catalog::with_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("bad.yaml") && err.contains("line 5") && err.contains("checkz"),
            "{err}"
        );

        std::fs::write(dir.path().join("bad.yaml"), "rules:\n  - id: y\n    title: t\n    scope: cluster\n    match:\n      checks: [dns.failing]\n    remediation:\n      steps: [{text: \"restart {{deployment}}\"}]\n      recovery: r\n      data_loss: d\n      verify: v\n").unwrap();
        let err = Catalog::with_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("needs min_nodes or min_share"), "{err}");

        // A rule that raises its incident above the findings must say why.
        let loud = "rules:\n  - id: loud\n    title: t\n    severity: critical\n    match:\n      checks: [disk.space]\n    remediation:\n      steps:\n        - text: x\n      recovery: r\n      data_loss: none\n      verify: v\n";
        std::fs::write(dir.path().join("bad.yaml"), loud).unwrap();
        let err = Catalog::with_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("severity and because go together"), "{err}");
    }

    #[test]
    fn links_are_read_only_inside_the_runbook_directory() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("shadow.yaml");
        std::fs::write(&secret, "root:hunter2-not-yaml-rules:::\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        // A ConfigMap volume: the file is a link into a folder inside the directory.
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        std::fs::write(
            dir.path().join("..data/site.yaml"),
            "rules:\n  - id: disk-full\n    title: Ours\n    match:\n      checks: [disk.space]\n    remediation:\n      steps:\n        - text: Call the storage team\n      recovery: an hour\n      data_loss: none\n      verify: the finding resolves\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("..data/site.yaml", dir.path().join("site.yaml")).unwrap();
        assert_eq!(
            Catalog::with_dir(dir.path())
                .unwrap()
                .get("disk-full")
                .unwrap()
                .title,
            "Ours"
        );

        std::os::unix::fs::symlink(&secret, dir.path().join("x.yaml")).unwrap();
        let err = Catalog::with_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("x.yaml") && err.contains("outside the runbook directory"),
            "{err}"
        );
        assert!(
            !err.contains("hunter2"),
            "the target's content never shows: {err}"
        );
    }

    #[test]
    fn globs() {
        assert!(glob("/var/lib/*", "/var/lib/docker"));
        assert!(glob("*containerd*", "/var/lib/containerd"));
        assert!(!glob("/var/lib/*", "/var/log"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
    }
}
