//! archon-core's error type. Rejections by the state machine are carried as they
//! are, so callers can match on them rather than on text.

use crate::state::Rejection;

/// Everything that can go wrong in archon-core and across its plug points.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The state machine refused the command; nothing changed.
    #[error("{0}")]
    Rejected(#[from] Rejection),
    /// An argument is not acceptable; names the field and the accepted form.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The field or flag.
        field: String,
        /// What is wrong and the accepted form.
        message: String,
    },
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The thing asked for existed but was removed from the history.
    #[error("{what} was removed {why}")]
    Removed {
        /// What (`run-5`).
        what: String,
        /// By what, and the policy (`by the retention policy (finished runs are kept 7d)`).
        why: String,
    },
    /// This node is not the leader; `leader` is where to go instead, when known.
    #[error("not the leader{}", leader.as_ref().map(|l| format!("; the leader is at {l}")).unwrap_or_default())]
    NotLeader {
        /// The leader's client address, when known.
        leader: Option<String>,
    },
    /// A dependency (storage, a peer) is unreachable for now; retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The component is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// A transport failure (connection refused, stream broken).
    #[error("transport: {0}")]
    Transport(String),
    /// The request lacked valid credentials.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The credentials are valid but do not allow this request (a scope or a
    /// certificate role it lacks).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// An internal invariant failed; a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::InvalidArgument { field: field.into(), message: message.into() }
    }
}

/// archon-core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::auth::Denied> for Error {
    fn from(denied: crate::auth::Denied) -> Error {
        if denied.unauthenticated() {
            Error::Unauthenticated(denied.to_string())
        } else {
            Error::PermissionDenied(denied.to_string())
        }
    }
}
