//! Scenario tests of correlation: report sequences of several nodes go through the real
//! store writer into SQLite (on a clock the test sets), and the incidents are read back as
//! the query API reads them.

use std::{path::Path, sync::Arc, time::Duration};

use nodemedic_collector::{
    incidents::IncidentConfig,
    runbook::Catalog,
    store::{
        IncidentFilter, Reader, open_for_writing,
        writer::{Events, WriterConfig, WriterHandle, spawn},
    },
};
use nodemedic_proto::{
    time::{timestamp_from_millis, timestamp_millis},
    v1::{
        Evidence, Finding, Incident, IncidentScope, IncidentState, NodeReport, ProbeRun, Severity,
        incident_event::Kind,
    },
};

const T0: i64 = 1_800_000_000_000;
const SECOND: i64 = 1000;
/// Every probe whose checks these scenarios use ran fine.
const PROBES: &[&str] = &["disk", "memory", "system", "dns", "pod"];

/// A collector's store on a test clock.
struct Cluster {
    dir: tempfile::TempDir,
    writer: Option<(WriterHandle, std::thread::JoinHandle<()>)>,
    catalog: Arc<Catalog>,
    seqs: std::collections::HashMap<String, u64>,
    events: Events,
}

impl Cluster {
    fn new(catalog: Catalog) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster {
            dir,
            writer: None,
            catalog: Arc::new(catalog),
            seqs: Default::default(),
            events: Events::default(),
        };
        c.start();
        c
    }

    fn start(&mut self) {
        let config = WriterConfig {
            retention: Duration::from_secs(7 * 86_400),
            silent_after: 3,
            catalog: Arc::clone(&self.catalog),
            incidents: IncidentConfig {
                hold: Duration::from_secs(30),
                repeat: 3,
                repeat_window: Duration::from_secs(15 * 60),
            },
        };
        self.writer = Some(
            spawn(
                open_for_writing(self.dir.path()).unwrap(),
                config,
                self.events.clone(),
                Arc::default(),
            )
            .unwrap(),
        );
    }

    /// Stops the writer (committing everything) and starts a new one on the same store.
    fn restart(&mut self) {
        let (writer, thread) = self.writer.take().unwrap();
        drop(writer);
        thread.join().unwrap();
        self.start();
    }

    async fn report(&mut self, node: &str, at: i64, findings: Vec<Finding>) {
        let writer = &self.writer.as_ref().unwrap().0;
        let seq = self.seqs.entry(node.to_owned()).or_default();
        if *seq == 0 {
            writer
                .hello(node, "test", Duration::from_secs(10), at)
                .await
                .unwrap();
        }
        *seq += 1;
        let report = NodeReport {
            node: node.into(),
            seq: *seq,
            collected_at: Some(timestamp_from_millis(at)),
            findings: findings
                .into_iter()
                .map(|f| Finding {
                    node: node.into(),
                    ..f
                })
                .collect(),
            probes: PROBES
                .iter()
                .map(|p| ProbeRun {
                    probe: (*p).into(),
                    ok: true,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        writer.ingest(report, at).await.unwrap().await.unwrap();
    }

    async fn tick(&self, at: i64) {
        self.writer.as_ref().unwrap().0.tick(at).await.unwrap();
    }

    fn reader(&self) -> Reader {
        Reader::open(self.dir.path()).unwrap()
    }

    fn incidents(&self, state: IncidentState) -> Vec<Incident> {
        self.reader()
            .incidents(&IncidentFilter {
                state,
                limit: 100,
                ..Default::default()
            })
            .unwrap()
            .0
    }

    fn open(&self) -> Vec<Incident> {
        self.incidents(IncidentState::Open)
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn images_full_in(hours: f64) -> Finding {
    Finding::fail(
        "disk.fill_rate",
        Severity::Warning,
        "/var/lib/containerd",
        format!("/var/lib/containerd fills in {hours:.1}h at the current rate."),
    )
    .with(Evidence::text("roles", "images"))
    .with(Evidence::number("fill_rate", 2e9, "bytes_per_hour"))
    .with(Evidence::number("full_in", hours, "hours"))
}

fn images_full() -> Finding {
    Finding::fail(
        "disk.space",
        Severity::Critical,
        "/var/lib/containerd",
        "/var/lib/containerd has 2% free.".into(),
    )
    .with(Evidence::text("roles", "images"))
    .with(Evidence::percent("available_percent", 2.0))
}

fn dns_down() -> Finding {
    Finding::fail(
        "dns.unreachable",
        Severity::Critical,
        "udp://10.96.0.10",
        "No answer from 10.96.0.10 over UDP.".into(),
    )
}

fn pod(check: &str, namespace: &str, name: &str) -> Finding {
    Finding::fail(
        check,
        Severity::Warning,
        &format!("{namespace}/{name}"),
        format!("{check} {namespace}/{name}"),
    )
    .with(Evidence::text("namespace", namespace))
    .with(Evidence::text("pod", name))
}

fn checks(i: &Incident) -> Vec<(String, String)> {
    i.findings
        .iter()
        .map(|f| (f.node.clone(), f.check.clone()))
        .collect()
}

#[tokio::test]
async fn one_nodes_image_disk_filling_is_forecast_then_one_incident() {
    let mut c = Cluster::new(Catalog::builtin());
    // The image filesystem fills: the agent forecasts full in 5 h, every 10 s.
    for i in 0..3 {
        c.report("n1", T0 + i * 10 * SECOND, vec![images_full_in(5.0)])
            .await;
        assert!(c.open().is_empty(), "held back until it persists 30 s");
    }
    c.report("n1", T0 + 30 * SECOND, vec![images_full_in(5.0)])
        .await;
    let open = c.open();
    assert_eq!(open.len(), 1, "{open:#?}");
    let incident = &open[0];
    assert_eq!(incident.rule, "disk-full-images");
    assert_eq!(incident.scope(), IncidentScope::Node);
    assert_eq!(incident.nodes, ["n1"]);
    let expected = T0 + 30 * SECOND + 5 * 3_600_000;
    assert_eq!(
        incident.failure_expected_at.as_ref().map(timestamp_millis),
        Some(expected),
        "opened before the failure, with its time"
    );
    let remediation = incident.remediation.as_ref().unwrap();
    assert!(
        remediation
            .steps
            .iter()
            .any(|s| s.action == "images.prune" && s.command.contains("prune")),
        "{remediation:#?}"
    );

    // Hours later the disk is actually full: the same incident, now critical.
    let later = T0 + 4 * 3_600_000;
    c.report("n1", later, vec![images_full_in(0.5), images_full()])
        .await;
    c.report(
        "n1",
        later + 30 * SECOND,
        vec![images_full_in(0.5), images_full()],
    )
    .await;
    let open = c.open();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].id, incident.id);
    assert_eq!(open[0].severity(), Severity::Critical);
    assert_eq!(
        checks(&open[0]),
        [
            ("n1".into(), "disk.space".into()),
            ("n1".into(), "disk.fill_rate".into())
        ],
        "the worst finding leads"
    );
    assert!(
        open[0]
            .timeline
            .iter()
            .any(|e| e.text == "severity now critical"),
        "{:#?}",
        open[0].timeline
    );
}

#[tokio::test]
async fn dns_dead_on_one_node_then_on_most_becomes_one_cluster_incident() {
    let mut c = Cluster::new(Catalog::builtin());
    let nodes = ["n1", "n2", "n3", "n4", "n5"];
    let mut t = T0;
    // Minute one: only n1 cannot reach the DNS service.
    for _ in 0..6 {
        for n in nodes {
            let f = if n == "n1" { vec![dns_down()] } else { vec![] };
            c.report(n, t, f).await;
        }
        t += 10 * SECOND;
    }
    let open = c.open();
    assert_eq!(open.len(), 1, "{open:#?}");
    let node_incident = open[0].clone();
    assert_eq!(node_incident.rule, "dns-failing-node");
    assert_eq!(node_incident.nodes, ["n1"]);

    // Then n2..n4 fail too: 4 of 5. (The collector ticks every second; an open incident's
    // updates are stored at most once a second.)
    for _ in 0..6 {
        for n in nodes {
            let f = if n == "n5" { vec![] } else { vec![dns_down()] };
            c.report(n, t, f).await;
        }
        c.tick(t + SECOND).await;
        t += 10 * SECOND;
    }
    let open = c.open();
    assert_eq!(
        open.len(),
        1,
        "one cluster incident, not node incidents: {open:#?}"
    );
    let cluster = &open[0];
    assert_eq!(cluster.rule, "dns-failing-cluster");
    assert_eq!(cluster.scope(), IncidentScope::Cluster);
    assert_eq!(cluster.nodes, ["n1", "n2", "n3", "n4"]);
    assert!(
        cluster.summary.contains("on 4 of 5 reporting nodes"),
        "{}",
        cluster.summary
    );
    let commands: Vec<&str> = cluster.remediation.as_ref().unwrap().commands().collect();
    assert!(
        commands
            .iter()
            .any(|c| c.contains("rollout restart deployment/coredns")),
        "{commands:?}"
    );
    // The node incident was folded into it, and says so.
    let resolved = c.incidents(IncidentState::Resolved);
    let folded = resolved.iter().find(|i| i.id == node_incident.id).unwrap();
    assert!(
        folded
            .timeline
            .last()
            .unwrap()
            .text
            .contains(&format!("moved to incident {}", cluster.id)),
        "{:#?}",
        folded.timeline
    );
    assert!(
        resolved.iter().all(|i| i.scope() == IncidentScope::Node),
        "{resolved:#?}"
    );

    // CoreDNS recovers: the incident resolves once DNS has worked for the hold (30 s after
    // the last failing report, at t - 10 s).
    for (at, open) in [(t, 1), (t + 10 * SECOND, 1), (t + 20 * SECOND, 0)] {
        for n in nodes {
            c.report(n, at, vec![]).await;
        }
        assert_eq!(c.open().len(), open);
    }
    let done = c.reader().incident(cluster.id).unwrap().unwrap();
    assert_eq!(done.state(), IncidentState::Resolved);
    assert_eq!(
        done.resolved_at.as_ref().map(timestamp_millis),
        Some(t + 20 * SECOND)
    );
}

#[tokio::test]
async fn a_disk_pressure_eviction_chain_is_one_incident_and_recovery_resolves_it() {
    let mut c = Cluster::new(Catalog::builtin());
    let full = Finding::fail(
        "disk.space",
        Severity::Critical,
        "/var/lib/kubelet",
        "/var/lib/kubelet has 3% free.".into(),
    )
    .with(Evidence::text("roles", "kubelet"));
    let chain = vec![
        full.clone(),
        pod("pod.evicted", "shop", "cart-7d9f"),
        pod("pod.crashloop", "shop", "api-5c8b"),
    ];
    let mut events = c.events.incidents.subscribe();
    c.report("n1", T0, vec![full.clone()]).await;
    c.report("n1", T0 + 20 * SECOND, chain.clone()).await;
    c.report("n1", T0 + 40 * SECOND, chain.clone()).await;
    let open = c.open();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].rule, "disk-full");
    assert_eq!(
        open[0].findings.len(),
        1,
        "the pods' trouble is still held back"
    );

    // The evictions and crash loops persist: they join the disk incident, not their own.
    c.report("n1", T0 + 60 * SECOND, chain.clone()).await;
    let open = c.open();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].findings.len(), 3);
    assert_eq!(open[0].findings[0].check, "disk.space", "the cause first");
    assert_eq!(open[0].objects, ["shop/api-5c8b", "shop/cart-7d9f"]);
    assert!(
        open[0]
            .summary
            .contains("Consequences on this node: pod.crashloop, pod.evicted"),
        "{}",
        open[0].summary
    );

    // Cleaned up: the disk recovers, then the pods. Each counts as gone once it has
    // stayed away for the hold (30 s).
    c.report(
        "n1",
        T0 + 70 * SECOND,
        vec![pod("pod.crashloop", "shop", "api-5c8b")],
    )
    .await;
    for at in [80, 90] {
        c.report("n1", T0 + at * SECOND, vec![]).await;
        assert_eq!(c.open().len(), 1);
    }
    c.report("n1", T0 + 100 * SECOND, vec![]).await;
    assert!(c.open().is_empty());
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(e.kind());
    }
    assert_eq!(kinds.first(), Some(&Kind::Opened));
    assert_eq!(kinds.last(), Some(&Kind::Resolved));
    // While the crash loop outlived the full disk, the same incident described it.
    let resolved = c.incidents(IncidentState::Resolved);
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    let timeline: Vec<&str> = resolved[0]
        .timeline
        .iter()
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(
        timeline,
        [
            "+ disk.space /var/lib/kubelet on n1",
            "+ pod.crashloop shop/api-5c8b on n1",
            "+ pod.evicted shop/cart-7d9f on n1",
            "now described by rule pod-crashloop",
            "- disk.space /var/lib/kubelet on n1",
            "- pod.evicted shop/cart-7d9f on n1",
            "severity now warning",
            "resolved: all its findings resolved",
        ]
    );
}

