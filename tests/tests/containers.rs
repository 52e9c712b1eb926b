//! A cluster in containers: the images `scripts/images` packs (from the binaries the test
//! script built) on a real Docker engine of the test's own. One collector and three agents
//! on a private, internal Docker network (no gateway, no published port: all traffic stays
//! on that network), with TLS as the manifests set it up (the collector's certificate from
//! `certs init`, each agent a certificate naming its node). Each agent is a node with its
//! own host tree, mounted read-only at /host as the DaemonSet mounts the node's root:
//! - node-a has the engine's Docker socket, and the engine holds an image nothing uses;
//! - node-b has its containerd directory on a small tmpfs, filled;
//! - node-c's resolv.conf names a DNS server that does not exist (an unused address of the
//!   test's own network).
//!
//! Checks: all three report; each expected finding is on its node only; the collector
//! container restarted keeps its data (a Docker volume) and the agents come back; a bundle
//! made in the collector container (with the CLI in its image, as `kubectl exec` would)
//! holds all three nodes. Needs root, docker.io (scripts/test installs it); fails, never
//! skips.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use nodemedic_agent::testing::{Dockerd, FakeHost};
use nodemedic_tests::{Tmpfs, binary, certs};

const SUBNET: &str = "172.31.250.0/24";
const COLLECTOR_IP: &str = "172.31.250.10";
/// No container holds it: queries to it go unanswered.
const DEAD_DNS: &str = "172.31.250.250";
const TAG: &str = "e2e";

/// `docker exec` of the CLI in the collector container, against its own gRPC port (as
/// `kubectl exec` would run it), with a viewer's client certificate.
const IN_COLLECTOR: &[&str] = &[
    "exec",
    "nodemedic-collector",
    "/usr/bin/nodemedic",
    "--collector",
    "https://nodemedic-collector:9440",
    "--ca",
    "/certs/ca.pem",
    "--cert",
    "/certs/client-oncall.pem",
    "--key",
    "/certs/client-oncall-key.pem",
];

