//! `nodemedic-collector`: the central service.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use nodemedic_collector::{
    auth::{self, Role},
    incidents::IncidentConfig,
    ratelimit::AgentRate,
    runbook::Catalog,
    server::{Bound, Config},
    tls::{self, TlsFiles},
    validate::ReportLimits,
};

/// Receives reports from nodemedic agents, stores them in SQLite under --data-dir, tracks
/// findings, correlates them into incidents with the runbook's remediation, and answers the
/// Diagnostics gRPC API. /healthz, /readyz, /metrics and /api/v1/bundle are served on
/// --http-listen. Both listeners use TLS (--tls-cert, --tls-key, --client-ca; read again when
/// the files change); tooling authenticates with a bearer token from --token-file or a
/// client certificate with a role (`certs client`).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Certificates for TLS between agents, tooling and the collector
    #[command(subcommand)]
    Certs(Certs),
    /// Bearer tokens for tooling (the CLI's --token-file, curl's Authorization header)
    #[command(subcommand)]
    Tokens(Tokens),
}

#[derive(Debug, Subcommand)]
enum Tokens {
    /// Make a new token: its hash and role are appended to FILE (the collector's
    /// --token-file, read again when it changes) and the token itself is printed once
    Add {
        /// The token file (created if missing)
        file: PathBuf,
        /// Who the token is for, as logs and remediation records name them
        #[arg(long)]
        name: String,
        /// viewer (queries, watches, redacted bundles) or operator (also remediation
        /// actions, collection requests, unredacted bundles)
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?} is not viewer or operator"))
}

