//! [`RaftStore`]: archon-core's [`Store`] on a Raft group. A proposal is one
//! log entry (the whole batch), acknowledged once a quorum has it on disk and it
//! is applied here. Leadership, as the manager sees it, starts only once this
//! node has applied an entry of its own term, so a new leader never places or
//! reaps against a state that misses its predecessor's committed work.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use archon_core::api::ManagerInfo;
use archon_core::history::History;
use archon_core::metrics::{Metrics, RaftProgress};
use archon_core::state::{ClusterState, Command, Outcome};
use archon_core::store::{Leadership, Store};
use async_trait::async_trait;
use openraft::error::RaftError;
use openraft::{BasicNode, CommittedLeaderId, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use crate::network::{AdminClient, GrpcNetwork};
use crate::proposer::Proposer;
use crate::storage::RedbHistory;
use crate::{Error, Raft, storage};

/// How a Raft node runs.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This node's id, unique in the group and never reused.
    pub node_id: u64,
    /// Where peers and clients reach this node's gRPC port (`HOST:PORT`).
    pub address: String,
    /// The directory holding the node's durable state (`raft.redb`).
    pub data_dir: PathBuf,
    /// How often the leader heartbeats followers.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in this range stands for election.
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot (and compact the log) after this many entries.
    pub snapshot_every: u64,
    /// ... or once this many bytes of entries were written since the last one
    /// (a restart replays at most about this much).
    pub snapshot_bytes: u64,
    /// ... or this many commands. The three limits grow with the state: each
    /// is multiplied by the last snapshot's size over `snapshot_bytes` (at
    /// least 1), so a large state is not snapshotted more often than its size
    /// in log is written (see [`storage::SnapshotDue`]).
    pub snapshot_commands: u64,
    /// Entries kept behind a snapshot for followers a little behind (default
    /// 64); a follower further behind is sent the snapshot. At up to
    /// `max_entry_bytes` each this bounds what the log holds past
    /// `snapshot_bytes`.
    pub kept_behind_snapshot: u64,
    /// The most bytes of commands one log entry carries: a larger proposal is
    /// split into several entries, and a single command past it is refused.
    /// Default 1 MiB: an entry travels to a follower in one AppendEntries,
    /// which openraft gives its heartbeat interval to be written and answered
    /// (see `storage::log`), so entries stay well within that.
    pub max_entry_bytes: usize,
    /// redb's page cache for reading a log an older Archon kept in `raft.redb`
    /// while it is moved to the log's own files, in bytes.
    pub cache_bytes: usize,
    /// redb's page cache for the history's file, in bytes.
    pub history_cache_bytes: usize,
    /// The node's metrics: Raft's progress and leader changes, and each log
    /// entry proposed here as a store batch (a private registry unless given
    /// the node's).
    pub metrics: Metrics,
    /// How it reaches its peers: plaintext, or mutual TLS with this manager's
    /// certificate (default plaintext).
    pub dialer: archon_net::tls::Dialer,
    /// Storage backends of the embedder's own (in memory, for a simulation)
    /// instead of files in `data_dir` (default files); see
    /// [`StorageOptions::backends`](storage::StorageOptions::backends).
    pub backends: Option<Arc<dyn storage::Backends>>,
    /// Where blocking storage work runs (default tokio's blocking threads).
    pub blocking: storage::BlockingWork,
}

impl RaftConfig {
    /// Defaults for failover in about 2 s on a LAN that hold leadership on a
    /// small, busy machine: heartbeats every 100 ms, election timeout
    /// 500 ms–1 s. openraft 0.9 gives each AppendEntries and vote the heartbeat
    /// interval to be answered, and makes a follower that had a leader wait its
    /// leader lease (= the timeout's max) plus its timeout, checked on a tick of
    /// 1.5 × the heartbeat, so a new leader stands 1.6–2.2 s after the old one's
    /// last heartbeat. The previous 50 ms and 200–400 ms (0.6–0.9 s) lost
    /// leadership over and over on 2 cores with three managers under a
    /// million-job submit: replication and votes timed out at 50 ms. Operators
    /// set them with `--raft-heartbeat` and `--election-timeout`. Measured:
    /// `benches/RESULTS.md`, "Issue 5: manager failover" and "Issue 17, point 3".
    pub fn new(node_id: u64, address: impl Into<String>, data_dir: impl Into<PathBuf>) -> RaftConfig {
        RaftConfig {
            node_id,
            address: address.into(),
            data_dir: data_dir.into(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(500), Duration::from_millis(1000)),
            snapshot_every: 20_000,
            snapshot_bytes: 64 << 20,
            snapshot_commands: 200_000,
            kept_behind_snapshot: 64,
            max_entry_bytes: 1 << 20,
            cache_bytes: 32 << 20,
            history_cache_bytes: 16 << 20,
            metrics: Metrics::new(),
            dialer: archon_net::tls::Dialer::plain(),
            backends: None,
            blocking: storage::BlockingWork::Threads,
        }
    }

