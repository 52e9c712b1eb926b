//! TLS between agents, the CLI and the collector, as real processes: certificates made by
//! `nodemedic-collector certs`, an agent's report accepted only for the node its
//! certificate names; a wrong node, no certificate, and an expired certificate refused;
//! plaintext refused unless asked for; the kubelet's own client certificate accepted for
//! its node; a certificate renewed on disk used without restarting the agent, and the
//! collector's own certificates and client CA replaced without restarting the collector.
//! Tooling's access: bearer tokens and role certificates, viewer and operator, on the gRPC
//! API and the HTTPS bundle route; the token file read again when it changes.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use nodemedic_agent::testing::FakeHost;
use nodemedic_tests::{
    CollectorProcess, agent, binary, certs, collector_command, eventually, http_get, https_get,
};

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).to_str().unwrap().to_owned()
}

/// A collector serving TLS, and the tokens tooling calls it with.
struct TlsCollector {
    process: CollectorProcess,
    url: String,
    /// `https://` needs the CA of the collector's certificate.
    ca: String,
    /// The token file the collector reads.
    token_file: PathBuf,
    viewer: String,
    operator: String,
}

/// `nodemedic-collector tokens add FILE --name NAME --role ROLE`: the new token.
fn add_token(file: &Path, name: &str, role: &str) -> String {
    let out = Command::new(binary("nodemedic-collector"))
        .args(["tokens", "add"])
        .arg(file)
        .args(["--name", name, "--role", role])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A collector on 127.0.0.1 serving TLS with the certificate `certs init` made in
/// `certs_dir`, trusting client certificates signed by `client_ca`, with a token file of
/// one viewer and one operator; its data in `dir`.
fn tls_collector(dir: &Path, certs_dir: &Path, client_ca: &str) -> TlsCollector {
    let token_file = dir.join("tokens");
    let viewer = add_token(&token_file, "vera", "viewer");
    let operator = add_token(&token_file, "otto", "operator");
    let process = CollectorProcess::start_with(
        &dir.join("data"),
        "127.0.0.1:0",
        &[
            "--tls-cert",
            &path(certs_dir, "server.pem"),
            "--tls-key",
            &path(certs_dir, "server-key.pem"),
            "--client-ca",
            client_ca,
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    TlsCollector {
        url: process.grpc_url.clone(),
        ca: path(certs_dir, "ca.pem"),
        process,
        token_file,
        viewer,
        operator,
    }
}

/// `nodemedic --ca CA ARGS` against the collector (no `--ca` when `ca` is empty: plaintext)
/// with `token` in NODEMEDIC_TOKEN; (exit code, stdout, stderr).
fn cli_as(url: &str, ca: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(binary("nodemedic"));
    cmd.args(["--collector", url]);
    if !ca.is_empty() {
        cmd.args(["--ca", ca]);
    }
    cmd.args(args).env_remove("NODEMEDIC_TOKEN");
    if let Some(token) = token {
        cmd.env("NODEMEDIC_TOKEN", token);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl TlsCollector {
    /// `nodemedic ARGS` as the viewer.
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli_as(&self.url, &self.ca, Some(&self.viewer), args)
    }

    /// GET `path` on the HTTPS listener with `token`.
    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let (status, body) = https_get(&self.process.http_addr, path, Path::new(&self.ca), token);
        (status, String::from_utf8_lossy(&body).into_owned())
    }
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
    let url = collector.url.clone();
    assert!(url.starts_with("https://localhost:"), "{url}");
    assert_eq!(collector.get("/readyz", None), (200, "ready\n".to_owned()));
    let host = FakeHost::new();
    let node_a = (
        path(&certs_dir, "agent-node-a.pem"),
        path(&certs_dir, "agent-node-a-key.pem"),
    );
    let cert_a = Some((node_a.0.as_str(), node_a.1.as_str()));

    // Its own node: stored.
    let (ok, err) = agent_once(&url, &ca, "node-a", cert_a, &host);
    assert!(ok, "{err}");
    let (code, out, err) = collector.cli(&["nodes", "-o", "json"]);
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
    let (_, out, _) = collector.cli(&["nodes", "-o", "json"]);
    assert!(!out.contains("node-b") && !out.contains("node-c"), "{out}");
    let metrics = eventually(Duration::from_secs(5), "the refusals counted", || {
        let (_, body) = collector.get("/metrics", None);
        (nodemedic_tests::refused(&body, "identity") >= 1.0).then_some(body)
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
    let url = collector.url.clone();
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
    let (_, out, _) = collector.cli(&["nodes", "-o", "json"]);
    assert!(!out.contains("node-r"), "expired: refused: {out}");
    certs(&["agent", c, "--node", "node-r"]);
    eventually(
        Duration::from_secs(30),
        "the renewed certificate used",
        || {
            let (_, out, _) = collector.cli(&["nodes", "-o", "json"]);
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
    let (url, ca) = (collector.url.clone(), collector.ca.clone());
    let host = FakeHost::new();
    let kubelet = Some((current.as_str(), current.as_str()));
    let (ok, err) = agent_once(&url, &ca, "worker-1", kubelet, &host);
    assert!(ok, "{err}");
    let (ok, err) = agent_once(&url, &ca, "worker-2", kubelet, &host);
    assert!(!ok);
    assert!(err.contains("may not report for"), "{err}");
    let (_, out, _) = collector.cli(&["nodes", "-o", "json"]);
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
    // Asked for: /readyz says so, and whether every caller may operate.
    let open = CollectorProcess::start(&data.path().join("open"), "127.0.0.1:0");
    let (_, body) = http_get(&open.http_addr, "/readyz");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "ready (insecure: plaintext, agents not identified, every caller may operate)\n"
    );
    let tokens = data.path().join("tokens");
    add_token(&tokens, "vera", "viewer");
    let with_tokens = CollectorProcess::start_with(
        &data.path().join("tokens-data"),
        "127.0.0.1:0",
        &["--insecure", "--token-file", tokens.to_str().unwrap()],
    );
    let (_, body) = http_get(&with_tokens.http_addr, "/readyz");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "ready (insecure: plaintext, agents not identified)\n"
    );
    let (code, _, err) = cli_as(&with_tokens.grpc_url, "", None, &["nodes"]);
    assert_ne!(code, 0, "a token file closes even a plaintext collector");
    assert!(err.contains("no credentials"), "{err}");
}

/// A client and a collector that disagree on TLS get an error that says so and what to do.
#[test]
fn a_tls_mismatch_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    certs(&["init", certs_dir.to_str().unwrap()]);
    let tls = tls_collector(dir.path(), &certs_dir, &path(&certs_dir, "ca.pem"));
    let plain = CollectorProcess::start(&dir.path().join("plain"), "127.0.0.1:0");
    let port = |url: &str| url.rsplit(':').next().unwrap().to_owned();

    // Plaintext to a TLS listener.
    let url = format!("http://127.0.0.1:{}", port(&tls.url));
    let (code, _, err) = cli_as(&url, "", Some(&tls.viewer), &["nodes"]);
    assert_ne!(code, 0);
    assert!(err.contains("hint") && err.contains("https://"), "{err}");
    // TLS to a plaintext listener.
    let url = format!("https://localhost:{}", port(&plain.grpc_url));
    let (code, _, err) = cli_as(&url, &tls.ca, None, &["nodes"]);
    assert_ne!(code, 0);
    assert!(err.contains("hint") && err.contains("http://"), "{err}");
    // https:// with no CA to trust.
    let (code, _, err) = cli_as(&tls.url, "", Some(&tls.viewer), &["nodes"]);
    assert_ne!(code, 0);
    assert!(err.contains("hint") && err.contains("--ca"), "{err}");
}

/// Tooling's access: no credentials, a viewer, an operator, role certificates, and an
/// agent's certificate, on the gRPC API and the HTTPS bundle route; a token added to or
/// removed from the file takes effect without a restart.
#[test]
fn tooling_calls_need_a_role() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs_dir = d.join("certs");
    let c = certs_dir.to_str().unwrap();
    certs(&["init", c]);
    certs(&["client", c, "--name", "dashboard", "--role", "viewer"]);
    certs(&["client", c, "--name", "ci-bot", "--role", "operator"]);
    certs(&["agent", c, "--node", "node-a"]);
    let ca = path(&certs_dir, "ca.pem");
    let collector = tls_collector(d, &certs_dir, &ca);
    let (url, viewer, operator) = (&collector.url, &collector.viewer, &collector.operator);

    // gRPC: nothing, a viewer, an operator.
    let (code, _, err) = cli_as(url, &ca, None, &["nodes"]);
    assert_ne!(code, 0);
    assert!(err.contains("no credentials"), "{err}");
    let (code, _, err) = cli_as(url, &ca, Some("not-a-token"), &["nodes"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown token"), "{err}");
    let (code, _, err) = cli_as(url, &ca, Some(viewer), &["nodes"]);
    assert_eq!(code, 0, "{err}");
    let bundle = d.join("b.tar.zst");
    let b = bundle.to_str().unwrap();
    for operator_only in [
        &["collect"][..],
        &["remediate", "apply", "node-a", "plan-1"],
        &["bundle", "-f", b, "--no-redact"],
    ] {
        let (code, _, err) = cli_as(url, &ca, Some(viewer), operator_only);
        assert_ne!(code, 0, "{operator_only:?}");
        assert!(
            err.contains("token:vera is a viewer") && err.contains("needs an operator"),
            "{operator_only:?}: {err}"
        );
    }
    let (code, _, err) = cli_as(url, &ca, Some(viewer), &["bundle", "-f", b]);
    assert_eq!(code, 0, "a viewer gets a redacted bundle: {err}");
    let (code, _, err) = cli_as(
        url,
        &ca,
        Some(operator),
        &["bundle", "-f", b, "--no-redact"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli_as(url, &ca, Some(operator), &["collect"]);
    assert_eq!(code, 0, "{err}");
    // An operator's apply is recorded with who they are, before it is sent (node-a has
    // no agent connected, so it fails, and the record says so).
    let (code, _, _) = cli_as(
        url,
        &ca,
        Some(operator),
        &["remediate", "apply", "node-a", "plan-1"],
    );
    assert_ne!(code, 0);
    let (code, out, err) = cli_as(
        url,
        &ca,
        Some(viewer),
        &["remediate", "history", "-o", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let history: serde_json::Value = serde_json::from_str(&out).unwrap();
    let record = &history["records"][0];
    assert_eq!(record["caller"], "token:otto", "{history:#}");
    assert!(
        record["error"].as_str().unwrap().contains("node-a"),
        "{history:#}"
    );
    // The token from a file (--token-file) works like the variable.
    let token_file = d.join("my-token");
    std::fs::write(&token_file, format!("{viewer}\n")).unwrap();
    let (code, _, err) = cli_as(
        url,
        &ca,
        None,
        &["--token-file", token_file.to_str().unwrap(), "nodes"],
    );
    assert_eq!(code, 0, "{err}");

    // Certificates: a role certificate is a caller; an agent's certificate is not.
    let with_cert = |name: &str, args: &[&str]| {
        let (cert, key) = (
            path(&certs_dir, &format!("{name}.pem")),
            path(&certs_dir, &format!("{name}-key.pem")),
        );
        cli_as(
            url,
            &ca,
            None,
            &[&["--cert", &cert, "--key", &key][..], args].concat(),
        )
    };
    let (code, _, err) = with_cert("client-dashboard", &["nodes"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = with_cert("client-dashboard", &["collect"]);
    assert_ne!(code, 0);
    assert!(err.contains("cert:dashboard is a viewer"), "{err}");
    // The web console to a browser holding a role certificate: no login needed.
    let (status, body) = nodemedic_tests::https_get_as(
        &collector.process.http_addr,
        "/console/",
        Path::new(&ca),
        None,
        Some((
            Path::new(&path(&certs_dir, "client-dashboard.pem")),
            Path::new(&path(&certs_dir, "client-dashboard-key.pem")),
        )),
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cert:dashboard (viewer)"), "{body}");
    let (code, _, err) = with_cert("client-ci-bot", &["collect"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = with_cert("agent-node-a", &["nodes"]);
    assert_ne!(code, 0, "an agent's certificate carries no role");
    assert!(err.contains("no credentials"), "{err}");

    // HTTPS: the bundle route as curl would call it.
    let (status, body) = collector.get("/api/v1/bundle", None);
    assert_eq!(status, 401, "{body}");
    let (status, _) = collector.get("/api/v1/bundle", Some(viewer));
    assert_eq!(status, 200);
    let (status, body) = collector.get("/api/v1/bundle?no_redact=true", Some(viewer));
    assert_eq!(status, 403, "{body}");
    let (status, _) = collector.get("/api/v1/bundle?no_redact=true", Some(operator));
    assert_eq!(status, 200);
    // The web console on the same listener and TLS, to the same tokens.
    let (status, body) = collector.get("/console/", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Log in"), "{body}");
    let (status, body) = collector.get("/console/", Some(viewer));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("token:vera (viewer)"), "{body}");
    let (_, metrics) = collector.get("/metrics", None);
    for line in [
        r#"nodemedic_denied_total{call="ListNodes",reason="unauthenticated"} 3"#,
        r#"nodemedic_denied_total{call="TriggerCollection",reason="forbidden"} 2"#,
        r#"nodemedic_denied_total{call="ApplyRemediation",reason="forbidden"} 1"#,
        r#"nodemedic_denied_total{call="DownloadBundle",reason="forbidden"} 1"#,
        r#"nodemedic_denied_total{call="GET /api/v1/bundle",reason="forbidden"} 1"#,
        r#"nodemedic_denied_total{call="GET /api/v1/bundle",reason="unauthenticated"} 1"#,
        r#"nodemedic_denied_total{call="GET /console",reason="unauthenticated"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // The token file changes: a new token works, a removed one stops working.
    let nina = add_token(&collector.token_file, "nina", "viewer");
    eventually(Duration::from_secs(10), "a token added to the file", || {
        (cli_as(url, &ca, Some(&nina), &["nodes"]).0 == 0).then_some(())
    });
    let kept: String = std::fs::read_to_string(&collector.token_file)
        .unwrap()
        .lines()
        .filter(|l| !l.ends_with(" vera"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&collector.token_file, kept).unwrap();
    eventually(
        Duration::from_secs(10),
        "a token removed from the file",
        || (cli_as(url, &ca, Some(viewer), &["nodes"]).0 != 0).then_some(()),
    );
}

/// The collector's own certificate, key and client CA replaced on disk (a new CA, as when
/// cert-manager reissues them) are used without a restart: clients that trust only the new
/// CA get in, agents with certificates of the new CA report, and the old CA is no longer
/// presented.
#[test]
fn the_collector_uses_renewed_certificates_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (old, new, live) = (d.join("old"), d.join("new"), d.join("live"));
    certs(&["init", old.to_str().unwrap()]);
    certs(&["init", new.to_str().unwrap()]);
    certs(&["agent", new.to_str().unwrap(), "--node", "node-n"]);
    std::fs::create_dir_all(&live).unwrap();
    let install = |from: &Path| {
        for file in ["server.pem", "server-key.pem", "ca.pem"] {
            // Written to a temporary name and renamed, as a Secret volume swaps its files.
            let tmp = live.join(format!(".{file}"));
            std::fs::copy(from.join(file), &tmp).unwrap();
            std::fs::rename(&tmp, live.join(file)).unwrap();
        }
    };
    install(&old);
    let collector = tls_collector(d, &live, &path(&live, "ca.pem"));
    let (url, viewer) = (&collector.url, &collector.viewer);
    let (old_ca, new_ca) = (path(&old, "ca.pem"), path(&new, "ca.pem"));
    assert_eq!(cli_as(url, &old_ca, Some(viewer), &["nodes"]).0, 0);
    assert_ne!(cli_as(url, &new_ca, Some(viewer), &["nodes"]).0, 0);

    install(&new);
    eventually(
        Duration::from_secs(10),
        "the new certificate served",
        || (cli_as(url, &new_ca, Some(viewer), &["nodes"]).0 == 0).then_some(()),
    );
    assert_ne!(
        cli_as(url, &old_ca, Some(viewer), &["nodes"]).0,
        0,
        "the old CA's certificate is no longer presented"
    );
    let host = FakeHost::new();
    let (cert, key) = (
        path(&new, "agent-node-n.pem"),
        path(&new, "agent-node-n-key.pem"),
    );
    let (ok, err) = agent_once(url, &new_ca, "node-n", Some((&cert, &key)), &host);
    assert!(ok, "an agent certificate of the new client CA: {err}");
    let (status, body) = https_get(
        &collector.process.http_addr,
        "/metrics",
        Path::new(&new_ca),
        None,
    );
    let metrics = String::from_utf8(body).unwrap();
    assert_eq!(status, 200);
    // Both series exist from the start (at 0); each has counted a reload now.
    for what in ["TLS (grpc)", "TLS (http)"] {
        let series = format!("nodemedic_reloads_total{{what=\"{what}\",result=\"ok\"}}");
        assert!(
            nodemedic_tests::sample(&metrics, &series).is_some_and(|n| n >= 1.0),
            "{series}: {metrics}"
        );
    }
}
