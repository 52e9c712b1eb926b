//! The collector's optional cluster view (`--cluster-view`): what happens where no node
//! agent can see it — ResourceQuotas near their limits and the pods they refuse (which
//! never exist), claims no volume can be provisioned for, and certificates the cluster
//! depends on (TLS Secrets, cert-manager Certificates when the CRD exists, the collector's
//! own serving certificate). It lists those objects every `every` (it watches no pods: the
//! agents are the only watchers of pods) and judges them ([`judge`]).
//!
//! Its findings go through the same writer as an agent's, as the reports of one node of
//! their own (`--cluster-view-name`, default `nodemedic-cluster`): they are stored, opened
//! and resolved, correlated into incidents, bundled, exported to metrics and Alertmanager
//! like node findings, and the view falls silent (`node.silent`) when it stops reporting.

pub mod judge;

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, ResourceQuota, Secret};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, ListParams},
};
use nodemedic_proto::{
    time::timestamp,
    v1::{Finding, NodeReport, ProbeRun},
};
use tracing::{info, warn};

use self::judge::Lines;
use crate::store::writer::WriterHandle;

/// The probe id of the view's findings (`cluster.*`).
const PROBE: &str = "cluster";

/// What the cluster view does.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// The node name its reports carry.
    pub name: String,
    /// How often it lists the objects.
    pub every: Duration,
    /// The lines it judges by.
    pub lines: Lines,
    /// The collector's own serving certificate, judged too.
    pub own_cert: Option<PathBuf>,
}

/// cert-manager's Certificate, listed when its CRD is installed.
fn certificate_resource() -> ApiResource {
    ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: "cert-manager.io/v1".into(),
        kind: "Certificate".into(),
        plural: "certificates".into(),
    }
}

/// Runs the view until the writer stops: a report every `every`, its seq after the last
/// one stored. A listing that fails sends no report (logged); the view then goes silent.
pub async fn run(client: Client, writer: WriterHandle, view: ClusterView) {
    let now = || nodemedic_proto::time::unix_millis(SystemTime::now());
    let mut seq = match writer
        .hello(&view.name, env!("CARGO_PKG_VERSION"), view.every, now())
        .await
    {
        Ok(seq) => seq,
        Err(e) => return warn!(message = "The cluster view cannot start.", error = %e),
    };
    info!(node = %view.name, every = ?view.every, "cluster view: judging quotas, claims and certificates");
    let mut ticker = tokio::time::interval(view.every);
    loop {
        ticker.tick().await;
        let started = std::time::Instant::now();
        let findings = match collect(&client, &view, SystemTime::now()).await {
            Ok(findings) => findings,
            Err(e) => {
                warn!(message = "The cluster view could not list the objects it judges.", error = %e);
                continue;
            }
        };
        seq += 1;
        let mut report = NodeReport {
            node: view.name.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            seq,
            collected_at: Some(timestamp(SystemTime::now())),
            findings,
            probes: vec![ProbeRun {
                probe: PROBE.into(),
                ok: true,
                duration_micros: started.elapsed().as_micros() as u64,
                ..ProbeRun::default()
            }],
            ..NodeReport::default()
        };
        for f in &mut report.findings {
            f.node.clone_from(&view.name);
        }
        nodemedic_proto::limits::fit_report(&mut report);
        match writer.ingest(report, now()).await {
            Ok(committed) => {
                if let Err(e) = committed.await {
                    warn!(message = "The cluster view's report was not stored.", error = %e);
                }
            }
            Err(e) => {
                return warn!(message = "The cluster view stops: the writer is gone.", error = %e);
            }
        }
    }
}

/// A client from `kubeconfig`, else from the pod's service account.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::incluster()
            .map_err(|e| format!("not in a pod, and no --kubeconfig: {e}"))?,
    };
    Client::try_from(config).map_err(|e| e.to_string())
}

/// One listing of the objects, judged as of `now`.
pub async fn collect(
    client: &Client,
    view: &ClusterView,
    now: SystemTime,
) -> Result<Vec<Finding>, kube::Error> {
    let lines = &view.lines;
    let all = ListParams::default();
    let events: Api<Event> = Api::all(client.clone());
    let refused = events
        .list(&ListParams::default().fields("reason=FailedCreate"))
        .await?
        .items;
    let provisioning = events
        .list(&ListParams::default().fields("reason=ProvisioningFailed"))
        .await?
        .items;
    let quotas = Api::<ResourceQuota>::all(client.clone())
        .list(&all)
        .await?
        .items;
    let pvcs = Api::<PersistentVolumeClaim>::all(client.clone())
        .list(&all)
        .await?
        .items;
    let secrets = Api::<Secret>::all(client.clone())
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await?
        .items;
    let certificates = match Api::<DynamicObject>::all_with(client.clone(), &certificate_resource())
        .list(&all)
        .await
    {
        Ok(list) => list.items,
        // No cert-manager in this cluster.
        Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
        Err(e) => return Err(e),
    };

    let mut findings = judge::quotas(&quotas, lines);
    findings.extend(judge::quota_refusals(&refused, lines, now));
    findings.extend(judge::pvcs_pending(&pvcs, &provisioning, lines, now));
    findings.extend(judge::tls_secrets(&secrets, lines, now));
    findings.extend(judge::certificates(&certificates, now));
    if let Some(path) = &view.own_cert {
        match std::fs::read(path) {
            Ok(pem) => findings.extend(judge::expiry(
                "the collector's serving certificate",
                &pem,
                lines,
                now,
            )),
            Err(e) => {
                warn!(message = "Cannot read the collector's certificate.", path = %path.display(), error = %e)
            }
        }
    }
    Ok(findings)
}
