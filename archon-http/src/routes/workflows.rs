//! `/api/v1/workflows`: submit (a workflow file as JSON), list, get, cancel.

use archon_core::api::{CancelTarget, MAX_PAGE, WorkflowQuery};
use archon_core::model::{WorkflowId, WorkflowState};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Params, PathId, id_param, number, param};
use super::{AppState, Problems};
use crate::error::Error;
use crate::spec::{WorkflowDraft, parse_workflow_json};
use crate::views::{SubmittedWorkflowView, WorkflowDetailView, WorkflowPage};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_workflow, list_workflows))
        .routes(routes!(get_workflow))
        .routes(routes!(cancel_workflow))
}

/// Submits a workflow: every job is made, or none. The body is a workflow
/// file in JSON: `{"workflow": {"name": …, "schedule": …}, "jobs": [{"name":
/// …, "command": …, "depends_on": ["build", {"job": "test", "when": "failure"}]}]}`.
/// With a `schedule` it is a cron workflow: each fire starts an instance.
#[utoipa::path(
    post, path = "/api/v1/workflows", tag = "workflows",
    request_body(content = WorkflowDraft, description = "A workflow file, in JSON"),
    responses((status = 201, description = "Accepted", body = SubmittedWorkflowView), Problems)
)]
async fn submit_workflow(
    State(state): State<AppState>,
    Body(body): Body<serde_json::Value>,
) -> Result<Response, Error> {
    let spec = parse_workflow_json(body).map_err(|e| match e.split_once(": ") {
        Some((field, message)) if !field.contains(' ') => Error::bad(field, message),
        _ => Error::bad("body", e),
    })?;
    let submitted = state.api.submit_workflow(spec).await?;
    let view = SubmittedWorkflowView::from(&submitted);
    let location = match (&view.workflow, &view.schedule) {
        (Some(w), _) => format!("/api/v1/workflows/{w}"),
        (None, Some(job)) => format!("/api/v1/schedules/{job}"),
        (None, None) => "/api/v1/workflows".to_owned(),
    };
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(view)).into_response())
}

/// Filters and paging of `GET /api/v1/workflows`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct WorkflowParams {
    /// Only workflows whose name contains this.
    name: Option<String>,
    /// Only workflows in this state.
    #[param(value_type = Option<WorkflowState>)]
    state: Option<String>,
    /// Only workflows older than this one (the previous page's `next`).
    #[param(pattern = r"^(wf-)?[0-9]{1,19}$")]
    before: Option<String>,
    /// At most this many (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// Lists workflows, live and finished, newest first.
#[utoipa::path(
    get, path = "/api/v1/workflows", tag = "workflows", params(WorkflowParams),
    responses((status = 200, description = "A page of workflows", body = WorkflowPage), Problems)
)]
async fn list_workflows(
    State(state): State<AppState>,
    Params(p): Params<WorkflowParams>,
) -> Result<Json<WorkflowPage>, Error> {
    let query = WorkflowQuery {
        name: p.name,
        state: param::<WorkflowState>("state", p.state.as_deref())?,
        before: id_param::<WorkflowId>("before", p.before.as_deref())?,
        limit: number("limit", p.limit.as_deref(), 1..=MAX_PAGE)?,
    };
    Ok(Json(WorkflowPage::from(&state.api.list_workflows(query).await?)))
}

/// A workflow with each node's job and latest run.
#[utoipa::path(
    get, path = "/api/v1/workflows/{id}", tag = "workflows",
    params(("id" = String, Path, pattern = r"^(wf-)?[0-9]{1,19}$", description = "The workflow, e.g. wf-3")),
    responses((status = 200, description = "The workflow", body = WorkflowDetailView), Problems)
)]
async fn get_workflow(
    State(state): State<AppState>,
    PathId(id): PathId<WorkflowId>,
) -> Result<Json<WorkflowDetailView>, Error> {
    Ok(Json(WorkflowDetailView::from(&state.api.get_workflow(id).await?)))
}

/// Cancels a workflow: the unfinished runs of all its jobs.
#[utoipa::path(
    post, path = "/api/v1/workflows/{id}/cancel", tag = "workflows",
    params(("id" = String, Path, pattern = r"^(wf-)?[0-9]{1,19}$", description = "The workflow, e.g. wf-3")),
    responses((status = 204, description = "Cancelled"), Problems)
)]
async fn cancel_workflow(State(state): State<AppState>, PathId(id): PathId<WorkflowId>) -> Result<StatusCode, Error> {
    state.api.cancel(CancelTarget::Workflow(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
