//! What the agent writes into the cluster (node conditions, Events), through the real
//! `kube` client, against the tests' recorded-objects API server (`testing::FakeApiServer`),
//! which records every PATCH and POST and applies it to a real recorded Node. The tests
//! assert the resulting objects: after a problem opens, persists, resolves, across an agent
//! restart, after a rule file is removed, and the writes a 10,000-line kernel storm costs.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use nodemedic_agent::{
    Agent,
    config::Config,
    publish::conditions::MARKER,
    testing::{FakeApiServer, FakeHost, fixture},
};
use serde_json::{Value, json};

const NODE: &str = "node-1";
const GIB_KB: u64 = 1024 * 1024;

/// The pod of the real OOM kill line below (its UID is the line's).
const POD_UID: &str = "eded8c65-6e8e-4c6e-a889-3e427565c740";

/// A real healthy node (the first of a recorded NodeList) named as the tests' node, with
/// conditions another node-problem-detector wrote beside the kubelet's.
fn recorded_node() -> Value {
    let list: Value =
        serde_json::from_str(&fixture("pods/troubleshoot-nodes-healthy.min.json")).unwrap();
    let mut node = list["items"][0].clone();
    node["metadata"]["name"] = json!(NODE);
    let conditions = node["status"]["conditions"].as_array_mut().unwrap();
    for (kind, reason, message) in [
        (
            "KernelDeadlock",
            "KernelHasNoDeadlock",
            "kernel has no deadlock",
        ),
        (
            "FrequentDockerRestart",
            "NoFrequentDockerRestart",
            "docker is functioning properly",
        ),
    ] {
        conditions.push(json!({
            "type": kind, "status": "False", "reason": reason, "message": message,
            "lastHeartbeatTime": "2020-01-01T00:00:00Z", "lastTransitionTime": "2020-01-01T00:00:00Z",
        }));
    }
    node
}

/// A real pod (recorded), on the tests' node, with the OOM-killed pod's UID.
fn recorded_pod() -> Value {
    let list: Value =
        serde_json::from_str(&fixture("pods/troubleshoot-pods-default-unhealthy.json")).unwrap();
    let mut pod = list["items"][0].clone();
    pod["spec"]["nodeName"] = json!(NODE);
    pod["metadata"]["uid"] = json!(POD_UID);
    pod
}

/// A real OOM kill line (tests/fixtures/real/kernel/issue-gpud-pr70-…) as `dmesg` stamps it,
/// at `uptime` seconds after boot.
fn oom_line(uptime: &str) -> String {
    let line = fixture("kernel/issue-gpud-pr70-oom-kill-constraint-memcg-cri-containerd.log");
    let message = line.split_once("kernel: ").unwrap().1.trim_end();
    format!("[{uptime}] {message}\n")
}

struct Cluster {
    server: FakeApiServer,
    host: FakeHost,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let server = FakeApiServer::start().await;
        server.set("nodes", vec![recorded_node()]);
        server.set("pods", vec![recorded_pod()]);
        server.set("events", vec![]);
        let host = FakeHost::new();
        host.write("/proc/uptime", "12345.67 20000.00\n");
        Cluster {
            server,
            host,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A user's rule file in node-problem-detector's format, whose permanent rule sets the
    /// `FrobnicatorProblem` condition.
    fn rule_file(&self) -> PathBuf {
        let path = self.dir.path().join("frobnicator.json");
        std::fs::write(
            &path,
            r#"{"plugin":"kmsg","source":"frobnicator-monitor",
                "conditions":[{"type":"FrobnicatorProblem","reason":"FrobnicatorIsFine","message":"frobnicator works"}],
                "rules":[{"type":"permanent","condition":"FrobnicatorProblem","reason":"FrobnicatorStuck",
                          "pattern":"frobnicator stuck on bus \\d+"}]}"#,
        )
        .unwrap();
        path
    }

    fn config(&self, rule_files: &[PathBuf], extra: &str) -> Config {
        let files: Vec<String> = rule_files
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        Config::parse(&format!(
            "dns: {{enabled: false}}\nimages: {{enabled: false}}\ncgroups: {{enabled: false}}\n\
             kernel: {{log_file: /var/log/kern.log, rule_files: [{}]}}\n\
             publish: {{hold: 1s, series_every: 1s{extra}}}\n",
            files.join(", ")
        ))
        .unwrap()
    }

