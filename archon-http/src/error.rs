//! archon-http's error type, and how every error leaves as an RFC 9457 problem
//! object (`application/problem+json`): a `type` URI, a `title`, the `status`,
//! a `detail` saying what was wrong and the accepted form, and the `field` when
//! one field was wrong. No handler answers a bare 500 or a stack trace.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use archon_core::state::Rejection;

/// A problem object (RFC 9457), the body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// What kind of problem, as a URN (`urn:archon:problem:invalid-argument`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened and, for bad input, the accepted form.
    pub detail: String,
    /// The field that was wrong (`timeout`, `jobs[2].cpu`, `before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Where the leader is, when this node is not it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

impl Problem {
    /// A problem of `kind` (the URN's last part) with `status`.
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:archon:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            leader: None,
        }
    }

    /// The same problem naming `field`.
    pub fn field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }
}

/// Everything that can go wrong in archon-http.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manager's answer.
    #[error(transparent)]
    Core(#[from] archon_core::Error),
    /// A request field (body, path or query) is not acceptable.
    #[error("{field}: {message}")]
    BadRequest {
        /// The field, as the request names it.
        field: String,
        /// What is wrong and the accepted form.
        message: String,
    },
    /// The body is larger than the limit.
    #[error("body: larger than {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// No route answers this path.
    #[error("no route {0}")]
    NoRoute(String),
    /// The route exists but not for this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
    },
    /// A spec file is unreadable or wrong; the message names the field.
    #[error("{}: {message}", path.display())]
    SpecFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// Serving failed (the listener, a connection).
    #[error("serving {what}: {source}")]
    Serve {
        /// What was being served.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::BadRequest`].
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::BadRequest { field: field.into(), message: message.into() }
    }

    /// The problem object this error answers with.
    pub fn problem(&self) -> Problem {
        use archon_core::Error as Core;
        match self {
            Error::BadRequest { field, message } => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-argument", format!("{field}: {message}")).field(field)
            }
            Error::TooLarge { .. } => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", self.to_string()).field("body")
            }
            Error::NoRoute(_) => Problem::new(StatusCode::NOT_FOUND, "no-route", format!("{self} (see /api/docs)")),
            Error::MethodNotAllowed { .. } => {
                Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", self.to_string())
            }
            Error::SpecFile { .. } => Problem::new(StatusCode::BAD_REQUEST, "invalid-spec", self.to_string()),
            Error::Serve { .. } => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", self.to_string()),
            Error::Core(e) => match e {
                Core::InvalidArgument { field, .. } => {
                    Problem::new(StatusCode::BAD_REQUEST, "invalid-argument", e.to_string()).field(field)
                }
                Core::Rejected(r) => rejection(r),
                Core::NotFound(_) => Problem::new(StatusCode::NOT_FOUND, "not-found", e.to_string()),
                Core::Removed { .. } => Problem::new(StatusCode::GONE, "removed", e.to_string()),
                Core::NotLeader { leader } => {
                    let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-leader", e.to_string());
                    if leader.is_some() {
                        p = Problem { status: 307, title: "Temporary Redirect".into(), ..p };
                    }
                    p.leader = leader.clone();
                    p
                }
                Core::Unavailable(_) | Core::ShuttingDown => {
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())
                }
                Core::Transport(_) => Problem::new(StatusCode::BAD_GATEWAY, "transport", e.to_string()),
                Core::Unauthenticated(_) => Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string()),
                Core::PermissionDenied(_) => Problem::new(StatusCode::FORBIDDEN, "forbidden", e.to_string()),
                Core::Internal(_) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
            },
        }
    }
}

