//! Diagnostics bundles from a real store: what goes in, checksums, redaction of planted
//! secrets, hostile names, and a truncated or altered bundle caught by `inspect`.

use std::{io::Read, sync::Arc, time::Duration};

use nodemedic_collector::{
    bundle::{self, BundleRequest, InspectError, Sources},
    incidents::IncidentConfig,
    runbook::Catalog,
    store::{
        Reader, open_for_writing,
        writer::{Events, WriterConfig, spawn},
    },
};
use nodemedic_proto::{
    time::timestamp_from_millis,
    v1::{
        Evidence, Finding, Incident, JournalLine, JournalSection, KernelEvent, KernelSection,
        NodeReport, ProbeRun, Severity,
    },
};

const T0: i64 = 1_800_000_000_000;
const SECRET: &str = "hunter2-very-secret";
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJub2RlbWVkaWMifQ.c2lnbmF0dXJlLW9mLXRlc3Q";

/// A store with three nodes reporting for 2 minutes; n1's disk is full and one of its
/// findings carries planted credentials.
async fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = spawn(
        open_for_writing(dir.path()).unwrap(),
        WriterConfig {
            retention: Duration::from_secs(86_400),
            silent_after: 3,
            catalog: Arc::new(Catalog::builtin()),
            incidents: IncidentConfig::default(),
        },
        Events::default(),
        Arc::default(),
    )
    .unwrap();
    for node in ["n1", "n2", "n3"] {
        writer
            .hello(node, "test", Duration::from_secs(10), T0)
            .await
            .unwrap();
        for seq in 1..=12u64 {
            let at = T0 + seq as i64 * 10_000;
            let findings = if node == "n1" {
                vec![
                    Finding {
                        node: node.into(),
                        ..Finding::fail(
                            "disk.space",
                            Severity::Critical,
                            "/var/lib/kubelet",
                            format!("full; the app logged DB_PASSWORD={SECRET} and Authorization: Bearer {TOKEN}"),
                        )
                    }
                    .with(Evidence::text("roles", "kubelet"))
                    .with(Evidence::text("dsn", format!("postgres://app:{SECRET}@db:5432/app"))),
                ]
            } else {
                vec![]
            };
            // n1's kernel log has I/O errors: the first line and the latest one each time.
            let kernel = (node == "n1").then(|| KernelSection {
                source: "/dev/kmsg".into(),
                events: vec![KernelEvent {
                    check: "kernel.io_error".into(),
                    subject: "sdb".into(),
                    count: seq,
                    first_line: io_error_line(0),
                    first_at: Some(timestamp_from_millis(T0)),
                    last_line: io_error_line(seq),
                    last_at: Some(timestamp_from_millis(at)),
                    ..Default::default()
                }],
                ..Default::default()
            });
            // At seq 6 n1's kubelet said PLEG is not healthy: the lines before it come along,
            // one with a token in it.
            let journal = (node == "n1" && seq == 6).then(|| JournalSection {
                excerpt: [
                    (
                        at - 3000,
                        format!("I1207 sending request Authorization: Bearer {TOKEN}"),
                    ),
                    (
                        at - 2000,
                        "I1207 SyncLoop (PLEG): event for pod \"default/web-1\"".into(),
                    ),
                    (
                        at - 1000,
                        "PLEG is not healthy: pleg was last seen active 3m1s ago".into(),
                    ),
                ]
                .into_iter()
                .map(|(ms, message)| JournalLine {
                    at: Some(timestamp_from_millis(ms)),
                    unit: "kubelet.service".into(),
                    identifier: "kubelet".into(),
                    message,
                })
                .collect(),
                events: vec![KernelEvent {
                    check: "journal.kubelet_pleg".into(),
                    count: 1,
                    first_line: "PLEG is not healthy: pleg was last seen active 3m1s ago".into(),
                    first_at: Some(timestamp_from_millis(at - 1000)),
                    last_line: "PLEG is not healthy: pleg was last seen active 3m1s ago".into(),
                    last_at: Some(timestamp_from_millis(at - 1000)),
                    ..Default::default()
                }],
                ..Default::default()
            });
            let report = NodeReport {
                node: node.into(),
                seq,
                collected_at: Some(timestamp_from_millis(at)),
                kernel,
                journal,
                findings,
                probes: vec![ProbeRun {
                    probe: "disk".into(),
                    ok: true,
                    ..Default::default()
                }],
                ..Default::default()
            };
            writer.ingest(report, at).await.unwrap().await.unwrap();
        }
    }
    drop(writer);
    thread.join().unwrap();
    dir
}

