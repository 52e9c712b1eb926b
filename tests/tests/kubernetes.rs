//! An agent process with `--kubeconfig` pointing at the tests' own API server (playing a
//! real recorded pod), reporting to a collector: the on-call question "what is wrong with
//! this node and what do I run" answered through the CLI.

use std::time::Duration;

use nodemedic_agent::testing::{FakeApiServer, FakeHost, fixture};
use nodemedic_tests::{CollectorProcess, agent, cli, eventually};
use serde_json::Value;

const NODE: &str = "node-1";

fn built(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../agent/tests/fixtures/kube")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_crash_looping_pod_becomes_an_incident_with_the_commands_to_run() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(FakeApiServer::start());
    api.set(
        "pods",
        vec![built(
            "built-from-holmesgpt-describe-pod-oomkilled-crashloop.pod.json",
        )],
    );
    let mut node: Value =
        serde_json::from_str(&fixture("pods/troubleshoot-nodes-healthy.min.json")).unwrap();
    let mut node = node["items"][0].take();
    node["metadata"]["name"] = Value::from(NODE);
    api.set("nodes", vec![node]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());

    let host = FakeHost::new();
    let collector = CollectorProcess::start(dir.path(), "127.0.0.1:0");
    let _agent = agent(
        &collector.grpc_url,
        NODE,
        host.root().dir(),
        &["--kubeconfig", kubeconfig.to_str().unwrap()],
    );

    let subject = "app-02/giant-narwhal-6958c5bdd8-69gtn/main";
    eventually(Duration::from_secs(30), "the pod's findings", || {
        let (code, out) = cli(&["--collector", &collector.grpc_url, "findings", "-o", "json"]);
        assert_eq!(code, 0, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let checks: Vec<String> = v["findings"]
            .as_array()?
            .iter()
            .filter(|f| f["subject"] == subject)
            .map(|f| f["check"].as_str().unwrap().to_owned())
            .collect();
        (checks.contains(&"pod.crashloop".to_owned())).then_some(())
    });
    let (code, out) = eventually(Duration::from_secs(30), "the incident", || {
        let (code, out) = cli(&["--collector", &collector.grpc_url, "node", NODE]);
        out.contains("pod-crashloop").then_some((code, out))
    });
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("kubectl logs -n app-02 giant-narwhal-6958c5bdd8-69gtn -c main --previous"),
        "the command with the pod filled in: {out}"
    );
}
