//! The client side of TLS to the collector, shared by the agent and the CLI: the CA that
//! signed the collector's certificate, and optionally a client certificate (an agent's
//! names its node).

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Where a client's TLS files are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA of the collector's certificate (PEM).
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM) ...
    pub cert: Option<PathBuf>,
    /// ... and its key (PEM).
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// tonic's configuration for these files; `None` when no CA is given (plaintext, or
    /// the system's roots are not used: the collector's CA must be named). The error names
    /// the file that could not be read.
    pub fn config(&self) -> Result<Option<ClientTlsConfig>, String> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => return Err("a client certificate needs both its file and its key".into()),
        }
        Ok(Some(config))
    }
}

/// What to do when an error says the two ends disagree on TLS: a plaintext client talking
/// to a TLS listener, or the reverse, or `https://` without a CA given. `None` for any
/// other error.
pub fn mismatch_hint(error: &str) -> Option<&'static str> {
    if error.contains("InvalidContentType") || error.contains("corrupt message") {
        Some(
            "the collector answers in plaintext: use an http:// URL (a collector started with --insecure), or give the collector TLS",
        )
    } else if error.contains("HTTPS without TLS enabled") {
        Some("an https:// collector needs its CA: give --ca FILE (NODEMEDIC_CA)")
    } else if error.contains("h2 protocol error")
        || error.contains("frame with invalid size")
        // A TLS listener closing on the plaintext preface, before the HTTP/2 handshake
        // read its alert (which form depends on timing).
        || error.contains("stream closed because of a broken pipe")
        || error.ends_with("operation was canceled: connection closed")
    {
        Some(
            "the collector did not answer in plaintext HTTP/2: it may serve TLS; use an https:// URL with --ca",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errors_of_a_tls_mismatch_get_a_hint() {
        assert!(
            mismatch_hint("transport error: received corrupt message of type InvalidContentType")
                .unwrap()
                .contains("http://")
        );
        assert!(
            mismatch_hint("Connecting to HTTPS without TLS enabled")
                .unwrap()
                .contains("--ca")
        );
        assert!(
            mismatch_hint("Internal error: h2 protocol error: http2 error")
                .unwrap()
                .contains("https://")
        );
        for closed in [
            "transport error: transport error: connection error: stream closed because of a broken pipe",
            "operation was canceled: transport error: operation was canceled: connection closed",
        ] {
            assert!(
                mismatch_hint(closed).unwrap().contains("https://"),
                "{closed}"
            );
        }
        assert_eq!(mismatch_hint("connection refused"), None);
    }
}
