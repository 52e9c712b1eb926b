//! The pods probe against a small API server of the tests' own (`testing::FakeApiServer`)
//! playing list and watch with real objects recorded from clusters
//! (`tests/fixtures/real/pods/`, and objects built around real fragments in
//! `tests/fixtures/kube/`), through the real `kube` client over HTTP. The tests check the
//! findings, not the requests. Each runs the probe at the moment the objects were recorded.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use nodemedic_agent::{
    config::KubernetesConfig,
    host::HostRoot,
    kubernetes::watch::connect,
    probes::pods::PodsProbe,
    probes::{Probe, ProbeContext, Section},
    testing::{FakeApiServer, fixture},
};
use nodemedic_proto::v1::{Finding, PodsSection, Severity};
use serde_json::Value;

const NODE: &str = "node-1";

/// The items of a recorded list (or the one object) in the shared fixtures.
fn real(rel: &str) -> Vec<Value> {
    items(serde_json::from_str(&fixture(&format!("pods/{rel}"))).unwrap())
}

/// An object built around a real fragment (`tests/fixtures/kube/`).
fn built(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kube")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn items(v: Value) -> Vec<Value> {
    match v.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => vec![v],
    }
}

/// A recorded pod, placed on the tests' node.
fn on_node(mut pod: Value) -> Value {
    pod["spec"]["nodeName"] = Value::from(NODE);
    pod
}

/// A real healthy node (the first of a recorded NodeList), named as the tests' node.
fn healthy_node() -> Value {
    let mut node = real("troubleshoot-nodes-healthy.min.json").remove(0);
    node["metadata"]["name"] = Value::from(NODE);
    node
}

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

struct Api {
    server: FakeApiServer,
    dir: tempfile::TempDir,
}

impl Api {
    async fn start(pods: Vec<Value>, node: Value, events: Vec<Value>) -> Self {
        let server = FakeApiServer::start().await;
        server.set("pods", pods);
        server.set("nodes", vec![node]);
        server.set("events", events);
        Api {
            server,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn probe(&self, config: KubernetesConfig) -> PodsProbe {
        let kubeconfig = self.server.kubeconfig(self.dir.path());
        let (view, _client) = connect(Some(&kubeconfig), NODE, &config.watch_options())
            .await
            .expect("a client from the kubeconfig")
            .expect("not node-only");
        PodsProbe::new(view, config)
    }
}

/// One run of the probe at `now`, on a blocking thread (it waits for the first lists).
async fn run(probe: &Arc<PodsProbe>, now: SystemTime) -> (PodsSection, Vec<Finding>) {
    let probe = Arc::clone(probe);
    tokio::task::spawn_blocking(move || {
        let out = probe
            .run(&ProbeContext {
                host: HostRoot::default(),
                now,
            })
            .expect("the pods probe runs");
        let Section::Pods(section) = out.section else {
            panic!("not a pods section")
        };
        (section, out.findings)
    })
    .await
    .unwrap()
}

fn find<'a>(findings: &'a [Finding], check: &str, subject: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.check == check && f.subject == subject)
        .unwrap_or_else(|| panic!("no {check} for {subject} in {:#?}", summary(findings)))
}

