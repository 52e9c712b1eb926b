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
