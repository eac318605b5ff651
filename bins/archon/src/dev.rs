//! `archon dev`: a whole cluster in one process — a manager on a durable
//! single-node Raft store in the data dir, one local worker running shell, script,
//! process and (when the machine has a Docker engine) Docker jobs, and the gRPC API. On shutdown the worker kills what it runs
//! before the manager stops; after a crash, a restart finds every acknowledged job.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use archon_core::api::Api;
use archon_core::executor::ExecutorRegistry;
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::metrics::Metrics;
use archon_core::model::Resources;
use archon_core::store::Store;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use tokio_util::sync::CancellationToken;

/// What `archon dev` runs.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// Where the gRPC API listens.
    pub listen: SocketAddr,
    /// The local worker's name.
    pub worker_name: String,
    /// What the local worker offers.
    pub capacity: Resources,
    /// The local worker's labels.
    pub labels: BTreeMap<String, String>,
    /// Where the cluster's state lives (and the worker's, whatever the store).
    pub data_dir: std::path::PathBuf,
    /// `postgres://…` keeps the state in PostgreSQL instead of a Raft log in the data dir.
    pub store: Option<String>,
    /// History retention, idempotency window, kept output and input limits.
    pub keeping: crate::daemon::keeping::Keeping,
}

impl DevConfig {
    /// Defaults: 127.0.0.1:50051, the whole machine for the worker.
    pub fn new(listen: SocketAddr) -> DevConfig {
        DevConfig {
            listen,
            worker_name: format!("dev-{}", crate::host::hostname()),
            capacity: crate::host::capacity(),
            labels: BTreeMap::new(),
            data_dir: crate::replicated::default_data_dir("dev"),
            store: None,
            keeping: crate::daemon::keeping::Keeping::default(),
        }
    }
}

/// Runs the single-process cluster until `shutdown` fires. `executors` are what
/// the local worker can run (see [`crate::executors`]).
pub async fn run(config: DevConfig, executors: ExecutorRegistry, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {}", config.listen))?;
    let address = listener.local_addr().context("listener address")?;

    let advertised = format!("http://{address}");
    // One registry for the whole process: manager, store, worker and servers.
    let metrics = Metrics::new();
    let (store, raft, pg): (Arc<dyn Store>, _, _) = match &config.store {
        Some(url) => {
            let Some(pg) = crate::postgres::open(url, &advertised, &metrics, &shutdown).await? else { return Ok(()) };
            pg.wait_for_leadership(Duration::from_secs(30)).await.context("the store did not elect itself leader")?;
            (Arc::new(pg.clone()), None, Some(pg))
        }
        None => {
            println!("Archon dev keeps its state in {}", config.data_dir.display());
            let mut options = crate::replicated::StoreOptions::new(config.data_dir.clone());
            options.max_entry_bytes = config.keeping.max_entry_bytes;
            let raft = crate::replicated::open(&options, &advertised, &metrics).await?;
            raft.wait_for_leadership(Duration::from_secs(30)).await.context("the store did not elect itself leader")?;
            (Arc::new(raft.clone()), Some(raft), None)
        }
    };
    let manager = Manager::builder(store)
        .config(config.keeping.configure(ManagerConfig { address: advertised, ..ManagerConfig::default() }))
        .metrics(metrics.clone())
        .build();
    let manager_stop = CancellationToken::new();
    let manager_task = tokio::spawn({
        let (m, s) = (manager.clone(), manager_stop.clone());
        async move { m.run(s).await }
    });

    let mut worker_config = WorkerConfig::new(config.worker_name.clone(), config.capacity.clone());
    worker_config.labels = config.labels.clone();
    worker_config.address = "in-process".into();
    worker_config.metrics = metrics.clone();
    let worker = Arc::new(WorkerRuntime::new(
        worker_config,
        Arc::new(executors),
        Arc::new(InProcTransport::new(manager.clone())),
    ));
    let worker_stop = CancellationToken::new();
    let worker_task = tokio::spawn({
        let (w, s) = (worker.clone(), worker_stop.clone());
        async move { w.run(s).await }
    });
    wait_for_worker(&manager).await?;

    println!("Archon dev cluster: manager + worker {:?} ({})", config.worker_name, config.capacity);
    println!("gRPC API listening on http://{address}");
    println!("{}", crate::serving::describe(address));
    println!("Try: archon submit --wait --command 'echo hello from archon'");

    // The same server as archon-manager: the API and worker sessions on one port,
    // so `archon-worker --manager <this address>` can join a dev cluster too.
    let mut routes = archon_net::manager_routes(manager.clone(), &shutdown);
    if let Some(raft) = &raft {
        routes = routes.add_service(archon_raft::service::raft_service(raft.raft().clone()));
    }
    let routes = archon_net::measure_routes(routes, &metrics);
    let routes = crate::serving::with_rest(routes, manager.clone(), Some(metrics), &shutdown);
    let served = archon_net::serve_routes(listener, routes, shutdown.clone(), "the gRPC and REST APIs").await;

    // Stop the worker first: it kills running attempts (whole process trees).
    worker_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), worker_task).await;
    manager_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), manager_task).await;
    if let Some(raft) = &raft {
        let _ = raft.shutdown().await;
    }
    if let Some(pg) = &pg {
        pg.shutdown();
    }
    served.context("gRPC server")?;
    println!("Archon dev cluster stopped.");
    Ok(())
}

async fn wait_for_worker(manager: &Manager) -> anyhow::Result<()> {
    for _ in 0..500 {
        if manager.list_workers().await?.iter().any(|w| w.connected) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("the local worker did not register within 5s")
}
