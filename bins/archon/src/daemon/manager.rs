//! `archon-manager`: the control plane. Serves the client API and worker sessions
//! on one gRPC port, places runs, and reaps workers that stop heartbeating.
//!
//! State is durable: a Raft group (one node by default) on the data dir. With
//! several managers, only the leader serves the API and worker sessions; the
//! others redirect callers to it and take over if it fails.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use archon_core::manager::ManagerConfig;
use archon_core::metrics::Metrics;
use archon_core::model::PlacementPolicy;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::keeping::{Keeping, KeepingFlags};
use crate::replicated::{self, StoreOptions};

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
    /// This manager's Raft node id.
    pub node_id: u64,
    /// Where its durable state lives (default: see [`crate::replicated::default_data_dir`]).
    pub data_dir: Option<std::path::PathBuf>,
    /// The group to bootstrap, id → address (empty: a group of one).
    pub peers: std::collections::BTreeMap<u64, String>,
    /// A member of an existing group to join through.
    pub join: Option<String>,
    /// `postgres://…` keeps state in PostgreSQL instead of the embedded Raft store.
    pub store: Option<String>,
    /// History retention, idempotency window, kept output and input limits.
    pub keeping: Keeping,
    /// How it logs, as the config file says (flags and `RUST_LOG` win; see [`crate::logging`]).
    pub log: crate::logging::LogOptions,
    /// TLS: the cluster CA and this manager's certificate (and `--insecure`).
    pub tls: crate::security::TlsFlags,
    /// Serve `/metrics` without a token (TLS still applies).
    pub open_metrics: bool,
    /// Let browsers without a client certificate reach the dashboard and REST
    /// API, signing in with a token (gRPC still needs a certificate).
    pub browser_login: bool,
}

impl AsRef<crate::logging::LogOptions> for ManagerDaemonConfig {
    fn as_ref(&self) -> &crate::logging::LogOptions {
        &self.log
    }
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
            node_id: 1,
            data_dir: None,
            peers: std::collections::BTreeMap::new(),
            join: None,
            store: None,
            keeping: Keeping::default(),
            log: crate::logging::LogOptions::default(),
            tls: crate::security::TlsFlags::default(),
            open_metrics: false,
            browser_login: false,
        }
    }
}

/// The config file's shape (every key optional). Keys it does not know are
/// refused by [`ManagerDaemonConfig::apply`], naming them.
#[derive(Debug, Default, Deserialize)]
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
    /// `node_id = 1`
    pub node_id: Option<u64>,
    /// `data_dir = "/var/lib/archon"`
    pub data_dir: Option<std::path::PathBuf>,
    /// `peers = "1=10.0.0.1:50051,2=10.0.0.2:50051,3=10.0.0.3:50051"`
    pub peers: Option<String>,
    /// `join = "10.0.0.1:50051"`
    pub join: Option<String>,
    /// `store = "postgres://archon@db/archon"` (the password may come from `ARCHON_STORE` instead)
    pub store: Option<String>,
    /// `log_format = "json"` (or `"text"`)
    pub log_format: Option<String>,
    /// `log_filter = "archon_core=debug,info"` (RUST_LOG-style)
    pub log_filter: Option<String>,
    /// `history_retention = "7d"`, `idempotency_window = "24h"`, `output_limit = "1MiB"`,
    /// `max_task_bytes = "1MiB"`, … (see [`KeepingFlags`]).
    #[serde(flatten)]
    pub keeping: KeepingFlags,
    /// `tls_ca = "/etc/archon/ca.pem"`, `tls_cert`, `tls_key`, `insecure = true`.
    #[serde(flatten)]
    pub tls: crate::security::TlsFlags,
    /// `open_metrics = true`: `/metrics` without a token.
    pub open_metrics: Option<bool>,
    /// `browser_login = true`: browsers without a client certificate may sign in with a token.
    pub browser_login: Option<bool>,
    /// Keys no setting has: refused.
    #[serde(flatten)]
    pub unknown: std::collections::BTreeMap<String, toml::Value>,
}