#[derive(Debug, Subcommand)]
enum Certs {
    /// Create a CA (ca.pem, ca-key.pem) and the collector's server certificate (server.pem,
    /// server-key.pem) in DIR, for clusters without cert-manager
    Init {
        /// Where to write them
        dir: PathBuf,
        /// DNS names of the collector (repeatable)
        #[arg(long = "dns", default_values_t = [
            "localhost".to_owned(),
            "nodemedic-collector".to_owned(),
            "nodemedic-collector.nodemedic.svc".to_owned(),
            "nodemedic-collector.nodemedic.svc.cluster.local".to_owned(),
        ])]
        dns: Vec<String>,
        /// IP addresses of the collector (repeatable)
        #[arg(long = "ip", default_values_t = ["127.0.0.1".parse::<std::net::IpAddr>().expect("an IP")])]
        ips: Vec<std::net::IpAddr>,
        /// Days they are valid
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Issue a node's agent certificate (agent-NODE.pem, agent-NODE-key.pem) with the CA in
    /// DIR; the collector accepts its reports only for that node
    Agent {
        /// The directory of `certs init`
        dir: PathBuf,
        /// The node's name, as the agent reports it
        #[arg(long)]
        node: String,
        /// Days it is valid
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Issue a tooling client certificate (client-NAME.pem, client-NAME-key.pem) with the CA
    /// in DIR, carrying a role in its organisation (nodemedic:viewer or nodemedic:operator)
    Client {
        /// The directory of `certs init`
        dir: PathBuf,
        /// Who it is for
        #[arg(long)]
        name: String,
        /// viewer or operator
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Days it is valid
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
}

#[derive(Debug, clap::Args)]
struct Args {
    /// gRPC address for agents and tooling
    #[arg(long, default_value = "0.0.0.0:9440")]
    grpc_listen: SocketAddr,
    /// HTTP address for /healthz, /readyz and /metrics
    #[arg(long, default_value = "0.0.0.0:9441")]
    http_listen: SocketAddr,
    /// Directory of the SQLite store (created if missing)
    #[arg(long, default_value = "/var/lib/nodemedic")]
    data_dir: PathBuf,
    /// How long reports and resolved findings are kept, e.g. 24h, 7d
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Missed report intervals before a node is called silent
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    silent_after: u32,
    /// Largest accepted gRPC message (a report), bytes
    #[arg(long, default_value_t = 4 << 20)]
    max_message_bytes: usize,
    /// Most findings accepted in one report
    #[arg(long, default_value_t = 1000)]
    max_findings: usize,
    /// Reports per second one agent may send, sustained; above it the collector reads its
    /// stream more slowly (nothing is lost; counted in nodemedic_throttled_total)
    #[arg(long, default_value_t = AgentRate::default().per_second, value_parser = positive)]
    agent_rate: f64,
    /// Reports one agent may send at once before it is paced (a replay after an outage)
    #[arg(long, default_value_t = AgentRate::default().burst, value_parser = clap::value_parser!(u32).range(1..))]
    agent_burst: u32,
    /// Directory of runbook rule files (*.yaml) added to the built-in catalog; a rule with a
    /// built-in id replaces it. The collector refuses to start if a rule is broken (check
    /// with `nodemedic runbook validate DIR`)
    #[arg(long)]
    runbook_dir: Option<PathBuf>,
    /// How long a finding must persist before it opens or joins an incident
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    incident_hold: Duration,
    /// ... or how often it must open within --incident-repeat-window
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    incident_repeat: u32,
    /// The window for --incident-repeat
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    incident_repeat_window: Duration,
    /// The collector's TLS certificate (PEM); with --tls-key and --client-ca
    #[arg(long, requires_all = ["tls_key", "client_ca"])]
    tls_cert: Option<PathBuf>,
    /// Its private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The CA of agents' client certificates (PEM): an agent reports only for the node its
    /// certificate names
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Bearer tokens of tooling: one `<sha256-hex> <role> <name>` per line (make them with
    /// `nodemedic-collector tokens add FILE`); read again when the file changes
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve plaintext, with no agent identity; without --token-file every caller may act as
    /// an operator (tests, a trusted network only)
    #[arg(long, conflicts_with = "tls_cert")]
    insecure: bool,
    /// Post every open incident as an alert to this Alertmanager (`http://am:9093`;
    /// repeatable: each gets every alert), again every --alertmanager-interval, and its end
    /// when it resolves
    #[arg(long = "alertmanager-url")]
    alertmanager_urls: Vec<String>,
    /// How often open incidents are sent again
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    alertmanager_interval: Duration,
    /// The CA of an https:// Alertmanager's certificate (PEM)
    #[arg(long)]
    alertmanager_ca: Option<PathBuf>,
    /// A file holding a bearer token for the Alertmanagers
    #[arg(long)]
    alertmanager_token_file: Option<PathBuf>,
    /// Judge the cluster's own objects too: ResourceQuotas near their limits and the pods
    /// they refuse, claims that cannot be provisioned, TLS Secrets and cert-manager
    /// Certificates near expiry, this collector's certificate (needs read access to
    /// resourcequotas, events, persistentvolumeclaims and secrets: deploy/overlays/cluster-view)
    #[arg(long)]
    cluster_view: bool,
    /// The cluster view's kubeconfig (default: the pod's service account)
    #[arg(long, requires = "cluster_view")]
    kubeconfig: Option<PathBuf>,
    /// The node name the cluster view's findings are reported as (no agent may use it)
    #[arg(long, default_value = "nodemedic-cluster", requires = "cluster_view")]
    cluster_view_name: String,
    /// How often the cluster view lists and judges the objects
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, requires = "cluster_view")]
    cluster_view_every: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    nodemedic_proto::logging::init("info");
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Certs(certs)) => return run_certs(certs),
        Some(Command::Tokens(Tokens::Add { file, name, role })) => {
            return add_token(&file, &name, role);
        }
        None => {}
    }
    let args = cli.serve;
    raise_open_file_limit();
    let tls = match (args.tls_cert, args.tls_key, args.client_ca) {
        (Some(cert), Some(key), Some(client_ca)) => Some(TlsFiles {
            cert,
            key,
            client_ca,
        }),
        _ if args.insecure => {
            tracing::warn!(
                "--insecure: plaintext gRPC and HTTP, agents are not identified; use TLS outside tests"
            );
            None
        }
        _ => anyhow::bail!(
            "give --tls-cert, --tls-key and --client-ca (make them with `nodemedic-collector certs init DIR`), or --insecure for plaintext"
        ),
    };
    let catalog = match &args.runbook_dir {
        Some(dir) => Catalog::with_dir(dir).context("the runbook catalog is broken")?,
        None => Catalog::builtin(),
    };
    let cluster_view = match args.cluster_view {
        true => {
            nodemedic_collector::validate::node_name(&args.cluster_view_name)
                .context("--cluster-view-name")?;
            anyhow::ensure!(
                !args.cluster_view_every.is_zero(),
                "--cluster-view-every must be more than 0s"
            );
            Some((
                nodemedic_collector::cluster::ClusterView {
                    name: args.cluster_view_name,
                    every: args.cluster_view_every,
                    lines: Default::default(),
                    own_cert: None,
                },
                args.kubeconfig,
            ))
        }
        false => None,
    };
    let bound = Bound::bind(Config {
        cluster_view,
        grpc_listen: args.grpc_listen,
        http_listen: args.http_listen,
        data_dir: args.data_dir,
        retention: args.retention,
        silent_after: args.silent_after,
        max_message_bytes: args.max_message_bytes,
        limits: ReportLimits {
            max_findings: args.max_findings,
        },
        catalog: Arc::new(catalog),
        incidents: IncidentConfig {
            hold: args.incident_hold,
            repeat: args.incident_repeat,
            repeat_window: args.incident_repeat_window,
        },
        agent_rate: AgentRate {
            per_second: args.agent_rate,
            burst: args.agent_burst,
        },
        tls,
        token_file: args.token_file,
        alertmanager: (!args.alertmanager_urls.is_empty()).then_some(
            nodemedic_collector::alertmanager::AlertmanagerConfig {
                urls: args.alertmanager_urls,
                interval: args.alertmanager_interval,
                ca: args.alertmanager_ca,
                token_file: args.alertmanager_token_file,
            },
        ),
    })
    .await?;
    // One line on stdout that scripts and tests read for the bound ports.
    println!(
        "nodemedic-collector listening grpc={} http={}",
        bound.grpc_addr(),
        bound.http_addr()
    );
    bound.serve(shutdown_signal()).await?;
    Ok(())
}

