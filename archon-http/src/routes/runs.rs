//! `/api/v1/runs`: list, get, wait (a blocking read), cancel, the kept output,
//! and live output as Server-Sent Events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use archon_core::api::{CancelTarget, MAX_PAGE, RunQuery};
use archon_core::model::units::parse_duration;
use archon_core::model::{AttemptId, JobId, OutputStream, RunId, RunState};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Params, PathId, id_param, instant, number, param};
use super::{AppState, Problems};
use crate::error::Error;
use crate::views::{RunDetailView, RunPage};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(wait_run))
        .routes(routes!(cancel_run))
        .routes(routes!(run_output))
        .routes(routes!(run_events))
}

/// Filters and paging of `GET /api/v1/runs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RunParams {
    /// Only runs of this job (`job-12`).
    #[param(pattern = r"^(job-)?[0-9]{1,19}$")]
    job: Option<String>,
    /// Only runs in this state.
    #[param(value_type = Option<RunState>)]
    state: Option<String>,
    /// Only runs older than this one (the previous page's `next`).
    #[param(pattern = r"^(run-)?[0-9]{1,19}$")]
    before: Option<String>,
    /// At most this many (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Only runs created at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Only runs created before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
}

/// Lists runs, live and finished, newest first, with cursor paging.
#[utoipa::path(
    get, path = "/api/v1/runs", tag = "runs", params(RunParams),
    responses((status = 200, description = "A page of runs", body = RunPage), Problems)
)]
async fn list_runs(State(state): State<AppState>, Params(p): Params<RunParams>) -> Result<Json<RunPage>, Error> {
    let query = RunQuery {
        job: id_param::<JobId>("job", p.job.as_deref())?,
        state: param::<RunState>("state", p.state.as_deref())?,
        before: id_param::<RunId>("before", p.before.as_deref())?,
        limit: number("limit", p.limit.as_deref(), 1..=MAX_PAGE)?,
        since: p.since.as_deref().map(|v| instant("since", v)).transpose()?,
        until: p.until.as_deref().map(|v| instant("until", v)).transpose()?,
    };
    Ok(Json(RunPage::from(&state.api.list_runs(query).await?)))
}

/// A run with its attempts, their exit, output and resource usage.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, pattern = r"^(run-)?[0-9]{1,19}$", description = "The run, e.g. run-340")),
    responses((status = 200, description = "The run", body = RunDetailView), Problems)
)]
async fn get_run(State(state): State<AppState>, PathId(id): PathId<RunId>) -> Result<Json<RunDetailView>, Error> {
    Ok(Json(RunDetailView::from(&state.api.get_run(id).await?)))
}

/// How long `wait` blocks at most.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct WaitParams {
    /// Answer after this long even if the run goes on (default 30s, at most 5m).
    timeout: Option<String>,
}

/// The longest a wait blocks.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Waits until the run ends (or `timeout` passes) and answers it: a blocking
/// read. Check `run.state`: the run may still be going when the timeout ends it.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}/wait", tag = "runs",
    params(("id" = String, Path, pattern = r"^(run-)?[0-9]{1,19}$", description = "The run, e.g. run-340"), WaitParams),
    responses((status = 200, description = "The run, ended or as it stands at the timeout", body = RunDetailView), Problems)
)]
async fn wait_run(
    State(state): State<AppState>,
    PathId(id): PathId<RunId>,
    Params(p): Params<WaitParams>,
) -> Result<Json<RunDetailView>, Error> {
    let timeout = match p.timeout.as_deref() {
        None => Duration::from_secs(30),
        Some(t) => parse_duration(t).map_err(|e| Error::bad("timeout", e.to_string()))?,
    };
    if timeout > MAX_WAIT {
        return Err(Error::bad("timeout", "must be at most 5m (wait again for longer)"));
    }
    let detail = tokio::select! {
        ended = state.api.wait(id) => ended?,
        () = tokio::time::sleep(timeout) => state.api.get_run(id).await?,
        () = state.shutdown.cancelled() => return Err(archon_core::Error::ShuttingDown.into()),
    };
    Ok(Json(RunDetailView::from(&detail)))
}