#[tokio::test]
async fn a_flapping_finding_opens_nothing_until_it_keeps_coming_back() {
    let mut c = Cluster::new(Catalog::builtin());
    let slow = || {
        Finding::fail(
            "dns.slow",
            Severity::Warning,
            "udp://10.96.0.10",
            "p95 900 ms".into(),
        )
    };
    // Present, gone, present, gone: each time for less than the hold.
    for (i, present) in [true, false, true, false].into_iter().enumerate() {
        let f = if present { vec![slow()] } else { vec![] };
        c.report("n1", T0 + i as i64 * 10 * SECOND, f).await;
    }
    assert!(c.incidents(IncidentState::Unspecified).is_empty());
    // A third opening within the window: it keeps coming back, which is worth a look.
    c.report("n1", T0 + 40 * SECOND, vec![slow()]).await;
    let open = c.open();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].rule, "dns-failing-node");
}

#[tokio::test]
async fn incidents_survive_a_restart() {
    let mut c = Cluster::new(Catalog::builtin());
    for i in 0..4 {
        c.report("n1", T0 + i * 10 * SECOND, vec![dns_down()]).await;
    }
    let before = c.open();
    assert_eq!(before.len(), 1);
    c.restart();
    assert_eq!(c.open(), before, "stored as they were");
    // The same trouble continues: the same incident, not a second one.
    c.report("n1", T0 + 40 * SECOND, vec![dns_down(), images_full()])
        .await;
    c.report("n1", T0 + 80 * SECOND, vec![dns_down(), images_full()])
        .await;
    let open = c.open();
    assert_eq!(open.len(), 2, "{open:#?}");
    assert!(open.iter().any(|i| i.id == before[0].id));
    assert!(open.iter().all(|i| i.id >= before[0].id));
    c.restart();
    c.report("n1", T0 + 90 * SECOND, vec![]).await;
    assert_eq!(
        c.open().len(),
        2,
        "held for 30 s after the trouble went away"
    );
    c.report("n1", T0 + 120 * SECOND, vec![]).await;
    assert!(c.open().is_empty(), "resolved after the restart");
}