fn summary(findings: &[Finding]) -> Vec<(String, String)> {
    findings
        .iter()
        .map(|f| (f.check.clone(), f.subject.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loops_oom_kills_and_image_pulls_of_real_pods() {
    let pods = [
        real("troubleshoot-pods-message-pod-crashloop-backoff.json"),
        real("troubleshoot-pods-message-pod-init-crashloop-backoff.json"),
        real("troubleshoot-pods-message-image-pull-fail.json"),
        vec![built(
            "built-from-holmesgpt-describe-pod-oomkilled-crashloop.pod.json",
        )],
    ]
    .concat()
    .into_iter()
    .map(on_node)
    .collect();
    let events = [
        real("troubleshoot-events-message-image-pull-fail.json"),
        real("troubleshoot-events-message-pod-init-crashloop-backoff.json"),
    ]
    .concat();
    let api = Api::start(pods, healthy_node(), events).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (section, findings) = run(&probe, at("2025-08-12T04:45:00Z")).await;
    assert_eq!((section.pods, section.synced), (4, true));

    let f = find(
        &findings,
        "pod.crashloop",
        "message-pod-crashloop-backoff/init-demo/nginx",
    );
    assert_eq!(f.severity, Severity::Critical as i32);
    assert_eq!(f.text("last_reason").unwrap(), "ContainerCannotRun");
    assert_eq!(f.number("exit_code"), Some(127.0));
    assert_eq!(f.text("oomkilled").unwrap(), "false");
    assert!(
        f.text("kubelet_message")
            .unwrap()
            .starts_with("back-off 1m20s restarting failed container=nginx")
    );
    // An init container that cannot start, again: the kubelet's RunContainerError.
    find(
        &findings,
        "pod.crashloop",
        "message-pod-init-crashloop-backoff/init-demo2/install",
    );

    let f = find(
        &findings,
        "pod.crashloop",
        "app-02/giant-narwhal-6958c5bdd8-69gtn/main",
    );
    assert_eq!(f.text("oomkilled").unwrap(), "true");
    assert_eq!(f.number("restarts"), Some(16.0));
    let f = find(
        &findings,
        "pod.oomkilled",
        "app-02/giant-narwhal-6958c5bdd8-69gtn/main",
    );
    assert_eq!(
        (
            f.text("memory_limit").unwrap(),
            f.text("memory_request").unwrap()
        ),
        ("50Mi", "50Mi")
    );

    let f = find(
        &findings,
        "pod.image_pull",
        "message-image-pull-fail/no-image-deployment-849c4c4958-rxqmt/demo-deployment-container",
    );
    assert_eq!(f.text("registry").unwrap(), "noimage.com");
    assert_eq!(f.text("error").unwrap(), "tls");
    assert_eq!(f.text("image").unwrap(), "noimage.com/no-such-image");
    assert_eq!(findings.len(), 5, "{:#?}", summary(&findings));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_reported_within_the_window_only() {
    let pods = real("troubleshoot-pods-message-oomkill-pod.json")
        .into_iter()
        .map(on_node)
        .collect();
    let api = Api::start(pods, healthy_node(), vec![]).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (_, findings) = run(&probe, at("2023-07-11T04:50:00Z")).await;
    let f = find(
        &findings,
        "pod.oomkilled",
        "message-oomkill-pod/oom-kill-job3-gbb89/memory-eater",
    );
    assert_eq!(f.text("memory_limit").unwrap(), "100Mi");
    assert_eq!(f.number("exit_code"), Some(137.0));
    let (_, findings) = run(&probe, at("2023-07-11T06:00:00Z")).await;
    assert!(
        findings.is_empty(),
        "an hour later: {:#?}",
        summary(&findings)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_name_the_resource() {
    let pods = vec![
        built("built-around-issue-hush-house-8-evicted-ephemeral-storage.pod.json"),
        built("built-around-issue-neonkube-1897-evicted-memory.pod.json"),
    ];
    let api = Api::start(pods, healthy_node(), vec![]).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (_, findings) = run(&probe, at("2024-03-12T12:00:00Z")).await;
    let f = find(&findings, "pod.evicted", "hush-house/hush-house-worker-0");
    assert_eq!(f.text("resource").unwrap(), "ephemeral-storage");
    let f = find(
        &findings,
        "pod.evicted",
        "neon-storage/cstor-disk-pool-7xkq-5b9c6d8f7-abcde",
    );
    assert_eq!(f.text("resource").unwrap(), "memory");
    // Hours after its conditions changed, the neonKUBE eviction is old news; the
    // hush-house pod says nothing of when, so it counts from when the agent saw it.
    let (_, findings) = run(&probe, at("2024-03-12T14:00:00Z")).await;
    assert_eq!(
        summary(&findings),
        vec![(
            "pod.evicted".into(),
            "hush-house/hush-house-worker-0".into()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_deletion_and_a_missing_secret_key() {
    let pods = vec![
        built("built-around-issue-k8s-65569-terminating.pod.json"),
        built("built-around-issue-aegis-293-createcontainerconfigerror.pod.json"),
    ];
    let api = Api::start(pods, healthy_node(), vec![]).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (_, findings) = run(&probe, at("2020-08-17T03:03:00Z")).await;
    assert!(
        !findings.iter().any(|f| f.check == "pod.terminating_stuck"),
        "two minutes late is not stuck yet"
    );
    let f = find(
        &findings,
        "pod.config_error",
        "default/aegis-workload-demo-5c7d9f8b6-q2w3e/main",
    );
    assert_eq!(f.text("missing_kind").unwrap(), "secret_key");
    assert_eq!(
        f.text("missing").unwrap(),
        "default/aegis-secret-aegis-workload-demo key VALUE"
    );

    let (_, findings) = run(&probe, at("2020-08-17T03:10:04Z")).await;
    let f = find(
        &findings,
        "pod.terminating_stuck",
        "eureka/webhook-test-79fbccfb66-x7k2p",
    );
    assert_eq!(f.text("finalizers").unwrap(), "foregroundDeletion");
    assert_eq!(f.number("late_seconds"), Some(540.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_probes_from_events_and_restarts_seen_through_the_watch() {
    let pods: Vec<Value> = real("hotsos-sunbeam-pods-restarts-subset.json")
        .into_iter()
        .map(on_node)
        .collect();
    let cinder = pods[0].clone();
    let api = Api::start(
        pods,
        healthy_node(),
        real("hotsos-sunbeam-events-unhealthy-imagepullsecret.json"),
    )
    .await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let now = at("2025-05-14T14:08:25Z");
    let (section, findings) = run(&probe, now).await;
    assert!(section.events_kept > 0);
    for (subject, failures) in [
        ("openstack/cinder-0/cinder-scheduler", 10),
        ("openstack/cinder-0/cinder-api", 10),
        ("openstack/cinder-0/charm", 7),
        ("openstack/keystone-mysql-router-0/mysql-router", 10),
        ("openstack/keystone-mysql-router-0/charm", 4),
    ] {
        let f = find(&findings, "pod.probe_failing", subject);
        assert_eq!(f.number("failures"), Some(failures as f64), "{subject}");
    }
    assert_eq!(
        findings.len(),
        5,
        "restart counts alone are history: {:#?}",
        summary(&findings)
    );

    // The charm container restarts 6 more times; the watch brings each change.
    for restarts in 8..=13 {
        let mut changed = cinder.clone();
        let statuses = changed["status"]["containerStatuses"]
            .as_array_mut()
            .unwrap();
        let charm = statuses.iter_mut().find(|c| c["name"] == "charm").unwrap();
        charm["restartCount"] = Value::from(restarts);
        api.server.apply("pods", changed);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, findings) = run(&probe, now).await;
        if let Some(f) = findings.iter().find(|f| f.check == "pod.restarts") {
            assert_eq!(f.subject, "openstack/cinder-0/charm");
            assert_eq!(f.number("restarts_in_window"), Some(6.0));
            assert_eq!(f.number("restarts"), Some(13.0));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pod.restarts after the watch events"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_with_the_schedulers_reason() {
    // Pending pods have no node: one agent watches them when asked to.
    let pods = [
        real("troubleshoot-pods-message-pending-pod-resources.json"),
        real("troubleshoot-pods-message-pending-node-affinity.json"),
    ]
    .concat();
    let api = Api::start(
        pods,
        healthy_node(),
        real("troubleshoot-events-message-image-pull-fail.json"),
    )
    .await;
    let on_node_only = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (_, findings) = run(&on_node_only, at("2023-07-11T04:30:00Z")).await;
    assert!(
        findings.is_empty(),
        "not this node's pods: {:#?}",
        summary(&findings)
    );

    let config = KubernetesConfig {
        unscheduled_pods: true,
        ..KubernetesConfig::default()
    };
    let probe = Arc::new(api.probe(config).await);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let findings = loop {
        let (_, findings) = run(&probe, at("2023-07-11T04:30:00Z")).await;
        if findings.len() == 2 {
            break findings;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{:#?}",
            summary(&findings)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let f = find(
        &findings,
        "pod.pending",
        "message-pending-pod-resources/pending-pod-resources-5fddcf7688-djjfc",
    );
    assert_eq!(f.text("reason").unwrap(), "insufficient_other");
    assert!(
        f.text("scheduler_message")
            .unwrap()
            .contains("Insufficient nvidia.com/gpu")
    );
    let f = find(
        &findings,
        "pod.pending",
        "message-pending-node-affinity/kotsadm-b6cb54c8f-zgzrn",
    );
    assert_eq!(f.text("reason").unwrap(), "affinity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_conditions_and_a_vendors_condition_as_info() {
    let api = Api::start(vec![], healthy_node(), vec![]).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (section, findings) = run(&probe, SystemTime::now()).await;
    assert!(
        findings.is_empty(),
        "a healthy node: {:#?}",
        summary(&findings)
    );
    assert!(
        section
            .node_conditions
            .iter()
            .any(|c| c.condition == "Ready" && c.status == "True")
    );

    let api = Api::start(
        vec![],
        built("built-around-issue-k8s-93711-disk-pressure.node.json"),
        vec![],
    )
    .await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (_, findings) = run(&probe, SystemTime::now()).await;
    let f = find(&findings, "node.condition", "DiskPressure");
    assert_eq!(f.severity, Severity::Critical as i32);
    assert_eq!(f.text("reason").unwrap(), "KubeletHasDiskPressure");
    assert_eq!(findings.len(), 1);

    let node = built("built-around-hotsos-cdk-describe-node-notready-npd-kerneldeadlock.node.json");
    let api = Api::start(vec![], node, vec![]).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (_, findings) = run(&probe, SystemTime::now()).await;
    let ready = find(&findings, "node.condition", "Ready");
    assert_eq!(ready.severity, Severity::Critical as i32);
    assert_eq!(ready.text("status").unwrap(), "Unknown");
    let vendor = find(&findings, "node.condition", "KernelDeadlock");
    assert_eq!(vendor.severity, Severity::Info as i32, "not an error");
    assert_eq!(vendor.text("reason").unwrap(), "DockerHung");
    assert_eq!(
        findings.len(),
        2,
        "pressures Unknown are not reported: {:#?}",
        summary(&findings)
    );

    // k3s's EtcdIsVoter=True is good news (k8sgpt reported it as an error, its #1166).
    let node = built("built-around-issue-k8sgpt-1166-k3s-etcdisvoter.node.json");
    let api = Api::start(vec![], node, vec![]).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (section, findings) = run(&probe, SystemTime::now()).await;
    assert!(findings.is_empty(), "{:#?}", summary(&findings));
    assert!(
        section
            .node_conditions
            .iter()
            .any(|c| c.condition == "EtcdIsVoter")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_name_no_node_has_is_said() {
    // The API server knows node-2; this agent says it is node-1 (NODE_NAME wrong).
    let mut other = healthy_node();
    other["metadata"]["name"] = "node-2".into();
    let api = Api::start(vec![], other, vec![]).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (section, findings) = run(&probe, SystemTime::now()).await;
    assert!(section.synced && section.node_conditions.is_empty());
    let f = find(&findings, "node.not_found", "");
    assert_eq!(f.severity, Severity::Warning as i32);
    assert!(
        f.message.contains("has no Node of this name"),
        "{}",
        f.message
    );
    assert_eq!(findings.len(), 1, "{:#?}", summary(&findings));

    let api = Api::start(vec![], healthy_node(), vec![]).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let (_, findings) = run(&probe, SystemTime::now()).await;
    assert!(findings.is_empty(), "{:#?}", summary(&findings));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_api_server_is_retried_and_a_broken_kubeconfig_named() {
    let pods = real("troubleshoot-pods-message-pod-crashloop-backoff.json")
        .into_iter()
        .map(on_node)
        .collect();
    let api = Api::start(pods, healthy_node(), vec![]).await;
    // The agent's service account lacks its RBAC rules for a while.
    api.server.refuse_next(4);
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (section, findings) = loop {
        let p = Arc::clone(&probe);
        let out = tokio::task::spawn_blocking(move || {
            p.run(&ProbeContext {
                host: HostRoot::default(),
                now: SystemTime::now(),
            })
        })
        .await
        .unwrap();
        match out {
            Ok(out) => {
                let Section::Pods(section) = out.section else {
                    unreachable!()
                };
                break (section, out.findings);
            }
            Err(e) => assert!(e.to_string().contains("Kubernetes API"), "{e}"),
        }
        assert!(std::time::Instant::now() < deadline, "never synced");
    };
    assert!(section.watch_errors >= 1, "{section:?}");
    assert!(
        section.last_watch_error.contains("forbidden"),
        "{section:?}"
    );
    find(
        &findings,
        "pod.crashloop",
        "message-pod-crashloop-backoff/init-demo/nginx",
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("kubeconfig");
    std::fs::write(&bad, "this: is: not a kubeconfig").unwrap();
    let Err(err) = connect(
        Some(&bad),
        NODE,
        &KubernetesConfig::default().watch_options(),
    )
    .await
    else {
        panic!("a bad kubeconfig makes no client")
    };
    let err = err.to_string();
    assert!(err.contains(&bad.display().to_string()), "{err}");
}

/// A real node object, cordoned two days ago and with room for four pods, running four
/// copies of a real pod that requests 3 CPUs each (12 of its 8 allocatable: bound without
/// the scheduler) and one finished pod that holds no slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_overcommitted_node_left_cordoned() {
    let now = SystemTime::now();
    let mut node = healthy_node();
    for list in ["capacity", "allocatable"] {
        node["status"][list]["pods"] = Value::from("4");
    }
    node["spec"]["unschedulable"] = Value::from(true);
    node["spec"]["taints"] = serde_json::json!([{
        "key": "node.kubernetes.io/unschedulable",
        "effect": "NoSchedule",
        "timeAdded": humantime::format_rfc3339_seconds(now - Duration::from_secs(48 * 3600)).to_string(),
    }]);
    let template = real("troubleshoot-pods-message-pending-pod-resources.json").remove(0);
    let mut pods: Vec<Value> = (0..4)
        .map(|i| {
            let mut pod = on_node(template.clone());
            pod["metadata"]["name"] = Value::from(format!("worker-{i}"));
            pod["metadata"]["uid"] = Value::from(format!("00000000-0000-4000-8000-00000000000{i}"));
            pod["status"] = serde_json::json!({"phase": "Running"});
            pod
        })
        .collect();
    pods.push(on_node(
        real("troubleshoot-pods-message-oomkill-pod.json").remove(0),
    ));
    let api = Api::start(pods, node, vec![]).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);

    let (section, findings) = run(&probe, now).await;
    let resources = section.node.expect("the node's resources");
    assert_eq!(
        (
            resources.pods_capacity,
            resources.pods_active,
            resources.cpu_allocatable_millis,
            resources.cpu_requested_millis,
        ),
        (4, 4, 8000, 12_000),
        "the finished pod holds no slot"
    );
    assert_eq!(resources.memory_requested_bytes, 4 * (5 << 30));
    assert_eq!(resources.kubelet_version, "v1.16.2");
    assert_eq!(resources.container_runtime_version, "containerd://1.2.5");
    assert_eq!(
        resources.taints,
        ["node.kubernetes.io/unschedulable:NoSchedule"]
    );
    assert!(
        !findings.iter().any(|f| f.check == "node.pods_capacity"),
        "full for less than 15 minutes: {:#?}",
        summary(&findings)
    );
    let cpu = find(&findings, "node.overcommitted", "cpu");
    assert_eq!(cpu.severity, Severity::Info as i32);
    assert_eq!(cpu.number("requested"), Some(12_000.0));
    assert!(
        !findings
            .iter()
            .any(|f| f.check == "node.overcommitted" && f.subject == "memory"),
        "20 GiB requested of 29 GiB"
    );
    let cordoned = find(&findings, "node.cordoned", "unschedulable");
    assert_eq!(cordoned.severity, Severity::Info as i32);
    assert!(cordoned.message.contains("(2days)"), "{}", cordoned.message);
    assert_eq!(cordoned.text("kubelet_version"), Some("v1.16.2"));
    assert_eq!(cordoned.text("kernel_version"), Some("5.0.0-1021-gcp"));

    let (_, findings) = run(&probe, now + Duration::from_secs(16 * 60)).await;
    let full = find(&findings, "node.pods_capacity", "pods");
    assert_eq!(full.severity, Severity::Warning as i32);
    assert_eq!(full.number("used_percent"), Some(100.0));
    assert!(full.message.contains("4 pods of the 4"), "{}", full.message);
}

/// The recorded FailedMount events of a pod that never started (a hostPath that is not a
/// directory), about a pod built around them: Pending, its container waiting in
/// ContainerCreating since it was scheduled six hours before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_stuck_creating_is_named_with_its_cause() {
    let events = real("troubleshoot-events-message-container-creating-failed-mount.min.json");
    let mut pod = on_node(real("troubleshoot-pods-message-pending-pod-resources.json").remove(0));
    pod["metadata"]["name"] = Value::from("troubleshoot-copyfromhost-4m79m-psdjm");
    pod["metadata"]["namespace"] = Value::from("message-container-creating-failed-mount");
    pod["metadata"]["uid"] = Value::from("55ca5d14-2541-42a9-9eb1-5eb53133e178");
    let container = pod["spec"]["containers"][0]["name"].clone();
    pod["status"] = serde_json::json!({
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2023-07-09T23:53:00Z"}],
        "containerStatuses": [{
            "name": container, "ready": false, "restartCount": 0, "image": "busybox", "imageID": "",
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }],
    });
    let api = Api::start(vec![pod], healthy_node(), events).await;
    let probe = Arc::new(api.probe(KubernetesConfig::default()).await);

    let (_, findings) = run(&probe, at("2023-07-09T23:56:00Z")).await;
    assert!(
        !findings.iter().any(|f| f.check == "pod.stuck_creating"),
        "three minutes is not stuck: {:#?}",
        summary(&findings)
    );
    let (_, findings) = run(&probe, at("2023-07-10T05:45:00Z")).await;
    let f = find(
        &findings,
        "pod.stuck_creating",
        "message-container-creating-failed-mount/troubleshoot-copyfromhost-4m79m-psdjm",
    );
    assert_eq!(f.severity, Severity::Warning as i32);
    assert_eq!(f.text("cause"), Some("mount_timeout"), "the latest event's");
    assert_eq!(f.text("event_reason"), Some("FailedMount"));
    assert_eq!(f.number("events"), Some(109.0));
    assert!(f.message.contains("5h 52m"), "{}", f.message);
}
