//! The commands that ask a collector: `nodes`, `node`, `findings`, `watch`, `collect`
//! (incidents are in [`crate::incidents`]).

use std::time::{Duration, SystemTime};

use anyhow::Context;
use nodemedic_proto::{
    time::{system_time, timestamp},
    v1::{
        FindingState, GetNodeRequest, ListFindingsRequest, ListNodesRequest, Severity,
        TriggerCollectionRequest, WatchFindingsRequest, diagnostics_client::DiagnosticsClient,
        finding_event,
    },
};
use tokio_stream::StreamExt;
use tonic::{
    Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::{
    output::{Format, escaped, one_line, streamed, structured},
    render,
    table::{Table, age},
};

/// The Diagnostics client, with the caller's bearer token on every call.
pub type Client = DiagnosticsClient<InterceptedService<Channel, Bearer>>;

/// Puts `authorization: Bearer <token>` on each request, when there is a token.
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The token in `file`, else in the environment variable's `value`, else none.
    pub fn load(file: Option<&std::path::Path>, value: Option<String>) -> anyhow::Result<Self> {
        let token = match file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the token file {}", file.display()))?,
            ),
            None => value,
        };
        token
            .map(|t| {
                MetadataValue::try_from(format!("Bearer {}", t.trim()))
                    .context("the token is not printable ASCII")
            })
            .transpose()
            .map(Bearer)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects to the collector's Diagnostics API.
pub async fn client(
    url: &str,
    tls: &nodemedic_proto::tls::ClientTls,
    bearer: Bearer,
) -> anyhow::Result<Client> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("invalid collector URL {url:?}"))?
        .connect_timeout(Duration::from_secs(5));
    if let Some(config) = tls.config().map_err(anyhow::Error::msg)? {
        endpoint = endpoint.tls_config(config)?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        let chain = format!("{:#}", anyhow::Error::new(e));
        let hint = nodemedic_proto::tls::mismatch_hint(&chain)
            .map_or_else(String::new, |h| format!("\n  hint: {h}"));
        anyhow::anyhow!(
            "cannot reach the collector at {url} (set --collector or NODEMEDIC_COLLECTOR): {chain}{hint}"
        )
    })?;
    Ok(DiagnosticsClient::with_interceptor(channel, bearer))
}

/// Parses `--severity`.
pub fn severity_arg(s: &str) -> Result<Severity, String> {
    Severity::from_label(s).ok_or_else(|| format!("{s:?} is not one of info, warning, critical"))
}

/// `findings` filters.
#[derive(Debug, clap::Args)]
pub struct FindingsArgs {
    /// Only these nodes (repeat the flag for several)
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Only these checks, e.g. disk.space (repeatable)
    #[arg(long = "check")]
    pub checks: Vec<String>,
    /// At least this severity: info, warning, critical
    #[arg(long, value_parser = severity_arg)]
    pub severity: Option<Severity>,
    /// open, resolved or all
    #[arg(long, default_value = "open", value_parser = ["open", "resolved", "all"])]
    pub state: String,
    /// Only findings open at some time in the last DURATION, e.g. 2h
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// At most this many, newest first
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
}

/// `watch` filters.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Only these nodes (repeatable)
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// At least this severity: info, warning, critical
    #[arg(long, value_parser = severity_arg)]
    pub severity: Option<Severity>,
}

/// A gRPC error as the user should read it: its message, and what caused it (a transport
/// error's detail is in its source chain, not its message), with a hint when the two ends
/// disagree on TLS.
pub fn status_text(e: tonic::Status) -> anyhow::Error {
    let mut text = e.message().to_owned();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let hint = nodemedic_proto::tls::mismatch_hint(&text)
        .map_or_else(String::new, |h| format!("\n  hint: {h}"));
    anyhow::anyhow!("{}: {text}{hint}", e.code().description())
}

/// `nodes`.
pub async fn nodes(mut c: Client, format: Format) -> anyhow::Result<()> {
    let resp = c
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(status_text)?
        .into_inner();
    if structured(format, &resp)? {
        return Ok(());
    }
    let now = SystemTime::now();
    let mut t = Table::new(&[
        "NAME",
        "CONNECTED",
        "WORST",
        "CRITICAL",
        "WARNING",
        "INFO",
        "LAST REPORT",
        "AGENT",
    ]);
    for n in &resp.nodes {
        t.row(vec![
            n.name.clone(),
            if n.connected { "yes" } else { "no" }.into(),
            match n.worst() {
                Severity::Unspecified => "ok".into(),
                s => s.label().into(),
            },
            n.open_critical.to_string(),
            n.open_warning.to_string(),
            n.open_info.to_string(),
            n.last_report
                .as_ref()
                .map(|t| format!("{} ago", age(system_time(t), now)))
                .unwrap_or_default(),
            n.agent_version.clone(),
        ]);
    }
    t.print_or("No nodes have reported yet.");
    Ok(())
}

