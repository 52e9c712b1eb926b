//! What the agent writes into the cluster about its own node, from its own reports (so it
//! works while the collector is down): node conditions ([`conditions`], types from
//! [`table`]) and Events ([`events`]), sent by one writer task ([`kube`]) that patches only
//! this node's status and writes only Events about this node and its pods.
//!
//! [`Publisher::observe`] is called with every report (and [`Publisher::remediated`] with
//! every applied plan); both only update state in memory and wake the writer, so the report
//! loop never waits for the API server.

pub mod conditions;
pub mod events;
pub mod kube;
pub mod table;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use nodemedic_proto::v1::{ActionOutcome, NodeReport};
use serde::Deserialize;

use self::{
    conditions::{Conditions, RuleCondition},
    events::{Events, Pace, Regarding},
};
use crate::kubernetes::view::KubeView;

/// The least heartbeat: node-problem-detector's users measured what a shorter one costs a
/// large cluster's API server.
pub const MIN_HEARTBEAT: Duration = Duration::from_secs(5 * 60);

/// The `publish` part of the agent's configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Write this node's conditions (the table in the README).
    pub conditions: bool,
    /// Write Events about temporary problems (OOM kills, hung tasks, oopses, remediations).
    pub events: bool,
    /// How long a problem holds before its condition is True, and is gone before it is
    /// False again (default 30s, as incidents).
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// How often every owned condition is written again even when nothing changed (at least
    /// 5m; each node adds up to a fifth of it, by its name, so a fleet's writes spread).
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Event writes a node may make at once.
    pub event_burst: u32,
    /// Time for one more Event write once the burst is spent.
    #[serde(with = "humantime_serde")]
    pub event_refill: Duration,
    /// Least time between two writes of one Event's series count.
    #[serde(with = "humantime_serde")]
    pub series_every: Duration,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            conditions: true,
            events: true,
            hold: Duration::from_secs(30),
            heartbeat: MIN_HEARTBEAT,
            event_burst: 20,
            event_refill: Duration::from_secs(30),
            series_every: Duration::from_secs(30),
        }
    }
}

impl PublishConfig {
    /// Checks the values, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat < MIN_HEARTBEAT {
            return Err(format!(
                "heartbeat must be at least 5m, got {}",
                humantime::format_duration(self.heartbeat)
            ));
        }
        if self.event_burst == 0 || self.event_refill.is_zero() {
            return Err("event_burst and event_refill must be more than 0".into());
        }
        Ok(())
    }
}

/// The state both writers decide from, shared between the report loop and the writer task.
pub struct Publisher {
    node: String,
    config: PublishConfig,
    conditions: Mutex<Conditions>,
    events: Mutex<Events>,
    view: Arc<KubeView>,
    wake: tokio::sync::Notify,
}

impl Publisher {
    /// The publisher of `node`, whose agent runs `probes` with kernel rule files that set
    /// `rule_conditions`; pods are named from `view`.
    pub fn new(
        node: &str,
        probes: &[String],
        rule_conditions: &[RuleCondition],
        config: PublishConfig,
        view: Arc<KubeView>,
    ) -> Self {
        let published = conditions::published(probes, rule_conditions);
        let conditions = Conditions::new(
            published,
            rule_conditions,
            config.hold,
            conditions::heartbeat_of(config.heartbeat, node),
        );
        let pace = Pace {
            burst: config.event_burst,
            refill: config.event_refill,
            series_every: config.series_every,
        };
        Publisher {
            node: node.to_owned(),
            events: Mutex::new(Events::new(node, pace, SystemTime::now())),
            conditions: Mutex::new(conditions),
            config,
            view,
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The node it writes.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Judges a report for conditions and Events, and wakes the writer.
    pub fn observe(&self, report: &NodeReport) {
        let now = SystemTime::now();
        if self.config.conditions {
            self.conditions().observe(report, now);
        }
        if self.config.events {
            let pod = |uid: &str| {
                let cluster = self.view.cluster();
                cluster.pods.get(uid).map(|p| Regarding {
                    kind: "Pod",
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    uid: p.uid.clone(),
                })
            };
            self.events().observe(report, now, pod);
        }
        self.wake.notify_one();
    }

    /// An applied remediation, as an Event.
    pub fn remediated(&self, outcome: &ActionOutcome) {
        if self.config.events {
            self.events().remediated(outcome, SystemTime::now());
            self.wake.notify_one();
        }
    }

    fn conditions(&self) -> MutexGuard<'_, Conditions> {
        self.conditions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn events(&self) -> MutexGuard<'_, Events> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }
}
