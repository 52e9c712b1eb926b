//! The container runtimes on the node, as clients: Docker through its Engine API
//! ([`docker`], bollard), CRI runtimes (containerd, CRI-O, cri-dockerd) through the CRI v1
//! gRPC API ([`cri`]), both answering with an [`inventory::Inventory`] of images and
//! reclaimable space; [`endpoint`] finds which runtimes a node has and asks one. Used by the
//! image probe, the cgroups probe (container names from the CRI) and image remediation.

pub mod cri;
pub mod docker;
pub mod endpoint;
pub mod inventory;

use std::path::PathBuf;

/// A runtime that could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The Docker Engine API failed.
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// The CRI API failed.
    #[error("cri: {0}")]
    Cri(String),
    /// The runtime did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// A configured socket is not there.
    #[error("{0} does not exist")]
    NoSocket(PathBuf),
}