/// Cancels a run; a running attempt is killed on its worker.
#[utoipa::path(
    post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, pattern = r"^(run-)?[0-9]{1,19}$", description = "The run, e.g. run-340")),
    responses((status = 204, description = "Cancelled"), Problems)
)]
async fn cancel_run(State(state): State<AppState>, PathId(id): PathId<RunId>) -> Result<StatusCode, Error> {
    state.api.cancel(CancelTarget::Run(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which output `GET /api/v1/runs/{id}/output` answers.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct OutputParams {
    /// `stdout` (default) or `stderr`.
    #[param(value_type = Option<String>, pattern = "^(stdout|stderr)$")]
    stream: Option<String>,
    /// Which attempt (`att-7`; default the latest).
    #[param(pattern = r"^(att-)?[0-9]{1,19}$")]
    attempt: Option<String>,
    /// Only the last this many bytes.
    #[param(value_type = Option<i64>, minimum = 0)]
    tail: Option<String>,
}

/// The kept output of a run's attempt, as its raw bytes (`text/plain` when
/// UTF-8). The response header `Archon-Truncated` says how many earlier bytes
/// the output limit dropped. A run still going answers what it has sent so
/// far only through `/events`; here it has none until it ends.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}/output", tag = "runs",
    params(("id" = String, Path, pattern = r"^(run-)?[0-9]{1,19}$", description = "The run, e.g. run-340"), OutputParams),
    responses(
        (status = 200, description = "The bytes: `text/plain` when they are UTF-8", content(
            (String = "text/plain"),
            (RawBytes = "application/octet-stream"),
        )),
        Problems,
    )
)]
async fn run_output(
    State(state): State<AppState>,
    PathId(id): PathId<RunId>,
    Params(p): Params<OutputParams>,
) -> Result<Response, Error> {
    let stream = match p.stream.as_deref() {
        None | Some("stdout") => OutputStream::Stdout,
        Some("stderr") => OutputStream::Stderr,
        Some(other) => return Err(Error::bad("stream", format!("{other:?} is not a stream (stdout or stderr)"))),
    };
    let attempt = id_param::<AttemptId>("attempt", p.attempt.as_deref())?;
    let tail = number("tail", p.tail.as_deref(), 0..=i64::MAX.unsigned_abs())?;
    let detail = state.api.get_run(id).await?;
    let chosen = match attempt {
        Some(a) => Some(
            detail
                .attempts
                .iter()
                .find(|x| x.id == a)
                .ok_or_else(|| archon_core::Error::NotFound(format!("{a} of {id}")))?,
        ),
        None => detail.attempts.last(),
    };
    let kept = chosen.and_then(|a| a.result.as_ref()).map(|r| r.tail(stream).clone()).unwrap_or_default();
    let mut data = kept.data;
    let mut truncated = kept.truncated;
    if let Some(n) = tail.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        && n < data.len()
    {
        truncated += (data.len() - n) as u64;
        data = data.slice(data.len() - n..);
    }
    let kind =
        if std::str::from_utf8(&data).is_ok() { "text/plain; charset=utf-8" } else { "application/octet-stream" };
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (
                "archon-truncated".parse().map_err(|_| archon_core::Error::Internal("header".into()))?,
                truncated.to_string(),
            ),
        ],
        data,
    )
        .into_response())
}

/// Output that is not UTF-8, as its bytes.
pub(super) struct RawBytes;

impl utoipa::PartialSchema for RawBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for RawBytes {}

/// One `output` event of `/events`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct OutputEvent {
    /// The attempt that wrote it.
    pub attempt: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The bytes as text, when UTF-8.
    pub text: Option<String>,
    /// The bytes in base64, when not UTF-8.
    pub base64: Option<String>,
}

/// One event of `/events` as the stream carries it: its SSE fields, `data`
/// being an [`OutputEvent`] or an [`EndEvent`] in JSON. (In OpenAPI 3.1 the
/// schema of a `text/event-stream` describes each event.)
pub(super) struct EventFrame;

