//! Remediation actions through the collector: a plan or an apply is sent to the node's
//! agent down its stream and answered there; every apply is recorded in the store before it
//! is sent (the authenticated caller, who they said they are, from where, when, what) and completed with its result, so the record survives a crash
//! half-way.

use std::time::{Duration, SystemTime};

use nodemedic_proto::{
    time::timestamp,
    v1::{
        ActionOutcome, ActionPlan, ActionRequest, ApplyRemediationRequest, PlanRemediationRequest,
        RemediationRecord, action_result,
    },
};
use tracing::info;

use crate::{error::Error, registry::Registry, store::writer::WriterHandle, validate};

/// How long a plan may take the agent (it lists images and containers).
const PLAN_WITHIN: Duration = Duration::from_secs(60);
/// How long an apply may take (removing many images).
const APPLY_WITHIN: Duration = Duration::from_secs(600);

fn check_node(node: &str) -> Result<(), Error> {
    validate::node_name(node).map_err(|e| Error::Invalid(e.to_string()))
}

/// Asks the node's agent for a plan.
pub async fn plan(registry: &Registry, req: PlanRemediationRequest) -> Result<ActionPlan, Error> {
    check_node(&req.node)?;
    if req.action.is_empty() {
        return Err(Error::Invalid(
            "action is required, e.g. images.prune_unused".into(),
        ));
    }
    let request = ActionRequest {
        action: req.action,
        runtime: req.runtime,
        older_than: req.older_than,
        ..Default::default()
    };
    match registry.ask(&req.node, request, PLAN_WITHIN).await?.result {
        Some(action_result::Result::Plan(plan)) => Ok(plan),
        Some(action_result::Result::Error(e)) => Err(Error::Action(e)),
        other => Err(Error::Action(format!("unexpected answer {other:?}"))),
    }
}

/// Has the node's agent carry out a plan, recording the apply.
pub async fn apply(
    registry: &Registry,
    writer: &WriterHandle,
    req: ApplyRemediationRequest,
    peer: String,
    caller: String,
) -> Result<ActionOutcome, Error> {
    check_node(&req.node)?;
    if req.plan_id.is_empty() {
        return Err(Error::Invalid("plan_id is required: plan first".into()));
    }
    let mut record = RemediationRecord {
        node: req.node.clone(),
        plan_id: req.plan_id.clone(),
        requested_by: req.requested_by,
        peer,
        caller,
        requested_at: Some(timestamp(SystemTime::now())),
        ..Default::default()
    };
    record.id = writer.remediation(record.clone()).await?;
    info!(message = "Applying a remediation.", node = %record.node, plan = %record.plan_id, caller = %record.caller, by = %record.requested_by, peer = %record.peer);
    let request = ActionRequest {
        plan_id: req.plan_id,
        ..Default::default()
    };
    let result = match registry.ask(&req.node, request, APPLY_WITHIN).await {
        Ok(answer) => match answer.result {
            Some(action_result::Result::Outcome(outcome)) => Ok(outcome),
            Some(action_result::Result::Error(e)) => Err(Error::Action(e)),
            other => Err(Error::Action(format!("unexpected answer {other:?}"))),
        },
        Err(e) => Err(e),
    };
    match &result {
        Ok(outcome) => record.outcome = Some(outcome.clone()),
        Err(e) => record.error = e.to_string(),
    }
    writer.remediation(record).await?;
    result
}
