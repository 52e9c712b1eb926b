//! `nodemedic runbook list|show|validate`: the runbook catalog, offline.

use std::path::PathBuf;

use nodemedic_collector::runbook::{Catalog, Rule, Scope};
use serde::Serialize;

use crate::{
    output::{Format, structured},
    table::Table,
};

/// `runbook` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RunbookCommand {
    /// List the rules: built-in, plus --dir's
    List,
    /// Show one rule whole: what it matches and every remediation step
    Show {
        /// Rule id
        id: String,
    },
    /// Check a directory of rule files (*.yaml); exit 1 naming the file and line of the first problem
    Validate {
        /// Directory of rule files
        dir: PathBuf,
    },
    /// Print Prometheus alerting rules for the catalog: an alert per rule, firing while the
    /// collector's /metrics has an open incident of it, with the rule's steps as its runbook
    Alerts {
        /// As a prometheus-operator PrometheusRule instead of a plain rule file
        #[arg(long)]
        prometheus_rule: bool,
    },
}

#[derive(Serialize)]
struct RuleView<'a> {
    id: &'a str,
    title: &'a str,
    scope: &'static str,
    severity: Option<&'static str>,
    checks: &'a [String],
    file: &'a str,
}

fn view<'a>(rule: &'a Rule, file: &'a str) -> RuleView<'a> {
    RuleView {
        id: &rule.id,
        title: &rule.title,
        scope: match rule.scope {
            Scope::Node => "node",
            Scope::Cluster => "cluster",
        },
        severity: rule
            .severity
            .map(|s| nodemedic_proto::v1::Severity::from(s).label()),
        checks: &rule.matcher.checks,
        file,
    }
}

/// Runs a runbook subcommand; `dir` adds user rules to the built-in ones.
pub fn run(command: RunbookCommand, dir: Option<PathBuf>, format: Format) -> anyhow::Result<u8> {
    let load = |dir: &Option<PathBuf>| -> anyhow::Result<Catalog> {
        Ok(match dir {
            Some(d) => Catalog::with_dir(d)?,
            None => Catalog::builtin(),
        })
    };
    match command {
        RunbookCommand::List => {
            let catalog = load(&dir)?;
            let rules: Vec<RuleView<'_>> = catalog.rules().map(|(r, f)| view(r, f)).collect();
            if !structured(format, &rules)? {
                let mut t = Table::new(&["ID", "SCOPE", "SEVERITY", "CHECKS", "TITLE"]);
                for r in &rules {
                    t.row(vec![
                        r.id.into(),
                        r.scope.into(),
                        r.severity.unwrap_or("").into(),
                        r.checks.join(","),
                        r.title.into(),
                    ]);
                }
                t.print_or("No rules.");
            }
            Ok(0)
        }
        RunbookCommand::Show { id } => {
            let catalog = load(&dir)?;
            let (rule, file) = catalog.rules().find(|(r, _)| r.id == id).ok_or_else(|| {
                anyhow::anyhow!("no rule {id:?}; `nodemedic runbook list` shows them")
            })?;
            if !structured(format, &view(rule, file))? {
                let m = &rule.matcher;
                println!(
                    "{}: {}\n  from {file}, scope {}",
                    rule.id,
                    rule.title,
                    view(rule, file).scope
                );
                println!("  matches {}", m.checks.join(" or "));
                if let Some(s) = &m.subject {
                    println!("    with subject {s}");
                }
                for (k, p) in &m.text {
                    println!("    with {k} like {p}");
                }
                for (k, b) in &m.evidence {
                    println!(
                        "    with {k}{}{}",
                        b.above.map_or(String::new(), |a| format!(" above {a}")),
                        b.below.map_or(String::new(), |v| format!(" below {v}"))
                    );
                }
                if !m.with.is_empty() {
                    println!("    together with {} on the same node", m.with.join(", "));
                }
                if let Some(n) = m.min_nodes {
                    println!("    on at least {n} nodes");
                }
                if let Some(s) = m.min_share {
                    println!("    on at least {:.0}% of the nodes", s * 100.0);
                }
                for (i, step) in rule.remediation.steps.iter().enumerate() {
                    println!("  {}. {}", i + 1, step.text);
                    if let Some(c) = &step.command {
                        println!("     $ {c}");
                    }
                }
                let r = &rule.remediation;
                println!(
                    "  recovery: {}\n  data loss: {}\n  verify: {}",
                    r.recovery, r.data_loss, r.verify
                );
            }
            Ok(0)
        }
        RunbookCommand::Alerts { prometheus_rule } => {
            let catalog = load(&dir)?;
            print!("{}", alerts_yaml(&catalog, prometheus_rule)?);
            Ok(0)
        }
        RunbookCommand::Validate { dir } => {
            let catalog = Catalog::with_dir(&dir)?;
            println!(
                "{}: valid; {} rules in force with the built-in ones",
                dir.display(),
                catalog.rules().count()
            );
            Ok(0)
        }
    }
}

/// `runbook alerts`' output: the rule file, or the PrometheusRule around it.
pub fn alerts_yaml(catalog: &Catalog, prometheus_rule: bool) -> anyhow::Result<String> {
    use nodemedic_collector::runbook::alerts;
    let head = "# Made by `nodemedic runbook alerts` from the runbook catalog; do not edit.\n";
    let body = if prometheus_rule {
        serde_saphyr::to_string(&alerts::prometheus_rule(catalog))?
    } else {
        serde_saphyr::to_string(&alerts::rule_file(catalog))?
    };
    Ok(format!("{head}{body}"))
}
