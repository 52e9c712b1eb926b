//! `nodemedic`: diagnose this node, or ask a collector about the cluster.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nodemedic_cli::{
    bundle::{self, BundleArgs, BundleCommand},
    doctor::{self, DoctorArgs},
    incidents::{self, IncidentsArgs},
    output::Format,
    query::{self, FindingsArgs, WatchArgs},
    remediation::{self, RemediationCommand},
    runbook::{self, RunbookCommand},
};

/// Node and pod diagnostics for Kubernetes.
///
/// `nodemedic doctor` checks this machine now, with no server. The other commands ask a
/// nodemedic collector (--collector) about every node that runs the agent.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Output format
    #[arg(short, long, global = true, value_enum, default_value = "table")]
    output: Format,
    /// gRPC address of the collector
    #[arg(
        long,
        global = true,
        env = "NODEMEDIC_COLLECTOR",
        default_value = "http://127.0.0.1:9440"
    )]
    collector: String,
    /// The CA of the collector's certificate (PEM), for an https:// collector
    #[arg(long, global = true, env = "NODEMEDIC_CA")]
    ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM), when the collector identifies callers by certificate
    #[arg(long, global = true, env = "NODEMEDIC_CERT", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// Its private key (PEM)
    #[arg(long, global = true, env = "NODEMEDIC_KEY", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// A file holding a bearer token (from `nodemedic-collector tokens add`); the token
    /// itself may be given in NODEMEDIC_TOKEN instead
    #[arg(long, global = true, env = "NODEMEDIC_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Diagnose this machine now: disk, memory, kernel limits, DNS, container images, the
    /// kernel log, pod cgroups (and pods, with --kubeconfig), as incidents with
    /// what to do. Exits 0 when healthy, 4 when the worst finding is a warning, 3 when
    /// critical.
    Doctor(DoctorArgs),
    /// List incidents: findings correlated on a node and across nodes (open ones by
    /// default); -w follows them
    Incidents(IncidentsArgs),
    /// Show one incident: cause, affected nodes and objects, findings, the commands to run,
    /// and its timeline
    Incident {
        /// Incident id (from `nodemedic incidents`)
        id: u64,
    },
    /// List the nodes that report to the collector
    Nodes,
    /// Show one node: its latest measurements, its incidents with what to do, and findings
    Node {
        /// Node name
        name: String,
    },
    /// List findings across nodes (open ones by default)
    Findings(FindingsArgs),
    /// Print findings as they open, change and resolve, until interrupted
    Watch(WatchArgs),
    /// The runbook catalog: what each finding means and what to run
    Runbook {
        /// A directory of user rule files (*.yaml) added to the built-in ones
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        #[command(subcommand)]
        command: RunbookCommand,
    },
    /// Download a diagnostics bundle (.tar.zst: incidents, findings, each node's reports,
    /// the runbook; credentials redacted) with -f FILE, check one with `bundle inspect FILE`,
    /// or print its reports with `bundle history FILE`
    Bundle(BundleArgs),
    /// Plan and apply a node's remediation actions (image prunes), and their history
    Remediate {
        #[command(subcommand)]
        command: RemediationCommand,
    },
    /// Ask agents to report now: one node, or all connected ones
    Collect {
        /// Node name; all connected nodes when omitted
        node: Option<String>,
    },
}

/// A reader that went away (`nodemedic bundle inspect B | head`) ends the program quietly,
/// with the status a process killed by SIGPIPE has (141), as `cat` does: Rust ignores
/// SIGPIPE, so printing would panic with "failed printing to stdout: Broken pipe".
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

#[tokio::main]
async fn main() -> ExitCode {
    quiet_on_closed_pipe();
    nodemedic_proto::logging::init("error");
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let format = cli.output;
    let tls = nodemedic_proto::tls::ClientTls {
        ca: cli.ca.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
    };
    let bearer = query::Bearer::load(
        cli.token_file.as_deref(),
        std::env::var("NODEMEDIC_TOKEN").ok(),
    )?;
    let client = || query::client(&cli.collector, &tls, bearer.clone());
    match cli.command {
        Command::Doctor(args) => return doctor::run(args, format).await,
        Command::Runbook { dir, command } => return runbook::run(command, dir, format),
        Command::Nodes => query::nodes(client().await?, format).await?,
        Command::Node { name } => query::node(client().await?, name, format).await?,
        Command::Incidents(args) => incidents::list(client().await?, args, format).await?,
        Command::Incident { id } => incidents::show(client().await?, id, format).await?,
        Command::Findings(args) => query::findings(client().await?, args, format).await?,
        Command::Watch(args) => query::watch(client().await?, args, format).await?,
        Command::Bundle(BundleArgs {
            command: Some(BundleCommand::Inspect { file }),
            ..
        }) => bundle::inspect(&file, format)?,
        Command::Bundle(BundleArgs {
            command: Some(BundleCommand::History { file, nodes }),
            ..
        }) => bundle::history(&file, &nodes)?,
        Command::Bundle(args) => bundle::download(client().await?, args).await?,
        Command::Remediate { command } => {
            remediation::run(client().await?, command, format).await?
        }
        Command::Collect { node } => query::collect(client().await?, node, format).await?,
    }
    Ok(0)
}
