//! The live agent streams: one per node, the way to send a node a command, and the
//! requests (actions) waiting for an agent's answer.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use std::time::Duration;

use nodemedic_proto::v1::{ActionRequest, ActionResult, Command, command};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::{error::Error, metrics::Metrics};

struct Live {
    stream: u64,
    commands: mpsc::Sender<Command>,
}

/// Which nodes have an open stream.
pub struct Registry {
    live: Mutex<HashMap<String, Live>>,
    next_stream: AtomicU64,
    /// Requests sent to agents, by request id, waiting for their answer.
    waiting: Mutex<HashMap<String, oneshot::Sender<ActionResult>>>,
    next_request: AtomicU64,
    metrics: Arc<Metrics>,
}

/// Holds a node's place while its stream is open; dropping it frees the place.
pub struct Lease {
    registry: Arc<Registry>,
    node: String,
    stream: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut live = self.registry.lock();
        if live
            .get(&self.node)
            .is_some_and(|l| l.stream == self.stream)
        {
            live.remove(&self.node);
            self.registry.metrics.connected_agents.dec();
        }
    }
}

impl Registry {
    /// An empty registry.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Registry {
            live: Mutex::default(),
            next_stream: AtomicU64::new(1),
            waiting: Mutex::default(),
            next_request: AtomicU64::new(1),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `node` for a new stream; refused while another stream holds it.
    pub fn register(
        self: &Arc<Self>,
        node: &str,
        commands: mpsc::Sender<Command>,
    ) -> Result<Lease, Error> {
        let mut live = self.lock();
        if live.contains_key(node) {
            return Err(Error::AlreadyConnected(node.to_owned()));
        }
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        live.insert(node.to_owned(), Live { stream, commands });
        self.metrics.connected_agents.inc();
        Ok(Lease {
            registry: Arc::clone(self),
            node: node.to_owned(),
            stream,
        })
    }

    /// Whether `node` has an open stream.
    pub fn is_connected(&self, node: &str) -> bool {
        self.lock().contains_key(node)
    }

    /// Sends `command` to one node, or to every connected node when `node` is `None`;
    /// answers the nodes it reached.
    pub fn send(&self, node: Option<&str>, command: &Command) -> Result<Vec<String>, Error> {
        let live = self.lock();
        let targets: Vec<(&String, &Live)> = match node {
            Some(name) => vec![
                live.get_key_value(name)
                    .ok_or_else(|| Error::NotConnected(name.to_owned()))?,
            ],
            None => live.iter().collect(),
        };
        let mut reached: Vec<String> = targets
            .into_iter()
            .filter(|(_, l)| l.commands.try_send(command.clone()).is_ok())
            .map(|(name, _)| name.clone())
            .collect();
        reached.sort();
        Ok(reached)
    }
}

impl Registry {
    /// Sends `request` to `node`'s agent and waits up to `within` for its answer.
    pub async fn ask(
        &self,
        node: &str,
        mut request: ActionRequest,
        within: Duration,
    ) -> Result<ActionResult, Error> {
        let id = format!("r{}", self.next_request.fetch_add(1, Ordering::Relaxed));
        request.request_id.clone_from(&id);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), tx);
        let command = Command {
            kind: Some(command::Kind::Action(request)),
        };
        let sent = self.send(Some(node), &command);
        let answer = match sent {
            Ok(reached) if reached.is_empty() => Err(Error::NotConnected(node.to_owned())),
            Ok(_) => tokio::time::timeout(within, rx).await.map_err(|_| {
                Error::Unavailable(format!("{node}'s agent did not answer within {within:?}"))
            }),
            Err(e) => Err(e),
        };
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        answer?.map_err(|_| Error::Unavailable(format!("{node}'s agent stream closed")))
    }

    /// An agent's answer to a request; one nobody waits for any more is dropped.
    pub fn answer(&self, result: ActionResult) {
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&result.request_id);
        match waiting {
            Some(tx) => {
                let _ = tx.send(result);
            }
            None => {
                warn!(message = "An answer came for no waiting request (too late?).", request = %result.request_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_per_node_and_the_place_frees_on_drop() {
        let registry = Registry::new(Arc::default());
        let (tx, mut rx) = mpsc::channel(1);
        let lease = registry.register("n1", tx.clone()).unwrap();
        assert!(matches!(
            registry.register("n1", tx.clone()),
            Err(Error::AlreadyConnected(_))
        ));
        assert_eq!(registry.send(None, &Command::default()).unwrap(), ["n1"]);
        assert!(rx.try_recv().is_ok());
        assert!(matches!(
            registry.send(Some("n2"), &Command::default()),
            Err(Error::NotConnected(_))
        ));
        drop(lease);
        assert!(!registry.is_connected("n1"));
        registry.register("n1", tx).unwrap();
    }
}