    async fn agent(&self, config: &Config) -> Agent {
        let kubeconfig = self.server.kubeconfig(self.dir.path());
        let mut agent = Agent::new(NODE.into(), self.host.root(), config)
            .with_kubernetes(Some(&kubeconfig), &config.kubernetes)
            .await
            .unwrap();
        assert!(
            agent.publish(config, None).is_some(),
            "a client: it publishes"
        );
        agent
    }

    fn conditions(&self) -> BTreeMap<String, Value> {
        let node = self
            .server
            .objects("nodes")
            .into_iter()
            .find(|n| n["metadata"]["name"] == NODE)
            .expect("the node");
        node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].as_str().unwrap().to_owned(), c.clone()))
            .collect()
    }

    fn status_patches(&self) -> usize {
        self.server
            .writes()
            .iter()
            .filter(|w| w.path.ends_with("/status"))
            .count()
    }

    fn events(&self) -> Vec<Value> {
        self.server.objects("events.k8s.io")
    }

    /// Waits (at most 10 s) until `what` holds of the Node's conditions.
    async fn until(&self, what: &str, holds: impl Fn(&BTreeMap<String, Value>) -> bool) {
        for _ in 0..200 {
            if holds(&self.conditions()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: conditions are {:#?}", self.conditions());
    }
}

fn is(c: &BTreeMap<String, Value>, kind: &str, status: &str) -> bool {
    c.get(kind).is_some_and(|c| c["status"] == status)
}

/// Two collections a hold apart (the hold is 1 s in these tests).
async fn held(agent: &Agent) {
    agent.collect().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    agent.collect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_open_persist_resolve_survive_a_restart_and_a_removed_rule() {
    let cluster = Cluster::start().await;
    let others = {
        let before = cluster.conditions();
        [
            "Ready",
            "MemoryPressure",
            "DiskPressure",
            "KernelDeadlock",
            "FrequentDockerRestart",
        ]
        .map(|k| (k, before[k].clone()))
    };
    let rules = [cluster.rule_file()];
    let config = cluster.config(&rules, "");

    // Healthy: every published type False, with nodemedic's marker.
    let agent = cluster.agent(&config).await;
    agent.collect().await;
    cluster
        .until("MemoryLow False", |c| is(c, "MemoryLow", "False"))
        .await;
    let c = cluster.conditions();
    for kind in ["DiskFilling", "OOMKilling", "FrobnicatorProblem"] {
        assert!(is(&c, kind, "False"), "{kind}: {c:#?}");
        assert!(c[kind]["message"].as_str().unwrap().starts_with(MARKER));
    }
    assert!(
        !c.contains_key("DNSFailing"),
        "the DNS probe is off: not claimed healthy"
    );
    assert_eq!(c["FrobnicatorProblem"]["reason"], "FrobnicatorIsFine");

    // A problem opens: True once held, the message naming what is wrong.
    cluster.host.set_memory(8 * GIB_KB, 100 * 1024, 0, 0);
    cluster.host.write(
        "/var/log/kern.log",
        "[12345.00] frobnicator stuck on bus 3\n",
    );
    held(&agent).await;
    cluster
        .until("MemoryLow and FrobnicatorProblem True", |c| {
            is(c, "MemoryLow", "True") && is(c, "FrobnicatorProblem", "True")
        })
        .await;
    let c = cluster.conditions();
    let message = c["MemoryLow"]["message"].as_str().unwrap();
    assert!(message.contains("memory.available"), "{message}");
    assert_eq!(c["MemoryLow"]["reason"], "MemoryIsLow");
    let opened_at = c["MemoryLow"]["lastTransitionTime"].clone();

    // It persists: no write while nothing changes.
    let patches = cluster.status_patches();
    held(&agent).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cluster.status_patches(), patches, "writes only on change");

    // The agent restarts while the problem is still there: not reset to healthy.
    let writes_before = cluster.server.writes().len();
    drop(agent);
    let agent = cluster.agent(&config).await;
    agent.collect().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = cluster.conditions();
    assert!(is(&c, "MemoryLow", "True"), "{c:#?}");
    assert_eq!(c["MemoryLow"]["lastTransitionTime"], opened_at);
    let after_restart: Vec<_> = cluster
        .server
        .writes()
        .into_iter()
        .skip(writes_before)
        .collect();
    assert!(
        after_restart
            .iter()
            .flat_map(|w| w.body["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default())
            .all(|c| c["type"] != "MemoryLow" || c["status"] == "True"),
        "a restart never wrote MemoryLow False: {after_restart:#?}"
    );

    // It resolves: False after the hold, with its reason.
    cluster.host.set_memory(8 * GIB_KB, 4 * GIB_KB, 0, 0);
    held(&agent).await;
    cluster
        .until("MemoryLow False again", |c| is(c, "MemoryLow", "False"))
        .await;
    assert_eq!(
        cluster.conditions()["MemoryLow"]["reason"],
        "MemoryIsSufficient"
    );

    // The rule file is removed from the configuration: its condition goes.
    drop(agent);
    let config = cluster.config(&[], "");
    let agent = cluster.agent(&config).await;
    agent.collect().await;
    cluster
        .until("FrobnicatorProblem removed", |c| {
            !c.contains_key("FrobnicatorProblem")
        })
        .await;

    // Never touched: the kubelet's conditions and the other detector's.
    let c = cluster.conditions();
    for (kind, before) in &others {
        assert_eq!(&c[*kind], before, "{kind} is not nodemedic's");
    }
    for w in cluster.server.writes() {
        assert!(
            w.path == format!("/api/v1/nodes/{NODE}/status") || w.path.contains("/events"),
            "{}",
            w.path
        );
        for c in w.body["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let kind = c["type"].as_str().unwrap();
            assert!(!others.iter().any(|(k, _)| *k == kind), "wrote {kind}");
        }
        if w.path.ends_with("/status") {
            assert_eq!(w.content_type, "application/strategic-merge-patch+json");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_an_event_on_the_node_and_on_its_pod() {
    let cluster = Cluster::start().await;
    let config = cluster.config(&[], "");
    let agent = cluster.agent(&config).await;
    // The first report is the baseline.
    agent.collect().await;
    cluster
        .host
        .write("/var/log/kern.log", &oom_line("12345.10"));
    agent.collect().await;
    let mut events = vec![];
    for _ in 0..200 {
        events = cluster.events();
        if events.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let on = |kind: &str| {
        events
            .iter()
            .find(|e| e["regarding"]["kind"] == kind)
            .unwrap_or_else(|| panic!("no Event on the {kind}: {events:#?}"))
    };
    let node = on("Node");
    assert_eq!(
        node["reason"], "OOMKilling",
        "node-problem-detector's reason"
    );
    assert_eq!(node["type"], "Warning");
    assert_eq!(node["regarding"]["name"], NODE);
    assert_eq!(node["metadata"]["namespace"], "default");
    assert_eq!(node["reportingController"], "nodemedic.io/agent");
    let pod = on("Pod");
    let recorded = recorded_pod();
    assert_eq!(pod["regarding"]["name"], recorded["metadata"]["name"]);
    assert_eq!(
        pod["metadata"]["namespace"],
        recorded["metadata"]["namespace"]
    );
    assert_eq!(pod["regarding"]["uid"], POD_UID);
    assert!(
        pod["note"].as_str().unwrap().contains("pt_main_thread"),
        "{pod:#}"
    );
    for w in cluster
        .server
        .writes()
        .iter()
        .filter(|w| w.path.contains("/events"))
    {
        assert!(w.path.starts_with("/apis/events.k8s.io/v1/"), "{}", w.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10000_line_kernel_storm_costs_a_bounded_number_of_event_writes() {
    let cluster = Cluster::start().await;
    let config = cluster.config(&[], "");
    let agent = cluster.agent(&config).await;
    agent.collect().await;
    // 10,000 lines in five bursts, a report after each: hung tasks of 50 tasks, and OOM
    // kills in the pod.
    let mut log = String::new();
    let mut hung = 0;
    for burst in 0..5 {
        for i in 0..2000 {
            if i % 2 == 0 {
                log.push_str(&format!(
                    "[12345.{burst}{:02}] INFO: task worker-{}:{} blocked for more than 120 seconds.\n",
                    i % 100,
                    i % 50,
                    1000 + i
                ));
                hung += 1;
            } else {
                log.push_str(&oom_line(&format!("12345.{burst}{:02}", i % 100)));
            }
        }
        cluster.host.write("/var/log/kern.log", &log);
        agent.collect().await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // The series' last counts are written within a series period.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    agent.collect().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let writes = cluster
        .server
        .writes()
        .into_iter()
        .filter(|w| w.path.contains("/events"))
        .count();
    let events = cluster.events();
    let count_of = |reason: &str, kind: &str| -> u64 {
        events
            .iter()
            .filter(|e| e["reason"] == reason && e["regarding"]["kind"] == kind)
            .map(|e| e["series"]["count"].as_u64().unwrap_or(1))
            .sum()
    };
    eprintln!(
        "storm: 10000 lines, {writes} Event writes, {} Events",
        events.len()
    );
    assert_eq!(count_of("TaskHung", "Node"), hung, "{events:#?}");
    assert_eq!(count_of("OOMKilling", "Node"), 5000);
    assert_eq!(count_of("OOMKilling", "Pod"), 5000);
    // Three series (TaskHung and OOMKilling on the node, OOMKilling on the pod), each
    // created once and patched at most once per report or series period.
    assert!(writes <= 3 * 8, "{writes} writes for a 10,000-line storm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_write_is_retried_and_nothing_is_lost() {
    let cluster = Cluster::start().await;
    let config = cluster.config(&[], "");
    // The first requests are refused (RBAC being applied), then they work.
    cluster.server.refuse_next(3);
    let agent = cluster.agent(&config).await;
    agent.collect().await;
    for _ in 0..100 {
        if is(&cluster.conditions(), "MemoryLow", "False") {
            break;
        }
        agent.collect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        is(&cluster.conditions(), "MemoryLow", "False"),
        "{:#?}",
        cluster.conditions()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_with_the_writers_identity_when_one_is_given() {
    let cluster = Cluster::start().await;
    // The kubelet's identity, on its own connection (here: a second recorded API server).
    let kubelets = FakeApiServer::start().await;
    kubelets.set("nodes", vec![recorded_node()]);
    let dir = tempfile::tempdir().unwrap();
    let (writer, _) =
        nodemedic_agent::kubernetes::watch::client(Some(&kubelets.kubeconfig(dir.path())))
            .await
            .unwrap()
            .unwrap();
    let config = cluster.config(&[], "");
    let kubeconfig = cluster.server.kubeconfig(cluster.dir.path());
    let mut agent = Agent::new(NODE.into(), cluster.host.root(), &config)
        .with_kubernetes(Some(&kubeconfig), &config.kubernetes)
        .await
        .unwrap();
    assert!(agent.publish(&config, Some(writer)).is_some());
    for _ in 0..100 {
        agent.collect().await;
        if !kubelets.writes().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        kubelets
            .writes()
            .iter()
            .any(|w| w.path == format!("/api/v1/nodes/{NODE}/status")),
        "the writer's connection patched the node"
    );
    assert!(
        cluster.server.writes().is_empty(),
        "the watches' identity wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_deleted_and_made_again_gets_its_conditions_again() {
    let cluster = Cluster::start().await;
    let config = cluster.config(&[], "");
    let agent = cluster.agent(&config).await;
    agent.collect().await;
    cluster
        .until("MemoryLow False", |c| is(c, "MemoryLow", "False"))
        .await;
    // The Node goes (a machine replaced under the same name) while a problem opens.
    cluster.server.set("nodes", vec![]);
    cluster.host.set_memory(8 * GIB_KB, 100 * 1024, 0, 0);
    held(&agent).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // It comes back with the kubelet's conditions only.
    cluster.server.set("nodes", vec![recorded_node()]);
    agent.collect().await;
    cluster
        .until("every condition on the new Node", |c| {
            is(c, "MemoryLow", "True") && is(c, "DiskFilling", "False")
        })
        .await;
}