#[tokio::test]
async fn a_silent_node_is_an_incident() {
    let mut c = Cluster::new(Catalog::builtin());
    c.report("n1", T0, vec![]).await;
    // Interval is 10 s (Hello default); silent after 3 missed.
    c.tick(T0 + 10 * 60 * SECOND).await;
    let open = c.open();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].rule, "node-silent");
    c.report("n1", T0 + 11 * 60 * SECOND, vec![]).await;
    assert!(c.open().is_empty());
}

/// Reports `same` from n1, n2 and n3 and `other` from n4, four times 10 s apart: a cluster
/// rule grouping by an evidence value sees three nodes in one group and one in another.
/// Checks that exactly one cluster incident opened, of `rule` for `group` on n1–n3, and that
/// n4's trouble stayed a node incident of `node_rule`.
async fn three_nodes_group_and_one_does_not(
    same: Finding,
    other: Finding,
    (rule, group): (&str, &str),
    node_rule: &str,
) {
    let mut c = Cluster::new(Catalog::builtin());
    let mut t = T0;
    for _ in 0..4 {
        for n in ["n1", "n2", "n3"] {
            c.report(n, t, vec![same.clone()]).await;
        }
        c.report("n4", t, vec![other.clone()]).await;
        t += 10 * SECOND;
    }
    let open = c.open();
    let cluster: Vec<_> = open
        .iter()
        .filter(|i| i.scope() == IncidentScope::Cluster)
        .collect();
    assert_eq!(cluster.len(), 1, "{open:#?}");
    assert_eq!(
        (cluster[0].rule.as_str(), cluster[0].group.as_str()),
        (rule, group)
    );
    assert_eq!(cluster[0].nodes, ["n1", "n2", "n3"]);
    let node: Vec<_> = open
        .iter()
        .filter(|i| i.scope() == IncidentScope::Node)
        .collect();
    assert_eq!(
        node.len(),
        1,
        "the other group stays a node incident: {open:#?}"
    );
    assert_eq!(
        (node[0].rule.as_str(), node[0].nodes.as_slice()),
        (node_rule, &["n4".to_owned()][..])
    );
}

