//! TLS between agents, the CLI and the collector, as real processes: certificates made by
//! `nodemedic-collector certs`, an agent's report accepted only for the node its
//! certificate names; a wrong node, no certificate, and an expired certificate refused;
//! plaintext refused unless asked for; the kubelet's own client certificate accepted for
//! its node; a certificate renewed on disk used without restarting the agent.

use std::{path::Path, process::Command, time::Duration};

use nodemedic_agent::testing::FakeHost;
use nodemedic_tests::{
    CollectorProcess, agent, binary, certs, collector_command, eventually, http_get,
};

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).to_str().unwrap().to_owned()
}

/// A collector on 127.0.0.1 serving TLS with the certificate `certs init` made in
/// `certs_dir`, trusting client certificates signed by `client_ca`; its data in `dir`.
fn tls_collector(dir: &Path, certs_dir: &Path, client_ca: &str) -> CollectorProcess {
    CollectorProcess::start_with(
        &dir.join("data"),
        "127.0.0.1:0",
        &[
            "--tls-cert",
            &path(certs_dir, "server.pem"),
            "--tls-key",
            &path(certs_dir, "server-key.pem"),
            "--client-ca",
            client_ca,
        ],
    )
}

/// `nodemedic --ca CA ARGS` against the collector; (exit code, stdout, stderr).
fn cli(url: &str, ca: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("nodemedic"))
        .args(["--collector", url, "--ca", ca])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `nodemedic-agent --once` as `node` with the client certificate `cert`; (success, stderr).
