//! One node's hostile or broken input must never hurt the rest. A node with a valid
//! identity sends values no answer could carry, the highest seq, and credentials in every
//! field it can fill; a store holds rows written before those were refused. Every refusal
//! names the report's seq (so the agent drops it), nothing stored is touched, every read
//! path answers, and viewers never see a credential.

use std::{path::Path, process::Command, time::Duration};

use nodemedic_collector::auth::{Role, new_token};
use nodemedic_proto::{
    limits::{MAX_SEQ, REFUSED_SEQ},
    time::timestamp,
    v1::{
        DiskSection, Evidence, Finding, GetNodeRequest, KernelEvent, KernelSection,
        ListFindingsRequest, ListIncidentsRequest, MemorySection, Mount, NodeReport, ProcessMemory,
        Severity,
    },
};
use nodemedic_tests::{
    binary,
    in_process::{Running, connect, reconnect, report},
};
use prost::Message;
use tonic::Code;

const NODE: &str = "node-hostile";

/// Sends `bad` (seq `seq`) and expects it refused as invalid, naming its seq, with
/// `reason` in the message; the node's stored last seq stays `last`.
async fn refused(server: &Running, bad: NodeReport, reason: &str, last: u64) {
    let seq = bad.seq;
    let mut a = reconnect(server, NODE).await;
    assert_eq!(a.last_seq, last);
    a.send(bad).await;
    let err = a.next().await.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{reason}: {err}");
    assert!(err.message().contains(reason), "{reason}: {err}");
    let named = err
        .metadata()
        .get(REFUSED_SEQ)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(named, Some(seq), "the refusal names the seq: {err}");
}