impl utoipa::PartialSchema for EventFrame {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        use utoipa::openapi::{Ref, RefOr};
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let frame = |event: &str, data: &str, description: &str| {
            let json = text()
                .content_media_type("application/json")
                .content_schema(Some(RefOr::Ref(Ref::from_schema_name(data))));
            ObjectBuilder::new()
                .description(Some(description))
                .property("event", text().enum_values(Some([event])))
                .required("event")
                .property("data", json)
                .required("data")
        };
        let output = frame("output", "OutputEvent", "Output the run wrote; `id` counts from 1")
            .property("id", text().pattern(Some("^[0-9]+$")))
            .required("id");
        let end = frame("end", "EndEvent", "The last event: how the run ended");
        OneOfBuilder::new().item(output).item(end).into()
    }
}

impl ToSchema for EventFrame {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push(("OutputEvent".into(), <OutputEvent as utoipa::PartialSchema>::schema()));
        schemas.push(("EndEvent".into(), <EndEvent as utoipa::PartialSchema>::schema()));
        <EndEvent as ToSchema>::schemas(schemas);
    }
}

/// The `end` event of `/events`: how the run ended (or why following stopped).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct EndEvent {
    /// The run.
    pub run: String,
    /// Its state when following ended.
    pub state: Option<RunState>,
    /// Why following stopped early (the manager stopped or lost leadership).
    pub error: Option<String>,
}

/// Follows a run's output live as Server-Sent Events: `output` events (JSON
/// [`OutputEvent`], ids counting from 1), then one `end` event when the run
/// ends. A reconnect with `Last-Event-ID: N` skips the first N chunks of the
/// replay (the manager keeps a bounded buffer of the live output).
#[utoipa::path(
    get, path = "/api/v1/runs/{id}/events", tag = "runs",
    params(
        ("id" = String, Path, pattern = r"^(run-)?[0-9]{1,19}$", description = "The run, e.g. run-340"),
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, minimum = 0, description = "Resume after this event (its id)"),
    ),
    responses(
        (status = 200, description = "`output` events, then `end`", content_type = "text/event-stream", body = EventFrame),
        Problems,
    )
)]
async fn run_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    PathId(id): PathId<RunId>,
) -> Result<Response, Error> {
    let last = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("x"));
    let skip = number("Last-Event-ID", last, 0..=i64::MAX.unsigned_abs())?.unwrap_or(0);
    let follow = state.api.follow(id).await?;
    let api = state.api.clone();
    let shutdown = state.shutdown.clone();
    // Chunks become `output` events; an error (the manager stopping or losing
    // the lead) ends the stream, and the `end` event then says why.
    let failed = Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = failed.clone();
    let events = follow
        .take_until(async move { shutdown.cancelled().await })
        .enumerate()
        .scan((), move |(), (n, chunk)| {
            futures::future::ready(match chunk {
                Ok(c) => Some(Some((n as u64 + 1, c))),
                Err(e) => {
                    *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                    None
                }
            })
        })
        .filter_map(move |item| futures::future::ready(item.filter(|(seq, _)| *seq > skip)))
        .map(|(seq, c)| {
            let (text, base64) = match std::str::from_utf8(&c.data) {
                Ok(t) => (Some(t.to_owned()), None),
                Err(_) => (None, Some(STANDARD.encode(&c.data))),
            };
            let body = OutputEvent { attempt: c.attempt.to_string(), stream: c.stream.as_str().into(), text, base64 };
            Ok::<_, Infallible>(
                Event::default().event("output").id(seq.to_string()).json_data(body).unwrap_or_default(),
            )
        });
    let end = futures::stream::once(async move {
        let error = failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let (state, error) = match api.get_run(id).await {
            Ok(d) => (Some(d.run.state), error),
            Err(e) => (None, Some(error.unwrap_or_else(|| e.to_string()))),
        };
        let body = EndEvent { run: id.to_string(), state, error };
        Ok::<_, Infallible>(Event::default().event("end").json_data(body).unwrap_or_default())
    });
    Ok(Sse::new(events.chain(end)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
