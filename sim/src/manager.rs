//! A simulated manager host: archon-raft's [`RaftStore`] on a [`SimDisk`],
//! archon-core's [`Manager`] on it with a [`SimClock`], and the manager's real
//! gRPC server (API, worker sessions, Raft RPCs) on a turmoil listener.
//!
//! The one thing to know: [`ManagerNode`] outlives the host's incarnations —
//! turmoil reruns [`ManagerNode::run`] on each restart, and the node keeps the
//! disk, the skew and a handle on the running store for the checks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use archon_core::api::ManagerInfo;
use archon_core::history::History;
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::metrics::Metrics;
use archon_core::state::{ClusterState, Command, Event as StateEvent, FireResult, Outcome};
use archon_core::store::{Leadership, Store};
use archon_net::tls::Dialer;
use archon_raft::storage::BlockingWork;
use archon_raft::{RaftConfig, RaftStore};
use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::{SimClock, Skew};
use crate::disk::SimDisk;
use crate::net::{self, MANAGER_PORT, SimConnect};
use crate::trace::{Event, Trace};

/// The dialer every simulated host uses: plaintext over turmoil's network.
pub fn sim_dialer() -> Dialer {
    Dialer::plain().with_connector(Arc::new(SimConnect))
}

/// A manager host's identity and what survives its restarts.
#[derive(Debug)]
pub struct ManagerNode {
    /// Its Raft node id.
    pub id: u64,
    /// Its host name (`manager-1`).
    pub name: String,
    /// Its election timeout, drawn by the harness from the seed (openraft
    /// draws one per node, once, from an unseeded generator), so openraft's
    /// own draw has nothing to choose.
    pub election_timeout: Duration,
    /// Its disk.
    pub disk: SimDisk,
    /// Its clock's skew.
    pub skew: Skew,
    /// The whole group, id → address.
    pub members: BTreeMap<u64, String>,
    /// Its Raft metrics, across incarnations (snapshots built and installed).
    pub metrics: Metrics,
    trace: Trace,
    running: Mutex<Option<RaftStore>>,
}

impl ManagerNode {
    /// Manager `id` of the group `members`, recording into `trace`.
    pub fn new(id: u64, members: BTreeMap<u64, String>, election_timeout: Duration, trace: Trace) -> ManagerNode {
        ManagerNode {
            id,
            name: host_name(id),
            election_timeout,
            disk: SimDisk::new(),
            skew: Skew::default(),
            members,
            metrics: Metrics::new(),
            trace,
            running: Mutex::new(None),
        }
    }

    /// The store of the running incarnation, if the host runs.
    pub fn store(&self) -> Option<RaftStore> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Snapshots this manager built and installed, over all its incarnations.
    pub fn snapshots(&self) -> (u64, u64) {
        self.metrics.raft().snapshots()
    }

    /// The host crashed: its unsynced writes are gone and its store is no
    /// longer reachable from outside. Call before turmoil's `crash`.
    pub fn crash(&self) {
        self.disk.crash();
        self.running.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// The host's software: opens the store, bootstraps the group (a no-op
    /// once it exists), runs the manager and serves until the host goes.
    pub async fn run(self: Arc<Self>) -> turmoil::Result {
        let mut config = RaftConfig::new(self.id, address(self.id), format!("/sim/{}", self.name));
        config.backends = Some(Arc::new(self.disk.clone()));
        config.blocking = BlockingWork::Inline;
        config.dialer = sim_dialer();
        config.election_timeout = (self.election_timeout, self.election_timeout + Duration::from_millis(1));
        config.metrics = self.metrics.clone();
        // Snapshots and log compaction often enough that every run takes
        // several, and a manager down for a while is sent one.
        config.snapshot_every = SNAPSHOT_EVERY;
        config.kept_behind_snapshot = KEPT_BEHIND_SNAPSHOT;
        let store = RaftStore::open(config).await?;
        store.bootstrap(self.members.clone()).await?;
        *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(store.clone());
        tokio::spawn(watch_leadership(self.id, store.leadership(), self.trace.clone()));

        let traced: Arc<dyn Store> =
            Arc::new(TracedStore { inner: store.clone(), node: self.id, trace: self.trace.clone() });
        let manager = Manager::builder(traced)
            .clock(Arc::new(SimClock::new(self.skew.clone())))
            .config(ManagerConfig { node_id: self.id, address: address(self.id), ..ManagerConfig::default() })
            .build();
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let (manager, stop) = (manager.clone(), shutdown.clone());
            async move { manager.run(stop).await }
        });
        let routes = archon_net::manager_routes(manager, &shutdown)
            .add_service(archon_raft::service::raft_service(store.raft().clone()));
        let listener = net::bind().await?;
        let at = net::address_of(&self.name);
        archon_net::serve_routes_incoming(net::incoming(listener), at, routes, shutdown, "a simulated manager").await?;
        Ok(())
    }
}

/// A manager takes a snapshot (and compacts its log) every this many entries...
pub const SNAPSHOT_EVERY: u64 = 40;

/// ... keeping this many behind it for followers a little behind.
pub const KEPT_BEHIND_SNAPSHOT: u64 = 8;

/// The host name of manager `id`.
pub fn host_name(id: u64) -> String {
    format!("manager-{id}")
}

/// Where manager `id` is reached.
pub fn address(id: u64) -> String {
    format!("{}:{MANAGER_PORT}", host_name(id))
}

/// Records each change of a manager's leadership (as the manager sees it).
async fn watch_leadership(node: u64, mut leadership: watch::Receiver<Leadership>, trace: Trace) {
    let mut last = None;
    loop {
        let (term, leader) = {
            let l = leadership.borrow_and_update();
            (l.term, l.is_leader)
        };
        if last != Some((term, leader)) {
            trace.record(Event::Leadership { node, term, leader });
            last = Some((term, leader));
        }
        if leadership.changed().await.is_err() {
            return;
        }
    }
}

/// The store as the manager uses it, recording what its committed proposals did.
struct TracedStore {
    inner: RaftStore,
    node: u64,
    trace: Trace,
}

#[async_trait]
impl Store for TracedStore {
    async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, archon_core::Error> {
        let outcomes = self.inner.propose(commands).await?;
        for event in outcomes.iter().flat_map(Outcome::events) {
            match event {
                StateEvent::AttemptAssigned { run, attempt, .. } => {
                    self.trace.record(Event::AttemptAssigned { node: self.node, run: *run, attempt: *attempt })
                }
                StateEvent::RunFinished { run, state, .. } => {
                    self.trace.record(Event::RunFinished { node: self.node, run: *run, state: *state })
                }
                StateEvent::ScheduleFired { job, instant, result: FireResult::Started(run) } => {
                    self.trace.record(Event::Fired { node: self.node, job: *job, instant: instant.0, run: *run })
                }
                _ => {}
            }
        }
        Ok(outcomes)
    }

    fn read(&self, reader: &mut dyn FnMut(&ClusterState)) {
        self.inner.read(reader)
    }

    fn history(&self) -> Arc<dyn History> {
        self.inner.history()
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership()
    }

    async fn confirm_leadership(&self) -> Result<(), archon_core::Error> {
        self.inner.confirm_leadership().await
    }

    async fn managers(&self) -> Vec<ManagerInfo> {
        self.inner.managers().await
    }
}
