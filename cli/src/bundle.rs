//! `bundle`: download a diagnostics bundle from the collector (streamed to a temporary
//! file, renamed into place only when complete), and `bundle inspect`: verify one and show
//! what it holds.

use std::{
    fs::File,
    io::{BufReader, IsTerminal, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use nodemedic_collector::bundle;
use nodemedic_proto::{
    finding::human_bytes,
    time::duration,
    v1::{BundleRequest, Incident},
};
use tokio_stream::StreamExt;

use crate::{
    output::{Format, one_line, structured},
    query::Client,
    query::status_text,
    table::Table,
};

/// `bundle` options.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BundleArgs {
    /// `inspect FILE` or `history FILE`; nothing to download
    #[command(subcommand)]
    pub command: Option<BundleCommand>,
    /// Where to write the bundle (.tar.zst); written as FILE.partial until complete
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only these nodes (repeatable); all when omitted
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Only what happened in this window, e.g. 2h; everything kept when omitted
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Incidents and their findings only
    #[arg(long)]
    pub incidents_only: bool,
    /// Keep values that look like credentials (redaction is on by default)
    #[arg(long)]
    pub no_redact: bool,
}

/// `bundle` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Verify a bundle (every file against the manifest's size and SHA-256, no unsafe
    /// paths) and print its manifest and incidents
    Inspect {
        /// The bundle
        file: PathBuf,
    },
    /// Print the nodes' reports held in a bundle, one JSON document a line, oldest first
    /// (the bundle keeps them column by column; it is verified first)
    History {
        /// The bundle
        file: PathBuf,
        /// Only these nodes (repeatable); all when omitted
        #[arg(long = "node")]
        nodes: Vec<String>,
    },
}

/// Downloads a bundle.
pub async fn download(mut c: Client, args: BundleArgs) -> anyhow::Result<()> {
    let file = args.file.context(
        "say where to write the bundle: nodemedic bundle -f FILE (or bundle inspect FILE)",
    )?;
    let mut stream = c
        .download_bundle(BundleRequest {
            nodes: args.nodes,
            since: args.since.map(duration),
            incidents_only: args.incidents_only,
            no_redact: args.no_redact,
        })
        .await
        .map_err(status_text)?
        .into_inner();
    let (target, mut out) = PartialFile::create(&file)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let (mut bytes, mut files) = (0u64, 0u32);
    let result: anyhow::Result<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(status_text)?;
            if let Some(said) = pod_logs_line(&chunk.logs_from, &chunk.logs_missing) {
                match &bar {
                    Some(bar) => bar.println(said),
                    None => eprintln!("{said}"),
                }
            }
            out.write_all(&chunk.data)?;
            bytes += chunk.data.len() as u64;
            files = chunk.files;
            if let Some(bar) = &bar {
                bar.set_message(format!(
                    "{} received, {files} files",
                    human_bytes(bytes as f64)
                ));
            }
        }
        anyhow::ensure!(
            bytes > 0,
            "the collector ended the download without sending any of the bundle"
        );
        out.sync_all()?;
        Ok(())
    }
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    target
        .finish(result)
        .context("the bundle download failed; nothing was written")?;
    eprintln!(
        "wrote {}: {} ({files} files); check it with: nodemedic bundle inspect {}",
        file.display(),
        human_bytes(bytes as f64),
        file.display()
    );
    Ok(())
}

/// A file written as `FILE.partial` beside its final name and moved there only when
/// complete, so an interrupted write never leaves a half file under the final name.
pub struct PartialFile {
    partial: PathBuf,
    file: PathBuf,
}

impl PartialFile {
    /// Creates `FILE.partial`; the handle to write to.
    pub fn create(file: &Path) -> anyhow::Result<(Self, File)> {
        let mut name = file.as_os_str().to_owned();
        name.push(".partial");
        let partial = PathBuf::from(name);
        let out = File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        Ok((
            PartialFile {
                partial,
                file: file.to_owned(),
            },
            out,
        ))
    }

