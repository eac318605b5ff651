//! The REST API's router: every `/api/v1` route is registered through
//! utoipa-axum from its handler's `#[utoipa::path]`, so the router and the
//! OpenAPI document are built from the same list and cannot drift apart.
//! Unknown routes and methods answer problem objects too; a follower's
//! "not the leader" becomes a 307 to the same path on the leader.

mod cluster;
pub(crate) mod extract;
mod jobs;
mod live;
pub(crate) use live::StatusFeed;
mod rfc3339;
mod runs;
mod schedules;
mod tokens;
mod workflows;

use std::sync::Arc;

use archon_core::api::Api;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::OpenApi;
use utoipa::{IntoResponses, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{Error, LeaderHint, Problem};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The manager (or a client of one).
    pub api: Arc<dyn Api>,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// Fires when the server stops: waits and event streams end.
    pub shutdown: CancellationToken,
    /// The last hour of the cluster, when the server keeps one (a manager does).
    pub timeline: Option<crate::TimelineSource>,
    /// The status the event streams follow (one poller per server).
    pub(crate) status: std::sync::Arc<live::StatusFeed>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("max_body_bytes", &self.max_body_bytes).finish_non_exhaustive()
    }
}

/// The error answers any route may give, each a problem object.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Problems {
    /// This node is not the leader: `Location` is the same path on the leader.
    #[response(status = 307, content_type = "application/problem+json")]
    Redirect(Problem),
    /// A field is wrong; `field` names it and `detail` gives the accepted form.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No token, or one that is malformed, unknown, revoked or expired (a secured cluster).
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The token lacks the scope this operation needs.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such job, run, workflow or worker.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The request conflicts with the object's state.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// It was removed by the retention policy.
    #[response(status = 410, content_type = "application/problem+json")]
    Gone(Problem),
    /// The body is larger than the limit.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The job cannot be placed on any worker.
    #[response(status = 422, content_type = "application/problem+json")]
    Unschedulable(Problem),
    /// The cluster cannot answer now (no leader, shutting down): retry.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The OpenAPI document's fixed parts; the paths come from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Archon",
        description = "The REST API of an Archon cluster: submit jobs and workflows, follow their runs, \
                       operate schedules and workers. Ids are the strings the CLI prints (`job-12`, \
                       `run-340`); instants are RFC 3339; errors are RFC 9457 problem objects.",
        license(name = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "jobs", description = "Submit, list, get and cancel jobs"),
        (name = "runs", description = "Runs, their output and live events"),
        (name = "workflows", description = "Jobs with edges between them"),
        (name = "schedules", description = "Cron jobs: pause, resume, trigger, backfill"),
        (name = "cluster", description = "Managers and workers"),
        (name = "tokens", description = "API tokens (admin scope)"),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Every operation wants `Authorization: Bearer archon_…` when the server has
/// authorization on (a secured cluster); the scope each needs is in
/// [`crate::auth::route_scope`].
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("archon_<id>_<secret>".into());
        scheme.description = Some(
            "An API token (`archon token create`). Reads need `read`; submits `submit`; cancel, drain and \
             schedules `operate`; tokens `admin`."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The `/api/v1` routes with their document.
pub(crate) fn api_routes() -> (axum::Router<AppState>, OpenApi) {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    OpenApiRouter::with_openapi(doc)
        .merge(jobs::router())
        .merge(runs::router())
        .merge(workflows::router())
        .merge(schedules::router())
        .merge(cluster::router())
        .merge(live::router())
        .merge(tokens::router())
        .split_for_parts()
}

/// Answers an unknown path.
pub(crate) async fn no_route(uri: Uri) -> Error {
    Error::NoRoute(uri.path().to_owned())
}

/// Answers a known path with a method it does not serve.
pub(crate) async fn wrong_method(method: Method, uri: Uri) -> Error {
    Error::MethodNotAllowed { method: method.to_string(), path: uri.path().to_owned() }
}

/// Turns a "not the leader" answer into a redirect to the same path and query
/// on the leader (its client address serves this API too).
pub(crate) async fn redirect_to_leader(req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map(ToString::to_string).unwrap_or_else(|| "/".to_owned());
    let mut response = next.run(req).await;
    if let Some(LeaderHint(leader)) = response.extensions_mut().remove::<LeaderHint>() {
        let base = if leader.starts_with("http://") || leader.starts_with("https://") {
            leader.trim_end_matches('/').to_owned()
        } else {
            format!("http://{leader}")
        };
        if let Ok(location) = HeaderValue::from_str(&format!("{base}{target}")) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    response
}
