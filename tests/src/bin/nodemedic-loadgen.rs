//! `nodemedic-loadgen`: N simulated agents against a real collector, for the scale
//! scenarios in BENCHMARKS.md. Each node opens its own connection and `AgentGateway`
//! stream, sends reports made from a real collection on this machine (mounts, memory, DNS,
//! ...) with findings that come and go, keeps every report until its acknowledgement and
//! resends the unacknowledged ones after a reconnect (backoff with jitter, as the agent
//! does), exactly like the agent. Every few seconds and at the end it prints streams
//! connected, reports sent and acknowledged per second, ack latency, errors by status, and
//! (with --query-every) the latency of `GetNode` and a cluster-wide `ListFindings`.
//!
//! The last line is a JSON summary (sent, acknowledged, duplicates, unacknowledged at the
//! end, nodes), which the scale test reads.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use clap::Parser;
use nodemedic_agent::{
    Agent, backoff::Backoff, config::Config, host::HostRoot, reporter::Connection, testing,
};
use nodemedic_proto::{
    time::{duration, timestamp},
    v1::{
        AgentMessage, CollectorMessage, Finding, GetNodeRequest, Hello, ListFindingsRequest,
        NodeReport, Severity, agent_message, collector_message,
        diagnostics_client::DiagnosticsClient,
    },
};
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

/// Simulated agents against a collector (loopback only), for the scale scenarios.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The collector's gRPC address (plaintext: start it with --insecure)
    #[arg(long, default_value = "http://127.0.0.1:9440")]
    collector: String,
    /// Simulated nodes, each with its own connection and stream
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Time between one node's reports; 0 sends as fast as acknowledgements allow
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Unacknowledged reports one node may have in flight
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// How long to send
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Nodes connect spread over this time (0: all at once)
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    ramp: Duration,
    /// Churn: every this often, --churn-share of the nodes leave and as many new ones join
    #[arg(long, value_parser = humantime::parse_duration)]
    churn_every: Option<Duration>,
    /// Share of the nodes replaced at each churn, 0..1
    #[arg(long, default_value_t = 0.05)]
    churn_share: f64,
    /// Ask GetNode (a random node) and a cluster-wide ListFindings this often
    #[arg(long, value_parser = humantime::parse_duration)]
    query_every: Option<Duration>,
    /// Print figures this often
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    report_every: Duration,
    /// After --duration, wait this long for the last acknowledgements
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Node names are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "loadgen")]
    prefix: String,
    /// mTLS as agents do it: the directory `nodemedic-collector certs init` made. Each node
    /// gets a client certificate of its own, signed in memory by that CA (the collector
    /// must trust it: --client-ca DIR/ca.pem) and trusts the collector's certificate
    /// through it; --collector is then https://localhost:PORT
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<std::path::PathBuf>,
}

/// Counters and latencies shared by every node task.
#[derive(Default)]
struct Stats {
    connected: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    duplicates: AtomicU64,
    unacked: AtomicU64,
    ack: Latencies,
    get_node: Latencies,
    list_findings: Latencies,
    /// Errors by gRPC status code since the start.
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn error(&self, what: &str) {
        *self
            .errors
            .lock()
            .unwrap()
            .entry(what.to_owned())
            .or_default() += 1;
    }
}

/// Latencies in µs: since the last print, and of the whole run.
#[derive(Default)]
struct Latencies {
    period: Mutex<Vec<u64>>,
    all: Mutex<Vec<u64>>,
}

impl Latencies {
    fn record(&self, since: Instant) {
        let micros = since.elapsed().as_micros() as u64;
        self.period.lock().unwrap().push(micros);
        self.all.lock().unwrap().push(micros);
    }

    /// (p50, p99, max) in ms since the last call.
    fn period(&self) -> Option<(f64, f64, f64)> {
        percentiles(std::mem::take(&mut *self.period.lock().unwrap()))
    }

    /// (p50, p99, max) in ms of the whole run.
    fn all(&self) -> Option<(f64, f64, f64)> {
        percentiles(self.all.lock().unwrap().clone())
    }
}

