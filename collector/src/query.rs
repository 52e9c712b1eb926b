//! The query service (`nodemedic.v1.Diagnostics` on the wire): what tooling and the CLI ask
//! the collector — nodes, findings, incidents, remediation plans and applies, bundles.

use std::{pin::Pin, sync::Arc};

use nodemedic_proto::{
    time::{std_duration, timestamp_from_millis, timestamp_millis},
    v1::{
        ActionOutcome, ActionPlan, ApplyRemediationRequest, BundleChunk, BundleRequest, CollectNow,
        Command, FindingEvent, FindingState, GetIncidentRequest, GetNodeRequest, GetNodeResponse,
        Incident, IncidentEvent, IncidentState, ListFindingsRequest, ListFindingsResponse,
        ListIncidentsRequest, ListIncidentsResponse, ListNodesRequest, ListNodesResponse,
        ListRemediationsRequest, ListRemediationsResponse, NodeSummary, PlanRemediationRequest,
        Severity, TriggerCollectionRequest, TriggerCollectionResponse, WatchFindingsRequest,
        WatchIncidentsRequest, command, diagnostics_server::Diagnostics,
    },
};
use tokio::sync::broadcast;
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::{
    auth::{Auth, Caller, Credentials, Role},
    bundle::{
        self,
        stream::{Bundler, Piece},
    },
    error::Error,
    listener::peer_of,
    registry::Registry,
    remediation,
    store::{
        FindingFilter, IncidentFilter, NodeRow, Reader,
        writer::{Events, WriterHandle},
    },
    validate,
};

/// Findings returned when a request sets no limit.
const DEFAULT_LIMIT: usize = 1000;
/// The most findings one request may ask for.
const MAX_LIMIT: usize = 100_000;

/// The query service.
#[derive(Clone)]
pub struct QueryService {
    pub(crate) reader: Arc<Reader>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) events: Events,
    pub(crate) writer: WriterHandle,
    pub(crate) bundles: Bundler,
    /// Who may call what.
    pub(crate) auth: Arc<Auth>,
    /// Changes when the collector shuts down: every watch ends.
    pub(crate) shutdown: tokio::sync::watch::Receiver<()>,
}

impl QueryService {
    /// Runs a read on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || f(&reader))
            .await
            .map_err(|e| Status::internal(format!("query task failed: {e}")))?
            .map_err(|e| Error::from(e).into())
    }

    /// Lets the call through for callers with at least `need`.
    fn allow<T>(
        &self,
        request: &Request<T>,
        call: &'static str,
        need: Role,
    ) -> Result<Caller, Status> {
        let credentials = Credentials {
            authorization: request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            peer: peer_of(request),
        };
        Ok(self.auth.authorize(call, need, credentials)?)
    }

    fn summary(&self, row: NodeRow) -> NodeSummary {
        let [critical, warning, info] = row.open;
        let worst = row.worst();
        NodeSummary {
            connected: self.registry.is_connected(&row.name),
            name: row.name,
            agent_version: row.agent_version,
            first_seen: Some(timestamp_from_millis(row.first_seen)),
            last_report: row.last_report.map(timestamp_from_millis),
            last_seq: row.last_seq,
            open_critical: critical,
            open_warning: warning,
            open_info: info,
            worst: worst as i32,
        }
    }
}

/// What `caller` may see of `answer`: credentials redacted for viewers, as in bundles
/// (operators see them, as with `--no-redact`).
pub(crate) fn for_caller<T: serde::Serialize + serde::de::DeserializeOwned>(
    caller: &Caller,
    answer: T,
) -> T {
    if caller.role == Role::Operator {
        answer
    } else {
        crate::bundle::redact::shared().redact_message(answer)
    }
}

