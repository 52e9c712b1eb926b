//! The image probe: how full each container runtime's image cache is, how much of it no
//! container uses, and whether the kubelet's image garbage collection is about to run.
//!
//! Docker is asked through its Engine API ([`docker`]), CRI runtimes through the CRI v1
//! gRPC API ([`cri`]); both come back as an [`Inventory`] and are judged the same way. No
//! runtime on the node is normal (the section says which were found); a socket that exists
//! and does not answer is `images.runtime_unreachable`.

pub mod cri;
pub mod docker;
mod inventory;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
};

use nodemedic_proto::{
    finding::human_bytes,
    v1::{Evidence, Finding, ImageRuntime, ImagesSection, Severity},
};

pub use self::inventory::{ImageEntry, Inventory, RuntimeKind};
use super::{disk::forecast::History, percent};
use crate::{
    config::ImagesConfig,
    host::HostRoot,
    probe::{Probe, ProbeContext, ProbeError, ProbeOutput, Section},
};

/// Docker's socket when none is configured.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// A runtime that could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// The Docker Engine API failed.
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// The CRI API failed.
    #[error("cri: {0}")]
    Cri(String),
    /// The runtime did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// A configured socket is not there.
    #[error("{0} does not exist")]
    NoSocket(PathBuf),
}

/// A runtime socket to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The API it speaks.
    pub kind: RuntimeKind,
    /// The socket as the node names it.
    pub host_path: String,
    /// Named in the configuration: it must exist.
    pub configured: bool,
}

impl Endpoint {
    /// The runtimes to ask on this host: the configured sockets, or the default ones that
    /// exist.
    pub fn discover(host: &HostRoot, config: &ImagesConfig) -> Vec<Endpoint> {
        let mut found = Vec::new();
        let docker = config.docker_socket.as_deref();
        if docker.is_some() || host.path(DEFAULT_DOCKER_SOCKET).exists() {
            found.push(Endpoint {
                kind: RuntimeKind::Docker,
                host_path: docker.unwrap_or(DEFAULT_DOCKER_SOCKET).to_owned(),
                configured: docker.is_some(),
            });
        }
        match config.cri_endpoint.as_deref() {
            Some(e) => found.push(Endpoint {
                kind: RuntimeKind::Cri,
                host_path: e.trim_start_matches("unix://").to_owned(),
                configured: true,
            }),
            None => found.extend(
                cri::DEFAULT_ENDPOINTS
                    .iter()
                    .find(|p| host.path(p).exists())
                    .map(|p| Endpoint {
                        kind: RuntimeKind::Cri,
                        host_path: (*p).to_owned(),
                        configured: false,
                    }),
            ),
        }
        found
    }

    /// What the runtime holds now (`cache` spares Docker a full measurement when nothing
    /// changed since the last one).
    pub async fn inventory(
        &self,
        host: &HostRoot,
        timeout: std::time::Duration,
        cache: &mut docker::Cache,
    ) -> Result<Inventory, ImagesError> {
        let socket = host.path(&self.host_path);
        if !socket.exists() {
            return Err(ImagesError::NoSocket(socket));
        }
        let ask = async {
            match self.kind {
                RuntimeKind::Docker => {
                    docker::inventory(&docker::connect(&socket, timeout).await?, cache).await
                }
                RuntimeKind::Cri => cri::inventory(cri::connect(&socket, timeout).await?).await,
            }
        };
        tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| ImagesError::Timeout(timeout))?
    }
}

/// Asks the runtimes; keeps samples of each image filesystem for its fill rate, and what
/// Docker said last.
#[derive(Debug)]
pub struct ImagesProbe {
    config: ImagesConfig,
    history: Mutex<History>,
    docker: Mutex<HashMap<String, docker::Cache>>,
}

impl ImagesProbe {
    /// A probe with these settings.
    pub fn new(config: ImagesConfig) -> Self {
        ImagesProbe {
            config,
            history: Mutex::default(),
            docker: Mutex::default(),
        }
    }
}

impl Probe for ImagesProbe {
    fn id(&self) -> &'static str {
        "images"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let mut section = ImagesSection::default();
        let mut findings = Vec::new();
        if !self.config.enabled {
            return Ok(ProbeOutput {
                section: Section::Images(section),
                findings,
            });
        }
        let endpoints = Endpoint::discover(&ctx.host, &self.config);
        if endpoints.is_empty() {
            return Ok(ProbeOutput {
                section: Section::Images(section),
                findings,
            });
        }
        // The runtime clients are async; the probe runs on a blocking thread, with a small
        // runtime of its own so it does not depend on the caller's.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ProbeError::Runtime)?;
        let mut caches = self.docker.lock().unwrap_or_else(|p| p.into_inner());
        for endpoint in endpoints {
            let cache = caches.entry(endpoint.host_path.clone()).or_default();
            let measured = rt.block_on(endpoint.inventory(&ctx.host, self.config.timeout, cache));
            if measured.is_err() {
                // A restarted engine may have another version or root.
                *cache = docker::Cache::default();
            }
            let runtime = match measured {
                Ok(inventory) => {
                    let mut runtime =
                        inventory.summary(endpoint.kind, &endpoint.host_path, self.config.top);
                    self.place(ctx, &mut runtime)?;
                    findings.extend(judge(&runtime, &self.config));
                    runtime
                }
                Err(e) => {
                    findings.push(unreachable(&endpoint, &e));
                    ImageRuntime {
                        kind: endpoint.kind.label().into(),
                        endpoint: endpoint.host_path.clone(),
                        error: e.to_string(),
                        ..Default::default()
                    }
                }
            };
            section.runtimes.push(runtime);
        }
        Ok(ProbeOutput {
            section: Section::Images(section),
            findings,
        })
    }
}