/// A real kernel line (from `issue-longhorn-8604-buffer-io-error-beyond-eod.log`), its
/// block number changed.
fn io_error_line(block: u64) -> String {
    format!("Buffer I/O error on dev sdb, logical block {block}, async page read")
}

fn build(dir: &std::path::Path, request: &BundleRequest) -> Vec<u8> {
    let reader = Reader::open(dir).unwrap();
    let catalog = Catalog::builtin();
    let sources = Sources {
        reader: &reader,
        catalog: &catalog,
        info: serde_json::json!({"version": "test"}),
        pod_logs: &[],
    };
    let mut out = Vec::new();
    let mut progress = Vec::new();
    bundle::write(&sources, request, T0 + 200_000, &mut out, |n| {
        progress.push(n)
    })
    .unwrap();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    out
}

/// A node's reports, read back from its `history.json`.
fn reports(history: &[u8]) -> Vec<NodeReport> {
    bundle::history::rows(history)
        .unwrap()
        .map(|r| serde_json::from_value(r).unwrap())
        .collect()
}

fn decompressed(bundle: &[u8]) -> Vec<u8> {
    let mut tar = Vec::new();
    zstd::stream::read::Decoder::new(bundle)
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    tar
}

#[tokio::test]
async fn a_bundle_holds_the_store_checksummed_and_redacted() {
    let dir = store().await;
    let bytes = build(dir.path(), &BundleRequest::default());
    let checked = bundle::inspect(bytes.as_slice(), |_| true).unwrap();
    let paths: Vec<&str> = checked.files.keys().map(String::as_str).collect();
    for expected in [
        "collector/info.json",
        "findings.json",
        "incidents.json",
        "nodes/n1/history.json",
        "nodes/n1/latest.json",
        "nodes/n2/history.json",
        "nodes/n3/latest.json",
        "runbook/rules.yaml",
    ] {
        assert!(paths.contains(&expected), "{expected} not in {paths:?}");
    }
    // The kernel lines n1's agent matched, once each, in time order; none for the others.
    let kernel = String::from_utf8(checked.files["nodes/n1/kernel.log"].clone()).unwrap();
    let lines: Vec<&str> = kernel.lines().collect();
    assert_eq!(lines.len(), 13, "{kernel}");
    assert!(lines[0].ends_with(&format!("kernel.io_error sdb: {}", io_error_line(0))));
    assert!(lines[12].ends_with(&io_error_line(12)));
    assert!(!paths.contains(&"nodes/n2/kernel.log"));
    // The kubelet's lines before the match and the match (its event's line the same one,
    // once), redacted like the rest.
    let journal = String::from_utf8(checked.files["nodes/n1/journal.log"].clone()).unwrap();
    let lines: Vec<&str> = journal.lines().collect();
    assert_eq!(lines.len(), 4, "{journal}");
    assert!(
        lines[0].contains(
            "kubelet.service kubelet: I1207 sending request Authorization: Bearer [REDACTED]"
        ),
        "{journal}"
    );
    assert!(!journal.contains(TOKEN));
    assert!(
        lines[2..]
            .iter()
            .all(|l| l.ends_with("PLEG is not healthy: pleg was last seen active 3m1s ago"))
    );
    assert!(
        lines[2].contains("journal.kubelet_pleg") && lines[3].contains("kubelet.service"),
        "{journal}"
    );
    assert!(!paths.contains(&"nodes/n2/journal.log"));
    // The same as the store says.
    let reader = Reader::open(dir.path()).unwrap();
    assert_eq!(
        reports(&checked.files["nodes/n2/history.json"]),
        reader.history("n2", 0).unwrap(),
        "every report, read back from its columns"
    );
    let n1 = reports(&checked.files["nodes/n1/history.json"]);
    assert_eq!(n1.len(), 12);
    assert!(
        n1.iter()
            .all(|r| r.findings[0].message.contains("DB_PASSWORD=[REDACTED]")),
        "{:?}",
        n1[0].findings
    );
    let findings: Vec<nodemedic_proto::v1::Finding> =
        serde_json::from_slice(&checked.files["findings.json"]).unwrap();
    let (stored, _) = reader
        .findings(&nodemedic_collector::store::FindingFilter {
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(findings.len(), stored.len());
    assert!(!findings.is_empty());
    let incidents: Vec<Incident> =
        serde_json::from_slice(&checked.files["incidents.json"]).unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].rule, "disk-full");
    let info: serde_json::Value =
        serde_json::from_slice(&checked.files["collector/info.json"]).unwrap();
    assert_eq!(info["store"]["nodes"], 3);
    assert_eq!(info["store"]["reports"], 36);
    assert!(
        String::from_utf8_lossy(&checked.files["runbook/rules.yaml"])
            .contains("id: dns-failing-cluster")
    );
    let html = String::from_utf8(checked.files["summary.html"].clone()).unwrap();
    assert!(
        html.contains("A node filesystem is filling up") && html.contains("du -xh"),
        "{html}"
    );
    assert_eq!(html.matches("<svg").count(), 2, "two charts");
    assert!(html.contains("<td>n3</td>"));
    assert!(
        !html.contains("<script") && !html.contains("src=") && !html.contains("href="),
        "self-contained"
    );

    // Planted credentials appear in no file, compressed or not, and are counted.
    let tar = decompressed(&bytes);
    for secret in [SECRET, TOKEN] {
        assert!(
            !String::from_utf8_lossy(&tar).contains(secret),
            "{secret} in the archive"
        );
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    assert!(checked.manifest.redaction);
    assert!(
        checked.manifest.redacted >= 3 * 12,
        "{}",
        checked.manifest.redacted
    );
    assert!(
        checked
            .manifest
            .files
            .iter()
            .any(|f| f.path == "nodes/n1/history.json" && f.redacted >= 3 * 12)
    );

    // Filters: one node, a window, incidents only; redaction off keeps the secret.
    let one = bundle::inspect(
        build(
            dir.path(),
            &BundleRequest {
                nodes: vec!["n2".into()],
                since: Some(Duration::from_secs(125)),
                ..Default::default()
            },
        )
        .as_slice(),
        |_| true,
    )
    .unwrap();
    assert!(!one.files.keys().any(|p| p.starts_with("nodes/n1")));
    assert_eq!(
        reports(&one.files["nodes/n2/history.json"]).len(),
        5,
        "the reports of the last 125 s (80 s to 120 s)"
    );
    let incidents_only = bundle::inspect(
        build(
            dir.path(),
            &BundleRequest {
                incidents_only: true,
                ..Default::default()
            },
        )
        .as_slice(),
        |_| true,
    )
    .unwrap();
    assert!(!incidents_only.files.keys().any(|p| p.starts_with("nodes/")));
    let raw = build(
        dir.path(),
        &BundleRequest {
            no_redact: true,
            ..Default::default()
        },
    );
    assert!(String::from_utf8_lossy(&decompressed(&raw)).contains(SECRET));
}

#[tokio::test]
async fn hostile_names_and_altered_bundles_are_refused() {
    let dir = store().await;
    let reader = Reader::open(dir.path()).unwrap();
    let catalog = Catalog::builtin();
    let sources = Sources {
        reader: &reader,
        catalog: &catalog,
        info: serde_json::json!({}),
        pod_logs: &[],
    };
    for hostile in ["../../etc", "/etc/passwd", "a/b", "n1\n"] {
        let err = bundle::write(
            &sources,
            &BundleRequest {
                nodes: vec![hostile.into()],
                ..Default::default()
            },
            T0,
            Vec::new(),
            |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("node"), "{hostile:?}: {err}");
    }

    let bytes = build(dir.path(), &BundleRequest::default());
    // Truncated: the decoder says so.
    let err = bundle::inspect(&bytes[..bytes.len() / 2], |_| true).unwrap_err();
    assert!(matches!(err, InspectError::Corrupt { .. }), "{err}");
    // A flipped byte in the compressed stream.
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x55;
    assert!(bundle::inspect(flipped.as_slice(), |_| true).is_err());
    // A file altered inside a well-formed archive: named by its checksum.
    let mut tar = decompressed(&bytes);
    let needle = b"\"rule\": \"disk-full\"";
    let pos = tar.windows(needle.len()).position(|w| w == needle).unwrap();
    tar[pos + 10] = b'X';
    let tampered = zstd::encode_all(tar.as_slice(), 3).unwrap();
    let err = bundle::inspect(tampered.as_slice(), |_| true)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("incidents.json: SHA-256"), "{err}");
    // An entry that climbs out, or a link: refused before anything is used.
    for (name, kind) in [
        ("../evil", tar::EntryType::Regular),
        ("link", tar::EntryType::Symlink),
    ] {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(0);
        header.set_entry_type(kind);
        header.set_cksum();
        let mut evil = header.as_bytes().to_vec();
        evil.extend_from_slice(&[0; 1024]);
        let err = bundle::inspect(
            zstd::encode_all(evil.as_slice(), 3).unwrap().as_slice(),
            |_| true,
        )
        .unwrap_err();
        assert!(matches!(err, InspectError::Unsafe { .. }), "{name}: {err}");
    }

    // A header that claims a terabyte and brings nothing: an error, not an allocation.
    let mut header = tar::Header::new_gnu();
    header.set_path("nodes/n1/latest.json").unwrap();
    header.set_size(1 << 40);
    header.set_cksum();
    let mut liar = header.as_bytes().to_vec();
    liar.extend_from_slice(&[b'x'; 512]);
    let err = bundle::inspect(
        zstd::encode_all(liar.as_slice(), 3).unwrap().as_slice(),
        |_| true,
    )
    .unwrap_err();
    assert!(matches!(err, InspectError::Corrupt { .. }), "{err}");

    // A decompression bomb: 300 MiB of zeros in a few kilobytes. Kept, it is refused at
    // the limit; not kept, it is hashed as it streams and never held.
    let bomb = |name: &str| {
        let mut builder = tar::Builder::new(zstd::Encoder::new(Vec::new(), 3).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_size(300 << 20);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, std::io::repeat(0).take(300 << 20))
            .unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    };
    let small = bomb("manifest.json");
    assert!(small.len() < 64 << 10, "{} bytes", small.len());
    let err = bundle::inspect(small.as_slice(), |_| true).unwrap_err();
    assert!(matches!(err, InspectError::TooLarge { .. }), "{err}");
    let err = bundle::inspect(bomb("nodes/n1/history.json").as_slice(), |_| false).unwrap_err();
    assert!(err.to_string().contains("no manifest.json"), "{err}");
}

