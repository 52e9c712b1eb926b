//! Any gRPC client can use the API with nothing but server reflection: Python's grpcio with
//! grpcio-reflection (which speaks only `grpc.reflection.v1alpha`, as Postman, Evans and
//! older grpcurl do) lists the services, checks `grpc.health.v1`, and calls ListNodes and
//! GetNode on a real collector that a real agent reports to, knowing none of the protos
//! (`tests/python/reflection_client.py`).

use std::{path::Path, process::Command, time::Duration};

use nodemedic_agent::testing::FakeHost;
use nodemedic_tests::{CollectorProcess, agent, eventually, last_seq};

const NODE: &str = "node-reflected";

#[test]
fn a_python_client_uses_the_api_through_reflection_alone() {
    let host = FakeHost::new();
    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let url = collector.grpc_url.clone();
    let _agent = agent(&url, NODE, host.root().dir(), &[]);
    let seq = eventually(Duration::from_secs(30), "a stored report", || {
        last_seq(&url, NODE)
    });

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/reflection_client.py");
    let target = url.trim_start_matches("http://");
    let out = Command::new("python3")
        .arg(&script)
        .args([target, NODE])
        .output()
        .expect("run python3 (scripts/test installs it)");
    assert!(
        out.status.success(),
        "the Python client failed (scripts/test installs grpcio and grpcio-reflection):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let services: Vec<&str> = answer["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for expected in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "nodemedic.v1.AgentGateway",
        "nodemedic.v1.Diagnostics",
    ] {
        assert!(services.contains(&expected), "{expected} in {services:?}");
    }
    for service in ["", "nodemedic.v1.AgentGateway", "nodemedic.v1.Diagnostics"] {
        assert_eq!(
            answer["health"][service], "SERVING",
            "health of {service:?}: {answer}"
        );
    }
    let listed = answer["nodes"]["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{answer}");
    assert_eq!(listed[0]["name"], NODE);
    let node = &answer["node"];
    assert_eq!(node["node"]["name"], NODE);
    assert_eq!(node["node"]["connected"], true);
    let reported: u64 = node["node"]["lastSeq"].as_str().unwrap().parse().unwrap();
    assert!(reported >= seq, "{reported} >= {seq}");
    assert_eq!(
        node["latest"]["memory"]["totalBytes"],
        (8u64 << 30).to_string(),
        "the latest report, decoded from reflected types: {node}"
    );
}
