//! Remediation actions end to end: a real Docker engine, a collector and an agent as real
//! processes, and the `nodemedic remediate` commands: the plan lists only unused images,
//! an image that became used between plan and apply is skipped and reported, the apply
//! frees what it removed and is recorded, and is an Event on the node (through the tests'
//! recorded-objects API server); an agent without the action allowed refuses.

use std::{path::Path, time::Duration};

use nodemedic_agent::testing::{Dockerd, FakeApiServer, fixture};
use nodemedic_tests::{CollectorProcess, agent, cli, eventually};
use serde_json::Value;

const MB: usize = 1_000_000;

fn json(args: &[&str]) -> Value {
    let (code, out) = cli(args);
    assert_eq!(code, 0, "nodemedic {args:?}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn ids(items: &Value) -> Vec<String> {
    let mut ids: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn config(dir: &Path, engine: &Dockerd) -> String {
    let path = dir.join("agent.yaml");
    std::fs::write(
        &path,
        format!("images:\n  docker_socket: {}\n", engine.socket.display()),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn plan_then_apply_removes_only_what_is_still_unused_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Dockerd::start(&dir.path().join("docker"));
    let used = engine.image("nodemedic.test/used:1", MB);
    engine.docker(&["create", "--name", "app", "nodemedic.test/used:1", "/blob"]);
    let old = engine.image("nodemedic.test/old:1", 2 * MB);
    let older = engine.image("nodemedic.test/older:1", MB);
    let soon = engine.image("nodemedic.test/soon:1", MB);

    // The node's object, recorded from a cluster, on the tests' API server.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(FakeApiServer::start());
    let nodes: Value =
        serde_json::from_str(&fixture("pods/troubleshoot-nodes-healthy.min.json")).unwrap();
    let mut node = nodes["items"][0].clone();
    node["metadata"]["name"] = Value::from("node-r");
    api.set("nodes", vec![node]);
    let kubeconfig = api.kubeconfig(dir.path());

    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let url = collector.grpc_url.clone();
    let config = config(dir.path(), &engine);
    let _agent = agent(
        &url,
        "node-r",
        Path::new("/"),
        &[
            "--config",
            &config,
            "--allow-action",
            "images.prune_unused",
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
        ],
    );
    eventually(Duration::from_secs(30), "node-r connected", || {
        json(&["--collector", &url, "nodes", "-o", "json"])["nodes"][0]["connected"]
            .as_bool()
            .filter(|c| *c)
    });

    let plan = json(&[
        "--collector",
        &url,
        "remediate",
        "plan",
        "node-r",
        "images.prune_unused",
        "-o",
        "json",
    ]);
    let mut expected = vec![old.clone(), older.clone(), soon.clone()];
    expected.sort();
    assert_eq!(
        ids(&plan["items"]),
        expected,
        "never the used image: {plan:#}"
    );
    let planned: u64 = plan["bytes"].as_str().unwrap().parse().unwrap();
    assert!(planned >= 4 * MB as u64, "{plan:#}");
    // The human view says nothing was removed and how to apply.
    let (_, table) = cli(&[
        "--collector",
        &url,
        "remediate",
        "plan",
        "node-r",
        "images.prune_unused",
    ]);
    assert!(
        table.contains("Nothing was removed") && table.contains("remediate apply node-r"),
        "{table}"
    );

    // Between plan and apply, a container starts using one of the planned images.
    engine.docker(&["create", "--name", "late", "nodemedic.test/soon:1", "/blob"]);
    let plan_id = plan["planId"].as_str().unwrap();
    let outcome = json(&[
        "--collector",
        &url,
        "remediate",
        "apply",
        "node-r",
        plan_id,
        "-o",
        "json",
    ]);
    assert_eq!(outcome["removed"], 2, "{outcome:#}");
    assert_eq!(outcome["skipped"], 1, "{outcome:#}");
    let skipped = outcome["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["result"] == "skipped")
        .unwrap();
    assert_eq!(skipped["id"], soon.as_str());
    assert!(
        skipped["detail"]
            .as_str()
            .unwrap()
            .contains("container uses it")
    );
    let freed: u64 = outcome["freedBytes"].as_str().unwrap().parse().unwrap();
    assert!(freed >= 3 * MB as u64 && freed < planned, "{outcome:#}");

    let left = engine.docker(&["images", "-q", "--no-trunc"]);
    for (id, kept) in [(&used, true), (&soon, true), (&old, false), (&older, false)] {
        assert_eq!(left.contains(id.as_str()), kept, "{id} in {left}");
    }

    // The cluster sees it: a Normal Event on the node, saying what was freed.
    let event = eventually(Duration::from_secs(10), "the prune's Event", || {
        api.objects("events.k8s.io")
            .into_iter()
            .find(|e| e["reason"] == "ImagesPruned")
    });
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["regarding"]["kind"], "Node");
    assert_eq!(event["regarding"]["name"], "node-r");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("images.prune_unused") && note.contains("2 removed, 1 skipped"),
        "{note}"
    );

    // A plan is used up by its apply.
    let (code, _) = cli(&["--collector", &url, "remediate", "apply", "node-r", plan_id]);
    assert_eq!(code, 1);
    let history = json(&["--collector", &url, "remediate", "history", "-o", "json"]);
    let records = history["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{history:#}");
    assert!(
        records[0]["error"].as_str().unwrap().contains("no plan"),
        "{history:#}"
    );
    assert_eq!(records[1]["outcome"]["removed"], 2);
    assert!(records[1]["requestedBy"].as_str().unwrap().contains('@'));
    assert!(
        records[1]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
}

#[test]
fn an_agent_without_the_action_allowed_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Dockerd::start(&dir.path().join("docker"));
    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let url = collector.grpc_url.clone();
    let config = config(dir.path(), &engine);
    let _agent = agent(&url, "node-q", Path::new("/"), &["--config", &config]);
    eventually(Duration::from_secs(30), "node-q connected", || {
        json(&["--collector", &url, "nodes", "-o", "json"])["nodes"][0]["connected"]
            .as_bool()
            .filter(|c| *c)
    });
    let refused = |action: &str| {
        let out = std::process::Command::new(nodemedic_tests::binary("nodemedic"))
            .args(["--collector", &url, "remediate", "plan", "node-q", action])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused("images.prune_unused");
    assert!(err.contains("--allow-action images.prune_unused"), "{err}");
    assert!(refused("images.nuke").contains("unknown action"));
    // Nothing was recorded: only applies are.
    let history = json(&["--collector", &url, "remediate", "history", "-o", "json"]);
    assert!(
        history["records"].as_array().is_none_or(Vec::is_empty),
        "{history:#}"
    );
}