/// `doctor --bundle`'s bundle is made from the diagnosis: the files a collector's bundle of
/// the same one node has, the diagnosis's incidents and findings (numbered as in the
/// incidents), the report as its latest and its one-report history, redacted the same.
#[test]
fn a_diagnosis_bundle_has_the_layout_of_a_store_bundle() {
    let at = T0 + 10_000;
    let report = NodeReport {
        node: "lonely".into(),
        seq: 1,
        collected_at: Some(timestamp_from_millis(at)),
        findings: vec![
            Finding {
                node: "lonely".into(),
                ..Finding::fail(
                    "disk.space",
                    Severity::Critical,
                    "/var/lib/kubelet",
                    format!("full; DB_PASSWORD={SECRET}"),
                )
            }
            .with(Evidence::text("roles", "kubelet")),
            Finding {
                node: "lonely".into(),
                ..Finding::fail("memory.swap", Severity::Warning, "", "swap".into())
            },
        ],
        ..Default::default()
    };
    let catalog = Catalog::builtin();
    let diagnosis =
        nodemedic_collector::doctor::diagnose(report.clone(), Arc::new(Catalog::builtin()))
            .unwrap();
    let mut out = Vec::new();
    let info = serde_json::json!({"source": "nodemedic doctor"});
    let manifest = bundle::of_diagnosis(&diagnosis, &catalog, &info, &mut out).unwrap();
    let checked = bundle::inspect(out.as_slice(), |_| true).unwrap();

    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "incidents.json",
            "findings.json",
            "nodes/lonely/latest.json",
            "nodes/lonely/history.json",
            "summary.html",
            "runbook/rules.yaml",
            "collector/info.json",
        ],
        "the layout of a collector's bundle of one node"
    );
    let incidents: Vec<Incident> =
        serde_json::from_slice(&checked.files["incidents.json"]).unwrap();
    assert_eq!(
        incidents
            .iter()
            .map(|i| i.rule.as_str())
            .collect::<Vec<_>>(),
        diagnosis
            .incidents
            .iter()
            .map(|i| i.rule.as_str())
            .collect::<Vec<_>>()
    );
    let findings: Vec<Finding> = serde_json::from_slice(&checked.files["findings.json"]).unwrap();
    assert_eq!(findings.len(), 2);
    for member in incidents.iter().flat_map(|i| &i.findings) {
        assert!(
            findings
                .iter()
                .any(|f| f.id == member.id && f.check == member.check),
            "incident member {} is a listed finding",
            member.id
        );
    }
    let history = reports(&checked.files["nodes/lonely/history.json"]);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].seq, 1);
    for (path, body) in &checked.files {
        assert!(
            !String::from_utf8_lossy(body).contains(SECRET),
            "{path} carries the planted secret"
        );
    }
    assert!(manifest.redacted > 0);
}