    fn openraft(&self) -> Result<openraft::Config, Error> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: "archon".into(),
            heartbeat_interval: millis(self.heartbeat_interval),
            election_timeout_min: millis(self.election_timeout.0),
            election_timeout_max: millis(self.election_timeout.1),
            // Archon asks for snapshots itself (`snapshot_when_due`), by entries,
            // commands and bytes scaled to the state's size.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: self.kept_behind_snapshot,
            snapshot_max_chunk_size: 4 << 20,
            max_payload_entries: 64,
            install_snapshot_timeout: 10_000,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| Error::Invalid { field: "raft config", message: e.to_string() })
    }
}

/// A [`Store`] replicated by Raft. Cheap to clone.
#[derive(Clone)]
pub struct RaftStore {
    raft: Raft,
    state: Arc<RwLock<ClusterState>>,
    history: RedbHistory,
    /// The log, to finish its writes on shutdown.
    log: storage::LogStore,
    /// Where proposals gather into log entries.
    proposer: Proposer,
    leadership: watch::Receiver<Leadership>,
    config: Arc<RaftConfig>,
    files: storage::OpenFiles,
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStore").field("config", &self.config).finish_non_exhaustive()
    }
}

impl RaftStore {
    /// Opens the node's data dir (creating it if missing) and starts Raft. A new
    /// node is not part of any group until [`RaftStore::bootstrap`] or a leader
    /// adds it.
    pub async fn open(config: RaftConfig) -> Result<RaftStore, Error> {
        let network = GrpcNetwork::with_dialer(config.dialer.clone());
        RaftStore::open_with_network(config, network).await
    }

