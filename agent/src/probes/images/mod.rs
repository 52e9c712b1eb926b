//! The image probe: how full each container runtime's image cache is, how much of it no
//! container uses, and whether the kubelet's image garbage collection is about to run.
//!
//! The runtimes are asked through [`crate::runtime`] (Docker's Engine API, the CRI); both
//! come back as an inventory and are judged the same way. No runtime on the node is normal
//! (the section says which were found); a socket that exists and does not answer is
//! `images.runtime_unreachable`.

pub mod config;

use std::{collections::HashMap, path::Path, sync::Mutex};

use nodemedic_proto::{
    checks,
    finding::human_bytes,
    v1::{Evidence, Finding, ImageRuntime, ImagesSection, Severity},
};

use self::config::ImagesConfig;
use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{
    forecast::{Fit, History},
    kubelet::{Amount, KubeletConfig, Line},
    runtime::{RuntimeError, docker, endpoint::Endpoint},
    units::percent,
};

/// Asks the runtimes; keeps samples of each image filesystem for its fill rate, and what
/// Docker said last.
#[derive(Debug)]
pub struct ImagesProbe {
    config: ImagesConfig,
    fill: Fit,
    history: Mutex<History>,
    docker: Mutex<HashMap<String, docker::Cache>>,
}

impl ImagesProbe {
    /// A probe with these settings; the image filesystem's fill rate is fitted as `fill`
    /// says (the disk probe's window).
    pub fn new(config: ImagesConfig, fill: Fit) -> Self {
        ImagesProbe {
            config,
            fill,
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
        let endpoints = Endpoint::discover(&ctx.host, &self.config.sockets());
        if endpoints.is_empty() {
            return Ok(ProbeOutput {
                section: Section::Images(section),
                findings,
            });
        }
        // The runtime clients are async; the probe runs on a blocking thread, with a small
        // runtime of its own so it does not depend on the caller's.
        let gc = match KubeletConfig::read(&ctx.host) {
            Some(k) => (k.image_gc_high(), k.image_gc_low_threshold_percent),
            None => (
                Line::nodemedic(
                    "imagefs.used",
                    Amount::Percent(self.config.gc_high_percent.get()),
                ),
                None,
            ),
        };
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
                    findings.extend(judge(&runtime, &self.config, &gc));
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
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        runtime.fill_rate_bytes_per_hour = history
            .record(
                &format!("{}:{}", runtime.kind, runtime.root_dir),
                ctx.now,
                usage.bytes_used,
                usage.bytes_available,
                self.fill.window,
                self.fill.min_span,
            )
            .map(|f| f.bytes_per_hour);
        Ok(())
    }
}

fn unreachable(endpoint: &Endpoint, e: &RuntimeError) -> Finding {
    Finding::fail(
        checks::IMAGES_RUNTIME_UNREACHABLE,
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

/// The runtime's findings: reclaimable space, dangling images, image GC about to run (at
/// the kubelet's `gc` line: its high threshold, and the low one it deletes down to when
/// its config sets it).
pub fn judge(r: &ImageRuntime, config: &ImagesConfig, gc: &(Line, Option<f64>)) -> Vec<Finding> {
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
                checks::IMAGES_RECLAIMABLE,
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
                checks::IMAGES_DANGLING,
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
    let (gc_line, gc_low) = gc;
    let gc = gc_line.percent_of(r.fs_total_bytes);
    let line = gc_line.amount_of(r.fs_total_bytes);
    let crosses_in = r
        .fill_rate_bytes_per_hour
        .filter(|rate| *rate > 0.0 && used < line)
        .map(|rate| (line - used) as f64 / rate)
        .filter(|hours| *hours * 3600.0 <= config.gc_warn_within.as_secs_f64());
    if r.fs_total_bytes > 0 && (used_percent >= gc || crosses_in.is_some()) {
        let origin = gc_line.origin();
        let when = match crosses_in {
            Some(h) => format!("will cross {gc:.0}%{origin} in {h:.1}h at its fill rate"),
            None => format!("is {used_percent:.0}% used, above {gc:.0}%{origin}"),
        };
        let down_to = gc_low.map_or_else(String::new, |low| format!(" down to {low:.0}% used"));
        let mut f = base(
            checks::IMAGES_GC_IMMINENT,
            Severity::Warning,
            format!(
                "The image filesystem {} {when}: the kubelet's image garbage collection deletes unused images{down_to} on its own schedule; {} are reclaimable now.",
                r.mount_point,
                human_bytes(r.reclaimable_bytes as f64)
            ),
        )
        .with(Evidence::percent("used_percent", used_percent))
        .with(Evidence::percent("gc_high_percent", gc))
        .with(Evidence::text("threshold_source", gc_line.source.label()))
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