#[tokio::test]
async fn image_pulls_failing_from_one_registry_on_many_nodes_group_by_registry() {
    let pull = |registry: &str| {
        pod("pod.image_pull", "shop", "web-1")
            .with(Evidence::text("registry", registry))
            .with(Evidence::text("image", format!("{registry}/shop/web:1.2")))
    };
    three_nodes_group_and_one_does_not(
        pull("registry.example.com"),
        pull("quay.io"),
        ("image-pull-registry", "registry.example.com"),
        "image-pull",
    )
    .await;
}

/// NotReady on three nodes of one kubelet version is one cluster incident (an upgrade gone
/// wrong); a fourth NotReady node of another version stays its own.
#[tokio::test]
async fn nodes_not_ready_on_one_kubelet_version_group_by_it() {
    let not_ready = |version: &str| {
        Finding::fail(
            "node.condition",
            Severity::Critical,
            "Ready",
            "node condition Ready=Unknown (NodeStatusUnknown): Kubelet stopped posting node status.".into(),
        )
        .with(Evidence::text("condition", "Ready"))
        .with(Evidence::text("kubelet_version", version))
    };
    three_nodes_group_and_one_does_not(
        not_ready("v1.30.1"),
        not_ready("v1.29.6"),
        ("node-not-ready-one-version", "v1.30.1"),
        "node-not-ready",
    )
    .await;
}

