//! The reporting loop: collect every interval and stream the reports to the collector.
//!
//! The agent opens `AgentGateway.Connect`, sends `Hello`, and learns from `Welcome` the
//! highest `seq` the collector stored for this node; its reports continue above it. A report
//! stays in memory until its `Ack` arrives (the collector acks only after a durable commit);
//! after a reconnect every unacknowledged report is sent again, and the collector drops the
//! ones it already has. Reports collected while the collector is unreachable wait in the
//! same queue, up to `max_pending`; the oldest go first when it overflows.

use std::{collections::VecDeque, path::PathBuf, sync::Arc, time::Duration};

use nodemedic_proto::{
    limits,
    time::duration,
    v1::{
        AgentMessage, CollectorMessage, Hello, NodeReport,
        agent_gateway_client::AgentGatewayClient, agent_message, collector_message, command,
    },
};
use tokio::{
    sync::mpsc,
    time::{Instant, MissedTickBehavior, sleep_until, timeout},
};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tonic::{
    Code, Streaming,
    transport::{Channel, Endpoint},
};
use tracing::{debug, error, info, warn};

use crate::{
    agent::{AGENT_VERSION, Agent},
    backoff::Backoff,
    health::Health,
    podlogs,
    remediation::Remediator,
    spool::{Spool, SpoolError, SpoolLimits},
};

/// Why the reporting loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The collector address is not a URL.
    #[error("invalid collector URL {url:?}: {source}")]
    BadUrl {
        /// The address given.
        url: String,
        /// Why it is invalid.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS files cannot be used.
    #[error("TLS to the collector: {0}")]
    Tls(String),
    /// `--once` could not deliver its report in time.
    #[error("could not deliver the report to {url} within {within:?}: {last_error}")]
    NotDelivered {
        /// The collector.
        url: String,
        /// The deadline.
        within: Duration,
        /// The last thing that went wrong.
        last_error: String,
    },
    /// The spool directory cannot be used.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The collector refused the agent for a reason retrying cannot fix.
    #[error("the collector refused this agent: {0}")]
    Refused(String),
}

/// How the loop reports.
#[derive(Debug, Clone)]
pub struct ReporterOptions {
    /// `http://host:port` of the collector's gRPC listener.
    pub collector_url: String,
    /// Time between collections.
    pub interval: Duration,
    /// Send one report, wait for its ack, and stop.
    pub once: bool,
    /// How long `once` keeps trying.
    pub once_deadline: Duration,
    /// Unacknowledged reports kept for resending.
    pub max_pending: usize,
    /// Where unacknowledged reports survive a restart of the agent; memory only without.
    pub spool: Option<(PathBuf, SpoolLimits)>,
    /// TLS to the collector (its CA, this node's certificate); plaintext without a CA.
    pub tls: nodemedic_proto::tls::ClientTls,
    /// Where the loop says how it is doing (`/healthz`, `/readyz`).
    pub health: Arc<Health>,
}

/// An open `AgentGateway.Connect` stream, after the collector's Welcome.
pub struct Connection {
    /// Messages to the collector.
    pub outbound: mpsc::Sender<AgentMessage>,
    /// Messages from the collector.
    pub inbound: Streaming<CollectorMessage>,
    /// The highest seq the collector has stored for the node.
    pub last_seq: u64,
}

impl Connection {
    /// Opens the stream on `channel`: sends `hello` and waits for the Welcome. `capacity`
    /// bounds the messages queued towards the collector.
    pub async fn open(
        channel: Channel,
        hello: Hello,
        capacity: usize,
    ) -> Result<Self, tonic::Status> {
        let (outbound, rx) = mpsc::channel(capacity.max(1));
        outbound
            .try_send(AgentMessage {
                kind: Some(agent_message::Kind::Hello(hello)),
            })
            .map_err(|_| tonic::Status::internal("new stream refused the hello"))?;
        let mut inbound = AgentGatewayClient::new(channel)
            .connect(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let first = timeout(Duration::from_secs(10), inbound.next())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("no Welcome within 10s"))?;
        match first {
            Some(Ok(CollectorMessage {
                kind: Some(collector_message::Kind::Welcome(w)),
            })) => Ok(Connection {
                outbound,
                inbound,
                last_seq: w.last_seq,
            }),
            Some(Ok(other)) => Err(tonic::Status::internal(format!(
                "expected Welcome, got {other:?}"
            ))),
            Some(Err(status)) => Err(status),
            None => Err(tonic::Status::unavailable(
                "the collector closed the stream before Welcome",
            )),
        }
    }
}

