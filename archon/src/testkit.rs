//! [`TestCluster`]: a real multi-node cluster inside one test process — three
//! managers (a Raft group on durable stores in a temp dir, each serving gRPC on
//! a loopback port) and workers connected to them over gRPC, as
//! `archon-manager` and `archon-worker` run. A test points its app at
//! [`TestCluster::client`] (or [`TestCluster::addresses`]), then kills the
//! leader or a worker and checks what the app sees.
//!
//! The one thing to know: "killing" a manager stops its server and its Raft
//! node abruptly (connections cut, nothing handed over), as a crash would look
//! to the others; its data dir stays, so [`TestCluster::restart_manager`] can
//! bring it back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use archon_core::api::Api;
use archon_core::executor::Executor;
use archon_core::model::Resources;
use archon_core::store::Store;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use archon_exec::{FunctionExecutor, TypedFunction};
use archon_net::tls::Dialer;
use archon_net::{GrpcClient, GrpcTransport};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::replicated::StoreOptions;
use crate::{Archon, Error, executors};

/// How long [`TestCluster`] waits for a leader and for its workers to join.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What [`TestClusterBuilder::start`] starts.
#[must_use = "nothing runs until .start().await"]
pub struct TestClusterBuilder {
    managers: usize,
    workers: usize,
    capacity: Resources,
    functions: FunctionExecutor,
    executors: Vec<Arc<dyn Executor>>,
}

impl std::fmt::Debug for TestClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClusterBuilder")
            .field("managers", &self.managers)
            .field("workers", &self.workers)
            .field("functions", &self.functions)
            .finish_non_exhaustive()
    }
}

impl TestClusterBuilder {
    /// How many managers (default 3).
    pub fn managers(mut self, n: usize) -> Self {
        self.managers = n.max(1);
        self
    }

    /// How many workers (default 2).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// What each worker offers (default 2 cores and 1 GiB).
    pub fn capacity(mut self, capacity: Resources) -> Self {
        self.capacity = capacity;
        self
    }

    /// Registers the typed function `f` as `name` on every worker (see [`crate::Builder::function`]).
    pub fn function<In, Out, F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + Send + 'static,
        F: TypedFunction<In, Out>,
    {
        self.functions.register_typed_mut(name, f);
        self
    }

    /// Runs another kind of task on every worker.
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executors.push(executor);
        self
    }

    /// Starts the managers and the workers, and returns once a manager leads
    /// and every worker is in session with it.
    pub async fn start(self) -> Result<TestCluster, Error> {
        let dir = tempfile::Builder::new().prefix("archon-testkit-").tempdir().map_err(|source| Error::Path {
            what: "cannot create the test cluster's dir",
            path: "/tmp".into(),
            source,
        })?;
        let mut listeners = Vec::new();
        for _ in 0..self.managers {
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|source| Error::Path {
                what: "cannot bind a loopback port for a manager",
                path: "127.0.0.1:0".into(),
                source,
            })?;
            listeners.push(listener);
        }
        let mut addresses = Vec::new();
        for listener in &listeners {
            let port = listener.local_addr().map_err(|source| Error::Path {
                what: "cannot read a manager's port",
                path: "127.0.0.1".into(),
                source,
            })?;
            addresses.push(format!("http://{port}"));
        }
        let peers: BTreeMap<u64, String> = (1..).zip(addresses.iter().cloned()).collect();
        let mut cluster = TestCluster {
            managers: Vec::new(),
            workers: Vec::new(),
            addresses: addresses.clone(),
            peers,
            dir,
            client: tokio::sync::OnceCell::new(),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let node = cluster.start_manager(i, listener).await?;
            cluster.managers.push(Some(node));
        }
        let functions = Arc::new(self.functions);
        for i in 0..self.workers {
            let mut registry = executors::processes(None);
            registry.register(functions.clone() as Arc<dyn Executor>);
            for executor in &self.executors {
                registry.register(executor.clone());
            }
            let mut config = WorkerConfig::new(format!("worker-{}", i + 1), self.capacity.clone());
            config.address = "in-process".into();
            config.reconnect_base = Duration::from_millis(50);
            config.reconnect_cap = Duration::from_millis(500);
            let transport = GrpcTransport::with_dialer(addresses.clone(), Dialer::plain());
            let runtime = Arc::new(WorkerRuntime::new(config, Arc::new(registry), Arc::new(transport)));
            let stop = CancellationToken::new();
            let task = tokio::spawn({
                let (runtime, stop) = (runtime.clone(), stop.clone());
                async move { runtime.run(stop).await }
            });
            cluster.workers.push(Some(WorkerNode { stop, task }));
        }
        cluster.wait_until_ready(self.workers).await?;
        Ok(cluster)
    }
}

/// A running manager: its Archon and the server in front of it.
struct ManagerNode {
    archon: Archon,
    stop: CancellationToken,
    served: JoinHandle<Result<(), archon_net::Error>>,
}

/// A running worker.
struct WorkerNode {
    stop: CancellationToken,
    task: JoinHandle<Result<(), archon_core::Error>>,
}

/// Managers and workers of a real cluster in this process, on loopback; see the
/// module docs. Dropping it stops everything.
pub struct TestCluster {
    managers: Vec<Option<ManagerNode>>,
    workers: Vec<Option<WorkerNode>>,
    addresses: Vec<String>,
    peers: BTreeMap<u64, String>,
    dir: tempfile::TempDir,
    client: tokio::sync::OnceCell<GrpcClient>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("addresses", &self.addresses)
            .field("managers up", &self.managers.iter().filter(|m| m.is_some()).count())
            .field("workers up", &self.workers.iter().filter(|w| w.is_some()).count())
            .finish()
    }
}

