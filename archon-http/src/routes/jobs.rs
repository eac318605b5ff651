//! `/api/v1/jobs`: submit one or a batch (the spec-file format as JSON), list,
//! get and cancel.

use archon_core::api::{CancelTarget, JobQuery, MAX_PAGE};
use archon_core::model::{JobId, RunState, TaskKind};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Params, PathId, id_param, number, param};
use super::{AppState, Problems};
use crate::error::{Error, Problem};
use crate::spec::{JobDraft, Naming};
use crate::views::{JobDetailView, JobPage, SubmitItemView, SubmittedView};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_job, list_jobs))
        .routes(routes!(submit_batch))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
}

/// The `Idempotency-Key` header, when the body names no key. Its bytes are
/// taken as they are (Latin-1, as HTTP defines header text): any key a client
/// can send is a key.
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers.get("idempotency-key").map(|v| v.as_bytes().iter().map(|&b| char::from(b)).collect())
}

/// Submits one job. The body is a job as a spec file writes it, in JSON.
/// An idempotency key (the `idempotency_key` field or the `Idempotency-Key`
/// header) makes a retried submit answer the first job (200, `duplicate`).
#[utoipa::path(
    post, path = "/api/v1/jobs", tag = "jobs",
    request_body(content = JobDraft, description = "One job, as a spec file writes it"),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Makes retries of this submit safe")),
    responses(
        (status = 201, description = "Accepted; `Location` names the job", body = SubmittedView),
        (status = 200, description = "A job with this idempotency key exists; nothing new was made", body = SubmittedView),
        Problems,
    )
)]
async fn submit_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(mut draft): Body<JobDraft>,
) -> Result<Response, Error> {
    if draft.idempotency_key.is_none() {
        draft.idempotency_key = idempotency_key(&headers);
    }
    let spec = draft.into_spec(Naming::File).map_err(|e| Error::bad(e.field, e.message))?;
    let mut results = state.api.submit(vec![spec]).await?;
    let submitted = match results.pop() {
        Some(Ok(s)) => s,
        Some(Err(rejection)) => return Err(Error::Core(rejection.into())),
        None => return Err(Error::Core(archon_core::Error::Internal("a submit of one spec gave no result".into()))),
    };
    let view = SubmittedView::from(&submitted);
    let status = if submitted.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let location = format!("/api/v1/jobs/{}", view.job);
    Ok((status, [(header::LOCATION, location)], Json(view)).into_response())
}

/// A batch of jobs: the body of `POST /api/v1/jobs/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchDraft {
    /// The jobs, each as a spec file writes it.
    pub jobs: Vec<JobDraft>,
}

/// What a batch submit gave, one item per job in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct BatchResult {
    /// Each job's answer: submitted, or refused naming the field.
    pub results: Vec<SubmitItemView>,
}

/// Submits several jobs in one request. Each is accepted or refused on its
/// own; a refused one is stored nowhere and its problem names `jobs[i].field`.
#[utoipa::path(
    post, path = "/api/v1/jobs/batch", tag = "jobs",
    request_body(content = BatchDraft, description = "Jobs, as a spec file's [[jobs]]"),
    responses((status = 200, description = "One answer per job, in order", body = BatchResult), Problems)
)]
async fn submit_batch(
    State(state): State<AppState>,
    Body(batch): Body<BatchDraft>,
) -> Result<Json<BatchResult>, Error> {
    let mut results: Vec<Option<SubmitItemView>> = Vec::with_capacity(batch.jobs.len());
    let mut specs = Vec::with_capacity(batch.jobs.len());
    for (i, draft) in batch.jobs.into_iter().enumerate() {
        match draft.into_spec(Naming::File) {
            Ok(spec) => {
                specs.push(spec);
                results.push(None);
            }
            Err(e) => {
                let field = format!("jobs[{i}].{}", e.field);
                results.push(Some(SubmitItemView::Refused { error: Error::bad(field, e.message).problem() }));
            }
        }
    }
    let answers = if specs.is_empty() { Vec::new() } else { state.api.submit(specs).await? };
    let mut answers = answers.into_iter();
    let results = results
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Some(refused) => refused,
            None => match answers.next() {
                Some(Ok(s)) => SubmitItemView::Submitted(SubmittedView::from(&s)),
                Some(Err(r)) => {
                    let mut problem = Error::Core(r.into()).problem();
                    problem.field =
                        Some(format!("jobs[{i}]{}", problem.field.map(|f| format!(".{f}")).unwrap_or_default()));
                    SubmitItemView::Refused { error: problem }
                }
                None => SubmitItemView::Refused {
                    error: Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no answer for this job"),
                },
            },
        })
        .collect();
    Ok(Json(BatchResult { results }))
}

/// Filters and paging of `GET /api/v1/jobs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct JobParams {
    /// Only jobs whose name contains this.
    name: Option<String>,
    /// Only jobs older than this one (the previous page's `next`), e.g. `job-120`.
    #[param(pattern = r"^(job-)?[0-9]{1,19}$")]
    before: Option<String>,
    /// At most this many (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Only jobs whose task is of this kind (a cron workflow, listed as
    /// `workflow`, is of none).
    #[param(value_type = Option<TaskKind>, inline)]
    kind: Option<String>,
    /// Only jobs whose latest run is in this state.
    #[param(value_type = Option<RunState>)]
    state: Option<String>,
}

/// Lists jobs, newest first, with cursor paging (`before` = the last page's `next`).
#[utoipa::path(
    get, path = "/api/v1/jobs", tag = "jobs", params(JobParams),
    responses((status = 200, description = "A page of jobs", body = JobPage), Problems)
)]
async fn list_jobs(State(state): State<AppState>, Params(p): Params<JobParams>) -> Result<Json<JobPage>, Error> {
    let query = JobQuery {
        name: p.name,
        before: id_param::<JobId>("before", p.before.as_deref())?,
        limit: number("limit", p.limit.as_deref(), 1..=MAX_PAGE)?,
        kind: param::<TaskKind>("kind", p.kind.as_deref())?,
        state: param::<RunState>("state", p.state.as_deref())?,
    };
    Ok(Json(JobPage::from(&state.api.list_jobs(query).await?)))
}

/// A job with its runs and, for a cron job, its schedule.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, pattern = r"^(job-)?[0-9]{1,19}$", description = "The job, e.g. job-12")),
    responses((status = 200, description = "The job", body = JobDetailView), Problems)
)]
async fn get_job(State(state): State<AppState>, PathId(id): PathId<JobId>) -> Result<Json<JobDetailView>, Error> {
    Ok(Json(JobDetailView::from(&state.api.get_job(id).await?)))
}

/// Cancels a job: its unfinished runs end cancelled (running attempts are
/// killed on their workers) and it makes no new runs.
#[utoipa::path(
    post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, pattern = r"^(job-)?[0-9]{1,19}$", description = "The job, e.g. job-12")),
    responses((status = 204, description = "Cancelled"), Problems)
)]
async fn cancel_job(State(state): State<AppState>, PathId(id): PathId<JobId>) -> Result<StatusCode, Error> {
    state.api.cancel(CancelTarget::Job(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