/// Reports and their seq numbering across connections, optionally backed by the spool.
struct Queue {
    /// Oldest first, with their ids; `seq` 0 until the first Welcome says where to start.
    pending: VecDeque<(u64, NodeReport)>,
    next_seq: Option<u64>,
    max: usize,
    spool: Option<Spool>,
    next_id: u64,
    dropped: u64,
}

impl Queue {
    fn new(max: usize, spool: Option<(Spool, Vec<(u64, NodeReport)>)>) -> Self {
        let (spool, restored) = match spool {
            Some((spool, restored)) => (Some(spool), restored),
            None => (None, Vec::new()),
        };
        if !restored.is_empty() {
            info!(
                message = "Resending reports from the spool.",
                count = restored.len()
            );
        }
        Queue {
            pending: restored.into(),
            next_seq: None,
            max: max.max(1),
            spool,
            next_id: 1,
            dropped: 0,
        }
    }

    fn new_id(&mut self) -> u64 {
        match self.spool.as_mut() {
            Some(s) => s.next_id(),
            None => {
                self.next_id += 1;
                self.next_id
            }
        }
    }

    fn persist(&mut self, id: u64, report: &NodeReport) {
        if let Some(spool) = self.spool.as_mut()
            && let Err(e) = spool.write(id, report)
        {
            warn!(message = "Cannot spool a report; it is kept in memory only.", error = %e);
        }
    }

    fn push(&mut self, mut report: NodeReport) -> Option<NodeReport> {
        if let Some(seq) = self.next_seq.as_mut() {
            report.seq = *seq;
            *seq = seq.saturating_add(1);
        }
        let id = self.new_id();
        self.persist(id, &report);
        self.pending.push_back((id, report.clone()));
        let mut over: Vec<u64> = self
            .spool
            .as_ref()
            .map(|s| s.over_limits(std::time::SystemTime::now()))
            .unwrap_or_default();
        if self.pending.len() > self.max {
            over.extend(
                self.pending
                    .iter()
                    .take(self.pending.len() - self.max)
                    .map(|(id, _)| *id),
            );
        }
        over.sort_unstable();
        over.dedup();
        for id in over {
            if let Some(i) = self.pending.iter().position(|(p, _)| *p == id) {
                let (_, dropped) = self.pending.remove(i).expect("a pending report");
                self.dropped += 1;
                warn!(
                    message =
                        "Dropping the oldest unacknowledged report: the queue or spool is full.",
                    seq = dropped.seq,
                    dropped_total = self.dropped
                );
            }
            if let Some(s) = self.spool.as_mut() {
                s.remove(id);
            }
        }
        report.reports_dropped = self.dropped;
        self.pending
            .iter()
            .any(|(p, _)| *p == id)
            .then_some(report)
            .filter(|_| self.next_seq.is_some())
    }

    /// After a Welcome: forget what the collector has, number what was waiting.
    fn welcome(&mut self, last_seq: u64) {
        self.forget_where(|r| r.seq != 0 && r.seq <= last_seq);
        // A spooled seq the collector would refuse (a corrupt or foreign spool file) is
        // numbered again below, rather than pushing every later number past the highest.
        for (id, report) in self
            .pending
            .iter_mut()
            .filter(|(_, r)| r.seq > limits::MAX_SEQ)
        {
            warn!(
                message = "A spooled report carries a seq above the highest the collector accepts; numbering it again",
                file_id = *id,
                seq = report.seq
            );
            report.seq = 0;
        }
        // Above what the collector stored, and above the seqs spooled reports already carry.
        let spooled = self
            .pending
            .iter()
            .map(|(_, r)| r.seq.saturating_add(1))
            .max()
            .unwrap_or(0);
        let mut next = self
            .next_seq
            .unwrap_or(0)
            .max(last_seq.saturating_add(1))
            .max(spooled);
        if next > limits::MAX_SEQ {
            error!(
                message = "This node's report numbers are used up: the collector has stored the highest seq it accepts for this node name. Start the agent under a new node name, or start the collector on an empty store.",
                last_seq
            );
        }
        let mut renumbered = Vec::new();
        for (id, report) in self.pending.iter_mut().filter(|(_, r)| r.seq == 0) {
            report.seq = next;
            next = next.saturating_add(1);
            renumbered.push((*id, report.clone()));
        }
        for (id, report) in renumbered {
            self.persist(id, &report);
        }
        self.next_seq = Some(next);
    }

    fn ack(&mut self, seq: u64) {
        self.forget_where(|r| r.seq <= seq);
    }