/// (p50, p99, max) in milliseconds of `v` (µs).
fn percentiles(mut v: Vec<u64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1e3;
    Some((at(0.50), at(0.99), *v.last().unwrap() as f64 / 1e3))
}

fn fmt(p: Option<(f64, f64, f64)>) -> String {
    p.map_or("-".into(), |(a, b, c)| format!("{a:.1}/{b:.1}/{c:.1} ms"))
}

/// Report `seq` of `node` (its index `i`) from the template: its own name and time, the
/// numbers that move between two collections moved (`testing::drift`), a finding always open,
/// and one that opens for 30 reports in every 300, at a phase of the node's own (so about
/// a tenth of the nodes have it at any time, each for a while).
fn report(template: &NodeReport, node: &str, i: usize, seq: u64) -> NodeReport {
    let mut r = template.clone();
    r.node = node.to_owned();
    r.seq = seq;
    r.collected_at = Some(timestamp(SystemTime::now()));
    testing::drift(&mut r, i as u64, seq);
    r.findings.clear();
    r.findings.push(Finding::fail(
        "memory.swap",
        Severity::Warning,
        "",
        "swap in use".into(),
    ));
    if (seq / 30 + i as u64).is_multiple_of(10) {
        r.findings.push(Finding::fail(
            "disk.space",
            Severity::Critical,
            "/var/lib/kubelet",
            "96% used".into(),
        ));
    }
    for f in &mut r.findings {
        f.node = node.to_owned();
    }
    r
}

