//! `remediate plan|apply|history`: the agent's remediation actions, through the collector.
//! A plan is a dry run that lists exactly what would be removed; apply carries out that plan
//! and nothing else.

use std::time::{Duration, SystemTime};

use nodemedic_proto::{
    finding::human_bytes,
    time::{duration, system_time},
    v1::{ActionItem, ApplyRemediationRequest, ListRemediationsRequest, PlanRemediationRequest},
};

use crate::{
    output::{Format, escaped, structured},
    query::Client,
    query::status_text,
    table::{Table, age},
};

/// `remediate` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RemediationCommand {
    /// Ask a node's agent what an action would remove and free, without removing anything.
    /// Actions: images.prune_dangling, images.prune_unused, images.prune_stopped_containers,
    /// images.prune_build_cache (the agent must allow them: --allow-action)
    Plan {
        /// Node name
        node: String,
        /// The action
        action: String,
        /// Only this runtime: docker or cri
        #[arg(long, value_parser = ["docker", "cri"])]
        runtime: Option<String>,
        /// images.prune_unused: only images created longer ago than this, e.g. 24h
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
    },
    /// Carry out a plan: the agent removes only what the plan listed, checking each item is
    /// still unused; the apply is recorded with who asked
    Apply {
        /// Node name
        node: String,
        /// The plan id printed by `remediate plan`
        plan_id: String,
    },
    /// The recorded applies, newest first
    History {
        /// Only this node
        #[arg(long)]
        node: Option<String>,
        /// At most this many
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

fn items(items: &[ActionItem], with_result: bool) -> String {
    let mut headers = vec!["KIND", "RUNTIME", "ID", "NAMES", "BYTES"];
    if with_result {
        headers.extend(["RESULT", "DETAIL"]);
    }
    let mut t = Table::new(&headers);
    for i in items {
        let mut row = vec![
            i.kind.clone(),
            i.runtime.clone(),
            i.id.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect(),
            i.names.join(","),
            human_bytes(i.bytes as f64),
        ];
        if with_result {
            row.extend([i.result.clone(), i.detail.clone()]);
        }
        t.row(row);
    }
    t.render("")
}

/// Who runs this CLI, for the collector's record.
fn requested_by() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    format!("{user}@{host}")
}

/// Runs a `remediate` subcommand.
pub async fn run(mut c: Client, command: RemediationCommand, format: Format) -> anyhow::Result<()> {
    match command {
        RemediationCommand::Plan {
            node,
            action,
            runtime,
            older_than,
        } => {
            let plan = c
                .plan_remediation(PlanRemediationRequest {
                    node: node.clone(),
                    action,
                    runtime: runtime.unwrap_or_default(),
                    older_than: older_than.map(duration),
                })
                .await
                .map_err(status_text)?
                .into_inner();
            if !structured(format, &plan)? {
                if plan.items.is_empty() {
                    println!("Nothing to remove on {node} for {}.", plan.action);
                    return Ok(());
                }
                print!("{}", escaped(&items(&plan.items, false)));
                println!(
                    "\nPlan {} ({} on {node}): {} items, {} to free. Nothing was removed.\nTo carry it out (within 30 minutes): nodemedic remediate apply {node} {}",
                    plan.plan_id,
                    plan.action,
                    plan.items.len(),
                    human_bytes(plan.bytes as f64),
                    plan.plan_id
                );
            }
        }
        RemediationCommand::Apply { node, plan_id } => {
            let outcome = c
                .apply_remediation(ApplyRemediationRequest {
                    node,
                    plan_id,
                    requested_by: requested_by(),
                })
                .await
                .map_err(status_text)?
                .into_inner();
            if !structured(format, &outcome)? {
                print!("{}", escaped(&items(&outcome.items, true)));
                println!(
                    "\n{} removed, {} skipped, {} failed; {} freed.",
                    outcome.removed,
                    outcome.skipped,
                    outcome.failed,
                    human_bytes(outcome.freed_bytes as f64)
                );
            }
        }
        RemediationCommand::History { node, limit } => {
            let resp = c
                .list_remediations(ListRemediationsRequest {
                    node: node.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(status_text)?
                .into_inner();
            if !structured(format, &resp)? {
                let now = SystemTime::now();
                let mut t = Table::new(&[
                    "ID", "NODE", "ACTION", "CALLER", "BY", "AGE", "REMOVED", "SKIPPED", "FAILED",
                    "FREED", "ERROR",
                ]);
                for r in &resp.records {
                    let o = r.outcome.clone().unwrap_or_default();
                    t.row(vec![
                        r.id.to_string(),
                        r.node.clone(),
                        o.action.clone(),
                        r.caller.clone(),
                        r.requested_by.clone(),
                        r.requested_at
                            .as_ref()
                            .map(|t| age(system_time(t), now))
                            .unwrap_or_default(),
                        o.removed.to_string(),
                        o.skipped.to_string(),
                        o.failed.to_string(),
                        human_bytes(o.freed_bytes as f64),
                        r.error.clone(),
                    ]);
                }
                t.print_or("No remediation has been applied.");
            }
        }
    }
    Ok(())
}
