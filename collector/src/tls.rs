//! TLS for the collector's listeners (rustls with ring; the handshakes are in
//! [`crate::listener`]) and the certificates it needs: `nodemedic-collector certs init`
//! makes a CA and the collector's server certificate, `certs agent` issues a node's client
//! certificate (its common name and DNS name are the node's name), `certs client` a
//! tooling certificate whose organisation carries a role (`nodemedic:viewer` or
//! `nodemedic:operator`, as Kubernetes carries groups). An agent's stream is accepted only
//! for the node its certificate names; a tooling certificate names no node.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::auth::{ROLE_ORG_PREFIX, Role};

/// File names in a certificate directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key (keep it off the nodes).
pub const CA_KEY: &str = "ca-key.pem";
/// The collector's certificate.
pub const SERVER_CERT: &str = "server.pem";
/// The collector's private key.
pub const SERVER_KEY: &str = "server-key.pem";

/// Why certificates could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be made or parsed.
    #[error("{0}")]
    Cert(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn cert_err(e: rcgen::Error) -> TlsError {
    TlsError::Cert(e.to_string())
}

fn valid_for(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Writes `file` in `dir`; private keys are readable by the owner only.
fn write(dir: &Path, file: &str, text: &str, private: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(file);
    let mut options = std::fs::File::options();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    let mut f = options.open(&path).map_err(io(&path))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io(&path))
}

/// Makes a CA and a server certificate for `dns` names and `ips` in `dir`.
pub fn init(dir: &Path, dns: &[String], ips: &[IpAddr], days: u32) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca.distinguished_name
        .push(DnType::CommonName, "nodemedic CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    valid_for(&mut ca, days);
    let ca_cert = ca.self_signed(&ca_key).map_err(cert_err)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(cert_err)?;
    let mut server = CertificateParams::new(dns.to_vec()).map_err(cert_err)?;
    server
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    server
        .distinguished_name
        .push(DnType::CommonName, "nodemedic-collector");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    valid_for(&mut server, days);
    let server_cert = server.signed_by(&key, &issuer).map_err(cert_err)?;

    write(dir, CA_CERT, &ca_cert.pem(), false)?;
    write(dir, CA_KEY, &issuer.key().serialize_pem(), true)?;
    write(dir, SERVER_CERT, &server_cert.pem(), false)?;
    write(dir, SERVER_KEY, &key.serialize_pem(), true)
}

/// The CA that `certs init` made, loaded to sign client certificates in memory (the load
/// generator signs one per simulated node; `certs agent` and `certs client` write theirs).
pub struct ClientIssuer {
    issuer: Issuer<'static, KeyPair>,
}

impl ClientIssuer {
    /// The CA in `dir` (`ca.pem`, `ca-key.pem`).
    pub fn from_dir(dir: &Path) -> Result<Self, TlsError> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path).map_err(io(&path))
        };
        let ca_key = KeyPair::from_pem(&read(CA_KEY)?).map_err(cert_err)?;
        let issuer = Issuer::from_ca_cert_pem(&read(CA_CERT)?, ca_key).map_err(cert_err)?;
        Ok(ClientIssuer { issuer })
    }

    /// A client certificate described by `params`, valid for `days`: (certificate, key),
    /// PEM.
    fn sign(&self, mut params: CertificateParams, days: u32) -> Result<(String, String), TlsError> {
        let key = KeyPair::generate().map_err(cert_err)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        valid_for(&mut params, days);
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// An agent's certificate for `node`, valid for `days`: (certificate, key), PEM.
    pub fn agent(&self, node: &str, days: u32) -> Result<(String, String), TlsError> {
        crate::validate::node_name(node).map_err(|e| TlsError::Cert(e.to_string()))?;
        let mut params = CertificateParams::new(vec![node.to_owned()]).map_err(cert_err)?;
        params.distinguished_name.push(DnType::CommonName, node);
        self.sign(params, days)
    }
}

/// Writes a client certificate and key as `<stem>.pem` and `<stem>-key.pem` in `dir`.
/// Answers their paths.
fn write_client(
    dir: &Path,
    stem: &str,
    (cert, key): (String, String),
) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_file, key_file) = (format!("{stem}.pem"), format!("{stem}-key.pem"));
    write(dir, &cert_file, &cert, false)?;
    write(dir, &key_file, &key, true)?;
    Ok((dir.join(cert_file), dir.join(key_file)))
}

/// Issues a client certificate for `node` with the CA in `dir`: `agent-<node>.pem` and
/// `agent-<node>-key.pem`. Answers their paths.
pub fn agent(dir: &Path, node: &str, days: u32) -> Result<(PathBuf, PathBuf), TlsError> {
    let pem = ClientIssuer::from_dir(dir)?.agent(node, days)?;
    write_client(dir, &format!("agent-{node}"), pem)
}