/// One simulated agent until `stop` (or `retire`) is set, then until its reports are
/// acknowledged or `drain_until`.
#[allow(clippy::too_many_arguments)]
async fn node(
    endpoint: Endpoint,
    name: String,
    i: usize,
    template: Arc<NodeReport>,
    args: Arc<Args>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    retire: Arc<AtomicBool>,
    start_at: tokio::time::Instant,
) {
    tokio::time::sleep_until(start_at).await;
    let mut backoff = Backoff::new(&name);
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut next_seq = 1u64;
    let mut next_send = tokio::time::Instant::now();
    let mut drain_until: Option<tokio::time::Instant> = None;
    'connect: loop {
        let stopping = stop.load(Ordering::Relaxed) || retire.load(Ordering::Relaxed);
        if stopping && pending.is_empty() {
            break;
        }
        if stopping && drain_until.is_some_and(|d| tokio::time::Instant::now() > d) {
            break;
        }
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(_) => {
                stats.error("connect");
                tokio::time::sleep(backoff.next_wait()).await;
                continue;
            }
        };
        let hello = Hello {
            node: name.clone(),
            agent_version: "loadgen".into(),
            capabilities: vec![],
            interval: Some(duration(args.interval.max(Duration::from_secs(1)))),
        };
        let Connection {
            outbound,
            mut inbound,
            last_seq,
        } = match Connection::open(channel, hello, args.window + 2).await {
            Ok(c) => c,
            Err(status) => {
                stats.error(&format!("{:?}", status.code()));
                tokio::time::sleep(backoff.next_wait()).await;
                continue;
            }
        };
        backoff.reset();
        stats.connected.fetch_add(1, Ordering::Relaxed);
        // What the collector already has is acknowledged; the rest goes again, in order.
        while pending.front().is_some_and(|(s, _)| *s <= last_seq) {
            pending.pop_front();
            stats.acked.fetch_add(1, Ordering::Relaxed);
            stats.unacked.fetch_sub(1, Ordering::Relaxed);
        }
        for (seq, _) in &pending {
            let r = report(&template, &name, i, *seq);
            if outbound
                .send(AgentMessage {
                    kind: Some(agent_message::Kind::Report(r)),
                })
                .await
                .is_err()
            {
                break;
            }
        }
        loop {
            let stopping = stop.load(Ordering::Relaxed) || retire.load(Ordering::Relaxed);
            if stopping && drain_until.is_none() {
                drain_until = Some(tokio::time::Instant::now() + args.drain);
            }
            if stopping
                && (pending.is_empty()
                    || drain_until.is_some_and(|d| tokio::time::Instant::now() > d))
            {
                stats.connected.fetch_sub(1, Ordering::Relaxed);
                break 'connect;
            }
            let can_send = !stopping && pending.len() < args.window;
            tokio::select! {
                () = tokio::time::sleep_until(next_send), if can_send => {
                    let r = report(&template, &name, i, next_seq);
                    if outbound.send(AgentMessage { kind: Some(agent_message::Kind::Report(r)) }).await.is_err() {
                        stats.error("stream closed");
                        break;
                    }
                    pending.push_back((next_seq, Instant::now()));
                    next_seq += 1;
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    stats.unacked.fetch_add(1, Ordering::Relaxed);
                    next_send += args.interval;
                    if args.interval.is_zero() {
                        next_send = tokio::time::Instant::now();
                    }
                }
                message = inbound.next() => match message {
                    Some(Ok(CollectorMessage { kind: Some(collector_message::Kind::Ack(ack)) })) => {
                        while let Some((seq, at)) = pending.front().copied() {
                            if seq > ack.seq {
                                break;
                            }
                            pending.pop_front();
                            stats.acked.fetch_add(1, Ordering::Relaxed);
                            stats.unacked.fetch_sub(1, Ordering::Relaxed);
                            stats.ack.record(at);
                        }
                        if ack.duplicate {
                            stats.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(status)) => {
                        stats.error(&format!("{:?}", status.code()));
                        break;
                    }
                    None => {
                        stats.error("stream ended");
                        break;
                    }
                },
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        stats.connected.fetch_sub(1, Ordering::Relaxed);
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

/// GetNode of a random node and a cluster-wide ListFindings, every `every`.
async fn queries(url: String, prefix: String, nodes: usize, every: Duration, stats: Arc<Stats>) {
    let Ok(channel) = Channel::from_shared(url).expect("a URL").connect().await else {
        stats.error("query connect");
        return;
    };
    let mut client = DiagnosticsClient::new(channel);
    let mut n = 1u64;
    loop {
        tokio::time::sleep(every).await;
        n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let name = format!("{prefix}-{}", (n >> 33) as usize % nodes.max(1));
        let t = Instant::now();
        match client.get_node(GetNodeRequest { name }).await {
            Ok(_) => stats.get_node.record(t),
            Err(s) => stats.error(&format!("GetNode {:?}", s.code())),
        }
        let t = Instant::now();
        match client.list_findings(ListFindingsRequest::default()).await {
            Ok(_) => stats.list_findings.record(t),
            Err(s) => stats.error(&format!("ListFindings {:?}", s.code())),
        }
    }
}

fn main() -> anyhow::Result<()> {
    nodemedic_proto::logging::init("warn");
    let args = Arc::new(Args::parse());
    anyhow::ensure!(args.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(
        args.tls_dir.is_none() || args.query_every.is_none(),
        "--query-every asks as tooling, which a TLS collector wants a role for: not with --tls-dir"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.churn_share),
        "--churn-share is a share, 0..1"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Arc<Args>) -> anyhow::Result<()> {
    // One real collection on this machine is the template. No live DNS queries: this
    // machine's resolvers are not the test's own.
    let mut config = Config::default();
    config.dns.enabled = false;
    let template = Arc::new(
        Agent::new("template".into(), HostRoot::default(), &config)
            .collect()
            .await,
    );
    let endpoint = Endpoint::from_shared(args.collector.clone())?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let tls = args
        .tls_dir
        .as_deref()
        .map(|dir| -> anyhow::Result<_> {
            let ca = std::fs::read(dir.join("ca.pem"))?;
            let issuer = nodemedic_collector::tls::ClientIssuer::from_dir(dir)?;
            Ok((tonic::transport::Certificate::from_pem(ca), issuer))
        })
        .transpose()?;
    // Each node's endpoint: with mTLS, its own certificate (signed before it starts).
    let endpoint_of = |name: &str| -> anyhow::Result<Endpoint> {
        let Some((ca, issuer)) = &tls else {
            return Ok(endpoint.clone());
        };
        let (cert, key) = issuer.agent(name, 1)?;
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(ca.clone())
            .identity(tonic::transport::Identity::from_pem(cert, key));
        Ok(endpoint.clone().tls_config(config)?)
    };
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = tokio::time::Instant::now();
    let spawn = |i: usize, at: tokio::time::Instant| {
        let retire = Arc::new(AtomicBool::new(false));
        let name = format!("{}-{i}", args.prefix);
        let endpoint = endpoint_of(&name).expect("a client certificate for the node");
        let task = tokio::spawn(node(
            endpoint,
            name,
            i,
            Arc::clone(&template),
            Arc::clone(&args),
            Arc::clone(&stats),
            Arc::clone(&stop),
            Arc::clone(&retire),
            at,
        ));
        (i, retire, task)
    };
    let mut live: Vec<_> = (0..args.nodes)
        .map(|i| {
            let offset = args.ramp.mul_f64(i as f64 / args.nodes as f64);
            spawn(i, started + offset)
        })
        .collect();
    let mut retired = Vec::new();
    let mut next_index = args.nodes;
    if let Some(every) = args.query_every {
        tokio::spawn(queries(
            args.collector.clone(),
            args.prefix.clone(),
            args.nodes,
            every,
            Arc::clone(&stats),
        ));
    }

    let mut tick = tokio::time::interval_at(started + args.report_every, args.report_every);
    let mut churn = args
        .churn_every
        .map(|e| tokio::time::interval_at(started + e, e));
    let (mut last_sent, mut last_acked, mut last_at) = (0, 0, started);
    let end = started + args.duration;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            _ = tick.tick() => {
                let (sent, acked) = (stats.sent.load(Ordering::Relaxed), stats.acked.load(Ordering::Relaxed));
                let secs = last_at.elapsed().as_secs_f64();
                println!(
                    "t={:>4.0}s streams={} sent/s={:.0} acked/s={:.0} unacked={} ack p50/p99/max={} getnode={} listfindings={} errors={:?}",
                    started.elapsed().as_secs_f64(),
                    stats.connected.load(Ordering::Relaxed),
                    (sent - last_sent) as f64 / secs,
                    (acked - last_acked) as f64 / secs,
                    stats.unacked.load(Ordering::Relaxed),
                    fmt(stats.ack.period()),
                    fmt(stats.get_node.period()),
                    fmt(stats.list_findings.period()),
                    stats.errors.lock().unwrap(),
                );
                (last_sent, last_acked, last_at) = (sent, acked, tokio::time::Instant::now());
            }
            _ = async { churn.as_mut().unwrap().tick().await }, if churn.is_some() => {
                let replace = ((live.len() as f64) * args.churn_share).round() as usize;
                for _ in 0..replace.min(live.len()) {
                    let (_, retire, task) = live.remove(0);
                    retire.store(true, Ordering::Relaxed);
                    retired.push(task);
                    live.push(spawn(next_index, tokio::time::Instant::now()));
                    next_index += 1;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for (_, _, task) in live {
        task.await?;
    }
    for task in retired {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = stats.sent.load(Ordering::Relaxed);
    let acked = stats.acked.load(Ordering::Relaxed);
    println!(
        "done in {elapsed:.1}s: {sent} sent, {acked} acknowledged ({:.0}/s), {} duplicate acks, {} unacknowledged, errors {:?}",
        acked as f64 / elapsed,
        stats.duplicates.load(Ordering::Relaxed),
        stats.unacked.load(Ordering::Relaxed),
        stats.errors.lock().unwrap(),
    );
    println!(
        "whole run: ack p50/p99/max {}, GetNode {}, ListFindings {}",
        fmt(stats.ack.all()),
        fmt(stats.get_node.all()),
        fmt(stats.list_findings.all()),
    );
    println!(
        "{}",
        serde_json::json!({
            "sent": sent,
            "acknowledged": acked,
            "duplicates": stats.duplicates.load(Ordering::Relaxed),
            "unacknowledged": stats.unacked.load(Ordering::Relaxed),
            "nodes": next_index,
        })
    );
    Ok(())
}
