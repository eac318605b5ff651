//! What the dashboard follows: `/api/v1/events`, the cluster's status pushed as
//! Server-Sent Events whenever it changes (any commit moves a manager's applied
//! index), and `/api/v1/timeline`, the last hour sampled for charts. Both are
//! answered by the manager asked, follower or leader, from its own replica.
//!
//! However many pages follow the stream, one task per server polls the status
//! (which asks every peer manager for its role and index), and only while
//! someone listens; each stream sends what changed since it last sent.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use archon_core::api::{Api, ClusterStatus};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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

/// The status every stream of one server follows: polled by one task while
/// anyone listens.
#[derive(Debug)]
pub(crate) struct StatusFeed {
    tx: watch::Sender<Option<Arc<ClusterStatus>>>,
    polling: AtomicBool,
}

impl StatusFeed {
    pub(crate) fn new() -> Arc<StatusFeed> {
        Arc::new(StatusFeed { tx: watch::channel(None).0, polling: AtomicBool::new(false) })
    }

    /// A receiver of the status, starting the poller if it is not running.
    fn subscribe(
        self: &Arc<Self>,
        api: Arc<dyn Api>,
        shutdown: CancellationToken,
    ) -> watch::Receiver<Option<Arc<ClusterStatus>>> {
        let rx = self.tx.subscribe();
        if !self.polling.swap(true, Ordering::AcqRel) {
            let feed = self.clone();
            tokio::spawn(async move { feed.poll(api, shutdown).await });
        }
        rx
    }

    async fn poll(self: Arc<Self>, api: Arc<dyn Api>, shutdown: CancellationToken) {
        loop {
            if self.tx.receiver_count() == 0 {
                self.polling.store(false, Ordering::Release);
                // A subscriber that came in between found the flag still set.
                if self.tx.receiver_count() == 0 || self.polling.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
            if let Ok(now) = api.status().await {
                self.tx.send_if_modified(|last| {
                    let changed = last.as_deref() != Some(&now);
                    if changed {
                        *last = Some(Arc::new(now));
                    }
                    changed
                });
            }
            tokio::select! {
                () = tokio::time::sleep(STATUS_POLL) => {}
                () = shutdown.cancelled() => {
                    self.polling.store(false, Ordering::Release);
                    return;
                }
            }
        }
    }
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
    // The first answer is this request's own: a manager that cannot answer
    // says so with a problem rather than an empty stream.
    let first = Arc::new(state.api.status().await?);
    let rx = state.status.subscribe(state.api.clone(), state.shutdown.clone());
    let shutdown = state.shutdown.clone();
    let later = futures::stream::unfold((rx, first.clone()), |(mut rx, last)| async move {
        loop {
            rx.changed().await.ok()?;
            let now = rx.borrow_and_update().clone();
            if let Some(now) = now.filter(|n| **n != *last) {
                return Some((now.clone(), (rx, now)));
            }
        }
    });
    let events = futures::stream::once(async move { first })
        .chain(later)
        .take_until(async move { shutdown.cancelled().await })
        .map(|status| Ok::<_, Infallible>(Event::default().event("status").json_data(&*status).unwrap_or_default()));
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
    let timeline = match p.workers.as_deref() {
        None => source(&|_| false),
        Some("all") => source(&|_| true),
        Some(list) => {
            let wanted = list.split(',').map(|w| id::<WorkerId>("workers", w)).collect::<Result<BTreeSet<_>, _>>()?;
            if wanted.len() > MAX_WORKER_SERIES {
                return Err(Error::bad("workers", format!("at most {MAX_WORKER_SERIES} ids (or `all`)")));
            }
            source(&|w| wanted.contains(&w))
        }
    };
    Ok(Json(TimelineView::new(&timeline)))
}
