//! The cluster a scenario runs: three managers, each a real [`RaftStore`] on its own
//! temp dir behind a real [`Manager`], serving the API, worker sessions and Raft on
//! one loopback port; two real [`WorkerRuntime`]s over [`GrpcTransport`].
//!
//! Faults go through two tables. Raft's RPCs obey a shared [`Links`] (the
//! store's fault-injection seam). Each worker reaches each manager through its
//! own small TCP proxy, which drops its connections and refuses new ones while
//! that (worker, manager) link is cut. Clients are never partitioned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::model::{AttemptId, AttemptResult, ExitStatus, JobId, JobRecord, Resources, RunId, RunRecord, Task};
use archon_core::state::ClusterState;
use archon_core::store::{Leadership, Store, StoreExt};
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use archon_net::GrpcTransport;
use archon_raft::network::{GrpcNetwork, Links};
use archon_raft::{RaftConfig, RaftStore};
use async_trait::async_trait;
use openraft::ServerState;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Node ids of the managers.
/// What a node holds once the cluster is quiet: its live state and the records
/// its history keeps.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) id: u64,
    pub(crate) applied: Option<u64>,
    pub(crate) state: ClusterState,
    pub(crate) runs: BTreeMap<RunId, RunRecord>,
    pub(crate) jobs: BTreeMap<JobId, JobRecord>,
}

pub(crate) const NODES: [u64; 3] = [1, 2, 3];
/// How many workers run.
pub(crate) const WORKERS: usize = 2;
/// The function every job runs: sleeps for its input's milliseconds.
pub(crate) const WORK: &str = "work";

/// How long a node may take to give up its redb file and port before a restart.
const RELEASE_WAIT: Duration = Duration::from_secs(20);
/// How long a server may take to close its connections once told to stop.
const SERVE_STOP_WAIT: Duration = Duration::from_secs(15);

/// What each node and observer has seen of leaders: term → leader → who saw it.
pub(crate) type LeaderLog = BTreeMap<u64, BTreeMap<u64, BTreeSet<String>>>;
/// Every attempt a worker executed, with the workers that executed it.
pub(crate) type Executions = BTreeMap<AttemptId, Vec<String>>;

/// One manager node's fixed parts, and its running incarnation when it is up.
struct Node {
    id: u64,
    addr: String,
    dir: tempfile::TempDir,
    running: Option<Running>,
    /// How many times it has been started.
    incarnations: u32,
}

/// A started node: store, manager, server and the tasks around them.
struct Running {
    store: RaftStore,
    server_stop: CancellationToken,
    server: JoinHandle<Result<(), archon_net::Error>>,
    driver_stop: CancellationToken,
    driver: JoinHandle<Result<(), archon_core::Error>>,
    observer: JoinHandle<()>,
}

/// A three-manager, two-worker cluster on loopback with injectable faults.
pub(crate) struct Cluster {
    pub(crate) seed: u64,
    /// Raft's link table.
    pub(crate) links: Links,
    nodes: Vec<Node>,
    peers: BTreeMap<u64, String>,
    snapshot_every: u64,
    /// Cut flags of the worker → manager proxies, by (worker index, node id).
    worker_links: BTreeMap<(usize, u64), watch::Sender<bool>>,
    workers: Vec<JoinHandle<()>>,
    worker_stop: CancellationToken,
    /// Stops the proxies and every other background task.
    stop: CancellationToken,
    pub(crate) leaders: Arc<Mutex<LeaderLog>>,
    pub(crate) executions: Arc<Mutex<Executions>>,
}

impl Cluster {
    /// Starts three managers bootstrapped as one group and two workers. A small
    /// `snapshot_every` makes the nodes snapshot (and restart from snapshots).
    pub(crate) async fn start(seed: u64, snapshot_every: u64) -> Cluster {
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for id in NODES {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            peers.insert(id, listener.local_addr().unwrap().to_string());
            listeners.push(listener);
        }
        let mut cluster = Cluster {
            seed,
            links: Links::new(),
            nodes: NODES
                .iter()
                .map(|&id| Node {
                    id,
                    addr: peers[&id].clone(),
                    dir: tempfile::tempdir().unwrap(),
                    running: None,
                    incarnations: 0,
                })
                .collect(),
            peers,
            snapshot_every,
            worker_links: BTreeMap::new(),
            workers: Vec::new(),
            worker_stop: CancellationToken::new(),
            stop: CancellationToken::new(),
            leaders: Arc::default(),
            executions: Arc::default(),
        };
        for (id, listener) in NODES.into_iter().zip(listeners) {
            cluster.start_node(id, listener).await;
        }
        for w in 0..WORKERS {
            cluster.start_worker(w).await;
        }
        cluster
    }

