//! `AgentGateway`: the agents' streams. Hello, Welcome, then reports in and acks out.
//!
//! Each report is validated, queued to the store writer, and acknowledged in order once its
//! batch has committed; reports of one stream are pipelined (the agent need not wait for an
//! ack before sending the next). A stream that breaks the rules is ended with a status that
//! says why; what was stored before stays stored.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::stream::FuturesOrdered;
use nodemedic_proto::{
    limits,
    time::{std_duration, unix_millis},
    v1::{
        Ack, AgentMessage, CollectorMessage, Command, Hello, Welcome,
        agent_gateway_server::AgentGateway, agent_message, collector_message,
    },
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::{
    error::Error,
    listener::peer_of,
    metrics::Metrics,
    ratelimit::RateLimiter,
    registry::{Answer, Lease, Registry},
    store::writer::WriterHandle,
    validate::{self, ReportLimits},
};

/// The collector's version, sent in Welcome.
pub const COLLECTOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a new stream may take to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway service.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) writer: WriterHandle,
    pub(crate) registry: Arc<Registry>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: ReportLimits,
    /// Changes when the collector shuts down: every session ends.
    pub(crate) shutdown: tokio::sync::watch::Receiver<()>,
    /// Agents must present a client certificate naming the node they report for (TLS).
    pub(crate) require_identity: bool,
    /// Each agent's report rate.
    pub(crate) rate: Arc<RateLimiter>,
    /// The node name the collector's cluster view reports as: no agent may take it.
    pub(crate) reserved: Option<String>,
}

type Outbound = mpsc::Sender<Result<CollectorMessage, Status>>;

fn message(kind: collector_message::Kind) -> Result<CollectorMessage, Status> {
    Ok(CollectorMessage { kind: Some(kind) })
}

