//! Request counts and latencies of the node's servers: HTTP by method, route
//! and status, gRPC by method and code. Routes are patterns, never raw paths, so
//! the number of series stays bounded. A streaming gRPC call counts once its
//! response starts, with the code it started with.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Request latencies: 0.5 ms to about 16 s.
fn latency() -> Histogram {
    Histogram::new(super::buckets(0.000_5, 2.0, 16))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    code: String,
}

/// `archon_http_requests_total` and `archon_http_request_duration_seconds`.
pub(super) struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    pub(super) fn registered(registry: &mut Registry) -> HttpMetrics {
        let m = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency as fn() -> Histogram),
        };
        registry.register(
            "archon_http_requests",
            "HTTP requests served, by method, route and status",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "archon_http_request_duration",
            "How long HTTP requests took to answer, by method, route and status",
            Unit::Seconds,
            m.duration.clone(),
        );
        m
    }

    pub(super) fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = HttpLabels { method: method.to_owned(), route: route.to_owned(), code: status.to_string() };
        self.requests.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: String,
}

/// `archon_grpc_requests_total` and `archon_grpc_request_duration_seconds`.
pub(super) struct GrpcMetrics {
    requests: Family<GrpcLabels, Counter>,
    duration: Family<GrpcLabels, Histogram, fn() -> Histogram>,
}

impl GrpcMetrics {
    pub(super) fn registered(registry: &mut Registry) -> GrpcMetrics {
        let m = GrpcMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency as fn() -> Histogram),
        };
        registry.register("archon_grpc_requests", "gRPC calls served, by method and status code", m.requests.clone());
        registry.register_with_unit(
            "archon_grpc_request_duration",
            "How long gRPC calls took to answer (streams: to start), by method and status code",
            Unit::Seconds,
            m.duration.clone(),
        );
        m
    }

    pub(super) fn observe(&self, method: &str, code: &str, elapsed: Duration) {
        let labels = GrpcLabels { method: method.to_owned(), code: code.to_owned() };
        self.requests.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }
}
