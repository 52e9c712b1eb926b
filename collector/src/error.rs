//! The collector's errors, and their one conversion to a gRPC status.

use tonic::Status;

/// Something the collector could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed (disk full, corrupt database, ...).
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The request or report is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The named node is not known.
    #[error("no node named {0:?}")]
    UnknownNode(String),
    /// No incident has this id (or it is past retention).
    #[error("no incident {0}")]
    UnknownIncident(u64),
    /// The node's agent is not connected.
    #[error("node {0:?} has no connected agent")]
    NotConnected(String),
    /// Another live stream already reports as this node.
    #[error("node {0:?} is already reporting on another stream; a node runs one agent")]
    AlreadyConnected(String),
    /// The agent refused or could not run an action.
    #[error("the agent did not act: {0}")]
    Action(String),
    /// The collector is shutting down or its writer stopped.
    #[error("the collector is not accepting writes: {0}")]
    Unavailable(String),
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let message = e.to_string();
        match e {
            Error::Store(_) | Error::Unavailable(_) => Status::unavailable(message),
            Error::Invalid(_) => Status::invalid_argument(message),
            Error::UnknownNode(_) | Error::UnknownIncident(_) | Error::NotConnected(_) => {
                Status::not_found(message)
            }
            Error::AlreadyConnected(_) => Status::already_exists(message),
            Error::Action(_) => Status::failed_precondition(message),
        }
    }
}
