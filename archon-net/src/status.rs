//! archon-core's [`Error`] on the wire: a gRPC status code a generic client can act
//! on, the error's text as the status message, and the exact error as a typed
//! [`proto::ErrorDetail`] in the `archon-error-bin` metadata entry, so an Archon
//! client gets back the very variant the server returned (a [`Rejection`] stays a
//! rejection; a missing run stays [`Error::NotFound`]).
//!
//! [`Rejection`]: archon_core::state::Rejection

use archon_core::Error;
use archon_core::state::Rejection;
use prost::Message;
use tonic::metadata::{MetadataValue, errors::InvalidMetadataValue};
use tonic::{Code, Status};

use crate::proto::{self, error_detail};

/// The metadata entry carrying the binary-encoded [`proto::ErrorDetail`].
pub const ERROR_DETAIL_KEY: &str = "archon-error-bin";
/// The metadata entry naming the leader's address on a not-leader error.
pub const LEADER_KEY: &str = "archon-leader";

/// The gRPC code for an error.
pub fn code_for(err: &Error) -> Code {
    match err {
        Error::NotFound(_) | Error::Removed { .. } => Code::NotFound,
        Error::InvalidArgument { .. }
        | Error::Rejected(Rejection::InvalidSpec(_))
        | Error::Rejected(Rejection::InvalidWorker { .. }) => Code::InvalidArgument,
        Error::Rejected(_) => Code::FailedPrecondition,
        Error::NotLeader { .. } | Error::Unavailable(_) | Error::ShuttingDown | Error::Transport(_) => {
            Code::Unavailable
        }
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::Internal(_) => Code::Internal,
    }
}

/// The status a server answers with for `err`.
pub fn error_to_status(err: Error) -> Status {
    let mut status = Status::new(code_for(&err), err.to_string());
    if let Error::NotLeader { leader: Some(leader) } = &err {
        // An address that is not a valid header value is still in the detail.
        let value: Result<MetadataValue<_>, InvalidMetadataValue> = leader.parse();
        if let Ok(value) = value {
            status.metadata_mut().insert(LEADER_KEY, value);
        }
    }
    let detail = proto::ErrorDetail::from(err).encode_to_vec();
    status.metadata_mut().insert_bin(ERROR_DETAIL_KEY, MetadataValue::from_bytes(&detail));
    status
}

/// The error a status stands for: the exact error when the status carries an Archon
/// error detail, else the closest variant for its code.
pub fn status_to_error(status: &Status) -> Error {
    if let Some(err) = detail_of(status) {
        return err;
    }
    let message = status.message().to_owned();
    match status.code() {
        Code::NotFound => Error::NotFound(message),
        Code::InvalidArgument => Error::InvalidArgument { field: "request".into(), message },
        Code::Unauthenticated => Error::Unauthenticated(message),
        Code::PermissionDenied => Error::PermissionDenied(message),
        Code::Unavailable => match status.metadata().get(LEADER_KEY).and_then(|v| v.to_str().ok()) {
            Some(leader) => Error::NotLeader { leader: Some(leader.to_owned()) },
            None => Error::Unavailable(message),
        },
        Code::Cancelled | Code::DeadlineExceeded | Code::Unknown => Error::Transport(describe(status)),
        _ => Error::Internal(format!("{}: {message}", status.code())),
    }
}

/// Whether the status carries an Archon error detail (it came from an Archon server).
pub(crate) fn has_detail(status: &Status) -> bool {
    status.metadata().get_bin(ERROR_DETAIL_KEY).is_some()
}

fn detail_of(status: &Status) -> Option<Error> {
    let bytes = status.metadata().get_bin(ERROR_DETAIL_KEY)?.to_bytes().ok()?;
    let detail = proto::ErrorDetail::decode(bytes).ok()?;
    Error::try_from(detail).ok()
}

/// A status's message with its source chain, for transport failures.
pub(crate) fn describe(status: &Status) -> String {
    let mut text = status.message().to_owned();
    if let Some(source) = std::error::Error::source(status) {
        append_chain(&mut text, source);
    }
    text
}

/// An error's text followed by its sources', joined by `: `.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    append_chain(&mut text, err);
    text
}

/// Appends each error of the chain that adds something: tonic's bare "transport
/// error" wrapper and repeats of what is already said are left out.
fn append_chain(text: &mut String, err: &(dyn std::error::Error + 'static)) {
    let mut next = Some(err);
    while let Some(err) = next {
        let part = err.to_string();
        if !part.is_empty() && part != "transport error" && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        next = err.source();
    }
}

impl From<Error> for proto::ErrorDetail {
    fn from(err: Error) -> Self {
        let kind = match err {
            Error::Rejected(r) => error_detail::Kind::Rejected(r.into()),
            Error::InvalidArgument { field, message } => {
                error_detail::Kind::InvalidArgument(error_detail::InvalidArgument { field, message })
            }
            Error::NotFound(what) => error_detail::Kind::NotFound(what),
            Error::Removed { what, why } => error_detail::Kind::Removed(error_detail::Removed { what, why }),
            Error::NotLeader { leader } => error_detail::Kind::NotLeader(error_detail::NotLeader { leader }),
            Error::Unavailable(why) => error_detail::Kind::Unavailable(why),
            Error::ShuttingDown => error_detail::Kind::ShuttingDown(()),
            Error::Transport(why) => error_detail::Kind::Transport(why),
            Error::Unauthenticated(why) => error_detail::Kind::Unauthenticated(why),
            Error::PermissionDenied(why) => error_detail::Kind::PermissionDenied(why),
            Error::Internal(why) => error_detail::Kind::Internal(why),
        };
        proto::ErrorDetail { kind: Some(kind) }
    }
}

impl TryFrom<proto::ErrorDetail> for Error {
    type Error = Error;

    fn try_from(detail: proto::ErrorDetail) -> Result<Self, Error> {
        Ok(match crate::convert::required(detail.kind, "kind")? {
            error_detail::Kind::Rejected(r) => Error::Rejected(Rejection::try_from(r)?),
            error_detail::Kind::InvalidArgument(a) => Error::InvalidArgument { field: a.field, message: a.message },
            error_detail::Kind::NotFound(what) => Error::NotFound(what),
            error_detail::Kind::Removed(r) => Error::Removed { what: r.what, why: r.why },
            error_detail::Kind::NotLeader(n) => Error::NotLeader { leader: n.leader },
            error_detail::Kind::Unavailable(why) => Error::Unavailable(why),
            error_detail::Kind::ShuttingDown(()) => Error::ShuttingDown,
            error_detail::Kind::Transport(why) => Error::Transport(why),
            error_detail::Kind::Unauthenticated(why) => Error::Unauthenticated(why),
            error_detail::Kind::PermissionDenied(why) => Error::PermissionDenied(why),
            error_detail::Kind::Internal(why) => Error::Internal(why),
        })
    }
}
