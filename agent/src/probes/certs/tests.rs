use rcgen::{CertificateParams, DnType, KeyPair};

use super::*;
use crate::testing::FakeHost;

const DAY: i64 = 86_400;

/// A real self-signed certificate for `cn` valid from `from` to `until` seconds around now,
/// as PEM, with its private key after it when `with_key` (the kubelet's client file holds
/// both).
fn pem(cn: &str, from: i64, until: i64, with_key: bool) -> String {
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = now + time::Duration::seconds(from);
    params.not_after = now + time::Duration::seconds(until);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap().pem();
    if with_key {
        format!("{cert}{}", key.serialize_pem())
    } else {
        cert
    }
}

/// The kubelet's pki as the kubelet leaves it: the current client file a link to the
/// newest dated one, an older expired one beside it, and a self-signed serving pair.
fn kubelet_pki(host: &FakeHost, client: &str) {
    host.write(
        "/var/lib/kubelet/pki/kubelet-client-2024-01-01-00-00-00.pem",
        &pem("system:node:node-1", -800 * DAY, -400 * DAY, true),
    );
    host.write(
        "/var/lib/kubelet/pki/kubelet-client-2026-11-30-10-00-00.pem",
        client,
    );
    std::os::unix::fs::symlink(
        "/var/lib/kubelet/pki/kubelet-client-2026-11-30-10-00-00.pem",
        host.root()
            .path("/var/lib/kubelet/pki/kubelet-client-current.pem"),
    )
    .unwrap();
    host.write(
        "/var/lib/kubelet/pki/kubelet.crt",
        &pem("node-1@1700000000", -30 * DAY, 335 * DAY, false),
    );
    host.write(
        "/var/lib/kubelet/pki/kubelet.key",
        "-----BEGIN PRIVATE KEY-----\n",
    );
}

fn run(probe: &CertsProbe, host: &FakeHost) -> (CertsSection, Vec<Finding>) {
    let out = probe
        .run(&ProbeContext {
            host: host.root(),
            now: SystemTime::now(),
        })
        .unwrap();
    let Section::Certs(s) = out.section else {
        panic!("not a certs section")
    };
    (s, out.findings)
}

fn checks(findings: &[Finding]) -> Vec<(&str, &str, Severity)> {
    findings
        .iter()
        .map(|f| (f.check.as_str(), f.subject.as_str(), f.severity()))
        .collect()
}

#[test]
fn the_kubelets_current_client_certificate_expiring_names_what_breaks() {
    let host = FakeHost::new();
    kubelet_pki(&host, &pem("system:node:node-1", -DAY, 3 * DAY, true));
    let (s, findings) = run(&CertsProbe::new(CertsConfig::default()), &host);
    let roles: Vec<(&str, &str)> = s
        .certificates
        .iter()
        .map(|c| (c.path.as_str(), c.role.as_str()))
        .collect();
    // The old dated file is not judged: the link says which one is current.
    assert_eq!(
        roles,
        [
            (
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
                "kubelet-client"
            ),
            ("/var/lib/kubelet/pki/kubelet.crt", "kubelet-serving"),
        ]
    );
    assert_eq!(s.certificates[0].subject, "CN=system:node:node-1");
    assert!((s.certificates[0].lifetime_used_percent - 25.0).abs() < 0.1);
    assert_eq!(
        checks(&findings),
        [(
            "certs.expiry",
            "/var/lib/kubelet/pki/kubelet-client-current.pem",
            Severity::Warning
        )]
    );
    let m = &findings[0].message;
    assert!(
        m.contains("NotReady") && m.contains("--write-kubeconfig"),
        "{m}"
    );
}

#[test]
fn hours_left_and_expired_are_critical_and_late_rotation_is_info() {
    let probe = CertsProbe::new(CertsConfig::default());
    for (from, until, want, words) in [
        (-DAY, 3_600 * 5, Some(Severity::Critical), "in 4h"),
        (-DAY, -60, Some(Severity::Critical), "expired at"),
        (-85 * DAY, 15 * DAY, Some(Severity::Info), "85% through"),
        (-DAY, 99 * DAY, None, ""),
    ] {
        let host = FakeHost::new();
        kubelet_pki(&host, &pem("system:node:node-1", from, until, true));
        let (_, findings) = run(&probe, &host);
        assert_eq!(
            findings.first().map(Finding::severity),
            want,
            "{findings:?}"
        );
        if let Some(f) = findings.first() {
            assert!(f.message.contains(words), "{words}: {}", f.message);
        }
    }
}

#[test]
fn configured_files_and_directories_and_the_agents_own() {
    let host = FakeHost::new();
    host.write(
        "/etc/ssl/webhook/tls.crt",
        &pem("webhook", -DAY, 2 * DAY, false),
    );
    host.write("/etc/ssl/webhook/tls.key", "-----BEGIN PRIVATE KEY-----\n");
    host.write("/etc/ssl/webhook/notes.pem", "not a certificate\n");
    let own = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(own.path(), pem("node-1", -DAY, 3_000, false)).unwrap();
    let probe = CertsProbe::new(CertsConfig {
        paths: vec!["/etc/ssl/webhook".into(), "/etc/missing.pem".into()],
        agent_certificate: Some(own.path().display().to_string()),
        ..CertsConfig::default()
    });
    let (_, findings) = run(&probe, &host);
    let own_path = own.path().display().to_string();
    assert_eq!(
        checks(&findings),
        [
            ("certs.expiry", own_path.as_str(), Severity::Critical),
            (
                "certs.expiry",
                "/etc/ssl/webhook/tls.crt",
                Severity::Warning
            ),
            ("certs.unreadable", "/etc/missing.pem", Severity::Warning),
        ]
    );
    assert!(
        findings[0]
            .message
            .contains("mTLS connection to the collector")
    );
}

#[test]
fn the_kubelets_config_names_its_files() {
    let host = FakeHost::new();
    host.write(
        "/etc/kubernetes/kubelet.conf",
        "apiVersion: v1\nkind: Config\nusers:\n- name: default-auth\n  user:\n    client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem\n    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n",
    );
    host.write(
        crate::kubelet::CONFIG_PATH,
        "tlsCertFile: /etc/kubernetes/pki/kubelet-serving.crt\n",
    );
    let (s, findings) = run(&CertsProbe::new(CertsConfig::default()), &host);
    assert_eq!(
        checks(&findings),
        [
            (
                "certs.unreadable",
                "/var/lib/kubelet/pki/kubelet-client-current.pem",
                Severity::Warning
            ),
            (
                "certs.unreadable",
                "/etc/kubernetes/pki/kubelet-serving.crt",
                Severity::Warning
            ),
        ]
    );
    assert!(s.certificates[0].error.contains("cannot read"), "{s:?}");
}

#[test]
fn a_certificate_made_by_openssl() {
    let host = FakeHost::new();
    let dir = host.root().path("/etc/ssl/app");
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=app.example/O=nodemedic",
        ])
        .arg("-keyout")
        .arg(dir.join("app.key"))
        .arg("-out")
        .arg(dir.join("app.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success());
    let probe = CertsProbe::new(CertsConfig {
        paths: vec!["/etc/ssl/app/app.pem".into()],
        ..CertsConfig::default()
    });
    let (s, findings) = run(&probe, &host);
    assert_eq!(s.certificates[0].subject, "CN=app.example, O=nodemedic");
    assert_eq!(
        checks(&findings),
        [("certs.expiry", "/etc/ssl/app/app.pem", Severity::Warning)]
    );
}
