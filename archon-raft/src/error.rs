//! The crate's error type.

/// What can go wrong opening or running a Raft node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory or its redb file cannot be used.
    #[error("data dir {path}: {message}")]
    DataDir {
        /// The path at fault.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The on-disk data is unreadable (corrupt or from an incompatible version).
    #[error("storage: {0}")]
    Storage(String),
    /// openraft refused or failed.
    #[error("raft: {0}")]
    Raft(String),
    /// A peer could not be reached or answered with an error.
    #[error("rpc to {peer}: {message}")]
    Rpc {
        /// The peer's address.
        peer: String,
        /// What went wrong.
        message: String,
    },
    /// The request must go to the leader.
    #[error("not the leader{}", .leader.as_deref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader {
        /// The leader's address, when known.
        leader: Option<String>,
    },
    /// Bad input, naming the field.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// The accepted form.
        message: String,
    },
}

impl From<Error> for archon_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLeader { leader } => archon_core::Error::NotLeader { leader },
            Error::Rpc { .. } => archon_core::Error::Unavailable(e.to_string()),
            Error::Invalid { field, message } => archon_core::Error::invalid(field, message),
            other => archon_core::Error::Internal(other.to_string()),
        }
    }
}