    /// [`RaftStore::open`] with Raft's RPCs sent through `network`, e.g. a
    /// [`GrpcNetwork::with_links`] whose links a partition test cuts.
    pub async fn open_with_network(config: RaftConfig, network: GrpcNetwork) -> Result<RaftStore, Error> {
        if config.backends.is_none() {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::DataDir {
                path: config.data_dir.display().to_string(),
                message: format!("cannot create it: {e}"),
            })?;
        }
        let state = Arc::new(RwLock::new(ClusterState::new()));
        let options = storage::StorageOptions {
            cache_bytes: config.cache_bytes,
            history_cache_bytes: config.history_cache_bytes,
            snapshot_bytes: config.snapshot_bytes,
            snapshot_commands: config.snapshot_commands,
            snapshot_entries: config.snapshot_every.max(1),
            metrics: config.metrics.clone(),
            backends: config.backends.clone(),
            blocking: config.blocking,
        };
        let storage = storage::open_with(&config.data_dir.join("raft.redb"), state.clone(), &options)?;
        let log = storage.log.clone();
        let network = network.with_metrics(config.metrics.clone());
        let raft = Raft::new(config.node_id, Arc::new(config.openraft()?), network, storage.log, storage.state_machine)
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        let (tx, leadership) = watch::channel(Leadership::default());
        tokio::spawn(watch_leadership(raft.metrics(), tx));
        config.metrics.store();
        tokio::spawn(watch_progress(raft.metrics(), config.metrics.clone()));
        tokio::spawn(snapshot_when_due(raft.clone(), storage.snapshots));
        let proposer = Proposer::start(raft.clone(), config.metrics.clone(), config.max_entry_bytes);
        let files = storage.files;
        Ok(RaftStore {
            raft,
            state,
            history: storage.history,
            log,
            proposer,
            leadership,
            config: Arc::new(config),
            files,
        })
    }

    /// Makes this node the first member of a new group with `members` (id →
    /// address; this node's own entry is added if missing). Does nothing when
    /// the node already belongs to a group, so it is safe on every start.
    pub async fn bootstrap(&self, members: BTreeMap<u64, String>) -> Result<(), Error> {
        if self.raft.is_initialized().await.map_err(|e| Error::Raft(e.to_string()))? {
            return Ok(());
        }
        let mut nodes: BTreeMap<u64, BasicNode> =
            members.into_iter().map(|(id, addr)| (id, BasicNode { addr })).collect();
        nodes.entry(self.config.node_id).or_insert_with(|| BasicNode { addr: self.config.address.clone() });
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            // Another start of this node (or a peer) initialized it meanwhile.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// Whether this node belongs to a group (bootstrapped, or added by a leader).
    pub async fn is_member(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// The node's history (what [`Store::history`] serves).
    pub fn redb_history(&self) -> &RedbHistory {
        &self.history
    }

    /// The openraft handle, for the Raft RPC service and tests.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// This node's config.
    pub fn config(&self) -> &RaftConfig {
        &self.config
    }

    /// Waits until this node may propose (it leads and has applied an entry of its term).
    pub async fn wait_for_leadership(&self, timeout: Duration) -> Result<(), Error> {
        let mut rx = self.leadership.clone();
        tokio::time::timeout(timeout, rx.wait_for(|l| l.is_leader))
            .await
            .map_err(|_| Error::NotLeader { leader: self.leadership.borrow().leader.clone() })?
            .map_err(|_| Error::Raft("raft stopped".into()))?;
        Ok(())
    }

    /// Tells when the node's files are closed: once this store, its clones and
    /// what holds them (a manager) are dropped after [`RaftStore::shutdown`].
    pub fn files(&self) -> storage::OpenFiles {
        self.files.clone()
    }

    /// Stops Raft, then waits for the log's last writes. Proposals fail afterwards.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.raft.shutdown().await.map_err(|e| Error::Raft(e.to_string()))?;
        self.log.flush().await
    }
}

#[async_trait]
impl Store for RaftStore {
    /// Proposals made while an entry is being written go together as the next
    /// log entry (openraft 0.9 writes one entry at a time); one that fits in an
    /// entry stays whole, one larger than [`RaftConfig::max_entry_bytes`] is
    /// spread over several in order, sharing them with the proposals around it.
    async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, archon_core::Error> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        self.proposer.propose(commands).await
    }

    fn read(&self, reader: &mut dyn FnMut(&ClusterState)) {
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        reader(&state);
    }

    fn history(&self) -> Arc<dyn History> {
        Arc::new(self.history.clone())
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// A heartbeat round to the followers, sent after the call: a quorum that
    /// still acknowledges this term has voted for no one newer.
    async fn confirm_leadership(&self) -> Result<(), archon_core::Error> {
        match self.raft.get_read_log_id().await {
            Ok(_) => Ok(()),
            Err(openraft::error::RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(archon_core::Error::NotLeader { leader: f.leader_node.map(|n| n.addr) })
            }
            Err(e) => Err(archon_core::Error::Unavailable(format!("cannot confirm leadership: {e}"))),
        }
    }

    async fn managers(&self) -> Vec<ManagerInfo> {
        let metrics = self.raft.metrics().borrow().clone();
        let nodes: Vec<(u64, String)> =
            metrics.membership_config.nodes().map(|(id, node)| (*id, node.addr.clone())).collect();
        let admin = AdminClient::with_dialer(Vec::new(), self.config.dialer.clone());
        let own = self.config.node_id;
        let asks = nodes.into_iter().map(|(id, address)| {
            let admin = &admin;
            let metrics = &metrics;
            async move {
                if id == own {
                    // This node answers from its own metrics, without a call to itself.
                    return ManagerInfo {
                        id,
                        address,
                        role: role_name(metrics.state).into(),
                        term: metrics.current_term,
                        last_applied: metrics.last_applied.map_or(0, |l| l.index),
                    };
                }
                let asked = tokio::time::timeout(Duration::from_millis(500), admin.node_status(&address)).await;
                match asked {
                    Ok(Ok(s)) => ManagerInfo {
                        id,
                        address,
                        role: s.role,
                        term: s.term,
                        last_applied: s.last_applied.unwrap_or_default(),
                    },
                    _ => ManagerInfo { id, address, role: "unreachable".into(), term: 0, last_applied: 0 },
                }
            }
        });
        futures::future::join_all(asks).await
    }
}