/// `node NAME`.
pub async fn node(mut c: Client, name: String, format: Format) -> anyhow::Result<()> {
    let resp = c
        .get_node(GetNodeRequest { name })
        .await
        .map_err(status_text)?
        .into_inner();
    if structured(format, &resp)? {
        return Ok(());
    }
    let now = SystemTime::now();
    if let Some(n) = &resp.node {
        let last = n.last_report.as_ref().map_or("never".into(), |t| {
            format!("{} ago", age(system_time(t), now))
        });
        println!(
            "Node {}: {} (agent {}, {}, last report {last}, seq {})",
            n.name,
            match n.worst() {
                Severity::Unspecified => "healthy",
                s => s.label(),
            },
            n.agent_version,
            if n.connected {
                "connected"
            } else {
                "not connected"
            },
            n.last_seq
        );
    }
    if let Some(latest) = &resp.latest {
        print!("{}", escaped(&render::report(latest)));
    }
    print!("{}", escaped(&render::incidents(&resp.incidents, now)));
    let held: Vec<_> = resp
        .open_findings
        .into_iter()
        .filter(|f| {
            !resp
                .incidents
                .iter()
                .flat_map(|i| &i.findings)
                .any(|g| g.id == f.id)
        })
        .collect();
    if !held.is_empty() {
        println!("\nFindings not (yet) in an incident (held until they persist):");
        print!("{}", escaped(&render::findings(&held, now)));
    }
    Ok(())
}

/// `findings`.
pub async fn findings(mut c: Client, args: FindingsArgs, format: Format) -> anyhow::Result<()> {
    let state = match args.state.as_str() {
        "open" => FindingState::Open,
        "resolved" => FindingState::Resolved,
        _ => FindingState::Unspecified,
    };
    let now = SystemTime::now();
    let req = ListFindingsRequest {
        nodes: args.nodes,
        checks: args.checks,
        min_severity: args.severity.map_or(0, |s| s as i32),
        state: state as i32,
        since: args.since.map(|d| timestamp(now - d)),
        until: None,
        limit: args.limit,
    };
    let resp = c
        .list_findings(req)
        .await
        .map_err(status_text)?
        .into_inner();
    if structured(format, &resp)? {
        return Ok(());
    }
    let mut t = Table::new(&[
        "NODE", "SEVERITY", "CHECK", "SUBJECT", "STATE", "AGE", "MESSAGE",
    ]);
    for f in &resp.findings {
        t.row(vec![
            f.node.clone(),
            f.severity().label().into(),
            f.check.clone(),
            f.subject.clone(),
            if f.resolved_at.is_some() {
                "resolved"
            } else {
                "open"
            }
            .into(),
            f.first_seen
                .as_ref()
                .map(|t| age(system_time(t), now))
                .unwrap_or_default(),
            f.message.clone(),
        ]);
    }
    t.print_or("No findings.");
    if resp.truncated {
        eprintln!("(more findings matched; raise --limit to see them)");
    }
    Ok(())
}

/// `watch`: one line per change until interrupted.
pub async fn watch(mut c: Client, args: WatchArgs, format: Format) -> anyhow::Result<()> {
    let req = WatchFindingsRequest {
        nodes: args.nodes,
        min_severity: args.severity.map_or(0, |s| s as i32),
    };
    let mut stream = c
        .watch_findings(req)
        .await
        .map_err(status_text)?
        .into_inner();
    if format == Format::Table {
        println!("EVENT      NODE   SEVERITY   CHECK   SUBJECT   MESSAGE");
    }
    while let Some(event) = stream.next().await {
        let event = event.map_err(status_text)?;
        if streamed(format, &event)? {
            continue;
        }
        let Some(f) = &event.finding else { continue };
        let kind = match event.kind() {
            finding_event::Kind::Opened => "OPENED",
            finding_event::Kind::Changed => "CHANGED",
            finding_event::Kind::Resolved => "RESOLVED",
            finding_event::Kind::Unspecified => "?",
        };
        let subject = if f.subject.is_empty() {
            "<none>"
        } else {
            &f.subject
        };
        println!(
            "{kind:<10} {}   {}   {}   {}   {}",
            one_line(&f.node),
            f.severity().label(),
            one_line(&f.check),
            one_line(subject),
            one_line(&f.message)
        );
    }
    Ok(())
}

/// `collect [NODE]`.
pub async fn collect(mut c: Client, node: Option<String>, format: Format) -> anyhow::Result<()> {
    let resp = c
        .trigger_collection(TriggerCollectionRequest {
            node: node.unwrap_or_default(),
        })
        .await
        .map_err(status_text)?
        .into_inner();
    if !structured(format, &resp)? {
        println!(
            "Asked {} node(s) to collect now: {}",
            resp.nodes.len(),
            resp.nodes.join(", ")
        );
    }
    Ok(())
}
