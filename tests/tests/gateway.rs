//! The collector served for real on 127.0.0.1:0, driven through its gRPC API.

use std::time::Duration;

use nodemedic_collector::ratelimit::AgentRate;
use nodemedic_proto::v1::{
    CollectorMessage, Finding, FindingState, GetNodeRequest, ListFindingsRequest, Severity,
    TriggerCollectionRequest, WatchFindingsRequest, collector_message, finding_event,
};
use nodemedic_tests::in_process::{Running, connect, raw_stream, reconnect, report};
use tokio_stream::StreamExt;
use tonic::Code;

async fn open_checks(server: &Running, node: &str) -> Vec<(String, String)> {
    let resp = server
        .diagnostics()
        .await
        .get_node(GetNodeRequest { name: node.into() })
        .await
        .unwrap()
        .into_inner();
    let mut v: Vec<_> = resp
        .open_findings
        .into_iter()
        .map(|f| (f.check, f.subject))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn findings_open_refresh_resolve_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), 3).await;
    let mut watch = server
        .diagnostics()
        .await
        .watch_findings(WatchFindingsRequest::default())
        .await
        .unwrap()
        .into_inner();

    let mut a = connect(&server, "node-a", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(a.last_seq, 0);
    let both = [
        ("disk.space", Severity::Critical, "/var/lib/kubelet"),
        ("memory.swap", Severity::Warning, ""),
    ];
    assert_eq!(a.report(report("node-a", 1, &both, &[])).await, (1, false));
    assert_eq!(
        open_checks(&server, "node-a").await,
        [
            ("disk.space".into(), "/var/lib/kubelet".into()),
            ("memory.swap".into(), "".into())
        ]
    );

    // The memory probe failed: its finding stays open (unknown is not healthy); the disk
    // finding is gone from a report whose disk probe ran: resolved.
    assert_eq!(
        a.report(report("node-a", 2, &[], &["memory"])).await,
        (2, false)
    );
    assert_eq!(
        open_checks(&server, "node-a").await,
        [("memory.swap".into(), "".into())]
    );

    let mut kinds = Vec::new();
    for _ in 0..3 {
        let e = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        kinds.push((e.kind(), e.finding.unwrap().check));
    }
    assert!(kinds.contains(&(finding_event::Kind::Opened, "disk.space".into())));
    assert!(kinds.contains(&(finding_event::Kind::Opened, "memory.swap".into())));
    assert!(kinds.contains(&(finding_event::Kind::Resolved, "disk.space".into())));

    let resolved = server
        .diagnostics()
        .await
        .list_findings(ListFindingsRequest {
            nodes: vec!["node-a".into()],
            state: FindingState::Resolved as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.findings.len(), 1);
    assert!(resolved.findings[0].resolved_at.is_some());

    let metrics = server.http_get("/metrics").await;
    assert!(
        metrics.contains("nodemedic_reports_ingested_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nodemedic_open_findings{severity=\"warning\"} 1"),
        "{metrics}"
    );
    let ready = server.http_get("/readyz").await;
    assert!(
        ready.contains("200 OK") && ready.contains("insecure"),
        "{ready}"
    );
    drop(a);
    server.stop().await;

    // After a restart: the open finding is still open, the agent continues above seq 2,
    // and a replay of seq 2 is acknowledged as a duplicate without being stored again.
    let server = Running::start(dir.path(), 3).await;
    assert_eq!(
        open_checks(&server, "node-a").await,
        [("memory.swap".into(), "".into())]
    );
    let mut a = connect(&server, "node-a", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(a.last_seq, 2);
    assert_eq!(a.report(report("node-a", 2, &[], &[])).await, (2, true));
    assert_eq!(
        open_checks(&server, "node-a").await,
        [("memory.swap".into(), "".into())],
        "a duplicate changes nothing"
    );
    assert_eq!(a.report(report("node-a", 3, &[], &[])).await, (3, false));
    assert!(open_checks(&server, "node-a").await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_status_and_touches_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), 3).await;
    let mut a = connect(&server, "node-a", Duration::from_secs(10))
        .await
        .unwrap();
    a.report(report(
        "node-a",
        5,
        &[("disk.space", Severity::Warning, "/")],
        &[],
    ))
    .await;

    for name in ["../../etc/passwd", "Node_A", "", &"x".repeat(300)] {
        let err = connect(&server, name, Duration::from_secs(10))
            .await
            .err()
            .expect("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?}: {err}");
        assert!(err.message().contains("invalid node name"), "{err}");
    }
    let err = connect(&server, "node-a", Duration::from_secs(10))
        .await
        .err()
        .expect("second stream refused");
    assert_eq!(err.code(), Code::AlreadyExists);

    // A report for another node on this stream.
    a.send(report("node-b", 6, &[], &[])).await;
    let err = a.next().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("stream of node"), "{err}");

    // seq going backwards on a stream.
    let mut a = reconnect(&server, "node-a").await;
    a.report(report("node-a", 6, &[], &["disk"])).await;
    a.send(report("node-a", 4, &[], &[])).await;
    let err = a.next().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("must increase"), "{err}");

    // A report over the size limit (64 KiB here).
    let mut a = reconnect(&server, "node-a").await;
    let mut big = report("node-a", 7, &[], &[]);
    big.findings.push(Finding {
        node: "node-a".into(),
        ..Finding::fail("disk.space", Severity::Info, "/", "x".repeat(100_000))
    });
    a.send(big).await;
    let err = a.next().await.unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err}"
    );

    // Malformed protobuf bytes.
    let err = raw_stream(&server, vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]).await;
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(err.message().contains("decode"), "{err}");

    // Nothing stored before was touched.
    let node = server
        .diagnostics()
        .await
        .get_node(GetNodeRequest {
            name: "node-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.node.unwrap().last_seq, 6);
    assert_eq!(
        node.open_findings.len(),
        1,
        "the disk finding stays open: disk failed in seq 6"
    );
    let metrics = server.http_get("/metrics").await;
    for reason in [
        "invalid_node_name",
        "duplicate_stream",
        "node_mismatch",
        "seq",
        "too_large",
    ] {
        assert!(
            nodemedic_tests::refused(&metrics, reason) >= 1.0,
            "{reason} not counted: {metrics}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn silent_nodes_are_flagged_and_cleared_by_their_next_report() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), 1).await;
    let mut a = connect(&server, "quiet-node", Duration::from_secs(1))
        .await
        .unwrap();
    a.report(report("quiet-node", 1, &[], &[])).await;
    let mut found = false;
    for _ in 0..100 {
        if open_checks(&server, "quiet-node")
            .await
            .contains(&("node.silent".into(), "".into()))
        {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "node.silent after 1 missed interval");
    a.report(report("quiet-node", 2, &[], &[])).await;
    assert!(open_checks(&server, "quiet-node").await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn trigger_collection_reaches_the_agent_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), 3).await;
    let mut a = connect(&server, "node-a", Duration::from_secs(10))
        .await
        .unwrap();
    let resp = server
        .diagnostics()
        .await
        .trigger_collection(TriggerCollectionRequest {
            node: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.nodes, ["node-a"]);
    match a.next().await.unwrap().kind {
        Some(collector_message::Kind::Command(c)) => assert!(c.kind.is_some()),
        other => panic!("expected a command, got {other:?}"),
    }
    let err = server
        .diagnostics()
        .await
        .trigger_collection(TriggerCollectionRequest {
            node: "absent".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_answer_without_the_protos() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), 3).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["nodemedic.v1.AgentGateway", "nodemedic.v1.Diagnostics"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service}");
    }
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(server.channel().await)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "nodemedic.v1.AgentGateway",
            "nodemedic.v1.Diagnostics"
        ]
    );
    assert!(server.http_get("/healthz").await.contains("200 OK"));
    server.stop().await;
}

/// An agent sending faster than its rate is paced, not cut off: every report is
/// acknowledged once, in order, the stream stays open, the pacing is counted, and the
/// reports arrive no faster than the rate allows after the burst.
#[tokio::test]
async fn an_agent_over_its_rate_is_paced_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start_with(dir.path(), |c| {
        c.agent_rate = AgentRate {
            per_second: 20.0,
            burst: 5,
        };
    })
    .await;
    let mut agent = connect(&server, "flood-1", Duration::from_secs(10))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for seq in 1..=25 {
        agent.send(report("flood-1", seq, &[], &[])).await;
    }
    for seq in 1..=25 {
        match agent.next().await {
            Ok(CollectorMessage {
                kind: Some(collector_message::Kind::Ack(a)),
            }) => assert_eq!((a.seq, a.duplicate), (seq, false)),
            other => panic!("expected the Ack of {seq}, got {other:?}"),
        }
    }
    // 5 at once, then 20 at 20/s: the limit held (a lower bound, not a speed measurement).
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let metrics = server.http_get("/metrics").await;
    let throttled: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nodemedic_throttled_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("nodemedic_throttled_total");
    // 20 when the reports arrive together, as here; fewer only if they trickled in.
    assert!((10..=20).contains(&throttled), "{metrics}");
    // Another node is not held back by the first one's debt.
    let mut other = connect(&server, "quiet-1", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        other.report(report("quiet-1", 1, &[], &[])).await,
        (1, false)
    );
    server.stop().await;
}

