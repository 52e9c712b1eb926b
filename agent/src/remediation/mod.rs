//! Remediation actions the collector can ask this agent to run: a **plan** (a dry run that
//! lists exactly what would be removed and what it frees) and an **apply** that carries the
//! plan's id and removes only what the plan listed, re-checking each item first.
//!
//! Off by default: an action runs only when the agent was started with it allowed
//! (`--allow-action`). Plans live in memory for [`PLAN_TTL`]; an agent restart forgets them
//! (plan again). A failure half-way is part of the outcome, item by item; it never stops
//! the agent.

mod images;

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use nodemedic_proto::{
    time::{std_duration, timestamp},
    v1::{ActionOutcome, ActionPlan, ActionRequest, ActionResult, action_result},
};
use tracing::{info, warn};

use crate::{host::HostRoot, runtime::endpoint::Sockets};

/// How long a plan can be applied.
pub const PLAN_TTL: Duration = Duration::from_secs(30 * 60);

/// The actions this agent knows.
pub const ACTIONS: &[&str] = &[
    images::PRUNE_DANGLING,
    images::PRUNE_UNUSED,
    images::PRUNE_STOPPED_CONTAINERS,
    images::PRUNE_BUILD_CACHE,
];

/// Why an action could not run.
#[derive(Debug, thiserror::Error)]
pub enum RemediationError {
    /// Not one of [`ACTIONS`].
    #[error("unknown action {0:?}; known: {known}", known = ACTIONS.join(", "))]
    Unknown(String),
    /// Not allowed on this agent.
    #[error("action {0} is not enabled on this agent (start it with --allow-action {0})")]
    NotAllowed(String),
    /// No such plan (never made, expired, or made before the agent restarted).
    #[error("no plan {0} on this agent: it expired or the agent restarted; plan again")]
    UnknownPlan(String),
    /// The runtime filter names no runtime on this node.
    #[error("no container runtime {0:?} on this node")]
    NoRuntime(String),
    /// A runtime could not be asked while planning.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// Plans and applies remediation actions for one node.
pub struct Remediator {
    node: String,
    allowed: Vec<String>,
    host: HostRoot,
    sockets: Sockets,
    timeout: Duration,
    plans: Mutex<HashMap<String, ActionPlan>>,
    /// Where an applied plan is told, as an Event (set once the agent publishes).
    publisher: std::sync::OnceLock<std::sync::Arc<crate::publish::Publisher>>,
}

impl Remediator {
    /// Remediation for `node`; `allowed` names the enabled actions (`images.*` enables all
    /// image actions), and is checked against [`ACTIONS`]; the runtimes are found at
    /// `sockets` and get `timeout` per request.
    pub fn new(
        node: &str,
        allowed: &[String],
        host: HostRoot,
        sockets: Sockets,
        timeout: Duration,
    ) -> Result<Self, RemediationError> {
        for a in allowed {
            if a != "images.*" && !ACTIONS.contains(&a.as_str()) {
                return Err(RemediationError::Unknown(a.clone()));
            }
        }
        Ok(Remediator {
            node: node.to_owned(),
            allowed: allowed.to_vec(),
            host,
            sockets,
            timeout,
            plans: Mutex::default(),
            publisher: std::sync::OnceLock::new(),
        })
    }

    fn check_allowed(&self, action: &str) -> Result<(), RemediationError> {
        if !ACTIONS.contains(&action) {
            return Err(RemediationError::Unknown(action.to_owned()));
        }
        if self
            .allowed
            .iter()
            .any(|a| a == action || (a == "images.*" && action.starts_with("images.")))
        {
            Ok(())
        } else {
            Err(RemediationError::NotAllowed(action.to_owned()))
        }
    }

    /// Answers a request: a plan, or the outcome of applying one, or why neither.
    pub async fn handle(&self, request: ActionRequest) -> ActionResult {
        let result = if request.plan_id.is_empty() {
            self.plan(&request).await.map(action_result::Result::Plan)
        } else {
            self.apply(&request.plan_id)
                .await
                .map(action_result::Result::Outcome)
        };
        ActionResult {
            request_id: request.request_id,
            result: Some(result.unwrap_or_else(|e| {
                warn!(message = "Action refused or failed.", error = %e);
                action_result::Result::Error(e.to_string())
            })),
        }
    }

    /// Lists what the action would remove now.
    pub async fn plan(&self, request: &ActionRequest) -> Result<ActionPlan, RemediationError> {
        self.check_allowed(&request.action)?;
        let older_than = request.older_than.as_ref().map(std_duration);
        let items = images::plan(
            &self.host,
            &self.sockets,
            self.timeout,
            &request.action,
            &request.runtime,
            older_than,
        )
        .await?;
        let now = SystemTime::now();
        let plan = ActionPlan {
            plan_id: format!(
                "{}-{}",
                self.node,
                now.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            ),
            node: self.node.clone(),
            action: request.action.clone(),
            bytes: items.iter().map(|i| i.bytes).sum(),
            items,
            created_at: Some(timestamp(now)),
            expires_at: Some(timestamp(now + PLAN_TTL)),
        };
        info!(message = "Planned an action.", plan = %plan.plan_id, action = %plan.action, items = plan.items.len(), bytes = plan.bytes);
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        plans.retain(|_, p| {
            p.expires_at
                .as_ref()
                .is_some_and(|t| nodemedic_proto::time::system_time(t) > now)
        });
        plans.insert(plan.plan_id.clone(), plan.clone());
        Ok(plan)
    }

    /// Removes what the plan listed and is still unused; the plan is then used up.
    pub async fn apply(&self, plan_id: &str) -> Result<ActionOutcome, RemediationError> {
        let plan = self
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(plan_id)
            .filter(|p| {
                p.expires_at
                    .as_ref()
                    .is_some_and(|t| nodemedic_proto::time::system_time(t) > SystemTime::now())
            })
            .ok_or_else(|| RemediationError::UnknownPlan(plan_id.to_owned()))?;
        self.check_allowed(&plan.action)?;
        let started = SystemTime::now();
        let items = images::apply(&self.host, &self.sockets, self.timeout, &plan).await;
        let count = |r: &str| items.iter().filter(|i| i.result == r).count() as u32;
        let outcome = ActionOutcome {
            plan_id: plan.plan_id.clone(),
            node: self.node.clone(),
            action: plan.action.clone(),
            freed_bytes: items.iter().map(|i| i.bytes).sum(),
            removed: count(images::REMOVED),
            skipped: count(images::SKIPPED),
            failed: count(images::FAILED),
            items,
            started_at: Some(timestamp(started)),
            finished_at: Some(timestamp(SystemTime::now())),
        };
        info!(message = "Applied an action.", plan = %outcome.plan_id, removed = outcome.removed, skipped = outcome.skipped, failed = outcome.failed, freed = outcome.freed_bytes);
        if let Some(publisher) = self.publisher.get() {
            publisher.remediated(&outcome);
        }
        Ok(outcome)
    }

    /// Tells `publisher` of every plan applied from now on (an Event on the node).
    pub fn publish_to(&self, publisher: std::sync::Arc<crate::publish::Publisher>) {
        let _ = self.publisher.set(publisher);
    }
}
