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

    // The bundle holds what `kubectl logs --previous` would show: the agent reads the
    // kubelet's /var/log/pods when the bundle is made, and the CLI says who answered.
    let logs = "/var/log/pods/app-02_giant-narwhal-6958c5bdd8-69gtn_7f3e2d1c-0b9a-4876-a5c4-d3e2f1a0b905/main";
    host.write(
        &format!("{logs}/0.log"),
        "2024-05-14T14:00:01.000000000Z stderr F connecting to postgres://app:hunter2@db:5432/app\n2024-05-14T14:00:02.000000000Z stderr F java.lang.OutOfMemoryError: Java heap space\n",
    );
    host.write(
        &format!("{logs}/1.log"),
        "2024-05-14T14:05:01.000000000Z stdout F starting\n",
    );
    let file = dir.path().join("pods.tar.zst");
    let run = std::process::Command::new(nodemedic_tests::binary("nodemedic"))
        .args([
            "--collector",
            &collector.grpc_url,
            "bundle",
            "--node",
            NODE,
            "-f",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{said}");
    assert!(said.contains("pods' logs from node-1"), "{said}");
    let checked =
        nodemedic_collector::bundle::inspect(std::fs::File::open(&file).unwrap(), |_| true)
            .unwrap();
    let pod = "nodes/node-1/pods/app-02/giant-narwhal-6958c5bdd8-69gtn";
    let previous = String::from_utf8_lossy(&checked.files[&format!("{pod}/main.previous.log")]);
    assert!(previous.contains("OutOfMemoryError"), "{previous}");
    assert!(
        !previous.contains("hunter2"),
        "redacted like every file: {previous}"
    );
    let current = String::from_utf8_lossy(&checked.files[&format!("{pod}/main.log")]);
    assert!(current.contains("starting"), "{current}");
    assert!(
        checked
            .manifest
            .files
            .iter()
            .any(|f| f.path == format!("{pod}/main.previous.log") && f.redacted > 0),
        "listed in the manifest with its redaction"
    );
}