/// `nodemedic -o json ARGS` inside the collector container, against its own gRPC port.
fn cli(engine: &Dockerd, args: &[&str]) -> Option<serde_json::Value> {
    let mut full = IN_COLLECTOR.to_vec();
    full.extend_from_slice(&["-o", "json"]);
    full.extend_from_slice(args);
    let out = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", engine.socket.display()))
        .args(&full)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "nodemedic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Polls `f` every 500 ms for at most `within`; on timeout, panics with the open findings
/// and the containers' logs.
fn wait_for<T>(
    engine: &Dockerd,
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            let mut logs = String::new();
            for c in ["nodemedic-collector", "node-a", "node-b", "node-c"] {
                let out = Command::new("docker")
                    .arg("-H")
                    .arg(format!("unix://{}", engine.socket.display()))
                    .args(["logs", "--tail", "30", c])
                    .output()
                    .unwrap();
                logs.push_str(&format!(
                    "--- {c}\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            panic!(
                "timed out waiting for {what}; open findings: {:?}\n{logs}",
                open_findings(engine)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// (node, check) of every open finding.
fn open_findings(engine: &Dockerd) -> Option<Vec<(String, String)>> {
    let v = cli(engine, &["findings"])?;
    Some(
        v["findings"]
            .as_array()?
            .iter()
            .map(|f| {
                (
                    f["node"].as_str().unwrap_or_default().to_owned(),
                    f["check"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    )
}

/// Each node's last stored seq.
fn last_seqs(engine: &Dockerd) -> Option<Vec<(String, u64)>> {
    let v = cli(engine, &["nodes"])?;
    Some(
        v["nodes"]
            .as_array()?
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or_default().to_owned(),
                    n["lastSeq"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                )
            })
            .collect(),
    )
}

#[test]
fn a_collector_and_three_agents_in_containers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Dockerd::start(&dir.path().join("docker"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let profile = binary("nodemedic-agent")
        .parent()
        .and_then(Path::file_name)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let out = Command::new(root.join("scripts/images"))
        .args(["--profile", &profile, "--tag", TAG])
        .env("DOCKER_HOST", format!("unix://{}", engine.socket.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/images: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sizes = String::from_utf8_lossy(&out.stdout);
    assert!(sizes.contains(&format!("nodemedic-agent:{TAG}")), "{sizes}");

    // Certificates as an operator makes them; the collector runs as uid 65532.
    let certs_dir = dir.path().join("certs");
    let c = certs_dir.to_str().unwrap();
    certs(&["init", c, "--dns", "nodemedic-collector"]);
    certs(&["client", c, "--name", "oncall", "--role", "viewer"]);
    for node in ["node-a", "node-b", "node-c"] {
        certs(&["agent", c, "--node", node]);
    }
    for entry in std::fs::read_dir(&certs_dir).unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::chown(&path, Some(65532), Some(65532)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    engine.docker(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        SUBNET,
        "nodemedic",
    ]);
    let collector_args = |engine: &Dockerd| {
        engine.docker(&[
            "run",
            "-d",
            "--name",
            "nodemedic-collector",
            "--network",
            "nodemedic",
            "--ip",
            COLLECTOR_IP,
            // Its own name, for the CLI inside it (the certificate names the Service).
            "--add-host",
            "nodemedic-collector:127.0.0.1",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "-v",
            "nodemedic-data:/var/lib/nodemedic",
            "-v",
            &format!("{c}:/certs:ro"),
            &format!("nodemedic-collector:{TAG}"),
            "--grpc-listen=0.0.0.0:9440",
            "--http-listen=0.0.0.0:9441",
            "--data-dir=/var/lib/nodemedic",
            "--incident-hold=2s",
            "--tls-cert=/certs/server.pem",
            "--tls-key=/certs/server-key.pem",
            "--client-ca=/certs/ca.pem",
        ])
    };
    collector_args(&engine);

    // The three nodes' host trees.
    let hosts: Vec<FakeHost> = (0..3).map(|_| FakeHost::new()).collect();
    let config = |host: &FakeHost, text: &str| host.write("/etc/nodemedic/agent.yaml", text);
    // node-a: the engine's socket and data root (where a node has them), and an image
    // nothing uses.
    engine.image("nodemedic.test/unused:1", 8 << 20);
    hosts[0].write("/var/run/docker.sock", "");
    let data_root = engine.data_root.to_str().unwrap().to_owned();
    std::fs::create_dir_all(hosts[0].root().path(&data_root)).unwrap();
    config(
        &hosts[0],
        "images:\n  reclaimable_min_bytes: 1048576\n  reclaimable_warn_percent: 0\n",
    );
    // node-b: a 32 MiB tmpfs at /var/lib/containerd, 31 MiB of it used.
    let imagefs = hosts[1].root().path("/var/lib/containerd");
    std::fs::create_dir_all(&imagefs).unwrap();
    let _imagefs = Tmpfs::mount(&imagefs, "32m");
    std::fs::write(imagefs.join("layers"), vec![7u8; 31 << 20]).unwrap();
    hosts[1].set_mounts(&[
        "40 21 0:90 / /var/lib/containerd rw,relatime shared:40 - tmpfs tmpfs rw,size=32768k",
    ]);
    config(&hosts[1], "{}\n");
    // node-c: a resolver nobody answers at.
    hosts[2].write("/etc/resolv.conf", &format!("nameserver {DEAD_DNS}\n"));
    config(&hosts[2], "dns:\n  nameservers: [\"172.31.250.250\"]\n");

    for (i, node) in ["node-a", "node-b", "node-c"].iter().enumerate() {
        let tree = hosts[i].root().dir().to_str().unwrap().to_owned();
        let mut args = vec![
            "run".to_owned(),
            "-d".into(),
            "--name".into(),
            (*node).into(),
            "--network".into(),
            "nodemedic".into(),
            "--add-host".into(),
            format!("nodemedic-collector:{COLLECTOR_IP}"),
            "--read-only".into(),
            "--cap-drop".into(),
            "ALL".into(),
            "--security-opt".into(),
            "no-new-privileges".into(),
            "--tmpfs".into(),
            "/var/lib/nodemedic-agent".into(),
            "-v".into(),
            format!("{tree}:/host:ro"),
            "-v".into(),
            format!("{c}:/certs:ro"),
        ];
        if i == 0 {
            args.extend([
                "-v".into(),
                format!("{}:/host/var/run/docker.sock:ro", engine.socket.display()),
                "-v".into(),
                format!("{data_root}:/host{data_root}:ro"),
            ]);
        }
        args.extend([
            format!("nodemedic-agent:{TAG}"),
            "--collector=https://nodemedic-collector:9440".into(),
            "--host-root=/host".into(),
            "--config=/host/etc/nodemedic/agent.yaml".into(),
            "--spool-dir=/var/lib/nodemedic-agent/spool".into(),
            "--interval=2s".into(),
            format!("--node-name={node}"),
            "--ca=/certs/ca.pem".into(),
            format!("--cert=/certs/agent-{node}.pem"),
            format!("--key=/certs/agent-{node}-key.pem"),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        engine.docker(&args);
    }

    // Every node reports, each with its own trouble and only its own.
    let expected = [
        ("node-a", "images.reclaimable"),
        ("node-b", "disk.space"),
        ("node-c", "dns.unreachable"),
    ];
    let findings = wait_for(
        &engine,
        Duration::from_secs(90),
        "the three findings",
        || {
            open_findings(&engine).filter(|f| {
                expected
                    .iter()
                    .all(|(n, c)| f.iter().any(|(fn_, fc)| fn_ == n && fc == c))
            })
        },
    );
    for (node, check) in expected {
        let on: Vec<&str> = findings
            .iter()
            .filter(|(_, c)| c == check)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(on, [node], "{check} only on {node}: {findings:?}");
    }
    let before = last_seqs(&engine).unwrap();
    assert_eq!(before.len(), 3, "{before:?}");

    // The collector container restarted: its volume keeps the store, the agents return.
    engine.docker(&["restart", "-t", "10", "nodemedic-collector"]);
    wait_for(
        &engine,
        Duration::from_secs(60),
        "every agent back after the restart",
        || {
            let now = last_seqs(&engine)?;
            before
                .iter()
                .all(|(n, seq)| now.iter().any(|(m, s)| m == n && s > seq))
                .then_some(())
        },
    );
    let after = open_findings(&engine).unwrap();
    for (node, check) in expected {
        assert!(
            after.iter().any(|(n, c)| n == node && c == check),
            "{check} on {node} kept: {after:?}"
        );
    }

    // A bundle made in the collector container holds all three nodes.
    engine.docker(
        &[
            IN_COLLECTOR,
            &["bundle", "-f", "/var/lib/nodemedic/cluster.tar.zst"],
        ]
        .concat(),
    );
    let bundle = dir.path().join("cluster.tar.zst");
    engine.docker(&[
        "cp",
        "nodemedic-collector:/var/lib/nodemedic/cluster.tar.zst",
        bundle.to_str().unwrap(),
    ]);
    let out = Command::new(binary("nodemedic"))
        .args(["-o", "json", "bundle", "inspect"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for node in ["node-a", "node-b", "node-c"] {
        assert!(
            text.contains(&format!("nodes/{node}/latest.json")),
            "{node} in the bundle: {text}"
        );
    }
    for c in ["node-a", "node-b", "node-c", "nodemedic-collector"] {
        engine.docker(&["rm", "-f", c]);
    }
}
