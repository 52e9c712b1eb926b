//! Which runtimes a node has (the configured sockets, or the usual ones that exist) and
//! what one of them holds now.

use crate::host::HostRoot;

use super::{
    RuntimeError, cri, docker,
    inventory::{Inventory, RuntimeKind},
};

/// Docker's socket when none is configured.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The runtime sockets the configuration names (host paths); `None`: the usual ones that
/// exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sockets {
    /// Docker's socket; default `/var/run/docker.sock`, used when present.
    pub docker: Option<String>,
    /// The CRI socket (`unix://` allowed); default the first of [`cri::DEFAULT_ENDPOINTS`]
    /// present.
    pub cri: Option<String>,
}

/// A runtime socket to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The API it speaks.
    pub kind: RuntimeKind,
    /// The socket as the node names it.
    pub host_path: String,
    /// Named in the configuration: it must exist.
    pub configured: bool,
}

impl Endpoint {
    /// The runtimes to ask on this host: the configured sockets, or the default ones that
    /// exist.
    pub fn discover(host: &HostRoot, sockets: &Sockets) -> Vec<Endpoint> {
        let mut found = Vec::new();
        let docker = sockets.docker.as_deref();
        if docker.is_some() || host.path(DEFAULT_DOCKER_SOCKET).exists() {
            found.push(Endpoint {
                kind: RuntimeKind::Docker,
                host_path: docker.unwrap_or(DEFAULT_DOCKER_SOCKET).to_owned(),
                configured: docker.is_some(),
            });
        }
        match sockets.cri.as_deref() {
            Some(e) => found.push(Endpoint {
                kind: RuntimeKind::Cri,
                host_path: e.trim_start_matches("unix://").to_owned(),
                configured: true,
            }),
            None => found.extend(
                cri::DEFAULT_ENDPOINTS
                    .iter()
                    .find(|p| host.path(p).exists())
                    .map(|p| Endpoint {
                        kind: RuntimeKind::Cri,
                        host_path: (*p).to_owned(),
                        configured: false,
                    }),
            ),
        }
        found
    }

    /// What the runtime holds now (`cache` spares Docker a full measurement when nothing
    /// changed since the last one).
    pub async fn inventory(
        &self,
        host: &HostRoot,
        timeout: std::time::Duration,
        cache: &mut docker::Cache,
    ) -> Result<Inventory, RuntimeError> {
        let socket = host.path(&self.host_path);
        if !socket.exists() {
            return Err(RuntimeError::NoSocket(socket));
        }
        let ask = async {
            match self.kind {
                RuntimeKind::Docker => {
                    docker::inventory(&docker::connect(&socket, timeout).await?, cache).await
                }
                RuntimeKind::Cri => cri::inventory(cri::connect(&socket, timeout).await?).await,
            }
        };
        tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| RuntimeError::Timeout(timeout))?
    }
}
