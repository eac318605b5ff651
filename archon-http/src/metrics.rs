//! `GET /metrics` (the node's registry in the Prometheus text format) and the
//! layer that counts every REST request by method, route pattern and status.
//! A worker, which serves no API, uses [`serve`] for its `/metrics` alone.

use std::time::Instant;

use archon_core::metrics::{CONTENT_TYPE, Metrics};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// The `/metrics` route over `metrics`.
pub fn router(metrics: Metrics) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(move || async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()) }))
}

/// Counts a request by method, route pattern (`/api/v1/runs/{id}`, never the raw
/// path) and status, with its latency.
pub(crate) async fn count_requests(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    metrics.observe_http(method.as_str(), &route, response.status().as_u16(), started.elapsed());
    response.into_response()
}

/// Serves `/metrics` alone on `listener` until `shutdown` fires (a worker's).
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) -> Result<(), Error> {
    let app = router(metrics).fallback(crate::routes::no_route);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| Error::Serve { what: "metrics", source })
}