    /// Drops the report the collector refused as invalid; says whether it was pending.
    fn drop_refused(&mut self, seq: u64) -> bool {
        let dropped = self.forget_where(|r| r.seq == seq);
        self.dropped += dropped as u64;
        dropped > 0
    }

    /// Forgets the pending reports `which` picks, on the spool too; answers how many.
    fn forget_where(&mut self, which: impl Fn(&NodeReport) -> bool) -> usize {
        let before = self.pending.len();
        let spool = &mut self.spool;
        self.pending.retain(|(id, r)| {
            let forget = which(r);
            if let (true, Some(s)) = (forget, spool.as_mut()) {
                s.remove(*id);
            }
            !forget
        });
        before - self.pending.len()
    }

    fn reports(&self) -> impl Iterator<Item = &NodeReport> {
        self.pending.iter().map(|(_, r)| r)
    }
}

/// The seq of the report a stream was ended for, when the collector refused it as invalid.
fn refused_seq(status: &tonic::Status) -> Option<u64> {
    if status.code() != Code::InvalidArgument {
        return None;
    }
    status
        .metadata()
        .get(limits::REFUSED_SEQ)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Collects every `interval` and streams the reports until `shutdown` resolves (or, with
/// `once`, until the first report is acknowledged).
pub async fn run(
    agent: &Agent,
    opts: &ReporterOptions,
    remediator: Arc<Remediator>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ReportError> {
    // Fails now on a bad URL or unreadable TLS files; built again at every reconnect, so
    // certificates renewed on disk (the kubelet rotates its own) are used without a restart.
    let mut endpoint = collector_endpoint(opts)?;
    let started = Instant::now();
    let spool = match &opts.spool {
        Some((dir, limits)) => Some(Spool::open(dir, *limits)?),
        None => None,
    };
    let mut queue = Queue::new(opts.max_pending, spool);
    let mut conn: Option<Connection> = None;
    let mut backoff = Backoff::new(agent.node());
    let mut reconnect_at = Instant::now();
    let mut last_error = String::from("not connected yet");
    let mut ticker = tokio::time::interval(opts.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut collected_once = false;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            () = sleep_until(started + opts.once_deadline), if opts.once => {
                return Err(ReportError::NotDelivered {
                    url: opts.collector_url.clone(),
                    within: opts.once_deadline,
                    last_error,
                });
            }
            () = &mut shutdown => {
                info!(message = "Shutting down.", unacknowledged = queue.pending.len());
                return Ok(());
            }
            _ = ticker.tick(), if !(opts.once && collected_once) => {
                collected_once = true;
                let started = Instant::now();
                let report = agent.collect().await;
                opts.health.collected(&report, started.elapsed());
                debug!(message = "Collected.", findings = report.findings.len());
                if let Some(report) = queue.push(report) {
                    send(&mut conn, report);
                }
                opts.health.queued(queue.pending.len(), queue.dropped);
            }
            message = next_message(&mut conn) => match message {
                Ok(CollectorMessage { kind: Some(collector_message::Kind::Ack(ack)) }) => {
                    debug!(message = "Acknowledged.", seq = ack.seq, duplicate = ack.duplicate);
                    queue.ack(ack.seq);
                    opts.health.acknowledged();
                    opts.health.queued(queue.pending.len(), queue.dropped);
                    if opts.once && queue.pending.is_empty() {
                        return Ok(());
                    }
                }
                Ok(CollectorMessage { kind: Some(collector_message::Kind::Command(cmd)) }) => match cmd.kind {
                    Some(command::Kind::CollectNow(now)) => {
                        info!(message = "Collecting now on the collector's request.", reason = %now.reason);
                        if let Some(report) = queue.push(agent.collect().await) {
                            send(&mut conn, report);
                        }
                    }
                    Some(command::Kind::Action(request)) => {
                        // Actions can take minutes: they run beside the reports, and the
                        // answer goes back on the stream they came from.
                        if let Some(c) = &conn {
                            let outbound = c.outbound.clone();
                            let remediator = Arc::clone(&remediator);
                            tokio::spawn(async move {
                                let result = remediator.handle(request).await;
                                let message = AgentMessage {
                                    kind: Some(agent_message::Kind::ActionResult(result)),
                                };
                                if outbound.send(message).await.is_err() {
                                    warn!(message = "The stream closed before an action's result could be sent.");
                                }
                            });
                        }
                    }
                    Some(command::Kind::Logs(request)) => {
                        // Files read on a blocking thread, beside the reports.
                        if let Some(c) = &conn {
                            let outbound = c.outbound.clone();
                            let host = agent.host().clone();
                            tokio::spawn(async move {
                                let read = tokio::task::spawn_blocking(move || podlogs::read(&host, &request));
                                let Ok(logs) = read.await else { return };
                                info!(message = "Sending pods' logs for a bundle.", containers = logs.logs.len());
                                let message = AgentMessage { kind: Some(agent_message::Kind::PodLogs(logs)) };
                                if outbound.send(message).await.is_err() {
                                    warn!(message = "The stream closed before the pods' logs could be sent.");
                                }
                            });
                        }
                    }
                    None => warn!(message = "Ignoring an empty command."),
                },
                Ok(other) => warn!(message = "Ignoring an unexpected message.", ?other),
                Err(status) => {
                    if let Some(seq) = refused_seq(&status) && queue.drop_refused(seq) {
                        error!(message = "The collector refused a report as invalid; dropped it (sent again, it would be refused again).", seq, error = %status.message());
                        opts.health.queued(queue.pending.len(), queue.dropped);
                    }
                    warn!(message = "Lost the collector stream.", code = ?status.code(), error = %status.message());
                    last_error = status.message().to_owned();
                    opts.health.disconnected(&last_error);
                    conn = None;
                    reconnect_at = Instant::now() + backoff.next_wait();
                }
            },
            () = sleep_until(reconnect_at), if conn.is_none() => {
                match collector_endpoint(opts) {
                    Ok(fresh) => endpoint = fresh,
                    Err(e) => warn!(message = "Cannot read the TLS files again; using the ones read before.", error = %e),
                }
                match connect(&endpoint, agent, opts.interval).await {
                    Ok(c) => {
                        let last_seq = c.last_seq;
                        info!(message = "Connected to the collector.", url = %opts.collector_url, last_seq, resending = queue.pending.len());
                        backoff.reset();
                        opts.health.connected();
                        queue.welcome(last_seq);
                        for report in queue.reports() {
                            if c.outbound.try_send(report_message(report.clone())).is_err() {
                                warn!(message = "Could not queue a report on the new stream.");
                            }
                        }
                        conn = Some(c);
                        // An empty queue in once mode means the collector already had it.
                        if opts.once && collected_once && queue.pending.is_empty() {
                            return Ok(());
                        }
                    }
                    Err(status) if status.code() == Code::InvalidArgument => {
                        return Err(ReportError::Refused(status.message().to_owned()));
                    }
                    Err(status) => {
                        let wait = backoff.next_wait();
                        let hint = nodemedic_proto::tls::mismatch_hint(status.message()).unwrap_or_default();
                        warn!(message = "Cannot reach the collector.", url = %opts.collector_url, error = %status, hint, retry_in = ?wait);
                        last_error = if hint.is_empty() {
                            status.to_string()
                        } else {
                            format!("{status} ({hint})")
                        };
                        opts.health.disconnected(&last_error);
                        reconnect_at = Instant::now() + wait;
                    }
                }
            }
        }
    }
}

/// The collector's endpoint, with the TLS files as they are on disk now.
fn collector_endpoint(opts: &ReporterOptions) -> Result<Endpoint, ReportError> {
    let endpoint = Endpoint::from_shared(opts.collector_url.clone())
        .map_err(|source| ReportError::BadUrl {
            url: opts.collector_url.clone(),
            source,
        })?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .tcp_keepalive(Some(Duration::from_secs(60)));
    match opts.tls.config().map_err(ReportError::Tls)? {
        Some(tls) => endpoint
            .tls_config(tls)
            .map_err(|e| ReportError::Tls(e.to_string())),
        None => Ok(endpoint),
    }
}

fn report_message(report: NodeReport) -> AgentMessage {
    AgentMessage {
        kind: Some(agent_message::Kind::Report(report)),
    }
}

fn send(conn: &mut Option<Connection>, report: NodeReport) {
    if let Some(c) = conn
        && c.outbound.try_send(report_message(report)).is_err()
    {
        warn!(message = "The collector stream is not draining; reconnecting.");
        *conn = None;
    }
}

/// The next message of the open stream; pending forever while there is none.
async fn next_message(conn: &mut Option<Connection>) -> Result<CollectorMessage, tonic::Status> {
    match conn {
        Some(c) => match c.inbound.next().await {
            Some(result) => result,
            None => Err(tonic::Status::unavailable(
                "the collector closed the stream",
            )),
        },
        None => std::future::pending().await,
    }
}

/// Connects and opens the stream with this agent's Hello.
async fn connect(
    endpoint: &Endpoint,
    agent: &Agent,
    interval: Duration,
) -> Result<Connection, tonic::Status> {
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {}", error_chain(&e))))?;
    let hello = Hello {
        node: agent.node().to_owned(),
        agent_version: AGENT_VERSION.to_owned(),
        capabilities: agent.capabilities(),
        interval: Some(duration(interval)),
    };
    // Room for a full resend queue plus what comes while it drains.
    Connection::open(channel, hello, 4096).await
}

/// An error and its causes: "transport error: tcp connect error: Connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> NodeReport {
        NodeReport {
            node: "n".into(),
            collected_at: Some(nodemedic_proto::time::timestamp(
                std::time::SystemTime::now(),
            )),
            ..Default::default()
        }
    }

    fn seqs(q: &Queue) -> Vec<u64> {
        q.reports().map(|r| r.seq).collect()
    }

    #[test]
    fn a_report_refused_as_invalid_is_dropped_alone_and_counted() {
        let mut q = Queue::new(10, None);
        q.welcome(0);
        for _ in 0..3 {
            q.push(report());
        }
        assert!(q.drop_refused(2));
        assert_eq!(seqs(&q), [1, 3], "the ones before and after it are kept");
        assert!(!q.drop_refused(2), "only once");
        assert_eq!(q.push(report()).unwrap().reports_dropped, 1);
        let refused = tonic::Status::invalid_argument("too many findings");
        assert_eq!(refused_seq(&refused), None, "no seq named");
        let mut named = refused.clone();
        named
            .metadata_mut()
            .insert(limits::REFUSED_SEQ, 7u64.into());
        assert_eq!(refused_seq(&named), Some(7));
        let mut unavailable = tonic::Status::unavailable("disk full");
        *unavailable.metadata_mut() = named.metadata().clone();
        assert_eq!(refused_seq(&unavailable), None, "kept for a resend");
    }

    #[test]
    fn reports_before_the_first_welcome_are_numbered_above_the_stored_ones() {
        let mut q = Queue::new(10, None);
        assert!(q.push(report()).is_none(), "not sendable before a Welcome");
        q.push(report());
        q.welcome(41);
        assert_eq!(seqs(&q), [42, 43]);
        assert_eq!(q.push(report()).unwrap().seq, 44);
        q.ack(43);
        assert_eq!(q.pending.len(), 1);
        // Reconnect: the collector had stored 44 already (crash before the ack).
        q.welcome(44);
        assert!(q.pending.is_empty());
        assert_eq!(q.push(report()).unwrap().seq, 45);
    }

    #[test]
    fn a_spooled_seq_above_the_highest_is_numbered_again() {
        let mut q = Queue::new(10, None);
        for (id, seq) in [(1, 3), (2, limits::MAX_SEQ + 1), (3, u64::MAX)] {
            q.pending.push_back((id, NodeReport { seq, ..report() }));
        }
        q.welcome(5);
        assert_eq!(
            seqs(&q),
            [6, 7],
            "the stored 3 forgotten, the two others after 5"
        );
        assert_eq!(
            q.push(report()).unwrap().seq,
            8,
            "numbering goes on from there"
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts() {
        let mut q = Queue::new(2, None);
        q.welcome(0);
        let last = (0..3).map(|_| q.push(report())).last().flatten().unwrap();
        assert_eq!(seqs(&q), [2, 3]);
        assert_eq!(last.reports_dropped, 1);
    }

    #[test]
    fn the_spool_survives_a_restart_and_drops_the_oldest_past_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let mut q = Queue::new(100, Some(Spool::open(dir.path(), limits).unwrap()));
        for _ in 0..3 {
            q.push(report());
        }
        q.welcome(10);
        q.ack(11);
        drop(q);
        // A new agent process: the two unacknowledged reports come back, numbered, in order.
        let mut q = Queue::new(100, Some(Spool::open(dir.path(), limits).unwrap()));
        assert_eq!(seqs(&q), [12, 13]);
        q.welcome(12);
        assert_eq!(seqs(&q), [13]);
        assert_eq!(q.push(report()).unwrap().seq, 14);

        // Room for two reports and a half: their sizes differ by a few bytes (the times
        // they carry compress differently), so exactly two would sometimes fit only one.
        let one = q.spool.as_ref().unwrap().bytes() / 2;
        let tiny = SpoolLimits {
            max_bytes: one * 2 + one / 2,
            ..limits
        };
        let mut q = Queue::new(100, Some(Spool::open(dir.path(), tiny).unwrap()));
        q.welcome(0);
        let last = q.push(report()).unwrap();
        assert_eq!(
            seqs(&q),
            [14, 15],
            "the oldest (13) went to keep the spool under its size"
        );
        assert_eq!(last.reports_dropped, 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
