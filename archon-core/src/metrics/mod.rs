//! Prometheus metrics: one [`Metrics`] per node, holding that node's registry,
//! shared (cheaply cloned) by everything the node runs — manager, store, cron
//! ticker, worker, gRPC and HTTP servers — and encoded for `GET /metrics` by
//! [`Metrics::encode`] in the Prometheus text format (version 0.0.4), which
//! `promtool check metrics` accepts.
//!
//! The one thing to know: a part's families appear once the part is attached
//! (a [`Manager`](crate::manager::Manager) built with the node's metrics
//! registers the manager's), so a worker's `/metrics` shows worker families only.
//! What the cluster state already counts — runs by state, queue depth, workers,
//! per-worker allocation, heartbeat age — is not kept here but read from the
//! live state at each scrape. Names follow Prometheus conventions:
//! the `archon_` prefix, base units (`_seconds`, `_bytes`), `_total` on counters.

mod cluster;
mod manager;
mod raft;
mod rpc;
mod store;
mod worker;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::registry::Registry;

pub(crate) use cluster::{ClusterSample, WorkerSample};
pub(crate) use manager::ManagerMetrics;
pub use raft::{RaftMetrics, RaftProgress};
pub use store::StoreMetrics;
pub(crate) use worker::WorkerMetrics;

/// The `Content-Type` of what [`Metrics::encode`] returns: the Prometheus text
/// format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A node's metrics: its registry and the handles each part records into.
/// Cheap to clone; clones share the registry.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    registry: Mutex<Registry>,
    manager: OnceLock<ManagerMetrics>,
    cluster: OnceLock<Arc<cluster::ClusterCollector>>,
    worker: OnceLock<WorkerMetrics>,
    store: OnceLock<StoreMetrics>,
    raft: OnceLock<RaftMetrics>,
    http: OnceLock<rpc::HttpMetrics>,
    grpc: OnceLock<rpc::GrpcMetrics>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A node's metrics, with an empty registry of its own.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Everything registered, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry()) {
            // Writing to a String fails only if a collector does; say so in the output.
            tracing::warn!(error = %e, "cannot encode the metrics");
            text.push_str("# the metrics could not all be encoded\n");
        }
        text
    }

    /// Records one HTTP request: its method, its route (the pattern, as
    /// `/v1/runs/{id}`, never the raw path), its status and how long it took.
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http().observe(method, route, status, elapsed);
    }

    /// Records one gRPC call: its method (`archon.v1.ArchonApi/Submit`), its
    /// status code name (`OK`, `NotFound`, …) and how long it took.
    pub fn observe_grpc(&self, method: &str, code: &str, elapsed: Duration) {
        self.grpc().observe(method, code, elapsed);
    }

    /// The store's batch and commit histograms (registered on first use).
    pub fn store(&self) -> &StoreMetrics {
        self.inner.store.get_or_init(|| StoreMetrics::registered(&mut self.registry()))
    }

    /// The Raft node's progress gauges and leader changes (registered on first use).
    pub fn raft(&self) -> &RaftMetrics {
        self.inner.raft.get_or_init(|| RaftMetrics::registered(&mut self.registry()))
    }

    /// The manager's counters and histograms (registered on first use).
    pub(crate) fn manager(&self) -> &ManagerMetrics {
        self.inner.manager.get_or_init(|| ManagerMetrics::registered(&mut self.registry()))
    }

    /// The worker's executor counters and histograms (registered on first use).
    pub(crate) fn worker(&self) -> &WorkerMetrics {
        self.inner.worker.get_or_init(|| WorkerMetrics::registered(&mut self.registry()))
    }

    /// Reads the cluster's gauges from `sample` at each scrape (a later call
    /// replaces an earlier one). `sample` answers `None` once its source is gone.
    pub(crate) fn sample_cluster(&self, sample: impl Fn() -> Option<ClusterSample> + Send + Sync + 'static) {
        let collector = self.inner.cluster.get_or_init(|| {
            let collector = Arc::new(cluster::ClusterCollector::default());
            self.registry().register_collector(Box::new(collector.clone()));
            collector
        });
        collector.set_source(Box::new(sample));
    }

    fn http(&self) -> &rpc::HttpMetrics {
        self.inner.http.get_or_init(|| rpc::HttpMetrics::registered(&mut self.registry()))
    }

    fn grpc(&self) -> &rpc::GrpcMetrics {
        self.inner.grpc.get_or_init(|| rpc::GrpcMetrics::registered(&mut self.registry()))
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Buckets growing by `factor` from `start`, `count` of them.
fn buckets(start: f64, factor: f64, count: u16) -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(start, factor, count)
}

#[cfg(test)]
mod tests;
