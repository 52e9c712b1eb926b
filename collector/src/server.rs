//! Wiring: bind the listeners, open the store, start the writer and the services, and shut
//! down cleanly (stop accepting, let the writer commit what it holds).

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use nodemedic_proto::v1::{
    agent_gateway_server::AgentGatewayServer, diagnostics_server::DiagnosticsServer,
};
use tokio::net::TcpListener;
use tracing::info;

use crate::{
    auth::Auth,
    bundle::stream::Bundler,
    gateway::Gateway,
    http,
    incidents::IncidentConfig,
    listener::{Listener, Peer, TlsConfig},
    metrics::Metrics,
    query::QueryService,
    ratelimit::{AgentRate, RateLimiter},
    registry::Registry,
    reload::Reloading,
    runbook::Catalog,
    store::{self, Reader, StoreError, writer},
    validate::ReportLimits,
};

/// How long clients get to close their connections after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the collector could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS files could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The Alertmanager settings could not be used.
    #[error("Alertmanager: {0}")]
    Alertmanager(#[from] crate::alertmanager::AlertmanagerError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// Reflection could not be built from the descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The token file could not be used.
    #[error("{0}")]
    Tokens(String),
}

/// What the collector needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// gRPC listen address (agents and tooling).
    pub grpc_listen: SocketAddr,
    /// HTTP listen address (health and metrics).
    pub http_listen: SocketAddr,
    /// Where the SQLite database lives.
    pub data_dir: PathBuf,
    /// How long reports and resolved findings are kept.
    pub retention: Duration,
    /// Intervals without a report before a node is silent.
    pub silent_after: u32,
    /// Largest accepted message, bytes.
    pub max_message_bytes: usize,
    /// Limits on a report's contents.
    pub limits: ReportLimits,
    /// The runbook rules in force.
    pub catalog: Arc<Catalog>,
    /// When findings become incidents.
    pub incidents: IncidentConfig,
    /// TLS on both listeners, agents and tooling identified by their client certificates;
    /// `None` serves plaintext (`--insecure`). Changed files are read again.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Each agent's report rate.
    pub agent_rate: AgentRate,
    /// Bearer tokens of tooling and their roles (read again when the file changes).
    pub token_file: Option<PathBuf>,
    /// Where open incidents are posted as alerts; `None`: nowhere.
    pub alertmanager: Option<crate::alertmanager::AlertmanagerConfig>,
    /// The cluster view, and the kubeconfig it uses (in-cluster when `None`); `None`: off.
    pub cluster_view: Option<(crate::cluster::ClusterView, Option<PathBuf>)>,
}

/// A collector with its listeners bound, not yet serving.
pub struct Bound {
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
}