/// A collector on `dir` holding report 1 of [`NODE`], with one warning on `/`.
async fn with_one_good_report(dir: &Path) -> Running {
    let server = Running::start(dir, 3).await;
    let mut a = connect(&server, NODE, Duration::from_secs(10))
        .await
        .unwrap();
    let good = report(NODE, 1, &[("disk.space", Severity::Warning, "/")], &[]);
    assert_eq!(a.report(good).await, (1, false));
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_no_answer_could_carry_are_refused_naming_their_seq() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_one_good_report(dir.path()).await;

    let with = |change: &dyn Fn(&mut NodeReport)| {
        let mut r = report(NODE, 2, &[("disk.space", Severity::Warning, "/")], &[]);
        change(&mut r);
        r
    };
    let mount = |m: Mount| DiskSection {
        mounts: vec![m],
        ..Default::default()
    };
    let cases: Vec<(NodeReport, &str)> = vec![
        (with(&|r| r.findings[0].severity = 99), "variant 99"),
        (with(&|r| r.findings[0].status = 9), "variant 9"),
        (
            with(&|r| r.collected_at.as_mut().unwrap().seconds = -3600),
            "outside 1970",
        ),
        (
            with(&|r| r.collected_at.as_mut().unwrap().seconds = 3_155_760_000_000_000_000),
            "collectedAt",
        ),
        (
            with(&|r| {
                r.disk = Some(mount(Mount {
                    mount_point: "/".into(),
                    full_in_hours: Some(f64::INFINITY),
                    ..Default::default()
                }))
            }),
            "fullInHours",
        ),
        (
            with(&|r| {
                r.disk = Some(mount(Mount {
                    mount_point: "/".into(),
                    fill_rate_bytes_per_hour: Some(1e300),
                    ..Default::default()
                }))
            }),
            "fillRateBytesPerHour",
        ),
        (
            with(&|r| {
                r.memory = Some(MemorySection {
                    top_processes: vec![ProcessMemory {
                        name: "\u{1b}]0;owned\u{7}".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            }),
            "control character",
        ),
        (
            with(&|r| {
                r.findings[0]
                    .evidence
                    .push(Evidence::number("x", f64::NAN, ""))
            }),
            "finite",
        ),
    ];
    for (bad, reason) in cases {
        refused(&server, bad, reason, 1).await;
    }

    // The node goes on, nothing stored was touched, and every answer holds its JSON.
    let mut a = reconnect(&server, NODE).await;
    assert_eq!(a.report(report(NODE, 2, &[], &[])).await, (2, false));
    let node = server
        .diagnostics()
        .await
        .get_node(GetNodeRequest { name: NODE.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.node.unwrap().last_seq, 2);
    for args in [
        vec!["findings", "--state", "all", "-o", "json"],
        vec!["node", NODE, "-o", "json"],
        vec!["incidents", "-o", "json"],
    ] {
        let (code, out, err) = cli(&server.grpc, None, &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap();
    }
    let metrics = server.http_get("/metrics").await;
    assert!(
        metrics.contains("nodemedic_refused_total{reason=\"invalid_report\"} 8"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_highest_seq_is_refused_and_the_node_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), 3).await;
    let mut a = connect(&server, NODE, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(a.report(report(NODE, 5, &[], &[])).await, (5, false));
    drop(a);
    for seq in [u64::MAX, MAX_SEQ + 1] {
        refused(
            &server,
            report(NODE, seq, &[], &[]),
            "the highest a seq may be",
            5,
        )
        .await;
    }
    // The top itself is a seq like another (gaps are allowed); then a restarted agent
    // with an empty spool is welcomed above it, and its next report is refused as above
    // the top: never taken for a duplicate and dropped while acknowledged.
    let mut a = reconnect(&server, NODE).await;
    assert_eq!(a.report(report(NODE, 6, &[], &[])).await, (6, false));
    drop(a);
    let a = reconnect(&server, NODE).await;
    assert_eq!(a.last_seq, 6, "the refused seqs left the stored one alone");
    server.stop().await;
}

/// `nodemedic --collector URL [token] ARGS`: (exit code, stdout, stderr).
fn cli(url: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(binary("nodemedic"));
    cmd.args(["--collector", url]).args(args);
    match token {
        Some(t) => cmd.env("NODEMEDIC_TOKEN", t),
        None => cmd.env_remove("NODEMEDIC_TOKEN"),
    };
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rows a database written before values were checked may hold, put there by hand.
fn plant_bad_rows(data: &Path) {
    let db = rusqlite::Connection::open(data.join("nodemedic.db")).unwrap();
    // Recent, so retention keeps them.
    let now = nodemedic_proto::time::unix_millis(std::time::SystemTime::now());
    let bad_finding = Finding {
        node: NODE.into(),
        severity: 99,
        ..Finding::fail("disk.space", Severity::Warning, "/bad", "planted".into())
    };
    db.execute(
        "INSERT INTO findings (node, check_id, subject, severity, first_seen, last_seen, resolved_at, body)
         VALUES (?1, 'disk.space', '/bad', 99, ?3, ?3, ?3, ?2)",
        rusqlite::params![NODE, bad_finding.encode_to_vec(), now],
    )
    .unwrap();
    db.execute(
        "INSERT INTO findings (node, check_id, subject, severity, first_seen, last_seen, resolved_at, body)
         VALUES (?1, 'disk.space', '/garbage', 1, ?2, ?2, ?2, x'ffffffff')",
        rusqlite::params![NODE, now],
    )
    .unwrap();
    let bad_incident = nodemedic_proto::v1::Incident {
        id: 1000,
        severity: 77,
        nodes: vec![NODE.into()],
        ..Default::default()
    };
    db.execute(
        "INSERT INTO incidents (id, key, severity, first_seen, updated_at, resolved_at, body)
         VALUES (1000, 'planted', 77, ?2, ?2, ?2, ?1)",
        rusqlite::params![bad_incident.encode_to_vec(), now],
    )
    .unwrap();
    db.execute(
        "INSERT INTO incident_nodes (incident_id, node) VALUES (1000, ?1)",
        [NODE],
    )
    .unwrap();
    // The node's latest report: collected before 1970, and a kernel line no terminal
    // should get.
    let report = NodeReport {
        node: NODE.into(),
        seq: 7,
        collected_at: Some(nodemedic_proto::Timestamp {
            seconds: -86_400,
            nanos: 0,
        }),
        kernel: Some(KernelSection {
            events: vec![KernelEvent {
                check: "kernel.oops".into(),
                first_line: "Oops\u{1b}[2J".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    db.execute(
        "INSERT INTO reports (node, seq, collected_at, received_at, base_id, body) VALUES (?1, 7, -86400000, 4102444800000, NULL, ?2)",
        rusqlite::params![NODE, report.encode_to_vec()],
    )
    .unwrap();
    let id = db.last_insert_rowid();
    db.execute(
        "UPDATE nodes SET latest_report_id = ?1 WHERE name = ?2",
        rusqlite::params![id, NODE],
    )
    .unwrap();
    db.execute(
        "INSERT INTO remediations (node, requested_at, body) VALUES (?1, 1, x'ff01')",
        [NODE],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_row_no_answer_can_hold_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_one_good_report(dir.path()).await;
    server.stop().await;
    plant_bad_rows(dir.path());

    let server = Running::start(dir.path(), 3).await;
    for args in [
        vec!["findings", "--state", "all", "-o", "json"],
        vec!["findings", "--state", "all"],
        vec!["node", NODE, "-o", "json"],
        vec!["node", NODE],
        vec!["incidents", "--state", "all", "-o", "json"],
        vec!["remediate", "history", "-o", "json"],
    ] {
        let (code, out, err) = cli(&server.grpc, None, &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!out.contains('\u{1b}'), "{args:?}: {out}");
        if args.contains(&"json") {
            serde_json::from_str::<serde_json::Value>(&out).unwrap();
        }
    }
    let mut api = server.diagnostics().await;
    let all = 0;
    let findings = api
        .list_findings(ListFindingsRequest {
            state: all,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings;
    assert_eq!(
        findings
            .iter()
            .map(|f| f.subject.as_str())
            .collect::<Vec<_>>(),
        ["/"],
        "the good finding stays, the planted ones are skipped"
    );
    let incidents = api
        .list_incidents(ListIncidentsRequest {
            state: all,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .incidents;
    assert!(incidents.iter().all(|i| i.id != 1000));

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.tar.zst");
    let (code, _, err) = cli(
        &server.grpc,
        None,
        &["bundle", "-f", file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let checked =
        nodemedic_collector::bundle::inspect(std::fs::File::open(&file).unwrap(), |_| true)
            .unwrap();
    assert!(
        checked
            .files
            .contains_key("nodes/node-hostile/history.json")
    );

    let metrics = server.http_get("/metrics").await;
    for table in ["findings", "incidents", "reports", "remediations"] {
        let counted = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "nodemedic_rows_skipped_total{{table=\"{table}\"}} "
                ))
            })
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        assert!(counted >= 1, "{table} skips counted: {metrics}");
    }
    server.stop().await;
}

/// Credentials as a node might carry them, in every kind of field it fills.
const SECRETS: &[&str] = &[
    "Sup3rS3cretPw",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlX2hlcmU",
    "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
    "plainhunter2word",
    "tok_live_abcdefgh12",
    "dXNlcjpwYXNzd29yZA",
];

fn with_secrets(seq: u64) -> NodeReport {
    let mut r = report(NODE, seq, &[], &[]);
    r.findings.push(
        Finding {
            node: NODE.into(),
            ..Finding::fail(
                "disk.space",
                Severity::Critical,
                "/mnt/db",
                format!("the app logged postgres://app:{}@db:5432/app", SECRETS[0]),
            )
        }
        .with(Evidence::text(
            "cmdline",
            format!("curl -H 'Authorization: Bearer {}'", SECRETS[1]),
        ))
        .with(Evidence::text(
            "env",
            format!("AWS_SECRET_ACCESS_KEY={}", SECRETS[2]),
        ))
        .with(Evidence::text("password", SECRETS[3]))
        .with(Evidence::text("api_token", SECRETS[4]))
        .with(Evidence::text("roles", "kubelet")),
    );
    r.memory = Some(MemorySection {
        top_processes: vec![ProcessMemory {
            name: format!("app --token={}", SECRETS[4]),
            ..Default::default()
        }],
        ..Default::default()
    });
    r.kernel = Some(KernelSection {
        events: vec![KernelEvent {
            check: "kernel.oops".into(),
            subject: "app".into(),
            first_line: format!("app[1]: Authorization: Basic {}", SECRETS[5]),
            last_line: format!("app[1]: Authorization: Basic {}", SECRETS[5]),
            count: 1,
            first_at: Some(timestamp(std::time::SystemTime::now())),
            last_at: Some(timestamp(std::time::SystemTime::now())),
            ..Default::default()
        }],
        ..Default::default()
    });
    r
}

fn leaked<'a>(text: &str) -> Vec<&'a str> {
    SECRETS
        .iter()
        .copied()
        .filter(|s| text.contains(s))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_never_see_a_credential_on_any_path() {
    let dir = tempfile::tempdir().unwrap();
    let (viewer, v_line) = new_token("vera", Role::Viewer).unwrap();
    let (operator, o_line) = new_token("otto", Role::Operator).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{v_line}{o_line}")).unwrap();
    let data = dir.path().join("data");
    let server = Running::start_with(&data, |c| {
        c.token_file = Some(tokens.clone());
        c.incidents.hold = Duration::ZERO;
    })
    .await;
    let mut a = connect(&server, NODE, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(a.report(with_secrets(1)).await, (1, false));
    assert_eq!(a.report(with_secrets(2)).await, (2, false));

    // The CLI, every read a viewer may make, as JSON and as tables.
    for args in [
        vec!["findings", "-o", "json"],
        vec!["findings"],
        vec!["node", NODE, "-o", "json"],
        vec!["node", NODE],
        vec!["incidents", "-o", "json"],
    ] {
        let (code, out, err) = cli(&server.grpc, Some(&viewer), &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(leaked(&out), Vec::<&str>::new(), "{args:?}: {out}");
    }
    // An operator sees what the node sent: nothing was lost at ingest.
    let (_, out, _) = cli(&server.grpc, Some(&operator), &["node", NODE, "-o", "json"]);
    assert_eq!(leaked(&out).len(), SECRETS.len(), "{out}");

    // gRPC, with the viewer's token, and the incidents one by one.
    let mut client = server.diagnostics().await;
    let bearer = |req| {
        let mut req = tonic::Request::new(req);
        req.metadata_mut()
            .insert("authorization", format!("Bearer {viewer}").parse().unwrap());
        req
    };
    let node = client
        .get_node(bearer(GetNodeRequest { name: NODE.into() }))
        .await
        .unwrap()
        .into_inner();
    let text = serde_json::to_string(&node).unwrap();
    assert_eq!(leaked(&text), Vec::<&str>::new(), "{text}");
    for incident in &node.incidents {
        let mut req =
            tonic::Request::new(nodemedic_proto::v1::GetIncidentRequest { id: incident.id });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {viewer}").parse().unwrap());
        let got = client.get_incident(req).await.unwrap().into_inner();
        let text = serde_json::to_string(&got).unwrap();
        assert_eq!(leaked(&text), Vec::<&str>::new(), "{text}");
    }

    // The web console's pages, the node page's history and charts included.
    let mut pages = vec![
        "/console/".to_owned(),
        format!("/console/nodes/{NODE}?window=1h"),
        "/console/incidents".to_owned(),
    ];
    pages.extend(
        node.incidents
            .iter()
            .map(|i| format!("/console/incidents/{}", i.id)),
    );
    assert!(pages.len() > 3, "the node's incident is among the pages");
    for page in &pages {
        let text = String::from_utf8_lossy(&server.http_get_with(page, &viewer).await).into_owned();
        assert!(
            text.trim_end().ends_with("</html>"),
            "{page} is a whole page: {text}"
        );
        assert_eq!(leaked(&text), Vec::<&str>::new(), "{page}: {text}");
    }
    let text = String::from_utf8_lossy(
        &server
            .http_get_with(&format!("/console/nodes/{NODE}"), &operator)
            .await,
    )
    .into_owned();
    assert!(
        !leaked(&text).is_empty(),
        "an operator's console shows what the node sent"
    );

    // The HTTP bundle, every file in it, summary.html included.
    let answer = server.http_get_with("/api/v1/bundle", &viewer).await;
    let checked = nodemedic_collector::bundle::inspect(answer.as_slice(), |_| true).unwrap();
    assert!(checked.files.contains_key("summary.html"));
    for (path, body) in &checked.files {
        let text = String::from_utf8_lossy(body);
        assert_eq!(leaked(&text), Vec::<&str>::new(), "{path}: {text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_filters_and_times_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), 3).await;
    let mut client = server.diagnostics().await;
    let many: Vec<String> = (0..5000).map(|i| format!("node-{i}")).collect();
    let err = client
        .list_findings(ListFindingsRequest {
            nodes: many.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("5000 nodes"), "{err}");
    assert!(
        !err.message().to_lowercase().contains("select"),
        "no SQL: {err}"
    );
    let err = client
        .list_incidents(ListIncidentsRequest {
            nodes: many,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let err = client
        .list_findings(ListFindingsRequest {
            checks: vec!["x'); DROP TABLE findings; --".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // A `since` past any clock is an error, not an empty bundle.
    let (code, _, err) = cli(
        &server.grpc,
        None,
        &["bundle", "--since", "100000000000h", "-f", "/dev/null"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("since") && err.contains("ten years"), "{err}");
    let answer = server.http_get("/api/v1/bundle?since=100000000000h").await;
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    server.stop().await;
}

#[test]
fn a_reader_that_goes_away_ends_the_cli_quietly() {
    // `nodemedic runbook list | head -0`: the reader is gone before the first line.
    for args in [
        vec!["runbook", "list"],
        vec!["runbook", "list", "-o", "json"],
    ] {
        let mut child = Command::new(binary("nodemedic"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: quiet, not {stderr}");
        assert_eq!(
            out.status.code(),
            Some(141),
            "{args:?}: the status of a process the pipe ended"
        );
    }
}

#[test]
fn an_empty_or_corrupt_database_is_refused_at_start_naming_it() {
    for (content, why) in [
        (&b""[..], "is empty (0 bytes)"),
        (&b"this is not an SQLite database, just text long enough to be read as a header........"[..], "cannot use it"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("nodemedic.db");
        std::fs::write(&db, content).unwrap();
        let out = nodemedic_tests::collector_command(dir.path(), "127.0.0.1:0")
            .arg("--insecure")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "refused to start: {stderr}");
        assert!(
            stderr.contains(&db.display().to_string()) && stderr.contains(why),
            "{stderr}"
        );
        assert_eq!(
            std::fs::read(&db).unwrap(),
            content,
            "the file is left as it was, for its owner to restore"
        );
    }
}