/// Pods stuck creating with the CNI as the cause on three nodes are one cluster incident
/// (a network plugin outage); the same check with another cause stays a node's.
#[tokio::test]
async fn pods_stuck_creating_for_one_cause_on_many_nodes_group_by_it() {
    let stuck = |cause: &str| {
        pod("pod.stuck_creating", "shop", "web-1").with(Evidence::text("cause", cause))
    };
    three_nodes_group_and_one_does_not(
        stuck("cni"),
        stuck("secret_missing"),
        ("pod-stuck-creating-cluster", "cni"),
        "pod-stuck-creating",
    )
    .await;
}

#[tokio::test]
async fn a_user_rule_overrides_a_builtin_one() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("ours.yaml"),
        "rules:\n  - id: dns-failing-node\n    title: Page the network team\n    match:\n      checks: [dns.unreachable]\n    remediation:\n      steps:\n        - text: Page the network team about {{node}}.\n          command: 'page network {{node}}'\n      recovery: an hour\n      data_loss: none\n      verify: the incident resolves\n",
    )
    .unwrap();
    let mut c = Cluster::new(Catalog::with_dir(rules.path()).unwrap());
    for i in 0..4 {
        c.report("n7", T0 + i * 10 * SECOND, vec![dns_down()]).await;
    }
    let open = c.open();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].title, "Page the network team");
    assert_eq!(
        open[0].remediation.as_ref().unwrap().steps[0].command,
        "page network n7"
    );
    assert!(c.dir().exists());
}