impl ManagerDaemonConfig {
    /// Applies the settings a file (or flags) gives.
    pub fn apply(&mut self, f: ManagerFile) -> anyhow::Result<()> {
        if let Some(key) = f.unknown.keys().next() {
            anyhow::bail!("unknown field `{key}` (the keys are archon-manager's long flags, with underscores)");
        }
        self.keeping.apply(&f.keeping)?;
        self.tls.apply(&f.tls);
        self.tls.files()?;
        if let Some(open) = f.open_metrics {
            self.open_metrics = open;
        }
        if let Some(browsers) = f.browser_login {
            self.browser_login = browsers;
        }
        self.log.apply_keys(f.log_format, f.log_filter)?;
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
        if let Some(id) = f.node_id {
            self.node_id = id;
        }
        if f.data_dir.is_some() {
            self.data_dir = f.data_dir;
        }
        if let Some(p) = f.peers {
            self.peers = crate::replicated::parse_peers(&p)?;
        }
        if f.join.is_some() {
            self.join = f.join;
        }
        if let Some(store) = f.store {
            crate::postgres::validate(&store).map_err(|e| anyhow::anyhow!("store: {e}"))?;
            self.store = Some(store);
        }
        if self.store.is_some() && (!self.peers.is_empty() || self.join.is_some()) {
            anyhow::bail!(
                "peers and join: not used with store = postgres://…; managers given the same database form one group"
            );
        }
        // The library's own check: the worker lease must outlast three heartbeats.
        let timings = ManagerConfig {
            heartbeat_interval: self.heartbeat_interval,
            worker_timeout: self.worker_timeout,
            ..ManagerConfig::default()
        };
        timings.check().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

/// Runs the manager until `shutdown` fires.
pub async fn run(config: ManagerDaemonConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let files = config.tls.files()?;
    crate::security::check_exposure(config.listen, files.is_some(), config.tls.insecure, "listen")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot listen on {}", config.listen))?;
    let local = listener.local_addr().context("listener address")?;
    let mut serving = match files {
        Some(files) => crate::security::Serving::secured(files, config.browser_login, &shutdown)?,
        None => crate::security::Serving::default(),
    };
    if config.open_metrics {
        serving.open_paths.push("/metrics".into());
    }
    if config.advertise.is_none() && local.ip().is_unspecified() && (!config.peers.is_empty() || config.join.is_some())
    {
        anyhow::bail!(
            "advertise: listening on {local} needs --advertise HOST:PORT, the address other managers, workers and \
             clients reach this one at"
        );
    }
    let address = advertised(&config, &serving, local);
    // One registry for the node: the manager, its store and its servers.
    let metrics = Metrics::new();
    let builder = archon::Archon::manager_only()
        .address(address.clone())
        .dialer(serving.dialer.clone())
        .metrics(metrics.clone())
        .manager_config(config.keeping.configure(ManagerConfig {
            node_id: config.node_id,
            heartbeat_interval: config.heartbeat_interval,
            worker_timeout: config.worker_timeout,
            placement: config.placement,
            ..ManagerConfig::default()
        }))
        .stop_on(shutdown.clone());
    let builder = match &config.store {
        Some(url) => builder.postgres(url),
        None => {
            let options = StoreOptions {
                node_id: config.node_id,
                data_dir: config
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| replicated::default_data_dir(&format!("manager-{}", config.node_id))),
                peers: config.peers.clone(),
                join: config.join.clone(),
                max_entry_bytes: config.keeping.max_entry_bytes,
                heartbeat: config.keeping.raft_heartbeat,
                election_timeout: config.keeping.election_timeout,
            };
            println!("archon-manager node {} keeps its state in {}", options.node_id, options.data_dir.display());
            builder.raft(options)
        }
    };
    let archon = match builder.start().await {
        Ok(archon) => archon,
        Err(archon::Error::Stopped) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if let (Some(raft), Some(via)) = (archon.raft(), config.join.clone()) {
        replicated::join_in_background(raft.clone(), via, serving.dialer.clone(), shutdown.clone());
    }
    let served = serve(&config, &archon, listener, metrics, &serving, shutdown).await;
    let stopped = archon.shutdown().await;
    served?;
    stopped?;
    println!("archon-manager stopped");
    Ok(())
}

/// Serves the manager's port until `shutdown`: the API and worker sessions, and
/// the Raft RPCs when the state is in the embedded Raft store.
async fn serve(
    config: &ManagerDaemonConfig,
    archon: &archon::Archon,
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    serving: &crate::security::Serving,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let local = listener.local_addr().context("listener address")?;
    let address = &advertised(config, serving, local);
    let manager = archon.manager().clone();
    let what = if archon.raft().is_some() {
        "API, worker sessions and Raft"
    } else {
        "API and worker sessions; state in PostgreSQL"
    };
    let scheme = serving.scheme();
    let security = if serving.secure() { "; TLS 1.3 with client certificates, tokens required" } else { "" };
    println!("archon-manager listening on {scheme}://{local} ({what}{security})");
    tracing::info!(%address, worker_timeout = ?config.worker_timeout, secure = serving.secure(), "manager started");
    println!("{}", crate::serving::describe_with(local, scheme));
    let mut routes = archon_net::manager_routes(manager.clone(), &shutdown);
    if let Some(raft) = archon.raft() {
        routes = routes.add_service(archon_raft::service::raft_service(raft.raft().clone()));
    }
    let routes = crate::serving::secured(routes, manager, Some(metrics), serving, &shutdown);
    archon_net::serve_routes_tls(listener, serving.tls.clone(), routes, shutdown, "the manager's gRPC and REST port")
        .await
        .context("gRPC server")
}

/// The address clients, workers and peers reach this manager at.
fn advertised(config: &ManagerDaemonConfig, serving: &crate::security::Serving, local: SocketAddr) -> String {
    config.advertise.clone().unwrap_or_else(|| format!("{}://{local}", serving.scheme()))
}