/// How a node's role reads in status: `leader`, `follower`, `candidate`, `learner`, `shutdown`.
pub(crate) fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// Asks openraft for a snapshot whenever the log since the last one has grown
/// enough (in entries, commands or bytes, scaled to the state's size), so a
/// restart never replays much more than a snapshot's worth.
async fn snapshot_when_due(raft: Raft, due: Arc<storage::SnapshotDue>) {
    loop {
        due.wait().await;
        if raft.trigger().snapshot().await.is_err() {
            return;
        }
    }
}

/// Mirrors Raft's metrics into the [`Leadership`] the manager watches.
async fn watch_leadership(mut metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>, tx: watch::Sender<Leadership>) {
    loop {
        let next = leadership_of(&metrics.borrow_and_update());
        tx.send_if_modified(|l| {
            let changed = *l != next;
            *l = next;
            changed
        });
        if metrics.changed().await.is_err() {
            let term = tx.borrow().term;
            tx.send_replace(Leadership { is_leader: false, leader: None, term, elected: false });
            return;
        }
    }
}

/// Reports Raft's progress (term, applied index, leader) to the node's metrics
/// as it changes; the log reports the committed index.
async fn watch_progress(mut raft: watch::Receiver<RaftMetrics<u64, BasicNode>>, metrics: Metrics) {
    loop {
        let progress = {
            let m = raft.borrow_and_update();
            RaftProgress {
                term: m.current_term,
                applied: m.last_applied.map_or(0, |l| l.index),
                leader: m.current_leader,
                is_leader: m.state == ServerState::Leader,
            }
        };
        metrics.raft().observe(progress);
        if raft.changed().await.is_err() {
            return;
        }
    }
}

fn leadership_of(m: &RaftMetrics<u64, BasicNode>) -> Leadership {
    // An entry of this node's own leadership has been applied, so everything
    // committed before it is in the state. (Archon builds openraft with
    // `single-term-leader`, Raft's one leader per term, so the id is the term; the
    // comparison also holds under openraft's default (term, node) ids.)
    let own = CommittedLeaderId::new(m.current_term, m.id);
    let own_term_applied = m.last_applied.is_some_and(|l| l.leader_id == own);
    let leader = m.current_leader.and_then(|id| m.membership_config.membership().get_node(&id).map(|n| n.addr.clone()));
    // A quorum has acknowledged this leadership: a node restarted as leader of its
    // old term does not count until its peers answer it.
    let acknowledged = m.millis_since_quorum_ack.is_some();
    let is_leader = m.state == ServerState::Leader && own_term_applied && acknowledged;
    Leadership { is_leader, leader, term: m.current_term, elected: m.state == ServerState::Leader && !is_leader }
}

#[cfg(test)]
mod tests {
    use openraft::{LogId, Vote};

    use super::*;

    #[test]
    fn a_leader_may_propose_only_once_an_entry_of_its_own_leadership_is_applied() {
        let mut m = RaftMetrics::<u64, BasicNode>::new_initial(3);
        m.state = ServerState::Leader;
        m.current_term = 1;
        m.vote = Vote::new_committed(1, 3);
        m.millis_since_quorum_ack = Some(0);
        // Node 2 led term 1 before node 3 took it over: its entry is not node 3's own.
        m.last_applied = Some(LogId::new(CommittedLeaderId::new(1, 2), 5));
        let before = leadership_of(&m);
        m.last_applied = Some(LogId::new(CommittedLeaderId::new(1, 3), 6));
        let after = leadership_of(&m);
        // Under openraft's `single-term-leader` the two are one leader id, the term.
        let one_id = CommittedLeaderId::new(1, 2) == CommittedLeaderId::<u64>::new(1, 3);
        assert_eq!(before.is_leader, one_id);
        assert!(after.is_leader);
        assert_eq!(after.term, 1);

        // Restarted as the leader of its old term, it waits for a quorum to answer.
        m.millis_since_quorum_ack = None;
        assert!(!leadership_of(&m).is_leader);
    }
}
