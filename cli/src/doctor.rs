//! `nodemedic doctor`: the agent's probes and the collector's analysis, in-process, on this
//! machine now. No collector, no network.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use nodemedic_agent::{Agent, agent::node_name, config::Config, host::HostRoot};
use nodemedic_collector::{
    bundle,
    doctor::{Diagnosis, diagnose},
    runbook::Catalog,
};
use nodemedic_proto::v1::{Incident, NodeReport, Severity};
use serde::Serialize;

use crate::{
    bundle::PartialFile,
    output::{Format, escaped, one_line, structured},
    render,
};

/// Exit code when the worst finding is critical (troubleshoot's support-bundle convention).
pub const EXIT_CRITICAL: u8 = 3;
/// Exit code when the worst finding is a warning.
pub const EXIT_WARNING: u8 = 4;

/// `doctor`'s options.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Where this machine's / is (a mounted node root, a test tree)
    #[arg(long, default_value = "/")]
    pub host_root: PathBuf,
    /// YAML file of thresholds (the agent's config format)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Name to report as [default: the hostname]
    #[arg(long)]
    pub node_name: Option<String>,
    /// Kubeconfig to read this node's pods, node object and events from (the node is
    /// --node-name) [default: the service account when run in a pod; else node-only]
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Also write a diagnostics bundle of this machine to FILE (.tar.zst, the collector's
    /// layout, credentials redacted)
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
}

#[derive(Serialize)]
struct Output<'a> {
    node: &'a str,
    worst: &'static str,
    incidents: &'a [Incident],
    report: &'a NodeReport,
}

/// Diagnoses this machine, prints the result, and answers the exit code.
pub async fn run(args: DoctorArgs, format: Format) -> anyhow::Result<u8> {
    let config = Config::load_or_default(args.config.as_deref())?;
    let node = node_name(args.node_name)?;
    let agent = Agent::new(node, HostRoot::new(&args.host_root), &config)
        .with_kubernetes(args.kubeconfig.as_deref(), &config.kubernetes)
        .await?;
    let mut report = agent.collect().await;
    report.seq = 1;
    let catalog = Arc::new(Catalog::builtin());
    let diagnosis = diagnose(report, Arc::clone(&catalog))?;
    print(&diagnosis, format)?;
    if let Some(file) = &args.bundle {
        write_bundle(&diagnosis, &catalog, file)?;
    }
    Ok(match diagnosis.worst() {
        Severity::Critical => EXIT_CRITICAL,
        Severity::Warning => EXIT_WARNING,
        Severity::Info | Severity::Unspecified => 0,
    })
}

/// Writes the one-report bundle, to FILE.partial first.
fn write_bundle(d: &Diagnosis, catalog: &Catalog, file: &Path) -> anyhow::Result<()> {
    let (target, out) = PartialFile::create(file)?;
    let info =
        serde_json::json!({"version": env!("CARGO_PKG_VERSION"), "source": "nodemedic doctor"});
    let written = bundle::of_diagnosis(d, catalog, &info, out)
        .map_err(|e| anyhow::Error::new(e).context("could not write the bundle"));
    let manifest = target.finish(written)?;
    eprintln!(
        "wrote {} ({} files, {} values redacted)",
        file.display(),
        manifest.files.len(),
        manifest.redacted
    );
    Ok(())
}

fn print(d: &Diagnosis, format: Format) -> anyhow::Result<()> {
    let out = Output {
        node: &d.report.node,
        worst: match d.worst() {
            Severity::Unspecified => "healthy",
            s => s.label(),
        },
        incidents: &d.incidents,
        report: &d.report,
    };
    if structured(format, &out)? {
        return Ok(());
    }
    println!("Node {}: {}", one_line(&d.report.node), out.worst);
    print!("{}", escaped(&render::report(&d.report)));
    print!(
        "{}",
        escaped(&render::incidents(&d.incidents, SystemTime::now()))
    );
    Ok(())
}