impl TestCluster {
    /// Three managers and two workers of 2 cores and 1 GiB, running shell,
    /// script and process jobs and the functions registered.
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder {
            managers: 3,
            workers: 2,
            capacity: Resources { cpu_millis: 2000, memory_bytes: 1 << 30, ..Resources::default() },
            functions: FunctionExecutor::new(),
            executors: Vec::new(),
        }
    }

    /// The managers' gRPC addresses (`http://127.0.0.1:PORT`), the first manager's first.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// A gRPC client of the whole [`Api`] that finds the leader, and finds the
    /// next one after a failover — what an app outside the cluster uses.
    pub async fn client(&self) -> Result<GrpcClient, Error> {
        let client = self
            .client
            .get_or_try_init(|| async {
                GrpcClient::connect_with(&self.addresses, Dialer::plain())
                    .await
                    .map(|c| c.find_leader_for(READY_TIMEOUT))
            })
            .await?;
        Ok(client.clone())
    }

    /// The index (0-based) of the manager that leads now, waiting for one.
    pub async fn leader(&self) -> Result<usize, Error> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            for (i, node) in self.managers.iter().enumerate() {
                let leads = node
                    .as_ref()
                    .and_then(|n| n.archon.raft())
                    .is_some_and(|raft| Store::leadership(raft).borrow().is_leader);
                if leads {
                    return Ok(i);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable(format!("no manager led within {READY_TIMEOUT:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills manager `i` (0-based): its server and Raft node stop at once.
    pub async fn kill_manager(&mut self, i: usize) -> Result<(), Error> {
        let node = self.managers.get_mut(i).and_then(Option::take).ok_or_else(|| Error::Config {
            field: "manager",
            message: format!("manager {i} is not running ({} were started)", self.addresses.len()),
        })?;
        node.served.abort();
        node.stop.cancel();
        let _ = node.served.await;
        node.archon.shutdown().await
    }

    /// Kills the manager that leads now; returns its index.
    pub async fn kill_leader(&mut self) -> Result<usize, Error> {
        let leader = self.leader().await?;
        self.kill_manager(leader).await?;
        Ok(leader)
    }

    /// Starts manager `i` again on its data dir and port.
    pub async fn restart_manager(&mut self, i: usize) -> Result<(), Error> {
        let address = self.addresses.get(i).cloned().ok_or_else(|| Error::Config {
            field: "manager",
            message: format!("there is no manager {i} ({} were started)", self.addresses.len()),
        })?;
        let port = address.trim_start_matches("http://");
        let listener = TcpListener::bind(port).await.map_err(|source| Error::Path {
            what: "cannot bind the manager's port again",
            path: port.into(),
            source,
        })?;
        let node = self.start_manager(i, listener).await?;
        self.managers[i] = Some(node);
        Ok(())
    }

    /// Kills worker `i` (0-based): it leaves without finishing what it runs,
    /// whose runs the managers requeue once its lease ends.
    pub async fn kill_worker(&mut self, i: usize) -> Result<(), Error> {
        let node = self
            .workers
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| Error::Config { field: "worker", message: format!("worker {i} is not running") })?;
        node.task.abort();
        let _ = node.task.await;
        Ok(())
    }

    /// Stops every worker (killing what they run) and every manager.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        for node in self.workers.iter_mut().filter_map(Option::take) {
            node.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(15), node.task).await;
        }
        for node in self.managers.iter_mut().filter_map(Option::take) {
            node.stop.cancel();
            let _ = node.served.await;
            node.archon.shutdown().await?;
        }
        Ok(())
    }

    async fn start_manager(&self, i: usize, listener: TcpListener) -> Result<ManagerNode, Error> {
        let node_id = i as u64 + 1;
        let mut options = StoreOptions::new(self.dir.path().join(format!("manager-{node_id}")));
        options.node_id = node_id;
        options.peers = self.peers.clone();
        let archon = Archon::manager_only().raft(options).address(self.addresses[i].clone()).start().await?;
        let stop = CancellationToken::new();
        let mut routes = archon_net::manager_routes(archon.manager().clone(), &stop);
        if let Some(raft) = archon.raft() {
            routes = routes.add_service(archon_raft::service::raft_service(raft.raft().clone()));
        }
        let served = tokio::spawn(archon_net::serve_routes_tls(listener, None, routes, stop.clone(), "a test manager"));
        Ok(ManagerNode { archon, stop, served })
    }

    async fn wait_until_ready(&self, workers: usize) -> Result<(), Error> {
        let client = self.client().await?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let connected = match client.list_workers().await {
                Ok(list) => list.iter().filter(|w| w.connected).count(),
                Err(_) => 0,
            };
            if connected >= workers {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "{connected} of {workers} workers joined the test cluster within {READY_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in self.workers.iter_mut().filter_map(Option::take) {
            node.stop.cancel();
        }
        for node in self.managers.iter_mut().filter_map(Option::take) {
            node.served.abort();
            node.stop.cancel();
        }
    }
}

fn unavailable(message: String) -> Error {
    Error::Core(archon_core::Error::Unavailable(message))
}
