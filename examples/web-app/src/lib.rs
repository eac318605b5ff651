//! A web application that embeds Archon: `POST /reports` submits a job that
//! writes a report, and `GET /reports/{run}/output` streams what the job prints,
//! live, until its run ends. [`router`] is the whole application; `main.rs` only
//! starts Archon and serves it.
//!
//! The router holds an [`archon::Handle`], not the `Archon` itself: handlers
//! share it without keeping Archon running, so `main.rs` keeps the `Archon` and
//! shuts it down once the server stops.
//!
//! The one thing to know: a handler never waits for a job. It submits and
//! answers `202 Accepted` at once; the output comes from the manager's
//! [`Api::follow`], a stream that replays what the run has printed so far and
//! then follows it until the run ends.

use std::ops::RangeInclusive;

use archon::{Handle, JobSpec, Task};
use archon_core::api::Api;
use archon_core::model::{OutputChunk, OutputStream, ParseIdError, RunId};
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

/// How many lines a report may have.
const LINES: RangeInclusive<u64> = 1..=1000;

/// The application: `POST /reports` and `GET /reports/{run}/output`, both
/// answering errors as JSON `{"error": …, "field": …}`.
pub fn router(archon: Handle) -> Router {
    Router::new()
        .route("/reports", post(create_report))
        .route("/reports/{run}/output", get(report_output))
        .with_state(archon)
}

/// `202 Accepted`'s body: what was submitted and where its output streams.
#[derive(Serialize)]
struct Accepted {
    job: String,
    run: String,
    output: String,
}

/// `POST /reports` with `{"lines": N}`: submits a shell job printing N numbered
/// lines, a little apart, and answers `202` with a `Location` to its output.
async fn create_report(
    State(archon): State<Handle>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|rejection| {
        AppError::invalid("body", format!("{} (send JSON like {{\"lines\": 40}})", rejection.body_text()))
    })?;
    let lines = report_lines(&body)?;

    // The pause is the job's: the web server only submits it.
    let command = format!(r#"for i in $(seq 1 {lines}); do echo "line $i"; sleep 0.05; done"#);
    let handle = archon.submit(JobSpec::new("report", Task::Shell { command })).await?;
    let run = handle.run().ok_or_else(|| AppError::Internal(format!("{} was given no run", handle.job())))?;

    let output = format!("/reports/{run}/output");
    let location = HeaderValue::try_from(output.as_str()).map_err(|e| AppError::Internal(e.to_string()))?;
    let accepted = Accepted { job: handle.job().to_string(), run: run.to_string(), output };
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(accepted)).into_response())
}

/// Reads `lines` from a report request: a whole number in [`LINES`].
fn report_lines(body: &Value) -> Result<u64, AppError> {
    let given = body.get("lines");
    match given.and_then(Value::as_u64) {
        Some(lines) if LINES.contains(&lines) => Ok(lines),
        _ => Err(AppError::invalid(
            "lines",
            format!(
                "must be a whole number from {} to {}, got {}",
                LINES.start(),
                LINES.end(),
                given.map_or_else(|| "nothing".to_owned(), Value::to_string)
            ),
        )),
    }
}

/// `GET /reports/{run}/output`: the run's stdout as chunked `text/plain`,
/// written to the client as the job prints it; the body ends when the run
/// ends. (If Archon stops first, the connection is cut before the end of the
/// body, so the client can tell the output is incomplete.)
async fn report_output(State(archon): State<Handle>, Path(run): Path<String>) -> Result<Response, AppError> {
    let run: RunId = run.parse().map_err(|e: ParseIdError| AppError::invalid("run", e.to_string()))?;
    let follow = archon.manager()?.follow(run).await?;
    let body = Body::from_stream(follow.filter_map(|chunk| std::future::ready(stdout(chunk))));
    let headers = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (header::CACHE_CONTROL, "no-cache"),
        // Browsers otherwise hold back the first bytes to sniff the type.
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    Ok((headers, body).into_response())
}

/// Keeps what the job wrote to stdout (its stderr is in the same stream, as
/// [`OutputStream::Stderr`] chunks); an error ends the body.
fn stdout(chunk: Result<OutputChunk, archon_core::Error>) -> Option<Result<Bytes, archon_core::Error>> {
    match chunk {
        Ok(chunk) if chunk.stream == OutputStream::Stdout => Some(Ok(chunk.data)),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    }
}

/// Why a request failed, and how it answers.
#[derive(Debug)]
enum AppError {
    /// A request field is not acceptable: `400`, naming the field.
    Invalid { field: &'static str, message: String },
    /// Archon refused or failed the call.
    Archon(archon::Error),
    /// Something that should not happen did.
    Internal(String),
}

impl AppError {
    fn invalid(field: &'static str, message: impl Into<String>) -> AppError {
        AppError::Invalid { field, message: message.into() }
    }
}

impl From<archon::Error> for AppError {
    fn from(e: archon::Error) -> AppError {
        AppError::Archon(e)
    }
}

impl From<archon_core::Error> for AppError {
    fn from(e: archon_core::Error) -> AppError {
        AppError::Archon(e.into())
    }
}

/// An error's JSON body.
#[derive(Serialize)]
struct ErrorBody {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        use archon_core::Error as Core;
        let (status, field, error) = match self {
            AppError::Invalid { field, message } => {
                (StatusCode::BAD_REQUEST, Some(field), format!("{field}: {message}"))
            }
            AppError::Internal(message) => (StatusCode::INTERNAL_SERVER_ERROR, None, message),
            AppError::Archon(e) => {
                let status = match &e {
                    archon::Error::Core(Core::NotFound(_)) => StatusCode::NOT_FOUND,
                    archon::Error::Core(Core::Removed { .. }) => StatusCode::GONE,
                    archon::Error::Core(Core::NotLeader { .. } | Core::Unavailable(_) | Core::ShuttingDown) => {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                (status, None, e.to_string())
            }
        };
        (status, Json(ErrorBody { error, field })).into_response()
    }
}
