//! The writer on real SQLite stores: lifecycle, incidents, silence, retention, upgrades.

use super::{lifecycle::probe_failed, *};
use crate::{
    incidents::IncidentConfig,
    runbook::Catalog,
    store::{FindingFilter, Reader, open_for_writing},
};
use nodemedic_proto::{
    time::timestamp_from_millis,
    v1::{FindingState, ProbeRun},
};

const HOUR: i64 = 3_600_000;
const NOW: i64 = 1_700_000_000_000;

fn report(node: &str, seq: u64, at: i64, checks: &[&str]) -> NodeReport {
    NodeReport {
        node: node.into(),
        seq,
        collected_at: Some(timestamp_from_millis(at)),
        findings: checks
            .iter()
            .map(|c| Finding {
                node: node.into(),
                ..Finding::fail(c, Severity::Warning, "/", "x".into())
            })
            .collect(),
        probes: vec![ProbeRun {
            probe: "disk".into(),
            ok: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A writer on the store in `dir` with an hour's retention.
fn start_writer(dir: &std::path::Path) -> (WriterHandle, std::thread::JoinHandle<()>) {
    let config = WriterConfig {
        retention: Duration::from_secs(3600),
        silent_after: 3,
        catalog: Arc::new(Catalog::builtin()),
        incidents: IncidentConfig::default(),
    };
    spawn(
        open_for_writing(dir).unwrap(),
        config,
        Events::default(),
        Arc::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn retention_keeps_each_nodes_latest_report_and_open_findings() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = start_writer(dir.path());
    for node in ["n1", "n2"] {
        writer
            .hello(node, "test", Duration::from_secs(3600), NOW - 6 * HOUR)
            .await
            .unwrap();
    }
    // n1: a finding opens 3h ago and resolves 2h ago; its latest report is recent. (Each
    // report is a base, which is kept an hour past the retention for its deltas.)
    for (seq, at, checks) in [
        (1, NOW - 3 * HOUR, &["disk.space"][..]),
        (2, NOW - 2 * HOUR - 60_000, &[][..]),
        (3, NOW - 60_000, &[][..]),
    ] {
        writer
            .ingest(report("n1", seq, at, checks), at)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // n2: one old report with a finding still open.
    writer
        .ingest(
            report("n2", 1, NOW - 5 * HOUR, &["disk.inodes"]),
            NOW - 5 * HOUR,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    writer.tick(NOW).await.unwrap();
    drop(writer);
    thread.join().unwrap();

    let reader = Reader::open(dir.path()).unwrap();
    let seqs = |node| {
        reader
            .history(node, 0)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs("n1"), [3], "reports older than 1h are gone");
    assert_eq!(seqs("n2"), [1], "a node's latest report stays, however old");
    let all = FindingFilter {
        limit: 100,
        ..Default::default()
    };
    let (resolved, _) = reader
        .findings(&FindingFilter {
            state: FindingState::Resolved,
            ..all.clone()
        })
        .unwrap();
    assert!(
        resolved.is_empty(),
        "findings resolved before the cutoff are gone: {resolved:?}"
    );
    let (open, _) = reader
        .findings(&FindingFilter {
            state: FindingState::Open,
            ..all
        })
        .unwrap();
    let mut open: Vec<_> = open
        .iter()
        .map(|f| (f.node.as_str(), f.check.as_str()))
        .collect();
    open.sort();
    // n2 missed 3 hourly intervals: silent. n1 reported a minute ago: not.
    assert_eq!(open, [("n2", "disk.inodes"), ("n2", "node.silent")]);
}

/// A report as an agent sends one every interval: the same mounts and processes, the
/// numbers moved a little since the last one.
fn drifting(node: &str, seq: u64, at: i64) -> NodeReport {
    use nodemedic_proto::v1::{DiskSection, MemorySection, Mount, ProcessMemory, Psi};
    let step = seq * 7919 % 1013;
    NodeReport {
        disk: Some(DiskSection {
            mounts: (0..8)
                .map(|m| Mount {
                    mount_point: format!("/var/lib/kubelet/pods/{m}/volumes"),
                    device: format!("/dev/nvme0n1p{m}"),
                    fs_type: "ext4".into(),
                    bytes_total: 100 << 30,
                    bytes_used: (40 << 30) + step * 4096 * (m + 1),
                    bytes_available: (60 << 30) - step * 4096 * (m + 1),
                    inodes_total: 6_553_600,
                    inodes_used: 300_000 + step,
                    inodes_available: 6_253_600 - step,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        memory: Some(MemorySection {
            total_bytes: 16 << 30,
            available_bytes: (6 << 30) + step * 65_536,
            pressure: Some(Psi {
                some_avg10: step as f64 / 100.0,
                ..Default::default()
            }),
            top_processes: (0..10)
                .map(|p| ProcessMemory {
                    pid: 1000 + p,
                    name: format!("process-{p}"),
                    rss_bytes: (100 << 20) + step * 4096 * p as u64,
                })
                .collect(),
            ..Default::default()
        }),
        ..report(node, seq, at, &["memory.swap"])
    }
}

#[tokio::test]
async fn reports_are_stored_by_their_changes_and_read_back_whole() {
    const MINUTE: i64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = start_writer(dir.path());
    // Three hours of a report a minute, the last one a minute ago.
    let first = NOW - 180 * MINUTE;
    let sent: Vec<NodeReport> = (1..=180)
        .map(|seq| drifting("n1", seq, first + (seq as i64 - 1) * MINUTE))
        .collect();
    let mut acks = Vec::new();
    for r in &sent {
        let at = timestamp_millis(r.collected_at.as_ref().unwrap());
        acks.push(writer.ingest(r.clone(), at).await.unwrap());
    }
    for ack in acks {
        assert!(!ack.await.unwrap().duplicate);
    }

    let reader = Reader::open(dir.path()).unwrap();
    assert_eq!(
        reader.history("n1", 0).unwrap(),
        sent,
        "every report reads back whole"
    );
    let (_, latest) = reader.node("n1").unwrap().unwrap();
    assert_eq!(latest.as_ref(), sent.last());
    let db = open_for_writing(dir.path()).unwrap();
    let (bases, delta_bytes, deltas): (i64, i64, i64) = db
        .query_row(
            "SELECT COUNT(*) FILTER (WHERE base_id IS NULL),
                    SUM(length(body)) FILTER (WHERE base_id IS NOT NULL),
                    COUNT(*) FILTER (WHERE base_id IS NOT NULL) FROM reports",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(bases, 3, "one whole report an hour");
    assert_eq!(deltas, 177);
    let whole = sent[0].encoded_len() as i64;
    assert!(
        delta_bytes / deltas * 5 < whole,
        "a delta ({} bytes on average) holds what changed, not the report ({whole} bytes)",
        delta_bytes / deltas
    );

    // Retention (1 h) keeps every report of the last hour readable, the base an hour
    // before them included.
    writer.tick(NOW).await.unwrap();
    let cutoff = NOW - HOUR;
    let kept: Vec<_> = sent
        .iter()
        .filter(|r| timestamp_millis(r.collected_at.as_ref().unwrap()) >= cutoff)
        .cloned()
        .collect();
    assert_eq!(reader.history("n1", cutoff).unwrap(), kept);
    let older = reader.history("n1", 0).unwrap();
    assert_eq!(
        older.len(),
        kept.len() + 1,
        "and the base they need: {older:?}"
    );

    // After a restart the writer knows no base: the next report is stored whole.
    drop(writer);
    thread.join().unwrap();
    let (writer, thread) = start_writer(dir.path());
    writer
        .ingest(drifting("n1", 181, NOW), NOW)
        .await
        .unwrap()
        .await
        .unwrap();
    drop(writer);
    thread.join().unwrap();
    let base: Option<i64> = db
        .query_row("SELECT base_id FROM reports WHERE seq = 181", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(base, None);
    assert_eq!(
        reader.history("n1", NOW).unwrap(),
        [drifting("n1", 181, NOW)]
    );
}

#[test]
fn a_version_2_store_is_upgraded_and_its_whole_reports_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let old = report("n1", 1, NOW, &[]);
    {
        // Make a version 2 store: no base_id, reports stored whole.
        let db = open_for_writing(dir.path()).unwrap();
        db.execute_batch("ALTER TABLE reports DROP COLUMN base_id; PRAGMA user_version = 2;")
            .unwrap();
        db.execute(
            "INSERT INTO reports (node, seq, collected_at, received_at, body) VALUES ('n1', 1, ?1, ?1, ?2)",
            params![NOW, old.encode_to_vec()],
        )
        .unwrap();
        db.execute(
            "INSERT INTO nodes (name, first_seen, last_report, last_seq, latest_report_id) VALUES ('n1', ?1, ?1, 1, 1)",
            [NOW],
        )
        .unwrap();
    }
    let db = open_for_writing(dir.path()).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    let reader = Reader::open(dir.path()).unwrap();
    assert_eq!(reader.history("n1", 0).unwrap(), std::slice::from_ref(&old));
    assert_eq!(reader.node("n1").unwrap().unwrap().1, Some(old));
}

#[test]
fn a_failed_probe_keeps_the_checks_it_owns() {
    use nodemedic_proto::v1::ProbeRun;
    let failed = |probe: &str, checks: &[&str]| NodeReport {
        probes: vec![ProbeRun {
            probe: probe.into(),
            ok: false,
            checks: checks.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    // Listing none: every "<probe>.*" check.
    assert!(probe_failed("memory.swap", &failed("memory", &[])));
    assert!(!probe_failed("disk.space", &failed("memory", &[])));
    // The pods probe owns pod.* checks and node.condition, which its id does not name.
    let pods = failed("pods", &["pod.crashloop", "node.condition"]);
    assert!(probe_failed("pod.crashloop", &pods));
    assert!(probe_failed("node.condition", &pods));
    assert!(!probe_failed("node.silent", &pods));
    assert!(
        !probe_failed("pod.memory_near_limit", &pods),
        "another probe's pod check"
    );
}