/// Issues a tooling client certificate for `name` with `role` with the CA in `dir`:
/// `client-<name>.pem` and `client-<name>-key.pem`. Answers their paths.
pub fn client(
    dir: &Path,
    name: &str,
    role: Role,
    days: u32,
) -> Result<(PathBuf, PathBuf), TlsError> {
    crate::validate::node_name(name).map_err(|e| TlsError::Cert(format!("client name: {e}")))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(
        DnType::OrganizationName,
        format!("{ROLE_ORG_PREFIX}{}", role.as_str()),
    );
    let pem = ClientIssuer::from_dir(dir)?.sign(params, days)?;
    write_client(dir, &format!("client-{name}"), pem)
}

/// The collector's TLS files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Its certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs agents' (and tooling's) client certificates (PEM).
    pub client_ca: PathBuf,
}

impl TlsFiles {
    /// The three files (what [`crate::reload::Reloading`] looks at for changes).
    pub fn paths(&self) -> Vec<PathBuf> {
        vec![self.cert.clone(), self.key.clone(), self.client_ca.clone()]
    }

    /// A server configuration offering `alpn`: the collector's certificate, and client
    /// certificates verified against the CA when a client presents one (tooling with a
    /// token, and the kubelet's probes, come without). The error names the bad file.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
        let bad = |path: &Path| {
            let path = path.display().to_string();
            move |e: rustls::Error| TlsError::Cert(format!("{path}: {e}"))
        };
        let pem = |path: &Path| {
            let path = path.display().to_string();
            move |e: rustls::pki_types::pem::Error| TlsError::Cert(format!("{path}: {e}"))
        };
        let certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, TlsError> {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(pem(path))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(pem(path))?;
            if certs.is_empty() {
                return Err(TlsError::Cert(format!(
                    "{}: no certificate",
                    path.display()
                )));
            }
            Ok(certs)
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in certs(&self.client_ca)? {
            roots.add(ca).map_err(bad(&self.client_ca))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Cert(format!("{}: {e}", self.client_ca.display())))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(pem(&self.key))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(bad(&self.cert))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&self.cert)?, key)
            .map_err(bad(&self.cert))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// The kubelet's own client identity: common name `system:node:<node>` in organisation
/// `system:nodes`, as the API server's Node authorizer reads it.
const KUBELET_CN_PREFIX: &str = "system:node:";
const KUBELET_ORG: &str = "system:nodes";

/// The node a verified client certificate names: its common name, which is either the
/// node's name (`certs agent`) or, for the kubelet's own client certificate
/// (`/var/lib/kubelet/pki/kubelet-client-current.pem`, signed by the cluster's CA), the
/// node in `system:node:<node>` when the organisation is `system:nodes`. Anything else in
/// the `system:node:` form names no node, and neither does a tooling certificate.
pub fn node_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    if subject
        .iter_organization()
        .any(|o| o.as_str().is_ok_and(|o| o.starts_with(ROLE_ORG_PREFIX)))
    {
        return None;
    }
    let cn = subject.iter_common_name().next()?.as_str().ok()?;
    match cn.strip_prefix(KUBELET_CN_PREFIX) {
        None => Some(cn.to_owned()),
        Some(node) => subject
            .iter_organization()
            .any(|o| o.as_str() == Ok(KUBELET_ORG))
            .then(|| node.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate with `cn` and `org` in its subject, in DER.
    fn subject(cn: &str, org: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(org) = org {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_kubelet_client_certificate_names_its_node() {
        let kubelet = subject(
            "system:node:ip-10-0-1-17.ec2.internal",
            Some("system:nodes"),
        );
        assert_eq!(
            node_of(&kubelet).as_deref(),
            Some("ip-10-0-1-17.ec2.internal")
        );
        assert_eq!(
            node_of(&subject("system:node:worker-1", None)),
            None,
            "the node form outside system:nodes names no node"
        );
        assert_eq!(
            node_of(&subject("system:node:worker-1", Some("system:masters"))),
            None
        );
        assert_eq!(
            node_of(&subject("worker-1", None)).as_deref(),
            Some("worker-1")
        );
    }

    #[test]
    fn an_agent_certificate_names_its_node() {
        let dir = tempfile::tempdir().unwrap();
        init(
            dir.path(),
            &["localhost".into()],
            &["127.0.0.1".parse().unwrap()],
            30,
        )
        .unwrap();
        let (cert, key) = agent(dir.path(), "node-a", 30).unwrap();
        let pem = std::fs::read_to_string(&cert).unwrap();
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents;
        assert_eq!(node_of(&der).as_deref(), Some("node-a"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            agent(dir.path(), "../etc", 30).is_err(),
            "hostile node names are refused"
        );
        let (cert, _) = client(dir.path(), "ci-bot", Role::Operator, 30).unwrap();
        let pem = std::fs::read_to_string(&cert).unwrap();
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents;
        assert_eq!(
            crate::auth::tooling_identity(&der),
            Some(("ci-bot".to_owned(), Role::Operator))
        );
        assert_eq!(node_of(&der), None, "a tooling certificate names no node");
    }
}