impl Bound {
    /// Binds both listeners (port 0 picks a free port).
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })
        };
        let grpc = bind(config.grpc_listen).await?;
        let http = bind(config.http_listen).await?;
        Ok(Bound { config, grpc, http })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then lets the store writer commit what it holds.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Bound { config, grpc, http } = self;
        let metrics = Arc::new(Metrics::default());
        let auth = Arc::new(
            Auth::new(
                config.token_file.as_deref(),
                config.tls.is_none(),
                Arc::clone(&metrics),
            )
            .map_err(ServerError::Tokens)?,
        );
        if auth.is_open() {
            tracing::warn!(
                "No TLS and no token file: every caller may act as an operator; use TLS outside tests"
            );
        }
        // One configuration per listener (gRPC speaks HTTP/2, the HTTP listener HTTP/1.1),
        // each kept current from the same files.
        let tls_for = |what: &'static str, alpn: &'static [u8]| {
            config
                .tls
                .as_ref()
                .map(|files| {
                    let files = files.clone();
                    Reloading::load(what, files.paths(), Arc::clone(&metrics), move || {
                        files.server_config(&[alpn]).map_err(|e| e.to_string())
                    })
                    .map(Arc::new)
                })
                .transpose()
                .map_err(|e| ServerError::Tls(crate::tls::TlsError::Cert(e)))
        };
        let grpc_tls: Option<Arc<TlsConfig>> = tls_for("TLS (grpc)", b"h2")?;
        let http_tls: Option<Arc<TlsConfig>> = tls_for("TLS (http)", b"http/1.1")?;
        let events = writer::Events::default();
        let conn = store::open_for_writing(&config.data_dir)?;
        let (writer, writer_thread) = writer::spawn(
            conn,
            writer::WriterConfig {
                retention: config.retention,
                silent_after: config.silent_after,
                catalog: Arc::clone(&config.catalog),
                incidents: config.incidents.clone(),
            },
            events.clone(),
            Arc::clone(&metrics),
        )?;
        let reader = Arc::new(Reader::open(&config.data_dir)?);
        let registry = Registry::new(Arc::clone(&metrics));
        let alerts = config
            .alertmanager
            .clone()
            .map(|c| crate::alertmanager::Sender::new(c, Arc::clone(&reader), Arc::clone(&metrics)))
            .transpose()?;

        let ticker = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(1));
                loop {
                    every.tick().await;
                    let now = nodemedic_proto::time::unix_millis(std::time::SystemTime::now());
                    if writer.tick(now).await.is_err() {
                        break;
                    }
                }
            })
        };

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
        if let Some(alerts) = alerts {
            tokio::spawn(alerts.run(stop_rx.clone()));
        }
        if let Some((view, kubeconfig)) = config.cluster_view.clone() {
            let view = crate::cluster::ClusterView {
                own_cert: config.tls.as_ref().map(|t| t.cert.clone()),
                ..view
            };
            // Off, said once, when the API server cannot be reached this way.
            match crate::cluster::client(kubeconfig.as_deref()).await {
                Ok(client) => {
                    tokio::spawn(crate::cluster::run(client, writer.clone(), view));
                }
                Err(e) => {
                    tracing::warn!(message = "The cluster view is off: no Kubernetes client.", error = %e)
                }
            }
        }
        let gateway = Gateway {
            writer: writer.clone(),
            registry: Arc::clone(&registry),
            metrics: Arc::clone(&metrics),
            limits: config.limits,
            shutdown: stop_rx.clone(),
            require_identity: config.tls.is_some(),
            reserved: config.cluster_view.as_ref().map(|(v, _)| v.name.clone()),
            rate: Arc::new(RateLimiter::new(config.agent_rate)),
        };
        let info = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config": {
                "retention": humantime::format_duration(config.retention).to_string(),
                "silent_after": config.silent_after,
                "max_message_bytes": config.max_message_bytes,
                "max_findings": config.limits.max_findings,
                "agent_rate": config.agent_rate.per_second,
                "agent_burst": config.agent_rate.burst,
                "incident_hold": humantime::format_duration(config.incidents.hold).to_string(),
                "incident_repeat": config.incidents.repeat,
                "incident_repeat_window": humantime::format_duration(config.incidents.repeat_window).to_string(),
                "runbook_rules": config.catalog.rules().count(),
            },
        });
        let bundles = Bundler {
            reader: Arc::clone(&reader),
            catalog: Arc::clone(&config.catalog),
            info,
            registry: Arc::clone(&registry),
        };
        let console = crate::console::Console {
            reader: Arc::new(Reader::open(&config.data_dir)?),
            registry: Arc::clone(&registry),
            auth: Arc::clone(&auth),
            events: events.clone(),
            shutdown: stop_rx.clone(),
            tls: config.tls.is_some(),
        };
        let query = QueryService {
            reader: Arc::clone(&reader),
            registry: Arc::clone(&registry),
            writer: writer.clone(),
            bundles: bundles.clone(),
            auth: Arc::clone(&auth),
            events,
            shutdown: stop_rx.clone(),
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<AgentGatewayServer<Gateway>>().await;
        health
            .set_serving::<DiagnosticsServer<QueryService>>()
            .await;
        // Reflection in both versions: grpcurl and current clients speak v1; Python's
        // grpcio-reflection, Postman, Evans and older grpcurl only v1alpha. Each lists
        // both, so a client of either version sees every service served.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(nodemedic_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let stopped = |mut rx: tokio::sync::watch::Receiver<()>| async move {
            let _ = rx.changed().await;
        };
        let grpc_server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                AgentGatewayServer::new(gateway)
                    .max_decoding_message_size(config.max_message_bytes)
                    .max_encoding_message_size(config.max_message_bytes),
            )
            .add_service(DiagnosticsServer::new(query).max_encoding_message_size(64 << 20))
            .serve_with_incoming_shutdown(
                Listener::start(grpc, grpc_tls, Arc::clone(&metrics)).into_stream(),
                stopped(stop_rx.clone()),
            );
        let http_server = axum::serve(
            Listener::start(http, http_tls, Arc::clone(&metrics)),
            http::router(
                Arc::clone(&metrics),
                Arc::clone(&reader),
                Arc::clone(&registry),
                writer.clone(),
                bundles,
                auth,
                config.tls.is_none(),
            )
            .merge(crate::console::router(console))
            .into_make_service_with_connect_info::<Peer>(),
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()));
        drop(writer);

        tokio::spawn(async move {
            shutdown.await;
            info!(message = "Shutting down: no new streams; committing what was received.");
            let _ = stop_tx.send(());
        });
        // Streams end on the signal; a client that keeps its connection open anyway gets
        // SHUTDOWN_GRACE before the listeners are dropped.
        let mut signalled = stop_rx.clone();
        let grace = async move {
            let _ = signalled.changed().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        let servers = async { tokio::join!(grpc_server, http_server) };
        let (grpc_result, http_result) = tokio::select! {
            results = servers => results,
            () = grace => {
                tracing::warn!(message = "Clients did not close in time; closing their connections.", grace = ?SHUTDOWN_GRACE);
                (Ok(()), Ok(()))
            }
        };
        ticker.abort();
        let _ = ticker.await;
        // Every handle is gone now: the writer drains its queue, commits and stops.
        tokio::task::spawn_blocking(move || writer_thread.join())
            .await
            .ok();
        grpc_result?;
        http_result.map_err(ServerError::Http)?;
        info!(message = "Stopped.");
        Ok(())
    }
}