/// A watch: the events `keep` lets through until the collector shuts down; a watcher that
/// falls behind is told so once and ended.
fn watch<E: Clone + Send + serde::Serialize + serde::de::DeserializeOwned + 'static>(
    events: &broadcast::Sender<E>,
    caller: Caller,
    keep: impl Fn(&E) -> bool + Send + 'static,
    what: &'static str,
    mut shutdown: tokio::sync::watch::Receiver<()>,
) -> Pin<Box<dyn Stream<Item = Result<E, Status>> + Send>> {
    let stream = BroadcastStream::new(events.subscribe()).filter_map(move |event| match event {
        Ok(e) => keep(&e).then(|| Ok(for_caller(&caller, e))),
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => Some(Err(Status::resource_exhausted(
            format!("this watcher fell {n} events behind and missed them; list the {what} again and start a new watch"),
        ))),
    });
    let mut ended = false;
    let stream = stream.take_while(move |item| {
        let keep = !ended;
        ended = item.is_err();
        keep
    });
    Box::pin(futures::StreamExt::take_until(stream, async move {
        let _ = shutdown.changed().await;
    }))
}

/// A bundle request from the API's fields, node names checked.
pub(crate) fn bundle_request(
    nodes: Vec<String>,
    since: Option<std::time::Duration>,
    incidents_only: bool,
    no_redact: bool,
) -> Result<bundle::BundleRequest, Status> {
    for node in &nodes {
        validate::node_name(node)?;
    }
    list_size("nodes", nodes.len())?;
    if let Some(since) = since
        && since > MAX_SINCE
    {
        return Err(Status::invalid_argument(format!(
            "since {} is longer than {} (ten years): nothing is kept that long",
            humantime::format_duration(since),
            humantime::format_duration(MAX_SINCE)
        )));
    }
    Ok(bundle::BundleRequest {
        nodes,
        since,
        incidents_only,
        no_redact,
    })
}

/// The longest `since` a bundle may ask for.
const MAX_SINCE: std::time::Duration = std::time::Duration::from_secs(10 * 366 * 86_400);
/// Most names in one filter list (nodes, checks).
const MAX_FILTER: usize = 1000;

/// A filter list of at most [`MAX_FILTER`] entries.
fn list_size(what: &str, len: usize) -> Result<(), Status> {
    if len > MAX_FILTER {
        return Err(Status::invalid_argument(format!(
            "{len} {what} in the filter, more than {MAX_FILTER}: ask for fewer, or for all"
        )));
    }
    Ok(())
}

fn limit(requested: u32) -> usize {
    match requested as usize {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    }
}

fn min_severity(value: i32) -> Result<Option<Severity>, Status> {
    match Severity::try_from(value) {
        Ok(Severity::Unspecified) => Ok(None),
        Ok(s) => Ok(Some(s)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown severity {value}"
        ))),
    }
}

#[tonic::async_trait]
impl Diagnostics for QueryService {
    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        self.allow(&request, "ListNodes", Role::Viewer)?;
        let rows = self.read(Reader::nodes).await?;
        let nodes = rows.into_iter().map(|r| self.summary(r)).collect();
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn get_node(
        &self,
        request: Request<GetNodeRequest>,
    ) -> Result<Response<GetNodeResponse>, Status> {
        let caller = self.allow(&request, "GetNode", Role::Viewer)?;
        let name = request.into_inner().name;
        validate::node_name(&name)?;
        // One trip to the blocking pool for the three reads: under load each trip is a
        // wait for a thread.
        let lookup = name.clone();
        let found = self
            .read(move |r| {
                let Some((row, latest)) = r.node(&lookup)? else {
                    return Ok(None);
                };
                let (open_findings, _) = r.findings(&FindingFilter {
                    nodes: vec![lookup.clone()],
                    state: FindingState::Open,
                    limit: MAX_LIMIT,
                    ..Default::default()
                })?;
                let (incidents, _) = r.incidents(&IncidentFilter {
                    nodes: vec![lookup],
                    state: IncidentState::Open,
                    limit: MAX_LIMIT,
                    ..Default::default()
                })?;
                Ok(Some((row, latest, open_findings, incidents)))
            })
            .await?;
        let (row, latest, open_findings, incidents) =
            found.ok_or_else(|| Status::from(Error::UnknownNode(name)))?;
        Ok(Response::new(for_caller(
            &caller,
            GetNodeResponse {
                node: Some(self.summary(row)),
                latest,
                open_findings,
                incidents,
            },
        )))
    }

