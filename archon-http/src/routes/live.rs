//! What the dashboard follows: `/api/v1/events`, the cluster's status pushed as
//! Server-Sent Events whenever it changes (any commit moves a manager's applied
//! index), and `/api/v1/timeline`, the last hour sampled for charts. Both are
//! answered by the manager asked, follower or leader, from its own replica.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use archon_core::model::WorkerId;
use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Params, id};
use super::{AppState, Problems};
use crate::error::Error;
use crate::views::TimelineView;

/// How often the status stream looks for a change.
const STATUS_POLL: Duration = Duration::from_millis(200);

/// The most workers one timeline request may ask series for by id.
const MAX_WORKER_SERIES: usize = 1000;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cluster_events)).routes(routes!(timeline))
}

/// One frame of `/api/v1/events`, for the document.
pub(super) struct StatusFrame;

impl utoipa::PartialSchema for StatusFrame {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{Ref, RefOr};
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let json = text()
            .content_media_type("application/json")
            .content_schema(Some(RefOr::Ref(Ref::from_schema_name("ClusterStatus"))));
        ObjectBuilder::new()
            .description(Some("The cluster's status, sent first and then whenever it changes"))
            .property("event", text().enum_values(Some(["status"])))
            .required("event")
            .property("data", json)
            .required("data")
            .into()
    }
}

impl ToSchema for StatusFrame {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push(("ClusterStatus".into(), <archon_core::api::ClusterStatus as utoipa::PartialSchema>::schema()));
        <archon_core::api::ClusterStatus as ToSchema>::schemas(schemas);
    }
}

/// The cluster's status as Server-Sent Events: a `status` event at once, then
/// one whenever anything changes (a job submitted, a run's state, a worker, a
/// leader), at most five a second. The stream lasts until the client leaves or
/// the manager stops; a manager that cannot answer ends it, and the client
/// reconnects (to it or another manager).
#[utoipa::path(
    get, path = "/api/v1/events", tag = "cluster",
    responses(
        (status = 200, description = "`status` events", content_type = "text/event-stream", body = StatusFrame),
        Problems,
    )
)]
async fn cluster_events(State(state): State<AppState>) -> Result<Response, Error> {
    let first = state.api.status().await?;
    let api = state.api.clone();
    let shutdown = state.shutdown.clone();
    let later = futures::stream::unfold(first.clone(), move |last| {
        let api = api.clone();
        async move {
            loop {
                tokio::time::sleep(STATUS_POLL).await;
                match api.status().await {
                    Ok(now) if now == last => {}
                    Ok(now) => return Some((now.clone(), now)),
                    Err(_) => return None,
                }
            }
        }
    });
    let events = futures::stream::once(async move { first })
        .chain(later)
        .take_until(async move { shutdown.cancelled().await })
        .map(|status| Ok::<_, Infallible>(Event::default().event("status").json_data(status).unwrap_or_default()));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// Which workers' series `GET /api/v1/timeline` includes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TimelineParams {
    /// Workers whose load to include: `all`, or ids separated by commas
    /// (`w-1,w-4`, at most 1,000). None by default.
    #[param(pattern = r"^(all|(w-)?[0-9]{1,19}(,(w-)?[0-9]{1,19})*)$")]
    workers: Option<String>,
}

/// The last hour of the cluster as the answering manager sampled it (every
/// 10 s by default), oldest first: runs ended and failed so far (rates are
/// differences), the queue, what runs, CPU and memory in use, and the asked
/// workers' load. A manager's samples start when it does.
#[utoipa::path(
    get, path = "/api/v1/timeline", tag = "cluster", params(TimelineParams),
    responses((status = 200, description = "The samples", body = TimelineView), Problems)
)]
async fn timeline(
    State(state): State<AppState>,
    Params(p): Params<TimelineParams>,
) -> Result<Json<TimelineView>, Error> {
    let source = state
        .timeline
        .as_ref()
        .ok_or_else(|| archon_core::Error::Unavailable("this server keeps no timeline".into()))?;
    let timeline = source();
    let view = match p.workers.as_deref() {
        None => TimelineView::new(&timeline, |_| false),
        Some("all") => TimelineView::new(&timeline, |_| true),
        Some(list) => {
            let wanted = list.split(',').map(|w| id::<WorkerId>("workers", w)).collect::<Result<BTreeSet<_>, _>>()?;
            if wanted.len() > MAX_WORKER_SERIES {
                return Err(Error::bad("workers", format!("at most {MAX_WORKER_SERIES} ids (or `all`)")));
            }
            TimelineView::new(&timeline, |w| wanted.contains(&w))
        }
    };
    Ok(Json(view))
}
