//! `incidents` (list or follow) and `incident ID` (everything about one, with what to run).

use std::time::SystemTime;

use nodemedic_proto::{
    time::system_time,
    v1::{
        GetIncidentRequest, Incident, IncidentScope, IncidentState, ListIncidentsRequest, Severity,
        WatchIncidentsRequest, incident_event,
    },
};
use tokio_stream::StreamExt;

use crate::{
    output::{Format, escaped, one_line, streamed, structured},
    query::Client,
    query::{severity_arg, status_text},
    render,
    table::{Table, age},
};

/// `incidents` filters.
#[derive(Debug, clap::Args)]
pub struct IncidentsArgs {
    /// Only incidents affecting these nodes (repeatable)
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// At least this severity: info, warning, critical
    #[arg(long, value_parser = severity_arg)]
    pub severity: Option<Severity>,
    /// open, resolved or all
    #[arg(long, default_value = "open", value_parser = ["open", "resolved", "all"])]
    pub state: String,
    /// At most this many, newest first
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// After listing, print incidents as they open, update and resolve (like kubectl -w)
    #[arg(short, long)]
    pub watch: bool,
}

fn scope(i: &Incident) -> &'static str {
    match i.scope() {
        IncidentScope::Cluster => "cluster",
        _ => "node",
    }
}

fn nodes(i: &Incident) -> String {
    match i.nodes.len() {
        0..=3 => i.nodes.join(","),
        n => format!("{},+{}", i.nodes[..2].join(","), n - 2),
    }
}

fn row(i: &Incident, now: SystemTime) -> Vec<String> {
    vec![
        i.id.to_string(),
        i.severity().label().into(),
        scope(i).into(),
        nodes(i),
        match i.state() {
            IncidentState::Resolved => "resolved",
            _ => "open",
        }
        .into(),
        i.first_seen
            .as_ref()
            .map(|t| age(system_time(t), now))
            .unwrap_or_default(),
        i.rule.clone(),
        i.title.clone(),
    ]
}

const COLUMNS: &[&str] = &[
    "ID", "SEVERITY", "SCOPE", "NODES", "STATE", "AGE", "RULE", "TITLE",
];

/// `incidents`.
pub async fn list(mut c: Client, args: IncidentsArgs, format: Format) -> anyhow::Result<()> {
    let state = match args.state.as_str() {
        "open" => IncidentState::Open,
        "resolved" => IncidentState::Resolved,
        _ => IncidentState::Unspecified,
    };
    let min_severity = args.severity.map_or(0, |s| s as i32);
    // Subscribe before listing, so nothing happens unseen in between.
    let events = if args.watch {
        Some(
            c.watch_incidents(WatchIncidentsRequest { min_severity })
                .await
                .map_err(status_text)?
                .into_inner(),
        )
    } else {
        None
    };
    let resp = c
        .list_incidents(ListIncidentsRequest {
            nodes: args.nodes.clone(),
            state: state as i32,
            min_severity,
            limit: args.limit,
        })
        .await
        .map_err(status_text)?
        .into_inner();
    let now = SystemTime::now();
    if !structured(format, &resp)? {
        let mut t = Table::new(COLUMNS);
        for i in &resp.incidents {
            t.row(row(i, now));
        }
        t.print_or("No incidents.");
        if resp.truncated {
            eprintln!("(more incidents matched; raise --limit to see them)");
        }
    }
    let Some(mut events) = events else {
        return Ok(());
    };
    while let Some(event) = events.next().await {
        let event = event.map_err(status_text)?;
        let Some(i) = &event.incident else { continue };
        if !args.nodes.is_empty() && !i.nodes.iter().any(|n| args.nodes.contains(n)) {
            continue;
        }
        if streamed(format, &event)? {
            continue;
        }
        let kind = match event.kind() {
            incident_event::Kind::Opened => "OPENED",
            incident_event::Kind::Updated => "UPDATED",
            incident_event::Kind::Resolved => "RESOLVED",
            incident_event::Kind::Unspecified => "?",
        };
        let cells: Vec<String> = row(i, SystemTime::now())
            .iter()
            .map(|c| one_line(c).into_owned())
            .collect();
        println!("{kind:<9} {}", cells.join("   "));
    }
    Ok(())
}

/// `incident ID`.
pub async fn show(mut c: Client, id: u64, format: Format) -> anyhow::Result<()> {
    let incident = c
        .get_incident(GetIncidentRequest { id })
        .await
        .map_err(status_text)?
        .into_inner();
    if !structured(format, &incident)? {
        print!(
            "{}",
            escaped(&render::incident(&incident, SystemTime::now(), true))
        );
    }
    Ok(())
}