    async fn list_findings(
        &self,
        request: Request<ListFindingsRequest>,
    ) -> Result<Response<ListFindingsResponse>, Status> {
        let caller = self.allow(&request, "ListFindings", Role::Viewer)?;
        let req = request.into_inner();
        list_size("nodes", req.nodes.len())?;
        list_size("checks", req.checks.len())?;
        for node in &req.nodes {
            validate::node_name(node)?;
        }
        if let Some(bad) = req.checks.iter().find(|c| !validate::check_id(c)) {
            return Err(Status::invalid_argument(format!(
                "{:?} is not a check id like \"disk.space\"",
                validate::truncate(bad)
            )));
        }
        let filter = FindingFilter {
            nodes: req.nodes,
            checks: req.checks,
            min_severity: min_severity(req.min_severity)?,
            state: FindingState::try_from(req.state)
                .map_err(|_| Status::invalid_argument(format!("unknown state {}", req.state)))?,
            since: req.since.as_ref().map(timestamp_millis),
            until: req.until.as_ref().map(timestamp_millis),
            limit: limit(req.limit),
            after_id: None,
        };
        let (findings, truncated) = self.read(move |r| r.findings(&filter)).await?;
        Ok(Response::new(for_caller(
            &caller,
            ListFindingsResponse {
                findings,
                truncated,
            },
        )))
    }

    type WatchFindingsStream = Pin<Box<dyn Stream<Item = Result<FindingEvent, Status>> + Send>>;

    async fn watch_findings(
        &self,
        request: Request<WatchFindingsRequest>,
    ) -> Result<Response<Self::WatchFindingsStream>, Status> {
        let caller = self.allow(&request, "WatchFindings", Role::Viewer)?;
        let req = request.into_inner();
        let min = min_severity(req.min_severity)?.map_or(0, |s| s as i32);
        let nodes = req.nodes;
        Ok(Response::new(watch(
            &self.events.findings,
            caller,
            move |e: &FindingEvent| {
                e.finding.as_ref().is_some_and(|f| {
                    f.severity >= min && (nodes.is_empty() || nodes.contains(&f.node))
                })
            },
            "findings",
            self.shutdown.clone(),
        )))
    }

    async fn list_incidents(
        &self,
        request: Request<ListIncidentsRequest>,
    ) -> Result<Response<ListIncidentsResponse>, Status> {
        let caller = self.allow(&request, "ListIncidents", Role::Viewer)?;
        let req = request.into_inner();
        list_size("nodes", req.nodes.len())?;
        for node in &req.nodes {
            validate::node_name(node)?;
        }
        let filter = IncidentFilter {
            nodes: req.nodes,
            state: IncidentState::try_from(req.state)
                .map_err(|_| Status::invalid_argument(format!("unknown state {}", req.state)))?,
            min_severity: min_severity(req.min_severity)?,
            since: None,
            limit: limit(req.limit),
        };
        let (incidents, truncated) = self.read(move |r| r.incidents(&filter)).await?;
        Ok(Response::new(for_caller(
            &caller,
            ListIncidentsResponse {
                incidents,
                truncated,
            },
        )))
    }

    async fn get_incident(
        &self,
        request: Request<GetIncidentRequest>,
    ) -> Result<Response<Incident>, Status> {
        let caller = self.allow(&request, "GetIncident", Role::Viewer)?;
        let id = request.into_inner().id;
        let incident = self
            .read(move |r| r.incident(id))
            .await?
            .ok_or(Error::UnknownIncident(id))?;
        Ok(Response::new(for_caller(&caller, incident)))
    }

    type WatchIncidentsStream = Pin<Box<dyn Stream<Item = Result<IncidentEvent, Status>> + Send>>;