impl ImagesProbe {
    /// Fills in the filesystem that holds the runtime's images, and its fill rate.
    fn place(&self, ctx: &ProbeContext, runtime: &mut ImageRuntime) -> Result<(), ProbeError> {
        if runtime.root_dir.is_empty() {
            return Ok(());
        }
        // The deepest mount holding the directory; a bind mount of a subtree (engines bind
        // their root onto itself) names the same filesystem less well than its origin.
        let table = ctx.host.mount_table()?;
        runtime.mount_point = table
            .iter()
            .filter(|m| Path::new(&runtime.root_dir).starts_with(&m.mount_point))
            .max_by_key(|m| (m.root == "/", m.mount_point.len()))
            .map_or("/", |m| m.mount_point.as_str())
            .to_owned();
        let usage = ctx.host.fs_usage(&runtime.root_dir)?;
        runtime.fs_total_bytes = usage.bytes_total;
        runtime.fs_available_bytes = usage.bytes_available;
        let disk = &ctx.thresholds.disk;
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        runtime.fill_rate_bytes_per_hour = history
            .record(
                &format!("{}:{}", runtime.kind, runtime.root_dir),
                ctx.now,
                usage.bytes_used,
                usage.bytes_available,
                disk.fill_window,
                disk.fill_min_span,
            )
            .map(|f| f.bytes_per_hour);
        Ok(())
    }
}

fn unreachable(endpoint: &Endpoint, e: &ImagesError) -> Finding {
    Finding::fail(
        "images.runtime_unreachable",
        Severity::Critical,
        &endpoint.host_path,
        format!(
            "The {} runtime at {} does not answer ({e}): the kubelet cannot start or inspect containers through it.",
            endpoint.kind.label(),
            endpoint.host_path
        ),
    )
    .with(Evidence::text("runtime", endpoint.kind.label()))
    .with(Evidence::text("endpoint", endpoint.host_path.clone()))
}

/// The runtime's findings: reclaimable space, dangling images, image GC about to run.
pub fn judge(r: &ImageRuntime, config: &ImagesConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let used = r.fs_total_bytes.saturating_sub(r.fs_available_bytes);
    let used_percent = percent(used, r.fs_total_bytes);
    let reclaimable_percent = percent(r.reclaimable_bytes, r.fs_total_bytes);
    let base = |check: &str, severity: Severity, message: String| {
        Finding::fail(check, severity, &r.root_dir, message)
            .with(Evidence::text("runtime", r.kind.clone()))
            .with(Evidence::text("mount", r.mount_point.clone()))
            .with(Evidence::bytes("reclaimable_bytes", r.reclaimable_bytes))
            .with(Evidence::text("top_reclaimable", top_text(r)))
    };
    if r.fs_total_bytes > 0
        && r.reclaimable_bytes >= config.reclaimable_min_bytes
        && reclaimable_percent >= config.reclaimable_warn_percent.get()
    {
        out.push(
            base(
                "images.reclaimable",
                Severity::Warning,
                format!(
                    "{} of images no container uses ({reclaimable_percent:.0}% of {} on {}); largest: {}.",
                    human_bytes(r.reclaimable_bytes as f64),
                    human_bytes(r.fs_total_bytes as f64),
                    r.mount_point,
                    top_text(r)
                ),
            )
            .with(Evidence::bytes("bytes", r.reclaimable_bytes))
            .with(Evidence::percent("reclaimable_percent", reclaimable_percent)),
        );
    }
    if r.dangling_bytes >= config.dangling_min_bytes && r.dangling > 0 {
        out.push(
            base(
                "images.dangling",
                Severity::Info,
                format!(
                    "{} untagged images hold {}.",
                    r.dangling,
                    human_bytes(r.dangling_bytes as f64)
                ),
            )
            .with(Evidence::count("dangling", u64::from(r.dangling)))
            .with(Evidence::bytes("bytes", r.dangling_bytes)),
        );
    }
    let gc = config.gc_high_percent.get();
    let line = (r.fs_total_bytes as f64 * gc / 100.0) as u64;
    let crosses_in = r
        .fill_rate_bytes_per_hour
        .filter(|rate| *rate > 0.0 && used < line)
        .map(|rate| (line - used) as f64 / rate)
        .filter(|hours| *hours * 3600.0 <= config.gc_warn_within.as_secs_f64());
    if r.fs_total_bytes > 0 && (used_percent >= gc || crosses_in.is_some()) {
        let when = match crosses_in {
            Some(h) => format!("will cross {gc:.0}% in {h:.1}h at its fill rate"),
            None => format!("is {used_percent:.0}% used, above {gc:.0}%"),
        };
        let mut f = base(
            "images.gc_imminent",
            Severity::Warning,
            format!(
                "The image filesystem {} {when}: the kubelet's image garbage collection deletes unused images on its own schedule; {} are reclaimable now.",
                r.mount_point,
                human_bytes(r.reclaimable_bytes as f64)
            ),
        )
        .with(Evidence::percent("used_percent", used_percent))
        .with(Evidence::percent("gc_high_percent", gc))
        .with(Evidence::bytes("bytes", r.reclaimable_bytes));
        if let Some(h) = crosses_in {
            f = f.with(Evidence::number("crosses_in", h, "hours"));
        }
        out.push(f);
    }
    out
}

fn top_text(r: &ImageRuntime) -> String {
    let names: Vec<String> = r
        .top_reclaimable
        .iter()
        .map(|i| {
            let name = i
                .tags
                .iter()
                .find(|t| *t != "<none>:<none>")
                .cloned()
                .unwrap_or_else(|| {
                    i.id.trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect()
                });
            format!("{name} {}", human_bytes(i.size_bytes as f64))
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