/// The body of an HTTP answer.
fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// `promtool check metrics` on `text`: its complaints, if any.
fn promtool_check(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus; scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        String::new()
    } else {
        said
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_is_on_metrics_in_both_formats_and_promtool_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), 3).await;
    let mut a = connect(&server, "node-a", Duration::from_secs(10))
        .await
        .unwrap();
    let findings = [
        ("disk.space", Severity::Critical, "/var/lib/kubelet"),
        ("disk.space", Severity::Critical, "/"),
        ("memory.swap", Severity::Warning, ""),
    ];
    a.report(report("node-a", 1, &findings, &[])).await;

    // Prometheus' text format 0.0.4 unless OpenMetrics is asked for.
    let answer = server.http_get("/metrics").await;
    assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
    let text = body(&answer);
    assert_eq!(promtool_check(text), "", "promtool on\n{text}");
    for series in [
        "nodemedic_node_open_findings{node=\"node-a\",check=\"disk.space\",severity=\"critical\"} 2",
        "nodemedic_node_open_findings{node=\"node-a\",check=\"memory.swap\",severity=\"warning\"} 1",
        "nodemedic_agent_connected{node=\"node-a\"} 1",
        "# TYPE nodemedic_reports_ingested_total counter",
        "nodemedic_refused_total{reason=\"seq\"} 0",
    ] {
        assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
    }
    assert!(!text.contains("# EOF"));
    let open = server
        .http_get_headers(
            "/metrics",
            "Accept: application/openmetrics-text; version=1.0.0\r\n",
        )
        .await;
    assert!(open.contains("application/openmetrics-text"), "{open}");
    assert!(body(&open).ends_with("# EOF\n"));
    assert!(body(&open).contains("# TYPE nodemedic_reports_ingested counter"));

    // Resolved findings leave no series behind (not a stale 0); a gone agent is 0.
    a.report(report("node-a", 2, &[], &[])).await;
    drop(a);
    let mut text = String::new();
    for _ in 0..100 {
        text = body(&server.http_get("/metrics").await).to_owned();
        if text.contains("nodemedic_agent_connected{node=\"node-a\"} 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        text.contains("nodemedic_agent_connected{node=\"node-a\"} 0"),
        "{text}"
    );
    assert!(!text.contains("nodemedic_node_open_findings{"), "{text}");
    assert_eq!(promtool_check(&text), "", "promtool on\n{text}");
}
