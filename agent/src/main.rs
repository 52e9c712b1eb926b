//! `nodemedic-agent`: measure this node and stream reports to the collector.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use nodemedic_agent::{
    Agent,
    agent::node_name,
    config::Config,
    health::{self, Health},
    host::HostRoot,
    remediation::Remediator,
    reporter::{self, ReporterOptions},
    spool::SpoolLimits,
};

/// Measures this node (disk, memory, kernel limits, DNS, container images, the kernel log, pods and node conditions from the Kubernetes API) and streams reports to a nodemedic
/// collector. Runs as a DaemonSet with the host's / mounted at --host-root.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// gRPC address of the collector, e.g. https://nodemedic-collector.nodemedic:9440
    /// (http:// only with a collector started with --insecure)
    #[arg(long, env = "NODEMEDIC_COLLECTOR")]
    collector: String,
    /// The CA of the collector's certificate (PEM), for an https:// collector
    #[arg(long, env = "NODEMEDIC_CA")]
    ca: Option<PathBuf>,
    /// This node's client certificate (PEM; `nodemedic-collector certs agent` makes one):
    /// the collector accepts reports only for the node it names
    #[arg(long, env = "NODEMEDIC_CERT", requires_all = ["ca", "key"])]
    cert: Option<PathBuf>,
    /// Its private key (PEM)
    #[arg(long, env = "NODEMEDIC_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// Name this node reports as [default: $NODE_NAME (downward API), else the hostname]
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Where the node's / is mounted; every path the probes read is below it
    #[arg(long, default_value = "/")]
    host_root: PathBuf,
    /// Time between reports, e.g. 10s, 1m
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Send one report, wait until the collector has stored it, and exit
    #[arg(long)]
    once: bool,
    /// With --once: give up (exit non-zero) when the report is not stored within this time
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    once_timeout: Duration,
    /// YAML file of thresholds and probe settings (see README); defaults without it
    #[arg(long)]
    config: Option<PathBuf>,
    /// Kubeconfig for watching this node's pods, the node and its events [default: the
    /// in-cluster service account when running in a pod; without either, node-only]
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig this node's conditions and Events are written with [default: the client of
    /// --kubeconfig]. The kubelet's own (e.g. /etc/kubernetes/kubelet.conf, with
    /// /var/lib/kubelet/pki mounted) makes the API server itself (NodeRestriction) limit the
    /// writes to this node
    #[arg(long, env = "NODEMEDIC_WRITE_KUBECONFIG")]
    write_kubeconfig: Option<PathBuf>,
    /// Unacknowledged reports kept for resending while the collector is away
    #[arg(long, default_value_t = 360)]
    max_pending: usize,
    /// Directory where unacknowledged reports survive an agent restart (zstd files)
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// Most bytes the spool holds; the oldest reports are dropped past it
    #[arg(long, default_value_t = 64 << 20)]
    spool_max_bytes: u64,
    /// Spooled reports older than this are dropped
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    spool_max_age: Duration,
    /// Remediation actions the collector may ask this agent to plan and apply (repeatable;
    /// none by default): images.prune_dangling, images.prune_unused,
    /// images.prune_stopped_containers, images.prune_build_cache, or images.* for all
    #[arg(long = "allow-action", value_name = "ACTION")]
    allow_actions: Vec<String>,
    /// Serve /healthz (the report loop keeps collecting) and /readyz (the first report is
    /// collected) on this address, for the kubelet's probes, and /metrics (the agent's
    /// cycle time, probe failures, queue depth) for Prometheus; e.g. 0.0.0.0:9442
    #[arg(long, env = "NODEMEDIC_HEALTH_LISTEN")]
    health_listen: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nodemedic_proto::logging::init("info");
    let args = Args::parse();
    if args.interval < Duration::from_secs(1) {
        anyhow::bail!("--interval must be at least 1s, got {:?}", args.interval);
    }
    let mut config = Config::load_or_default(args.config.as_deref())?;
    config.certs.agent_certificate = args.cert.as_ref().map(|p| p.display().to_string());
    let node = node_name(args.node_name)?;
    let remediator = Arc::new(Remediator::new(
        &node,
        &args.allow_actions,
        HostRoot::new(&args.host_root),
        config.images.sockets(),
        config.images.timeout,
    )?);
    let health = Arc::new(Health::new(args.interval));
    if let Some(addr) = args.health_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--health-listen {addr}"))?;
        tracing::info!(message = "Serving /healthz, /readyz and /metrics.", addr = %listener.local_addr()?);
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            if let Err(e) = health::serve(listener, health).await {
                tracing::error!(message = "The health endpoint stopped.", error = %e);
            }
        });
    }
    let mut agent = Agent::new(node, HostRoot::new(&args.host_root), &config)
        .with_kubernetes(args.kubeconfig.as_deref(), &config.kubernetes)
        .await?;
    let writer = match &args.write_kubeconfig {
        Some(path) => nodemedic_agent::kubernetes::watch::client(Some(path))
            .await?
            .map(|(client, _)| client),
        None => None,
    };
    if let Some(publisher) = agent.publish(&config, writer) {
        remediator.publish_to(publisher);
    }
    let opts = ReporterOptions {
        tls: nodemedic_proto::tls::ClientTls {
            ca: args.ca,
            cert: args.cert,
            key: args.key,
        },
        collector_url: args.collector,
        health,
        interval: args.interval,
        once: args.once,
        once_deadline: args.once_timeout,
        max_pending: args.max_pending,
        spool: args.spool_dir.map(|dir| {
            (
                dir,
                SpoolLimits {
                    max_bytes: args.spool_max_bytes,
                    max_age: args.spool_max_age,
                },
            )
        }),
    };
    tracing::info!(message = "Starting.", node = agent.node(), host_root = %args.host_root.display(), interval = ?args.interval, actions = ?args.allow_actions);
    reporter::run(&agent, &opts, remediator, shutdown_signal()).await?;
    Ok(())
}

/// SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
