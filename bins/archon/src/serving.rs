//! A manager's client port: the gRPC services (client API, worker sessions and,
//! when replicated, Raft) and the REST API with its document, API page,
//! `/metrics` and the web dashboard at `/`, all on one listener. gRPC requests are told apart by their
//! content type; everything else is HTTP/1.1 or HTTP/2 REST.

use std::sync::Arc;

use archon_core::api::Api;
use archon_core::manager::Manager;
use archon_core::metrics::Metrics;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// `grpc` (a manager's gRPC routes) with the REST API of `manager` beside it.
pub fn with_rest(grpc: Routes, manager: Manager, metrics: Option<Metrics>, shutdown: &CancellationToken) -> Routes {
    let sampled = manager.clone();
    let timeline: archon_http::TimelineSource = Arc::new(move |wanted| sampled.timeline(wanted));
    let api: Arc<dyn Api> = Arc::new(manager);
    let config = archon_http::HttpConfig { metrics, timeline: Some(timeline), ..archon_http::HttpConfig::default() };
    Routes::from(archon_http::beside_grpc(api, &config, shutdown.clone(), grpc.into_axum_router()))
}

/// The lines a daemon prints at start: where each face of the port is.
pub fn describe(address: impl std::fmt::Display) -> String {
    format!(
        "dashboard on http://{address}{dashboard}\nREST API on http://{address}/api/v1 (API page http://{address}{docs}, metrics http://{address}/metrics)",
        docs = archon_http::DOCS_PATH,
        dashboard = archon_http::DASHBOARD_PATH,
    )
}