#[tonic::async_trait]
impl AgentGateway for Gateway {
    type ConnectStream = Pin<Box<dyn Stream<Item = Result<CollectorMessage, Status>> + Send>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let peer = peer_of(&request).map(|p| p.addr);
        // The node the verified client certificate names, if any.
        let certified = peer_of(&request)
            .and_then(|p| p.cert.as_deref())
            .and_then(crate::tls::node_of);
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.next()).await {
            Ok(Some(Ok(AgentMessage {
                kind: Some(agent_message::Kind::Hello(hello)),
            }))) => hello,
            Ok(Some(Ok(_))) => {
                return Err(self.refuse(
                    "no_hello",
                    Status::invalid_argument("the first message on a stream must be Hello"),
                ));
            }
            Ok(Some(Err(status))) => return Err(self.refuse("bad_message", status)),
            Ok(None) => {
                return Err(Status::cancelled(
                    "the agent closed the stream before Hello",
                ));
            }
            Err(_) => {
                return Err(
                    self.refuse("no_hello", Status::deadline_exceeded("no Hello within 10s"))
                );
            }
        };
        if let Err(e) = validate::node_name(&hello.node) {
            warn!(message = "Refused a stream.", ?peer, error = %e);
            return Err(self.refuse("invalid_node_name", e.into()));
        }
        if self.reserved.as_deref() == Some(hello.node.as_str()) {
            warn!(message = "Refused a stream: the cluster view's name.", node = %hello.node, ?peer);
            return Err(self.refuse(
                "reserved_node_name",
                Status::permission_denied(format!(
                    "{:?} is the name the collector's cluster view reports as (--cluster-view-name)",
                    hello.node
                )),
            ));
        }
        if self.require_identity && certified.as_deref() != Some(hello.node.as_str()) {
            let status = match &certified {
                None => Status::unauthenticated(
                    "agents must present a client certificate naming their node",
                ),
                Some(named) => Status::permission_denied(format!(
                    "the certificate names node {named:?}; it may not report for {:?}",
                    hello.node
                )),
            };
            warn!(message = "Refused a stream: node identity.", node = %hello.node, certified = ?certified, ?peer);
            return Err(self.refuse("identity", status));
        }
        let (commands_tx, commands) = mpsc::channel(16);
        let lease = self
            .registry
            .register(&hello.node, commands_tx)
            .map_err(|e| {
                warn!(message = "Refused a second stream for a node.", node = %hello.node, ?peer);
                self.refuse("duplicate_stream", e.into())
            })?;
        let interval = hello
            .interval
            .as_ref()
            .map(std_duration)
            .unwrap_or(Duration::from_secs(10));
        let last_seq = self
            .writer
            .hello(
                &hello.node,
                &hello.agent_version,
                interval,
                unix_millis(std::time::SystemTime::now()),
            )
            .await
            .map_err(|e| Status::from(Error::from(e)))?;
        info!(message = "Agent connected.", node = %hello.node, version = %hello.agent_version, ?peer, last_seq);

        let (outbound, rx) = mpsc::channel(256);
        outbound
            .send(message(collector_message::Kind::Welcome(Welcome {
                last_seq,
                collector_version: COLLECTOR_VERSION.to_owned(),
            })))
            .await
            .map_err(|_| Status::cancelled("the agent went away"))?;
        tokio::spawn(
            self.clone()
                .session(hello, last_seq, inbound, outbound, commands, lease),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl Gateway {
    fn refuse(&self, reason: &str, status: Status) -> Status {
        self.metrics.refuse(reason);
        status
    }

    /// A report the store could not take (a full disk, say): the stream ends UNAVAILABLE
    /// with the store's reason, unacknowledged reports stay with the agent, and the refusal
    /// is counted (`reason="store"`).
    fn store_failed(&self, node: &str, e: impl Into<Error>) -> Status {
        let e = e.into();
        warn!(message = "The store refused a report; the agent keeps it.", %node, error = %e);
        self.refuse("store", e.into())
    }

    /// Serves one stream after its Welcome until it ends.
    async fn session(
        self,
        hello: Hello,
        last_seq: u64,
        mut inbound: Streaming<AgentMessage>,
        outbound: Outbound,
        mut commands: mpsc::Receiver<Command>,
        _lease: Lease,
    ) {
        let node = hello.node;
        let mut previous_seq = 0;
        let mut acks = FuturesOrdered::new();
        let mut inbound_open = true;
        // Over its rate, the agent's next message is read only from this time on.
        let mut paused_until: Option<tokio::time::Instant> = None;
        let mut paced = false;
        let mut shutdown = self.shutdown.clone();
        let end: Option<Status> = loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    break Some(Status::unavailable("the collector is shutting down; reconnect and resend what was not acknowledged"));
                }
                () = tokio::time::sleep_until(paused_until.unwrap_or_else(tokio::time::Instant::now)), if paused_until.is_some() => {
                    paused_until = None;
                }
                message = inbound.next(), if inbound_open && paused_until.is_none() => match message {
                    Some(Ok(AgentMessage { kind: Some(agent_message::Kind::Report(report)) })) => {
                        if let Err(e) = validate::report(&report, &node, previous_seq, self.limits) {
                            let reason = if report.node != node { "node_mismatch" } else if report.seq <= previous_seq { "seq" } else { "invalid_report" };
                            warn!(message = "Refused a report.", %node, seq = report.seq, error = %e);
                            let mut status: Status = e.into();
                            if reason == "invalid_report" {
                                // Sending it again would be refused again: the agent drops it.
                                status.metadata_mut().insert(limits::REFUSED_SEQ, report.seq.into());
                            }
                            break Some(self.refuse(reason, status));
                        }
                        previous_seq = report.seq;
                        let wait = self.rate.take(&node, std::time::Instant::now());
                        if !wait.is_zero() {
                            self.metrics.throttled.inc();
                            if !paced {
                                paced = true;
                                warn!(message = "Pacing an agent over its report rate.", %node, seq = report.seq);
                            }
                            paused_until = Some(tokio::time::Instant::now() + wait);
                        }
                        let received_at = unix_millis(std::time::SystemTime::now());
                        match self.writer.ingest(report, received_at).await {
                            Ok(committed) => acks.push_back(committed),
                            Err(e) => break Some(self.store_failed(&node, e)),
                        }
                    }
                    Some(Ok(AgentMessage { kind: Some(agent_message::Kind::ActionResult(result)) })) => {
                        self.registry.answer(&node, Answer::Action(result));
                    }
                    Some(Ok(AgentMessage { kind: Some(agent_message::Kind::PodLogs(logs)) })) => {
                        self.registry.answer(&node, Answer::Logs(logs));
                    }
                    Some(Ok(other)) => {
                        break Some(self.refuse("unexpected_message", Status::invalid_argument(format!("expected a Report after Hello, got {other:?}"))));
                    }
                    Some(Err(status)) => {
                        let refusal = match status.code() {
                            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => Some("too_large"),
                            _ if status.message().contains("too large") => Some("too_large"),
                            tonic::Code::Internal => Some("bad_message"),
                            _ => None,
                        };
                        match refusal {
                            Some(reason) => {
                                warn!(message = "Refused a malformed message.", %node, code = ?status.code(), error = %status.message());
                                break Some(self.refuse(reason, status));
                            }
                            None => {
                                info!(message = "Agent stream broke.", %node, error = %status.message());
                                break None;
                            }
                        }
                    }
                    None => inbound_open = false,
                },
                Some(committed) = acks.next(), if !acks.is_empty() => match committed {
                    Ok(ingested) => {
                        let ack = Ack { seq: ingested.seq, duplicate: ingested.duplicate };
                        if outbound.send(message(collector_message::Kind::Ack(ack))).await.is_err() {
                            break None;
                        }
                    }
                    Err(e) => break Some(self.store_failed(&node, e)),
                },
                Some(command) = commands.recv() => {
                    if outbound.send(message(collector_message::Kind::Command(command))).await.is_err() {
                        break None;
                    }
                }
                else => break None,
            }
            if !inbound_open && acks.is_empty() {
                break None;
            }
        };
        if let Some(status) = end {
            let _ = outbound.send(Err(status)).await;
        }
        debug!(message = "Agent stream ended.", %node, last_seq = previous_seq.max(last_seq));
        info!(message = "Agent disconnected.", %node);
    }
}
