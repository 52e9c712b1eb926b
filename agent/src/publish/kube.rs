//! The one task that writes to the API server: strategic merge patches of
//! `nodes/<this node>/status` (only the condition types this agent owns, by their `type`
//! key) and Events (create, then merge patches of their series). It reads the Node's
//! conditions once at start, before any write; a failed write is retried with back-off and
//! sends the latest state, not a queue of old ones.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use k8s_openapi::api::{core::v1::Node, events::v1::Event};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};

use super::{Publisher, events::EventWrite};
use crate::backoff::Backoff;

/// How often the task looks for a due heartbeat or series write when nothing woke it.
const TICK: Duration = Duration::from_secs(1);

/// How often one kind of failing write is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Starts the writer on the current tokio runtime.
pub fn spawn(client: Client, publisher: Arc<Publisher>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(client, publisher))
}

async fn run(client: Client, p: Arc<Publisher>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut conditions = Writer::new(&p.node, "node status");
    let mut events = Writer::new(&p.node, "events");
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if p.config.conditions && conditions.may_try() {
            let adopted = p.conditions().adopted();
            if adopted {
                patch_conditions(&nodes, &p, &mut conditions).await;
            } else {
                adopt(&nodes, &p, &mut conditions).await;
            }
        }
        if p.config.events && events.may_try() {
            write_events(&client, &p, &mut events).await;
        }
        tokio::select! {
            () = p.wake.notified() => {}
            _ = tick.tick() => {}
        }
    }
}

/// Reads the Node's conditions and hands them to the conditions (before any write, and
/// again after the Node was gone); through `get` on the Node, which the watches' role has,
/// so the role's only write on nodes is `patch` on `nodes/status`.
async fn adopt(nodes: &Api<Node>, p: &Publisher, w: &mut Writer) {
    match nodes.get(&p.node).await {
        Ok(node) => {
            let existing = node.status.and_then(|s| s.conditions).unwrap_or_default();
            let mut c = p.conditions();
            c.adopt(&existing, SystemTime::now());
            tracing::info!(
                message = "Publishing node conditions.",
                node = %p.node,
                types = ?c.types().collect::<Vec<_>>(),
                left_alone = ?c.foreign(),
            );
            w.succeeded();
        }
        Err(e) => {
            w.failed(&e);
        }
    }
}

async fn patch_conditions(nodes: &Api<Node>, p: &Publisher, w: &mut Writer) {
    let Some(plan) = p.conditions().plan(SystemTime::now()) else {
        return;
    };
    let params = PatchParams::default();
    match nodes
        .patch_status(&p.node, &params, &Patch::Strategic(&plan.body))
        .await
    {
        Ok(_) => {
            tracing::debug!(message = "Patched the node's conditions.", writes = ?plan.writes, deletes = ?plan.deletes, heartbeat = plan.heartbeat);
            if !plan.deletes.is_empty() {
                tracing::info!(message = "Removed node conditions nodemedic no longer publishes.", types = ?plan.deletes);
            }
            p.conditions().committed(plan, SystemTime::now());
            w.succeeded();
        }
        Err(e) => {
            // The Node was deleted (and may come back, empty): read it again first.
            if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                p.conditions().forget_node();
            }
            w.failed(&e);
        }
    }
}

async fn write_events(client: &Client, p: &Publisher, w: &mut Writer) {
    let due = p.events().due(SystemTime::now());
    for d in due {
        let result = match &d.write {
            EventWrite::Create { namespace, body } => {
                let api: Api<Event> = Api::namespaced(client.clone(), namespace);
                match serde_json::from_value::<Event>(body.clone()) {
                    Ok(event) => api.create(&PostParams::default(), &event).await.map(drop),
                    Err(e) => {
                        tracing::error!(message = "An Event did not fit the API's type.", error = %e);
                        continue;
                    }
                }
            }
            EventWrite::Patch {
                namespace,
                name,
                body,
            } => {
                let api: Api<Event> = Api::namespaced(client.clone(), namespace);
                api.patch(name, &PatchParams::default(), &Patch::Merge(body))
                    .await
                    .map(drop)
            }
        };
        match result {
            Ok(()) => {
                p.events().written(d, SystemTime::now());
                w.succeeded();
            }
            Err(e) => {
                p.events().failed();
                w.failed(&e);
                // The rest wait for the next round after the back-off.
                break;
            }
        }
    }
}

/// Back-off and rate-limited logging of one kind of write.
struct Writer {
    what: &'static str,
    backoff: Backoff,
    retry_at: Option<Instant>,
    logged: Option<Instant>,
    failures: u64,
}

impl Writer {
    fn new(node: &str, what: &'static str) -> Self {
        Writer {
            what,
            backoff: Backoff::new(node),
            retry_at: None,
            logged: None,
            failures: 0,
        }
    }

    fn may_try(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
        self.retry_at = None;
        self.failures = 0;
    }

    /// Counts a failure, logs it at most once a minute, and waits before the next try.
    fn failed(&mut self, e: &kube::Error) {
        self.failures += 1;
        let wait = self.backoff.next_wait();
        self.retry_at = Some(Instant::now() + wait);
        if self.logged.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            self.logged = Some(Instant::now());
            let forbidden = matches!(e, kube::Error::Api(s) if s.code == 403);
            let hint = if forbidden {
                "the agent's ClusterRole needs patch on nodes/status and create/patch on events.k8s.io events (deploy/README.md)"
            } else {
                ""
            };
            tracing::warn!(message = "Writing to the Kubernetes API failed; retrying with back-off.", what = self.what, error = %e, failures = self.failures, retry_in = ?wait, hint);
        }
    }
}
