//! `archon-worker`: runs shell, script, process and (when the machine has a Docker
//! engine) Docker jobs for the managers it is given. Connects to one of them, heartbeats, reconnects with exponential backoff
//! and full jitter (cycling through every manager address), and on SIGTERM stops
//! taking work, lets running attempts finish within a grace, then leaves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use archon_core::metrics::Metrics;
use archon_core::model::Resources;
use archon_core::model::units::{parse_bytes, parse_cpu};
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// What `archon-worker` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDaemonConfig {
    /// Manager addresses to connect to (any of them).
    pub managers: Vec<String>,
    /// Unique name in the cluster.
    pub name: String,
    /// Labels for placement constraints.
    pub labels: BTreeMap<String, String>,
    /// What the worker offers.
    pub capacity: Resources,
    /// First reconnect delay ceiling.
    pub reconnect_base: Duration,
    /// Largest reconnect delay.
    pub reconnect_cap: Duration,
    /// On SIGTERM, how long running attempts may take to finish before they are
    /// killed and requeued.
    pub drain_grace: Duration,
    /// How many assigned jobs it holds queued beyond what fits it, each started
    /// the moment resources free up (0: none).
    pub queue: u32,
    /// Where the worker keeps what must survive a crash (its process ledger);
    /// default `~/.local/share/archon/worker-<name>`.
    pub state_dir: Option<std::path::PathBuf>,
    /// How the worker uses the machine's Docker engine.
    pub docker: crate::executors::DockerOptions,
    /// Where to serve `GET /metrics` (Prometheus), if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS to the managers: the cluster CA and this worker's certificate
    /// (whose name must be the worker's name).
    pub tls: crate::security::TlsFlags,
    /// How it logs, as the config file says (flags and `RUST_LOG` win; see [`crate::logging`]).
    pub log: crate::logging::LogOptions,
}

impl AsRef<crate::logging::LogOptions> for WorkerDaemonConfig {
    fn as_ref(&self) -> &crate::logging::LogOptions {
        &self.log
    }
}

impl Default for WorkerDaemonConfig {
    fn default() -> Self {
        WorkerDaemonConfig {
            managers: vec!["http://127.0.0.1:50051".to_owned()],
            name: crate::host::hostname(),
            labels: BTreeMap::new(),
            capacity: crate::host::capacity(),
            reconnect_base: Duration::from_millis(200),
            reconnect_cap: Duration::from_secs(10),
            drain_grace: Duration::from_secs(30),
            queue: archon_core::worker::DEFAULT_QUEUE,
            state_dir: None,
            docker: crate::executors::DockerOptions::default(),
            metrics_listen: None,
            log: crate::logging::LogOptions::default(),
            tls: crate::security::TlsFlags::default(),
        }
    }
}

/// The config file's shape (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerFile {
    /// `managers = ["http://10.0.0.5:50051", "http://10.0.0.6:50051"]`
    pub managers: Option<Vec<String>>,
    /// `name = "worker-1"`
    pub name: Option<String>,
    /// `labels = { zone = "a" }`
    pub labels: Option<BTreeMap<String, String>>,
    /// `cpu = "4"` or `"3500m"`
    pub cpu: Option<String>,
    /// `memory = "8GiB"`
    pub memory: Option<String>,
    /// `network = 1000` (Mbit/s)
    pub network: Option<u64>,
    /// `devices = { gpu = 2 }`
    pub devices: Option<BTreeMap<String, u32>>,
    /// `reconnect_base = "200ms"`
    pub reconnect_base: Option<String>,
    /// `reconnect_cap = "10s"`
    pub reconnect_cap: Option<String>,
    /// `drain_grace = "30s"`
    pub drain_grace: Option<String>,
    /// `queue = 8` (0: hold no assigned jobs beyond what fits)
    pub queue: Option<u32>,
    /// `state_dir = "/var/lib/archon-worker"`
    pub state_dir: Option<std::path::PathBuf>,
    /// `docker = false` turns Docker jobs off (on when an engine answers).
    pub docker: Option<bool>,
    /// `docker_socket = "/var/run/docker.sock"`
    pub docker_socket: Option<String>,
    /// `docker_allow_mounts = true` lets jobs bind-mount host paths.
    pub docker_allow_mounts: Option<bool>,
    /// `docker_pids_limit = 4096` (0: no limit)
    pub docker_pids_limit: Option<i64>,
    /// `metrics_listen = "0.0.0.0:9464"` serves `GET /metrics` there (off by default).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `tls_ca = "/etc/archon/ca.pem"`
    pub tls_ca: Option<std::path::PathBuf>,
    /// `tls_cert = "/etc/archon/worker-1.pem"` (issued for this worker's name)
    pub tls_cert: Option<std::path::PathBuf>,
    /// `tls_key = "/etc/archon/worker-1.key"`
    pub tls_key: Option<std::path::PathBuf>,
    /// `log_format = "json"` (or `"text"`)
    pub log_format: Option<String>,
    /// `log_filter = "archon_core=debug,info"` (RUST_LOG-style)
    pub log_filter: Option<String>,
}

