//! `nodemedic doctor`: the agent's probes and the collector's analysis, in-process, on this
//! machine now. No collector, no network.

use std::{path::PathBuf, sync::Arc, time::SystemTime};

use nodemedic_agent::{Collector, collect::node_name, config::Config, host::HostRoot};
use nodemedic_collector::{
    analysis::{Diagnosis, diagnose},
    runbook::Catalog,
};
use nodemedic_proto::v1::{Incident, NodeReport, Severity};
use serde::Serialize;

use crate::{
    output::{Format, structured},
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
    let collector = Collector::new(node, HostRoot::new(&args.host_root), config);
    let mut report = collector.collect().await;
    report.seq = 1;
    let diagnosis = diagnose(report, Arc::new(Catalog::builtin()))?;
    print(&diagnosis, format)?;
    Ok(match diagnosis.worst() {
        Severity::Critical => EXIT_CRITICAL,
        Severity::Warning => EXIT_WARNING,
        Severity::Info | Severity::Unspecified => 0,
    })
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
    println!("Node {}: {}", d.report.node, out.worst);
    print!("{}", render::report(&d.report));
    print!("{}", render::incidents(&d.incidents, SystemTime::now()));
    Ok(())
}
