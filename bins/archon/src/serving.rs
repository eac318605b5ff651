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

/// A manager's whole port as `serving` says: the gRPC routes guarded (every
/// call checked when TLS and tokens are on), measured, with the REST API,
/// dashboard and `/metrics` beside them under the same checks.
pub fn secured(
    grpc: Routes,
    manager: Manager,
    metrics: Option<Metrics>,
    serving: &crate::security::Serving,
    shutdown: &CancellationToken,
) -> Routes {
    let authenticator: Arc<dyn archon_core::auth::Authenticator> = Arc::new(manager.clone());
    let mut grpc = serving.guard(grpc, authenticator.clone());
    if let Some(metrics) = &metrics {
        grpc = archon_net::measure_routes(grpc, metrics);
    }
    let sampled = manager.clone();
    let timeline: archon_http::TimelineSource = Arc::new(move |wanted| sampled.timeline(wanted));
    let api: Arc<dyn Api> = Arc::new(manager);
    let config = archon_http::HttpConfig {
        metrics,
        timeline: Some(timeline),
        auth: serving.http_auth(authenticator),
        ..archon_http::HttpConfig::default()
    };
    Routes::from(archon_http::beside_grpc(api, &config, shutdown.clone(), grpc.into_axum_router()))
}

/// The lines a daemon prints at start: where each face of the port is.
pub fn describe(address: impl std::fmt::Display) -> String {
    describe_with(address, "http")
}

/// [`describe`] for a port whose scheme is `scheme` (`https` with TLS).
pub fn describe_with(address: impl std::fmt::Display, scheme: &str) -> String {
    format!(
        "dashboard on {scheme}://{address}{dashboard}\nREST API on {scheme}://{address}/api/v1 (API page {scheme}://{address}{docs}, metrics {scheme}://{address}/metrics)",
        docs = archon_http::DOCS_PATH,
        dashboard = archon_http::DASHBOARD_PATH,
    )
}