    /// The client addresses of the managers.
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// The data dir of node `id`.
    pub(crate) fn data_dir(&self, id: u64) -> PathBuf {
        self.node(id).dir.path().to_owned()
    }

    /// Whether node `id` runs now.
    pub(crate) fn is_up(&self, id: u64) -> bool {
        self.node(id).running.is_some()
    }

    /// The store of node `id`, when it runs.
    pub(crate) fn store(&self, id: u64) -> Option<&RaftStore> {
        self.node(id).running.as_ref().map(|r| &r.store)
    }

    /// Starts node `id` (again) on `listener`: opens its data dir, bootstraps the
    /// group (a no-op once it is one), and serves a manager on it.
    async fn start_node(&mut self, id: u64, listener: TcpListener) {
        let (seed, addr) = (self.seed, self.node(id).addr.clone());
        let mut config = RaftConfig::new(id, addr.clone(), self.node(id).dir.path().join("raft"));
        config.heartbeat_interval = Duration::from_millis(50);
        config.election_timeout = (Duration::from_millis(250), Duration::from_millis(500));
        config.snapshot_every = self.snapshot_every;
        // A restarted node's previous incarnation may hold its redb file a moment longer.
        let deadline = Instant::now() + RELEASE_WAIT;
        let store = loop {
            match RaftStore::open_with_network(config.clone(), GrpcNetwork::with_links(id, self.links.clone())).await {
                Ok(store) => break store,
                Err(e) => {
                    assert!(Instant::now() < deadline, "seed {seed}: node {id} cannot reopen its data dir: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        store.bootstrap(self.peers.clone()).await.unwrap();

        let manager = Manager::builder(Arc::new(store.clone()))
            .config(ManagerConfig {
                node_id: id,
                address: addr,
                heartbeat_interval: Duration::from_millis(100),
                worker_timeout: Duration::from_millis(1500),
                ..ManagerConfig::default()
            })
            .build();
        let driver_stop = CancellationToken::new();
        let driver = tokio::spawn({
            let (manager, stop) = (manager.clone(), driver_stop.clone());
            async move { manager.run(stop).await }
        });
        let server_stop = CancellationToken::new();
        let routes = archon_net::manager_routes(manager, &server_stop)
            .add_service(archon_raft::service::raft_service(store.raft().clone()));
        let server =
            tokio::spawn(archon_net::serve_routes(listener, routes, server_stop.clone(), "partition test node"));
        let (leaders, stop) = (self.leaders.clone(), self.stop.clone());
        let node = self.node_mut(id);
        node.incarnations += 1;
        let observer = tokio::spawn(observe_leaders(id, node.incarnations, store.clone(), leaders, stop));
        node.running = Some(Running { store, server_stop, server, driver_stop, driver, observer });
    }

    /// Stops node `id` as a crash would, as far as its peers can tell: Raft stops,
    /// the port closes, the manager's driver ends. Its data dir stays.
    pub(crate) async fn stop_node(&mut self, id: u64) {
        let seed = self.seed;
        let Some(running) = self.node_mut(id).running.take() else { return };
        running.server_stop.cancel();
        running.driver_stop.cancel();
        running.store.shutdown().await.unwrap();
        let server = tokio::time::timeout(SERVE_STOP_WAIT, running.server).await;
        assert!(server.is_ok(), "seed {seed}: node {id}'s server did not stop within {SERVE_STOP_WAIT:?}");
        let driver = tokio::time::timeout(SERVE_STOP_WAIT, running.driver).await;
        assert!(driver.is_ok(), "seed {seed}: node {id}'s manager did not stop within {SERVE_STOP_WAIT:?}");
        running.observer.abort();
        let _ = running.observer.await;
    }

    /// Starts node `id` again on its old port and data dir.
    pub(crate) async fn restart_node(&mut self, id: u64) {
        let (seed, addr) = (self.seed, self.node(id).addr.clone());
        let deadline = Instant::now() + RELEASE_WAIT;
        let listener = loop {
            match TcpListener::bind(&addr).await {
                Ok(listener) => break listener,
                Err(e) => {
                    assert!(Instant::now() < deadline, "seed {seed}: node {id} cannot listen on {addr} again: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.start_node(id, listener).await;
    }

    /// The node that leads now (it may propose), if one does; the highest term wins
    /// while an old leader has not heard of its successor yet.
    pub(crate) fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|n| n.running.as_ref().map(|r| (n.id, r.store.raft().metrics().borrow().clone())))
            .filter(|(_, m)| m.state == ServerState::Leader)
            .max_by_key(|(_, m)| m.current_term)
            .map(|(id, _)| id)
    }

    /// Waits (bounded) for a node that leads and may propose.
    pub(crate) async fn wait_for_leader(&self, within: Duration) -> Option<u64> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(id) = self.leader()
                && self.store(id).is_some_and(|s| s.leadership().borrow().is_leader)
            {
                return Some(id);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cuts Raft's links between `a` and `b`, both ways.
    pub(crate) fn cut_raft(&self, a: u64, b: u64) {
        self.links.cut(a, b);
        self.links.cut(b, a);
    }

    /// Cuts or restores the link from worker `w` to manager `node`.
    pub(crate) fn set_worker_link(&self, w: usize, node: u64, cut: bool) {
        self.worker_links[&(w, node)].send_replace(cut);
    }

    /// Restores every Raft and worker link.
    pub(crate) fn heal(&self) {
        self.links.heal_all();
        for link in self.worker_links.values() {
            link.send_replace(false);
        }
    }

    /// Every running node's (id, Raft metrics).
    pub(crate) fn metrics(&self) -> Vec<(u64, openraft::RaftMetrics<u64, openraft::BasicNode>)> {
        self.nodes
            .iter()
            .filter_map(|n| n.running.as_ref().map(|r| (n.id, r.store.raft().metrics().borrow().clone())))
            .collect()
    }

    /// Every running node's (id, last applied log index, applied state), read so
    /// that the index and the state agree.
    pub(crate) fn states(&self) -> Vec<(u64, Option<u64>, ClusterState)> {
        self.nodes
            .iter()
            .filter_map(|n| {
                let store = &n.running.as_ref()?.store;
                // Metrics follow an apply closely but not atomically: callers that
                // need the pair to agree call this once the cluster is quiet.
                for _ in 0..100 {
                    let before = store.raft().metrics().borrow().last_applied.map(|l| l.index);
                    let state = store.query(ClusterState::clone);
                    let after = store.raft().metrics().borrow().last_applied.map(|l| l.index);
                    if before == after {
                        return Some((n.id, after, state));
                    }
                }
                let state = store.query(ClusterState::clone);
                Some((n.id, store.raft().metrics().borrow().last_applied.map(|l| l.index), state))
            })
            .collect()
    }

    /// Every running node's view: its live state (as [`Cluster::states`]) and its
    /// history's records.
    pub(crate) async fn views(&self) -> Vec<View> {
        let mut views = Vec::new();
        for (id, applied, state) in self.states() {
            let Some(store) = self.store(id) else { continue };
            let history = store.history();
            let runs: Vec<RunId> = (1..=state.last_run_id().0).map(RunId).collect();
            let jobs: Vec<JobId> = (1..=state.last_job_id().0).map(JobId).collect();
            let runs = history.runs(&runs).await.unwrap().into_iter().map(|r| (r.id(), r)).collect();
            let jobs = history.jobs(&jobs).await.unwrap().into_iter().map(|j| (j.id(), j)).collect();
            views.push(View { id, applied, state, runs, jobs });
        }
        views
    }

    /// Starts worker `w`, which reaches each manager through its own proxy.
    async fn start_worker(&mut self, w: usize) {
        let mut endpoints = Vec::new();
        for id in NODES {
            let (cut, cut_rx) = watch::channel(false);
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            endpoints.push(listener.local_addr().unwrap().to_string());
            tokio::spawn(proxy(listener, self.node(id).addr.clone(), cut_rx, self.stop.clone()));
            self.worker_links.insert((w, id), cut);
        }
        let name = format!("w{}", w + 1);
        let capacity = Resources { cpu_millis: 2_000, memory_bytes: 8 << 30, ..Resources::default() };
        let mut config = WorkerConfig::new(name.clone(), capacity);
        config.reconnect_base = Duration::from_millis(50);
        config.reconnect_cap = Duration::from_millis(500);
        config.shutdown_grace = Duration::from_secs(1);
        let executor = Work { worker: name, executions: self.executions.clone() };
        let transport = GrpcTransport::new(endpoints)
            .timeouts(Duration::from_secs(1), Duration::from_secs(3))
            .keepalive(Duration::from_secs(1), Duration::from_secs(2));
        let worker =
            WorkerRuntime::new(config, Arc::new(ExecutorRegistry::new().with(Arc::new(executor))), Arc::new(transport));
        let stop = self.worker_stop.clone();
        self.workers.push(tokio::spawn(async move {
            let _ = worker.run(stop).await;
        }));
    }

    /// Stops managers first (so nothing more is proposed), then the workers.
    /// Data dirs stay until the cluster is dropped.
    pub(crate) async fn stop_all(&mut self) {
        for id in NODES {
            self.stop_node(id).await;
        }
        self.worker_stop.cancel();
        for worker in self.workers.drain(..) {
            let stopped = tokio::time::timeout(Duration::from_secs(15), worker).await;
            assert!(stopped.is_ok(), "seed {}: a worker did not stop within 15s", self.seed);
        }
        self.stop.cancel();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failed scenario must not leave tasks running into the next one.
        self.stop.cancel();
        self.worker_stop.cancel();
        for node in &mut self.nodes {
            if let Some(running) = node.running.take() {
                running.server_stop.cancel();
                running.driver_stop.cancel();
                running.observer.abort();
                let raft = running.store.raft().clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = raft.shutdown().await;
                    });
                }
            }
        }
    }
}

/// Records the leaders node `id` sees: itself when its Raft leads, the leader its
/// committed vote names, and itself when its store says it leads (the manager's view).
async fn observe_leaders(
    id: u64,
    incarnation: u32,
    store: RaftStore,
    log: Arc<Mutex<LeaderLog>>,
    stop: CancellationToken,
) {
    let mut metrics = store.raft().metrics();
    let mut leadership = store.leadership();
    let record = |term: u64, leader: u64, how: &str| {
        let mut log = log.lock().unwrap();
        log.entry(term).or_default().entry(leader).or_default().insert(format!("node {id}#{incarnation} {how}"));
    };
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.state == ServerState::Leader {
                record(m.current_term, id, "leads");
            }
            if let Some(leader) = m.current_leader {
                record(m.current_term, leader, "follows");
            }
        }
        {
            let l: Leadership = leadership.borrow_and_update().clone();
            if l.is_leader {
                record(l.term, id, "proposes");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
            changed = leadership.changed() => if changed.is_err() { return },
        }
    }
}

/// Forwards connections to `upstream` while the link is whole; cutting it resets
/// every open connection and refuses new ones until it is restored.
async fn proxy(listener: TcpListener, upstream: String, cut: watch::Receiver<bool>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut inbound, _)) = accepted else { continue };
        if *cut.borrow() {
            continue;
        }
        let (mut cut, stop, upstream) = (cut.clone(), stop.clone(), upstream.clone());
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&upstream).await else { return };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = cut.wait_for(|cut| *cut) => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}

/// Runs the `work` function: sleeps for its input's milliseconds (cancellable) and
/// succeeds, recording which worker executed which attempt.
struct Work {
    worker: String,
    executions: Arc<Mutex<Executions>>,
}

#[async_trait]
impl Executor for Work {
    fn capabilities(&self) -> Vec<String> {
        vec![archon_core::model::function_capability(WORK)]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        self.executions.lock().unwrap().entry(ctx.attempt).or_default().push(self.worker.clone());
        let millis = match &ctx.spec.task {
            Task::Function { input, .. } => input.trim().parse().unwrap_or(10),
            _ => 10,
        };
        tokio::select! {
            _ = ctx.cancel.cancelled() => ctx.output.finish(ExitStatus::Cancelled),
            _ = tokio::time::sleep(Duration::from_millis(millis)) => ctx.output.finish(ExitStatus::Exited { code: 0 }),
        }
    }
}