/// Every agent holds a connection, so the collector needs a descriptor per node: the soft
/// open-file limit is raised to the hard one (as Go programs do at start), and said.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let result = if limit.current < limit.maximum {
        setrlimit(Resource::Nofile, raised)
    } else {
        Ok(())
    };
    match result {
        Ok(()) => tracing::info!(
            message = "Open-file limit: one descriptor per agent connection.",
            soft = ?raised.current,
            was = ?limit.current
        ),
        Err(e) => tracing::warn!(
            message = "Could not raise the open-file limit; agents beyond it will be refused.",
            soft = ?limit.current,
            hard = ?limit.maximum,
            error = %e
        ),
    }
}

fn run_certs(certs: Certs) -> anyhow::Result<()> {
    match certs {
        Certs::Init {
            dir,
            dns,
            ips,
            days,
        } => {
            tls::init(&dir, &dns, &ips, days)?;
            println!(
                "wrote {} and {} (CA), {} and {} (collector) in {}",
                tls::CA_CERT,
                tls::CA_KEY,
                tls::SERVER_CERT,
                tls::SERVER_KEY,
                dir.display()
            );
        }
        Certs::Agent { dir, node, days } => {
            let (cert, key) = tls::agent(&dir, &node, days)?;
            println!("wrote {} and {}", cert.display(), key.display());
        }
        Certs::Client {
            dir,
            name,
            role,
            days,
        } => {
            let (cert, key) = tls::client(&dir, &name, role, days)?;
            println!("wrote {} and {}", cert.display(), key.display());
        }
    }
    Ok(())
}

/// Appends a new token's line to `file` (owner-only) and prints the token.
fn add_token(file: &std::path::Path, name: &str, role: Role) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let (token, line) = auth::new_token(name, role).map_err(anyhow::Error::msg)?;
    std::fs::File::options()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .with_context(|| format!("cannot write {}", file.display()))?;
    eprintln!(
        "added {name} ({}) to {}; the token, shown only now:",
        role.as_str(),
        file.display()
    );
    println!("{token}");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