/// The problem for a command the state machine refused.
fn rejection(r: &Rejection) -> Problem {
    let detail = r.to_string();
    match r {
        Rejection::InvalidSpec(e) => Problem::new(StatusCode::BAD_REQUEST, "invalid-spec", detail).field(&e.field),
        Rejection::UnknownJob(_) | Rejection::UnknownRun(_) | Rejection::UnknownWorker(_) => {
            Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
        }
        Rejection::UnknownDependency(_) | Rejection::DependencyNotLive(_) => {
            Problem::new(StatusCode::BAD_REQUEST, "invalid-spec", detail).field("depends_on")
        }
        Rejection::Unschedulable { .. } => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unschedulable", detail),
        _ => Problem::new(StatusCode::CONFLICT, "conflict", detail),
    }
}

/// The problem as an HTTP response. A 307 carries the leader in `Location` once
/// The `routes` module's redirect layer has seen the request's path.
pub fn problem_response(p: Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let leader = p.leader.clone().filter(|_| status == StatusCode::TEMPORARY_REDIRECT);
    let body = serde_json::to_vec(&p).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if matches!(status, StatusCode::SERVICE_UNAVAILABLE) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Some(leader) = leader {
        response.extensions_mut().insert(LeaderHint(leader));
    }
    response
}

/// The leader's client address, on a 307 answer: the redirect layer turns it
/// into a `Location` with the request's path and query.
#[derive(Debug, Clone)]
pub(crate) struct LeaderHint(pub(crate) String);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Core(archon_core::Error::Internal(_)) | Error::Serve { .. } = &self {
            tracing::error!(error = %self, "request failed");
        }
        problem_response(self.problem())
    }
}

/// archon-http's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use archon_core::model::{JobId, SpecError};

    use super::*;

    #[test]
    fn each_error_maps_to_its_status_and_names_the_field() {
        let cases: Vec<(Error, u16, &str, Option<&str>)> = vec![
            (Error::bad("timeout", "\"5x\" is not a duration"), 400, "invalid-argument", Some("timeout")),
            (Error::TooLarge { limit: 10 }, 413, "body-too-large", Some("body")),
            (Error::NoRoute("/x".into()), 404, "no-route", None),
            (archon_core::Error::NotFound("run-9".into()).into(), 404, "not-found", None),
            (
                archon_core::Error::Removed { what: "run-9".into(), why: "by retention".into() }.into(),
                410,
                "removed",
                None,
            ),
            (archon_core::Error::NotLeader { leader: Some("10.0.0.2:50051".into()) }.into(), 307, "not-leader", None),
            (archon_core::Error::NotLeader { leader: None }.into(), 503, "not-leader", None),
            (archon_core::Error::ShuttingDown.into(), 503, "unavailable", None),
            (archon_core::Error::Internal("bug".into()).into(), 500, "internal", None),
            (
                archon_core::Error::Rejected(Rejection::InvalidSpec(SpecError::new("cpu", "too much"))).into(),
                400,
                "invalid-spec",
                Some("cpu"),
            ),
            (archon_core::Error::Rejected(Rejection::UnknownJob(JobId(4))).into(), 404, "not-found", None),
            (
                archon_core::Error::Rejected(Rejection::UnknownDependency(JobId(4))).into(),
                400,
                "invalid-spec",
                Some("depends_on"),
            ),
        ];
        for (error, status, kind, field) in cases {
            let p = error.problem();
            assert_eq!(
                (p.status, p.kind.as_str(), p.field.as_deref()),
                (status, format!("urn:archon:problem:{kind}").as_str(), field),
                "{error}"
            );
            assert!(!p.detail.is_empty() && !p.title.is_empty(), "{p:?}");
        }
    }

    #[test]
    fn a_redirect_carries_the_leader_and_an_outage_says_when_to_retry() {
        let r = Error::from(archon_core::Error::NotLeader { leader: Some("10.0.0.2:50051".into()) }).into_response();
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(r.extensions().get::<LeaderHint>().map(|h| h.0.as_str()), Some("10.0.0.2:50051"));
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json");
        let r = Error::from(archon_core::Error::ShuttingDown).into_response();
        assert_eq!(
            (r.status(), &r.headers()[header::RETRY_AFTER]),
            (StatusCode::SERVICE_UNAVAILABLE, &HeaderValue::from_static("1"))
        );
    }
}
