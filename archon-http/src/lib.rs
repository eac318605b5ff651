//! Archon's REST API. [`router`] answers `/api/v1` from any
//! [`archon_core::api::Api`] (a manager in process, usually), with the OpenAPI
//! 3.1 document generated from the handlers at `/api/v1/openapi.json` and an
//! interactive API page at `/api/docs` whose assets are compiled into the
//! binary (no CDN). The managers serve it on their client port beside gRPC,
//! with the web dashboard at `/` ([`DASHBOARD_PATH`]), a page of the same
//! binary that reads this API.
//!
//! The JSON answers are [`views`]: ids as the CLI prints them (`run-340`),
//! instants in RFC 3339. Request bodies are the spec-file format of [`spec`]
//! in JSON. Errors are RFC 9457 problem objects ([`Problem`]).

pub mod auth;
mod dashboard;
pub mod error;
pub mod metrics;
mod routes;
pub mod spec;
pub mod views;

use std::sync::Arc;

use archon_core::api::Api;
use archon_core::metrics::Metrics;
use axum::response::IntoResponse;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use utoipa_swagger_ui::SwaggerUi;

pub use auth::HttpAuth;
pub use error::{Error, Problem, Result};
pub use routes::AppState;

/// The largest request body, as the gRPC API's largest message: 64 MiB.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Where the web dashboard is served.
pub const DASHBOARD_PATH: &str = "/";

/// Where the interactive API page is served.
pub const DOCS_PATH: &str = "/api/docs";

/// How the REST API is served.
#[derive(Clone)]
pub struct HttpConfig {
    /// The largest request body accepted (default [`MAX_BODY_BYTES`]).
    pub max_body_bytes: usize,
    /// The node's metrics: served at `/metrics`, and each request is counted
    /// (`archon_http_requests_total`, by route pattern and status).
    pub metrics: Option<Metrics>,
    /// The node's last hour, served at `/api/v1/timeline` for the dashboard's
    /// charts (a manager's [`Manager::timeline`](archon_core::manager::Manager::timeline)).
    pub timeline: Option<TimelineSource>,
    /// Authorization: every route then needs a token (see [`auth`]); `None`
    /// serves everyone (a cluster without TLS, on loopback).
    pub auth: Option<HttpAuth>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { max_body_bytes: MAX_BODY_BYTES, metrics: None, timeline: None, auth: None }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("metrics", &self.metrics.is_some())
            .field("timeline", &self.timeline.is_some())
            .field("auth", &self.auth)
            .finish()
    }
}

/// Where the server reads the last hour of the cluster from.
/// It is given which workers' loads to include.
pub type TimelineSource =
    Arc<dyn Fn(&dyn Fn(archon_core::model::WorkerId) -> bool) -> archon_core::manager::Timeline + Send + Sync>;

/// The REST API of `api` on its own: `/api/v1/…`, the document, the API page
/// and `/metrics`. Waits and event streams end when `shutdown` fires.
pub fn router(api: Arc<dyn Api>, config: &HttpConfig, shutdown: CancellationToken) -> axum::Router {
    routes(api, config, shutdown)
        .fallback(routes::no_route)
        .layer(axum::middleware::from_fn(routes::redirect_to_leader))
}

/// The REST API beside a gRPC server's routes, on one port: requests with a
/// gRPC content type go to `grpc` (a tonic `Routes`' router), all others to the
/// REST API, whose unknown paths answer a 404 problem.
pub fn beside_grpc(
    api: Arc<dyn Api>,
    config: &HttpConfig,
    shutdown: CancellationToken,
    grpc: axum::Router,
) -> axum::Router {
    let dispatch = tower::service_fn(move |req: axum::extract::Request| {
        let grpc = grpc.clone();
        async move {
            let is_grpc = req
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/grpc"));
            if is_grpc {
                grpc.oneshot(req).await
            } else {
                Ok(routes::no_route(req.uri().clone()).await.into_response())
            }
        }
    });
    routes(api, config, shutdown)
        .fallback_service(dispatch)
        .layer(axum::middleware::from_fn(routes::redirect_to_leader))
}

/// The routes without a fallback.
fn routes(api: Arc<dyn Api>, config: &HttpConfig, shutdown: CancellationToken) -> axum::Router {
    let state = AppState {
        api: api.clone(),
        max_body_bytes: config.max_body_bytes,
        shutdown,
        timeline: config.timeline.clone(),
        status: routes::StatusFeed::new(),
    };
    let (api_routes, doc) = routes::api_routes();
    let mut router = api_routes
        .method_not_allowed_fallback(routes::wrong_method)
        .with_state(state)
        .merge(SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, doc))
        .merge(dashboard::router(api));
    if let Some(metrics) = &config.metrics {
        router = router.merge(metrics::router(metrics.clone()));
    }
    // Every route above, `/metrics` included, is checked; the sign-in routes
    // below it check what they need themselves.
    if let Some(auth) = &config.auth {
        let auth = Arc::new(auth.clone());
        router = router
            .route_layer(axum::middleware::from_fn_with_state(auth.clone(), auth::guard))
            .merge(auth::router(auth));
    }
    if let Some(metrics) = &config.metrics {
        router = router.route_layer(axum::middleware::from_fn_with_state(metrics.clone(), metrics::count_requests));
    }
    router
}

/// The OpenAPI document the router serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::api_routes().1
}