    /// Moves the file to its name when the write succeeded, removes it when not.
    pub fn finish<T>(self, written: anyhow::Result<T>) -> anyhow::Result<T> {
        match written {
            Ok(value) => {
                std::fs::rename(&self.partial, &self.file).with_context(|| {
                    format!(
                        "cannot move {} to {}",
                        self.partial.display(),
                        self.file.display()
                    )
                })?;
                Ok(value)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.partial);
                Err(e)
            }
        }
    }
}

/// Verifies a bundle and prints what it holds.
pub fn inspect(file: &Path, format: Format) -> anyhow::Result<()> {
    let reader = BufReader::new(
        File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    // Every file is verified; only the incidents are held, to print them.
    let checked = bundle::inspect(reader, |path| path == "incidents.json")
        .with_context(|| format!("{} is not valid", file.display()))?;
    if structured(format, &checked.manifest)? {
        return Ok(());
    }
    let m = &checked.manifest;
    println!(
        "Bundle {} (format {}, nodemedic {}, created {}): {} files verified, {} values redacted{}",
        file.display(),
        m.format,
        one_line(&m.nodemedic_version),
        one_line(&m.created_at),
        m.files.len(),
        m.redacted,
        if m.redaction {
            ""
        } else {
            " (redaction was OFF)"
        }
    );
    println!("Filters: {}", one_line(&m.filters.to_string()));
    let mut t = Table::new(&["FILE", "SIZE", "SHA-256", "REDACTED"]);
    for f in &m.files {
        t.row(vec![
            f.path.clone(),
            human_bytes(f.size as f64),
            f.sha256[..16].to_owned(),
            f.redacted.to_string(),
        ]);
    }
    print!("{}", t.render(""));
    if let Some(body) = checked.files.get("incidents.json") {
        let incidents: Vec<Incident> = serde_json::from_slice(body)?;
        println!("\nIncidents ({}):", incidents.len());
        let mut t = Table::new(&["ID", "SEVERITY", "STATE", "NODES", "TITLE"]);
        for i in &incidents {
            t.row(vec![
                i.id.to_string(),
                i.severity().label().into(),
                format!("{:?}", i.state()).to_lowercase(),
                i.nodes.join(","),
                i.title.clone(),
            ]);
        }
        print!("{}", t.render("  "));
    }
    Ok(())
}

/// Verifies a bundle and prints the reports of its nodes (or of `nodes`) as JSON lines.
pub fn history(file: &Path, nodes: &[String]) -> anyhow::Result<()> {
    let reader = BufReader::new(
        File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let wanted = |path: &str| {
        path.strip_prefix("nodes/")
            .and_then(|p| p.strip_suffix("/history.json"))
            .is_some_and(|node| nodes.is_empty() || nodes.iter().any(|n| n == node))
    };
    let checked = bundle::inspect(reader, wanted)
        .with_context(|| format!("{} is not valid", file.display()))?;
    if let Some(missing) = nodes.iter().find(|n| {
        !checked
            .files
            .contains_key(&format!("nodes/{n}/history.json"))
    }) {
        anyhow::bail!("the bundle holds no reports of node {missing}");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (path, body) in &checked.files {
        let rows = bundle::history::rows(body).with_context(|| format!("{path} is not valid"))?;
        for report in rows {
            serde_json::to_writer(&mut out, &report)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// What the progress says of the pods' logs: which nodes' agents sent them, and which were
/// asked and did not (and why); `None` when no node was asked.
fn pod_logs_line(from: &[String], missing: &[String]) -> Option<String> {
    match (from.is_empty(), missing.is_empty()) {
        (true, true) => None,
        (false, true) => Some(format!("pods' logs from {}", from.join(", "))),
        (true, false) => Some(format!("no pods' logs: {}", missing.join("; "))),
        (false, false) => Some(format!(
            "pods' logs from {}; not from {}",
            from.join(", "),
            missing.join("; ")
        )),
    }
}
