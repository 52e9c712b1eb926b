//! The collector's cluster view against the tests' own API server (objects built around
//! real recorded ones: a quota that refused a ReplicaSet's pods, a claim whose storage
//! class does not exist), plus a TLS Secret holding a certificate that expires in two days:
//! its findings are stored, become incidents with their commands, and the name it reports
//! as is refused to agents.

use std::time::{Duration, SystemTime};

use nodemedic_agent::testing::FakeApiServer;
use nodemedic_tests::{CollectorProcess, agent, cli, eventually};
use serde_json::Value;

fn built(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../agent/tests/fixtures/kube")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A TLS Secret whose certificate (rcgen-made) expires in two days.
fn tls_secret() -> Value {
    use k8s_openapi::{ByteString, api::core::v1::Secret};
    let mut params = rcgen::CertificateParams::new(vec!["shop.example.com".to_owned()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(88);
    params.not_after = now + time::Duration::days(2);
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("shop-tls".into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_owned(), ByteString(pem.into_bytes())),
                (
                    "tls.key".to_owned(),
                    ByteString(key.serialize_pem().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let mut v = serde_json::to_value(secret).unwrap();
    v["apiVersion"] = Value::from("v1");
    v["kind"] = Value::from("Secret");
    v
}

#[test]
fn quotas_claims_and_certificates_become_incidents() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(FakeApiServer::start());
    let now = SystemTime::now();
    let mut refused = built("built-around-issue-moj-cloud-platform-590-exceeded-quota.event.json");
    refused["lastTimestamp"] = Value::from(rfc3339(now - Duration::from_secs(60)));
    let mut provisioning = built("built-around-issue-fastdfs-6-storageclass-not-found.event.json");
    provisioning["lastTimestamp"] = Value::from(rfc3339(now - Duration::from_secs(11)));
    let mut pvc = built("built-around-issue-fastdfs-6-storageclass-not-found.pvc.json");
    pvc["metadata"]["creationTimestamp"] = Value::from(rfc3339(now - Duration::from_secs(71 * 60)));
    api.set("events", vec![refused, provisioning]);
    api.set(
        "resourcequotas",
        vec![built(
            "built-around-issue-moj-cloud-platform-590-namespace-quota.resourcequota.json",
        )],
    );
    api.set("persistentvolumeclaims", vec![pvc]);
    // A Secret of another type is never parsed as a certificate.
    let mut opaque = tls_secret();
    opaque["type"] = Value::from("Opaque");
    opaque["metadata"]["name"] = Value::from("not-tls");
    api.set("secrets", vec![tls_secret(), opaque]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());

    let collector = CollectorProcess::start_with(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--insecure",
            "--cluster-view",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--cluster-view-every",
            "1s",
        ],
    );
    let url = &collector.grpc_url;
    let findings = eventually(
        Duration::from_secs(30),
        "the cluster view's findings",
        || {
            let (code, out) = cli(&["--collector", url, "findings", "-o", "json"]);
            assert_eq!(code, 0, "{out}");
            let v: Value = serde_json::from_str(&out).unwrap();
            let found: Vec<(String, String, String)> = v["findings"]
                .as_array()?
                .iter()
                .map(|f| {
                    (
                        f["check"].as_str().unwrap().to_owned(),
                        f["subject"].as_str().unwrap().to_owned(),
                        f["node"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (found.len() >= 5).then_some(found)
        },
    );
    let has = |check: &str, subject: &str| {
        findings
            .iter()
            .any(|(c, s, n)| c == check && s == subject && n == "nodemedic-cluster")
    };
    assert!(
        has(
            "cluster.quota_near_limit",
            "allocation-manager/namespace-quota/limits.cpu"
        ),
        "{findings:#?}"
    );
    assert!(has(
        "cluster.quota_near_limit",
        "allocation-manager/namespace-quota/limits.memory"
    ));
    assert!(has(
        "cluster.quota_exceeded",
        "allocation-manager/ReplicaSet/allocation-manager-6597bc46dc"
    ));
    assert!(has(
        "cluster.pvc_pending",
        "default/storage0-data-fastdfs-group0-storage0-0"
    ));
    assert!(has("cluster.cert_expiry", "Secret shop/shop-tls"));
    assert!(
        !findings.iter().any(|(_, s, _)| s.contains("not-tls")),
        "{findings:#?}"
    );

    let (code, out) = eventually(Duration::from_secs(30), "the incidents", || {
        let (code, out) = cli(&["--collector", url, "node", "nodemedic-cluster"]);
        (out.contains("quota-near-limit") && out.contains("cert-expiring")).then_some((code, out))
    });
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("kubectl describe resourcequota -n allocation-manager namespace-quota"),
        "the commands with the real names: {out}"
    );
    assert!(
        out.contains("kubectl describe pvc -n default storage0-data-fastdfs-group0-storage0-0"),
        "{out}"
    );

    // No agent may report as the cluster view.
    let host = nodemedic_agent::testing::FakeHost::new();
    let mut impostor = agent(url, "nodemedic-cluster", host.root().dir(), &["--once"]);
    let status = impostor.0.wait().unwrap();
    assert!(
        !status.success(),
        "an agent named nodemedic-cluster is refused"
    );
}
