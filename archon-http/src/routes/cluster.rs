//! `/api/v1/cluster` and `/api/v1/workers`: the managers and who leads, and the
//! workers with drain and undrain.

use archon_core::api::ClusterStatus;
use archon_core::model::WorkerId;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::PathId;
use super::{AppState, Problems};
use crate::error::Error;
use crate::views::{WorkerView, WorkersView};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cluster_status))
        .routes(routes!(list_workers))
        .routes(routes!(drain_worker))
        .routes(routes!(undrain_worker))
}

/// The cluster at a glance: managers with their role, term and applied index,
/// workers and runs by state, the queue.
#[utoipa::path(
    get, path = "/api/v1/cluster", tag = "cluster",
    responses((status = 200, description = "The cluster", body = ClusterStatus), Problems)
)]
async fn cluster_status(State(state): State<AppState>) -> Result<Json<ClusterStatus>, Error> {
    Ok(Json(state.api.status().await?))
}

/// All registered workers.
#[utoipa::path(
    get, path = "/api/v1/workers", tag = "cluster",
    responses((status = 200, description = "The workers", body = WorkersView), Problems)
)]
async fn list_workers(State(state): State<AppState>) -> Result<Json<WorkersView>, Error> {
    let items = state.api.list_workers().await?.iter().map(WorkerView::from).collect();
    Ok(Json(WorkersView { items }))
}

/// Stops new placements on a worker; what it runs finishes.
#[utoipa::path(
    post, path = "/api/v1/workers/{id}/drain", tag = "cluster",
    params(("id" = String, Path, pattern = r"^(w-)?[0-9]{1,19}$", description = "The worker, e.g. w-3")),
    responses((status = 204, description = "Draining"), Problems)
)]
async fn drain_worker(State(state): State<AppState>, PathId(id): PathId<WorkerId>) -> Result<StatusCode, Error> {
    state.api.set_draining(id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lets a draining worker take new work again.
#[utoipa::path(
    post, path = "/api/v1/workers/{id}/undrain", tag = "cluster",
    params(("id" = String, Path, pattern = r"^(w-)?[0-9]{1,19}$", description = "The worker, e.g. w-3")),
    responses((status = 204, description = "Accepting work"), Problems)
)]
async fn undrain_worker(State(state): State<AppState>, PathId(id): PathId<WorkerId>) -> Result<StatusCode, Error> {
    state.api.set_draining(id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
