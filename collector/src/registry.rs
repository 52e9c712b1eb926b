//! The live agent streams: one per node, the way to send a node a command, and the
//! requests (actions, pods' logs) waiting for an agent's answer.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use std::time::Duration;

use nodemedic_proto::v1::{ActionRequest, ActionResult, Command, LogsRequest, PodLogs, command};
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
    /// Requests sent to agents, by request id, waiting for their answer: the node asked,
    /// and where its answer goes.
    waiting: Mutex<HashMap<String, (String, oneshot::Sender<Answer>)>>,
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

/// An agent's answer to a request.
#[derive(Debug)]
pub enum Answer {
    /// To an [`ActionRequest`].
    Action(ActionResult),
    /// To a [`LogsRequest`].
    Logs(PodLogs),
}

impl Answer {
    fn request_id(&self) -> &str {
        match self {
            Answer::Action(a) => &a.request_id,
            Answer::Logs(l) => &l.request_id,
        }
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
        let make = |id| {
            request.request_id = id;
            command::Kind::Action(request)
        };
        self.request(node, within, make, |answer| match answer {
            Answer::Action(result) => Some(result),
            Answer::Logs(_) => None,
        })
        .await
    }

    /// Asks `node`'s agent for its pods' logs and waits up to `within` for them.
    pub async fn logs(
        &self,
        node: &str,
        mut request: LogsRequest,
        within: Duration,
    ) -> Result<PodLogs, Error> {
        let make = |id| {
            request.request_id = id;
            command::Kind::Logs(request)
        };
        self.request(node, within, make, |answer| match answer {
            Answer::Logs(logs) => Some(logs),
            Answer::Action(_) => None,
        })
        .await
    }

    /// Sends the command `make` builds around a fresh request id to `node`, and waits up
    /// to `within` for the answer carrying that id, of the kind `pick` takes.
    async fn request<T>(
        &self,
        node: &str,
        within: Duration,
        make: impl FnOnce(String) -> command::Kind,
        pick: impl FnOnce(Answer) -> Option<T>,
    ) -> Result<T, Error> {
        let id = format!("r{}", self.next_request.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), (node.to_owned(), tx));
        let command = Command {
            kind: Some(make(id.clone())),
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
        let answer =
            answer?.map_err(|_| Error::Unavailable(format!("{node}'s agent stream closed")))?;
        pick(answer).ok_or_else(|| {
            Error::Unavailable(format!(
                "{node}'s agent answered with another kind of answer than asked"
            ))
        })
    }

    /// `node`'s agent's answer to a request; one nobody waits for any more, or for a
    /// request another node was asked, is dropped.
    pub fn answer(&self, node: &str, answer: Answer) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let asked = waiting
            .get(answer.request_id())
            .is_some_and(|(asked, _)| asked == node);
        if !asked {
            drop(waiting);
            warn!(message = "An answer came for no request waiting for this node (too late?).", %node, request = %answer.request_id());
            return;
        }
        if let Some((_, tx)) = waiting.remove(answer.request_id()) {
            let _ = tx.send(answer);
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

    /// A node answers only what it was asked: another agent's answer with the same request
    /// id is dropped, and the one asked still gets through.
    #[tokio::test]
    async fn only_the_node_asked_answers() {
        let registry = Registry::new(Arc::default());
        let (tx, mut rx) = mpsc::channel(4);
        let _lease = registry.register("n1", tx).unwrap();
        let asking = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                registry
                    .logs("n1", LogsRequest::default(), Duration::from_secs(5))
                    .await
            })
        };
        let Some(command::Kind::Logs(request)) = rx.recv().await.unwrap().kind else {
            panic!("a logs request")
        };
        let forged = PodLogs {
            request_id: request.request_id.clone(),
            error: "forged".into(),
            ..PodLogs::default()
        };
        registry.answer("n2", Answer::Logs(forged));
        let real = PodLogs {
            request_id: request.request_id,
            ..PodLogs::default()
        };
        registry.answer("n1", Answer::Logs(real));
        let logs = asking.await.unwrap().unwrap();
        assert_eq!(logs.error, "", "the forged answer was dropped");
    }
}
