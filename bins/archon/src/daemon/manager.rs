//! `archon-manager`: the control plane. Serves the client API and worker sessions
//! on one gRPC port, places runs, and reaps workers that stop heartbeating.
//!
//! State lives in memory until the replicated store lands: a restarted manager
//! starts empty, and reconnecting workers are told their old attempts are stale.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::model::PlacementPolicy;
use archon_core::store::MemStore;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// What `archon-manager` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerDaemonConfig {
    /// Where the gRPC port (API and worker sessions) listens.
    pub listen: SocketAddr,
    /// The address clients and workers should use, if not `listen`.
    pub advertise: Option<String>,
    /// How often workers heartbeat.
    pub heartbeat_interval: Duration,
    /// A worker silent longer than this is lost; its runs are requeued.
    pub worker_timeout: Duration,
    /// Placement policy for jobs that do not choose one.
    pub placement: PlacementPolicy,
}

impl Default for ManagerDaemonConfig {
    fn default() -> Self {
        let core = ManagerConfig::default();
        ManagerDaemonConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            advertise: None,
            heartbeat_interval: core.heartbeat_interval,
            worker_timeout: core.worker_timeout,
            placement: core.placement,
        }
    }
}

/// The config file's shape (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerFile {
    /// `listen = "0.0.0.0:50051"`
    pub listen: Option<SocketAddr>,
    /// `advertise = "http://10.0.0.5:50051"`
    pub advertise: Option<String>,
    /// `heartbeat_interval = "2s"`
    pub heartbeat_interval: Option<String>,
    /// `worker_timeout = "10s"`
    pub worker_timeout: Option<String>,
    /// `placement = "binpack"` or `"spread"`
    pub placement: Option<String>,
}

impl ManagerDaemonConfig {
    /// Applies the settings a file (or flags) gives.
    pub fn apply(&mut self, f: ManagerFile) -> anyhow::Result<()> {
        if let Some(l) = f.listen {
            self.listen = l;
        }
        if f.advertise.is_some() {
            self.advertise = f.advertise;
        }
        if let Some(d) = f.heartbeat_interval {
            self.heartbeat_interval = super::duration("heartbeat_interval", &d)?;
        }
        if let Some(d) = f.worker_timeout {
            self.worker_timeout = super::duration("worker_timeout", &d)?;
        }
        if let Some(p) = f.placement {
            self.placement = match p.as_str() {
                "binpack" => PlacementPolicy::Binpack,
                "spread" => PlacementPolicy::Spread,
                other => anyhow::bail!("placement: {other:?} is not a policy (binpack or spread)"),
            };
        }
        if self.worker_timeout <= self.heartbeat_interval {
            anyhow::bail!(
                "worker_timeout ({:?}) must be longer than heartbeat_interval ({:?})",
                self.worker_timeout,
                self.heartbeat_interval
            );
        }
        Ok(())
    }
}

/// Runs the manager until `shutdown` fires.
pub async fn run(config: ManagerDaemonConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot listen on {}", config.listen))?;
    let local = listener.local_addr().context("listener address")?;
    let address = config.advertise.clone().unwrap_or_else(|| format!("http://{local}"));
    let manager = Manager::builder(Arc::new(MemStore::new()))
        .config(ManagerConfig {
            address: address.clone(),
            heartbeat_interval: config.heartbeat_interval,
            worker_timeout: config.worker_timeout,
            placement: config.placement,
            ..ManagerConfig::default()
        })
        .build();
    let driver_stop = CancellationToken::new();
    let driver = tokio::spawn({
        let (m, s) = (manager.clone(), driver_stop.clone());
        async move { m.run(s).await }
    });
    println!("archon-manager listening on http://{local} (API and worker sessions)");
    tracing::info!(%address, worker_timeout = ?config.worker_timeout, "manager started");
    let served = archon_net::serve_manager(listener, manager, shutdown).await;
    driver_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    served.context("gRPC server")?;
    println!("archon-manager stopped");
    Ok(())
}