impl WorkerDaemonConfig {
    /// Applies the settings a file (or flags) gives.
    pub fn apply(&mut self, f: WorkerFile) -> anyhow::Result<()> {
        self.log.apply_keys(f.log_format, f.log_filter)?;
        self.tls.apply(&crate::security::TlsFlags {
            tls_ca: f.tls_ca,
            tls_cert: f.tls_cert,
            tls_key: f.tls_key,
            insecure: false,
        });
        self.tls.files()?;
        if f.metrics_listen.is_some() {
            self.metrics_listen = f.metrics_listen;
        }
        if let Some(m) = f.managers {
            if m.is_empty() || m.iter().any(|a| a.trim().is_empty()) {
                anyhow::bail!("managers: give at least one address, e.g. http://127.0.0.1:50051");
            }
            self.managers = m;
        }
        if let Some(n) = f.name {
            if n.trim().is_empty() {
                anyhow::bail!("name: must not be empty");
            }
            self.name = n;
        }
        if let Some(l) = f.labels {
            self.labels.extend(l);
        }
        if let Some(c) = f.cpu {
            self.capacity.cpu_millis = parse_cpu(&c).map_err(|e| anyhow::anyhow!("cpu: {e}"))?;
        }
        if let Some(m) = f.memory {
            self.capacity.memory_bytes = parse_bytes(&m).map_err(|e| anyhow::anyhow!("memory: {e}"))?;
        }
        if let Some(n) = f.network {
            self.capacity.network_mbps = n;
        }
        if let Some(d) = f.devices {
            self.capacity.devices = d;
        }
        if let Some(d) = f.reconnect_base {
            self.reconnect_base = super::duration("reconnect_base", &d)?;
        }
        if let Some(d) = f.reconnect_cap {
            self.reconnect_cap = super::duration("reconnect_cap", &d)?;
        }
        if let Some(d) = f.drain_grace {
            self.drain_grace = super::duration("drain_grace", &d)?;
        }
        if let Some(n) = f.queue {
            self.queue = n;
        }
        if f.state_dir.is_some() {
            self.state_dir = f.state_dir;
        }
        if let Some(on) = f.docker {
            self.docker.enabled = on;
        }
        if let Some(socket) = f.docker_socket {
            if socket.trim().is_empty() {
                anyhow::bail!("docker_socket: give the engine's socket path, e.g. /var/run/docker.sock");
            }
            self.docker.socket = Some(socket);
        }
        if let Some(allow) = f.docker_allow_mounts {
            self.docker.allow_mounts = allow;
        }
        if let Some(n) = f.docker_pids_limit {
            if n < 0 {
                anyhow::bail!("docker_pids_limit: {n} is negative; give a count of processes, or 0 for no limit");
            }
            self.docker.pids_limit = n;
        }
        if self.capacity.cpu_millis == 0 || self.capacity.memory_bytes == 0 {
            anyhow::bail!("cpu and memory: a worker must offer some of each (e.g. cpu = \"2\", memory = \"4GiB\")");
        }
        Ok(())
    }
}

/// Runs the worker until `shutdown` fires, then drains (up to the grace) and leaves.
pub async fn run(config: WorkerDaemonConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut core = WorkerConfig::new(config.name.clone(), config.capacity.clone());
    core.labels = config.labels.clone();
    core.address = crate::host::hostname();
    core.reconnect_base = config.reconnect_base;
    core.reconnect_cap = config.reconnect_cap;
    core.drain_grace = config.drain_grace;
    core.queue = config.queue;
    let metrics = Metrics::new();
    core.metrics = metrics.clone();
    let dialer = match config.tls.files()? {
        Some(files) => {
            let tls = crate::security::client_tls(files, archon_core::auth::Role::Worker)?;
            tls.reloading().watch(shutdown.clone());
            archon_net::tls::Dialer::tls(tls)
        }
        None => archon_net::tls::Dialer::plain(),
    };
    let transport = Arc::new(archon_net::GrpcTransport::with_dialer(config.managers.clone(), dialer));
    let state_dir = config
        .state_dir
        .clone()
        .unwrap_or_else(|| crate::replicated::default_data_dir(&format!("worker-{}", config.name)));
    let (mut executors, ledger) = crate::executors::for_worker(&config.name, &state_dir, &config.docker).await?;
    executors.register(Arc::new(crate::executors::builtins()));
    let worker = Arc::new(WorkerRuntime::new(core, Arc::new(executors), transport));
    let keeper = crate::executors::keep_lease(&ledger, &worker)?;
    println!("archon-worker {:?} offering {} to {}", config.name, config.capacity, config.managers.join(", "));
    let serving = match config.metrics_listen {
        Some(address) => Some(serve_metrics(address, metrics, shutdown.clone()).await?),
        None => None,
    };
    let ran = worker.run(shutdown).await;
    keeper.abort();
    ran?;
    if let Some(serving) = serving {
        let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    }
    println!("archon-worker {:?} stopped", config.name);
    Ok(())
}

/// Serves the worker's `GET /metrics` on `address` until `shutdown` fires.
async fn serve_metrics(
    address: std::net::SocketAddr,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("metrics_listen: cannot listen on {address}"))?;
    let local = listener.local_addr().context("metrics listener address")?;
    println!("archon-worker metrics on http://{local}/metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = archon_http::metrics::serve(listener, metrics, shutdown).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    }))
}
