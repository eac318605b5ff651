//! `/api/v1/schedules`: cron jobs (and cron workflows) with their state and
//! next fires; pause, resume, trigger and backfill.

use archon_core::api::{JobQuery, MAX_PAGE, ScheduleAction};
use archon_core::model::{JobId, OverlapPolicy};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Params, PathId, id_param, instant, number};
use super::{AppState, Problems};
use crate::error::Error;
use crate::views::{JobSummaryView, ScheduleFireView, ScheduleInfoView};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_schedules))
        .routes(routes!(get_schedule))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(trigger))
        .routes(routes!(backfill))
}

/// Paging of `GET /api/v1/schedules`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ScheduleParams {
    /// Only cron jobs whose name contains this.
    name: Option<String>,
    /// Only jobs older than this one (the previous page's `next`).
    #[param(pattern = r"^(job-)?[0-9]{1,19}$")]
    before: Option<String>,
    /// At most this many (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A page of cron jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct SchedulePage {
    /// The cron jobs, newest first (`next_fire`, `paused`).
    pub items: Vec<JobSummaryView>,
    /// Pass as `before` for the next page; none at the end. A page may hold
    /// fewer items than asked while `next` is set (one request reads at most
    /// 10,000 jobs).
    pub next: Option<String>,
}

/// How many jobs one listing reads at most to find the cron ones.
const SCAN: usize = 10_000;

/// Lists cron jobs with their next fire, newest first: jobs with a schedule
/// that is not cancelled.
#[utoipa::path(
    get, path = "/api/v1/schedules", tag = "schedules", params(ScheduleParams),
    responses((status = 200, description = "A page of cron jobs", body = SchedulePage), Problems)
)]
async fn list_schedules(
    State(state): State<AppState>,
    Params(p): Params<ScheduleParams>,
) -> Result<Json<SchedulePage>, Error> {
    let want = number("limit", p.limit.as_deref(), 1..=MAX_PAGE)?.unwrap_or(archon_core::api::DEFAULT_PAGE);
    let mut before = id_param::<JobId>("before", p.before.as_deref())?;
    let (mut items, mut scanned) = (Vec::new(), 0usize);
    let next = loop {
        let query = JobQuery { name: p.name.clone(), before, limit: Some(MAX_PAGE), ..JobQuery::default() };
        let page = state.api.list_jobs(query).await?;
        let mut cursor = None;
        for job in &page.items {
            scanned += 1;
            cursor = Some(job.id);
            if job.next_fire.is_some() || job.paused {
                items.push(JobSummaryView::from(job));
                if items.len() == want as usize {
                    break;
                }
            }
        }
        let exhausted = page.next.is_none() && cursor == page.items.last().map(|j| j.id);
        if exhausted {
            break None;
        }
        if items.len() == want as usize || scanned >= SCAN {
            break cursor.map(|j| j.to_string());
        }
        before = page.next;
    };
    Ok(Json(SchedulePage { items, next }))
}

/// A cron job's schedule: as written, where it stands, its next fires.
#[utoipa::path(
    get, path = "/api/v1/schedules/{job}", tag = "schedules",
    params(("job" = String, Path, pattern = r"^(job-)?[0-9]{1,19}$", description = "The cron job, e.g. job-12")),
    responses((status = 200, description = "The schedule", body = ScheduleInfoView), Problems)
)]
async fn get_schedule(
    State(state): State<AppState>,
    PathId(id): PathId<JobId>,
) -> Result<Json<ScheduleInfoView>, Error> {
    let detail = state.api.get_job(id).await?;
    let info = detail
        .schedule
        .as_ref()
        .ok_or_else(|| archon_core::Error::NotFound(format!("a schedule on {id} (it is not a cron job)")))?;
    Ok(Json(ScheduleInfoView::new(&detail.job, info)))
}

/// What a pause carries.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PauseBody {
    /// Why, shown with the schedule.
    pub note: Option<String>,
}

/// The fires an action made.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct FiresView {
    /// Each fire with what it did.
    pub fires: Vec<ScheduleFireView>,
}

async fn act(state: &AppState, id: JobId, action: ScheduleAction) -> Result<Json<FiresView>, Error> {
    let fires = state.api.schedule(id, action).await?;
    Ok(Json(FiresView { fires: fires.iter().map(ScheduleFireView::from).collect() }))
}

/// Stops a cron job firing until resumed (fires in the pause do not run).
#[utoipa::path(
    post, path = "/api/v1/schedules/{job}/pause", tag = "schedules",
    params(("job" = String, Path, pattern = r"^(job-)?[0-9]{1,19}$", description = "The cron job, e.g. job-12")),
    request_body(content = PauseBody, description = "An optional note"),
    responses((status = 200, description = "Paused", body = FiresView), Problems)
)]
async fn pause(
    State(state): State<AppState>,
    PathId(id): PathId<JobId>,
    Body(body): Body<PauseBody>,
) -> Result<Json<FiresView>, Error> {
    act(&state, id, ScheduleAction::Pause { note: body.note }).await
}

/// Resumes a paused cron job, from now on.
#[utoipa::path(
    post, path = "/api/v1/schedules/{job}/resume", tag = "schedules",
    params(("job" = String, Path, pattern = r"^(job-)?[0-9]{1,19}$", description = "The cron job, e.g. job-12")),
    responses((status = 200, description = "Firing again", body = FiresView), Problems)
)]
async fn resume(State(state): State<AppState>, PathId(id): PathId<JobId>) -> Result<Json<FiresView>, Error> {
    act(&state, id, ScheduleAction::Resume).await
}

/// Fires a cron job once now, under its overlap policy.
#[utoipa::path(
    post, path = "/api/v1/schedules/{job}/trigger", tag = "schedules",
    params(("job" = String, Path, pattern = r"^(job-)?[0-9]{1,19}$", description = "The cron job, e.g. job-12")),
    responses((status = 200, description = "The fire and what it did", body = FiresView), Problems)
)]
async fn trigger(State(state): State<AppState>, PathId(id): PathId<JobId>) -> Result<Json<FiresView>, Error> {
    act(&state, id, ScheduleAction::Trigger).await
}

/// A past range to fire.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BackfillBody {
    /// The first instant (RFC 3339).
    #[schema(format = DateTime)]
    pub from: String,
    /// The last instant (RFC 3339).
    #[schema(format = DateTime)]
    pub to: String,
    /// An overlap policy for these fires (default: the schedule's).
    pub overlap: Option<OverlapPolicy>,
}

/// Runs the fires of a past range, oldest first.
#[utoipa::path(
    post, path = "/api/v1/schedules/{job}/backfill", tag = "schedules",
    params(("job" = String, Path, pattern = r"^(job-)?[0-9]{1,19}$", description = "The cron job, e.g. job-12")),
    request_body(content = BackfillBody, description = "The range"),
    responses((status = 200, description = "The fires and what each did", body = FiresView), Problems)
)]
async fn backfill(
    State(state): State<AppState>,
    PathId(id): PathId<JobId>,
    Body(body): Body<BackfillBody>,
) -> Result<Json<FiresView>, Error> {
    let (from, to) = (instant("from", &body.from)?, instant("to", &body.to)?);
    act(&state, id, ScheduleAction::Backfill { from, to, overlap: body.overlap }).await
}