fn agent_once(
    url: &str,
    ca: &str,
    node: &str,
    cert: Option<(&str, &str)>,
    host: &FakeHost,
) -> (bool, String) {
    let mut cmd = Command::new(binary("nodemedic-agent"));
    cmd.args([
        "--collector",
        url,
        "--node-name",
        node,
        "--once",
        "--once-timeout",
        "5s",
    ])
    .arg("--host-root")
    .arg(host.root().dir())
    .env_remove("KUBECONFIG")
    .env_remove("KUBERNETES_SERVICE_HOST")
    .env("RUST_LOG", "warn");
    cmd.args(["--ca", ca]);
    if let Some((cert, key)) = cert {
        cmd.args(["--cert", cert, "--key", key]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn agents_report_only_for_the_node_their_certificate_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs_dir = d.join("certs");
    certs(&["init", certs_dir.to_str().unwrap()]);
    certs(&["agent", certs_dir.to_str().unwrap(), "--node", "node-a"]);
    let ca = path(&certs_dir, "ca.pem");
    let collector = tls_collector(d, &certs_dir, &ca);
    let url = collector.grpc_url.clone();
    assert!(url.starts_with("https://localhost:"), "{url}");
    let (_, ready) = http_get(&collector.http_addr, "/readyz");
    assert_eq!(String::from_utf8(ready).unwrap(), "ready\n");
    let host = FakeHost::new();
    let node_a = (
        path(&certs_dir, "agent-node-a.pem"),
        path(&certs_dir, "agent-node-a-key.pem"),
    );
    let cert_a = Some((node_a.0.as_str(), node_a.1.as_str()));

    // Its own node: stored.
    let (ok, err) = agent_once(&url, &ca, "node-a", cert_a, &host);
    assert!(ok, "{err}");
    let (code, out, err) = cli(&url, &ca, &["nodes", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"node-a\""), "{out}");

    // Another node's name with node-a's certificate: refused, nothing stored.
    let (ok, err) = agent_once(&url, &ca, "node-b", cert_a, &host);
    assert!(!ok);
    assert!(err.contains("may not report for"), "{err}");
    // No client certificate at all.
    let (ok, err) = agent_once(&url, &ca, "node-c", None, &host);
    assert!(!ok);
    assert!(err.contains("client certificate"), "{err}");
    let (_, out, _) = cli(&url, &ca, &["nodes", "-o", "json"]);
    assert!(!out.contains("node-b") && !out.contains("node-c"), "{out}");
    let metrics = eventually(Duration::from_secs(5), "the refusals counted", || {
        let (_, body) = http_get(&collector.http_addr, "/metrics");
        let body = String::from_utf8(body).unwrap();
        body.contains("reason=\"identity\"").then_some(body)
    });
    assert!(metrics.contains("nodemedic_refused_total"), "{metrics}");

    // An expired certificate for node-a: the handshake fails.
    // (Valid for 0 days ends this second; certificate times have one-second resolution.)
    certs(&[
        "agent",
        certs_dir.to_str().unwrap(),
        "--node",
        "node-a",
        "--days",
        "0",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    let (ok, err) = agent_once(&url, &ca, "node-a", cert_a, &host);
    assert!(!ok, "an expired certificate is refused: {err}");

    // The CLI without the CA cannot trust the collector.
    let out = Command::new(binary("nodemedic"))
        .args(["--collector", &url, "nodes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Certificates renewed on disk are used at the next reconnect: an agent started with an
/// expired certificate is refused until a valid one is written over it, then reports,
/// without a restart (the kubelet rotates the certificate the manifests give agents).
#[test]
fn an_agent_uses_a_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs_dir = d.join("certs");
    let c = certs_dir.to_str().unwrap();
    certs(&["init", c]);
    certs(&["agent", c, "--node", "node-r", "--days", "0"]);
    std::thread::sleep(Duration::from_secs(2));
    let ca = path(&certs_dir, "ca.pem");
    let collector = tls_collector(d, &certs_dir, &ca);
    let url = collector.grpc_url.clone();
    let host = FakeHost::new();
    let _agent = agent(
        &url,
        "node-r",
        host.root().dir(),
        &[
            "--ca",
            &ca,
            "--cert",
            &path(&certs_dir, "agent-node-r.pem"),
            "--key",
            &path(&certs_dir, "agent-node-r-key.pem"),
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    let (_, out, _) = cli(&url, &ca, &["nodes", "-o", "json"]);
    assert!(!out.contains("node-r"), "expired: refused: {out}");
    certs(&["agent", c, "--node", "node-r"]);
    eventually(
        Duration::from_secs(30),
        "the renewed certificate used",
        || {
            let (_, out, _) = cli(&url, &ca, &["nodes", "-o", "json"]);
            out.contains("\"node-r\"").then_some(())
        },
    );
}

/// Writes what a kubelet keeps in `pki`: a client certificate for `node` (`system:node:<node>`
/// in `system:nodes`) signed by a cluster CA of the test's own, certificate and key in one
/// file behind the `kubelet-client-current.pem` symlink (an absolute one, as the kubelet
/// makes it). Answers (the cluster CA's file, the symlink).
fn kubelet_pki(dir: &Path, node: &str) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "kubernetes");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    let dated = dir.join("kubelet-client-2026-11-22-09-14-03.pem");
    std::fs::write(&dated, cert.pem() + &key.serialize_pem()).unwrap();
    let current = dir.join("kubelet-client-current.pem");
    std::os::unix::fs::symlink(&dated, &current).unwrap();
    (path(dir, "ca.crt"), current.to_str().unwrap().to_owned())
}

/// The deploy manifests' identity: agents present the kubelet's own client certificate and
/// the collector trusts the cluster's CA. The certificate names `system:node:worker-1`.
#[test]
fn agents_can_present_the_kubelets_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs_dir = d.join("certs");
    certs(&["init", certs_dir.to_str().unwrap()]);
    let (cluster_ca, current) = kubelet_pki(&d.join("pki"), "worker-1");
    let collector = tls_collector(d, &certs_dir, &cluster_ca);
    let (url, ca) = (collector.grpc_url.clone(), path(&certs_dir, "ca.pem"));
    let host = FakeHost::new();
    let kubelet = Some((current.as_str(), current.as_str()));
    let (ok, err) = agent_once(&url, &ca, "worker-1", kubelet, &host);
    assert!(ok, "{err}");
    let (ok, err) = agent_once(&url, &ca, "worker-2", kubelet, &host);
    assert!(!ok);
    assert!(err.contains("may not report for"), "{err}");
    let (_, out, _) = cli(&url, &ca, &["nodes", "-o", "json"]);
    assert!(
        out.contains("\"worker-1\"") && !out.contains("worker-2"),
        "{out}"
    );
}

#[test]
fn plaintext_only_when_asked_for() {
    let data = tempfile::tempdir().unwrap();
    let out = collector_command(data.path(), "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-cert") && err.contains("--insecure"),
        "{err}"
    );
}