    async fn watch_incidents(
        &self,
        request: Request<WatchIncidentsRequest>,
    ) -> Result<Response<Self::WatchIncidentsStream>, Status> {
        let caller = self.allow(&request, "WatchIncidents", Role::Viewer)?;
        let min = min_severity(request.into_inner().min_severity)?.map_or(0, |s| s as i32);
        Ok(Response::new(watch(
            &self.events.incidents,
            caller,
            move |e: &IncidentEvent| e.incident.as_ref().is_some_and(|i| i.severity >= min),
            "incidents",
            self.shutdown.clone(),
        )))
    }

    async fn plan_remediation(
        &self,
        request: Request<PlanRemediationRequest>,
    ) -> Result<Response<ActionPlan>, Status> {
        self.allow(&request, "PlanRemediation", Role::Operator)?;
        let plan = remediation::plan(&self.registry, request.into_inner()).await?;
        Ok(Response::new(plan))
    }

    async fn apply_remediation(
        &self,
        request: Request<ApplyRemediationRequest>,
    ) -> Result<Response<ActionOutcome>, Status> {
        let caller = self.allow(&request, "ApplyRemediation", Role::Operator)?;
        let peer = peer_of(&request)
            .map(|p| p.addr.to_string())
            .unwrap_or_default();
        let outcome = remediation::apply(
            &self.registry,
            &self.writer,
            request.into_inner(),
            peer,
            caller.name,
        )
        .await?;
        Ok(Response::new(outcome))
    }

    async fn list_remediations(
        &self,
        request: Request<ListRemediationsRequest>,
    ) -> Result<Response<ListRemediationsResponse>, Status> {
        self.allow(&request, "ListRemediations", Role::Viewer)?;
        let req = request.into_inner();
        if !req.node.is_empty() {
            validate::node_name(&req.node)?;
        }
        let node = (!req.node.is_empty()).then_some(req.node);
        let limit = match req.limit {
            0 => 100,
            n => (n as usize).min(MAX_LIMIT),
        };
        let records = self
            .read(move |r| r.remediations(node.as_deref(), limit))
            .await?;
        Ok(Response::new(ListRemediationsResponse { records }))
    }

    type DownloadBundleStream = Pin<Box<dyn Stream<Item = Result<BundleChunk, Status>> + Send>>;

    async fn download_bundle(
        &self,
        request: Request<BundleRequest>,
    ) -> Result<Response<Self::DownloadBundleStream>, Status> {
        let need = if request.get_ref().no_redact {
            Role::Operator
        } else {
            Role::Viewer
        };
        self.allow(&request, "DownloadBundle", need)?;
        let req = request.into_inner();
        let request = bundle_request(
            req.nodes,
            req.since.as_ref().map(std_duration),
            req.incidents_only,
            req.no_redact,
        )?;
        let chunks = self.bundles.start(request);
        let stream = tokio_stream::wrappers::ReceiverStream::new(chunks).map(|chunk| {
            chunk
                .map(|piece| match piece {
                    Piece::Logs { from, missing } => BundleChunk {
                        logs_from: from,
                        logs_missing: missing,
                        ..BundleChunk::default()
                    },
                    Piece::Data(data, files) => BundleChunk {
                        data: data.to_vec(),
                        files: files as u32,
                        ..BundleChunk::default()
                    },
                })
                .map_err(|e| Status::internal(e.to_string()))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn trigger_collection(
        &self,
        request: Request<TriggerCollectionRequest>,
    ) -> Result<Response<TriggerCollectionResponse>, Status> {
        self.allow(&request, "TriggerCollection", Role::Operator)?;
        let node = request.into_inner().node;
        if !node.is_empty() {
            validate::node_name(&node)?;
        }
        let command = Command {
            kind: Some(command::Kind::CollectNow(CollectNow {
                reason: "requested through the Diagnostics API".into(),
            })),
        };
        let nodes = self
            .registry
            .send((!node.is_empty()).then_some(node.as_str()), &command)?;
        info!(
            message = "Asked agents to collect now.",
            count = nodes.len()
        );
        Ok(Response::new(TriggerCollectionResponse { nodes }))
    }
}
