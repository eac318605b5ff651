//! A Raft node's progress as gauges — term, commit index, applied index and the
//! lag between them — the leader changes it saw, and the snapshots it built
//! and installed: how many, how large the latest is and how long building one
//! took. archon-core knows nothing
//! of Raft: the replicated store reports plain numbers here as they change.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Where a Raft node stands, as its store reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RaftProgress {
    /// The current term.
    pub term: u64,
    /// The index of the last entry applied to the state machine.
    pub applied: u64,
    /// The leader this node knows of, by node id.
    pub leader: Option<u64>,
    /// Whether this node is the leader.
    pub is_leader: bool,
}

/// `archon_raft_term`, `archon_raft_commit_index`, `archon_raft_applied_index`,
/// `archon_raft_apply_lag_entries`, `archon_raft_is_leader`,
/// `archon_raft_leader_changes_total`, `archon_raft_snapshots_built_total`,
/// `archon_raft_snapshots_installed_total`, `archon_raft_snapshot_bytes`,
/// `archon_raft_snapshot_build_seconds`, `archon_raft_entries_sent_total` and
/// `archon_raft_entries_found_held_total`.
#[derive(Debug)]
pub struct RaftMetrics {
    term: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    apply_lag: Gauge,
    leader: Gauge,
    leader_changes: Counter,
    snapshots_built: Counter,
    snapshots_installed: Counter,
    snapshot_bytes: Gauge,
    snapshot_build: Histogram,
    entries_sent: Counter,
    entries_found_held: Counter,
    committed: AtomicU64,
    applied: AtomicU64,
    /// The last (term, leader) seen, to count changes.
    last_leader: Mutex<Option<(u64, u64)>>,
}

impl RaftMetrics {
    pub(super) fn registered(registry: &mut Registry) -> RaftMetrics {
        let m = RaftMetrics {
            term: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            apply_lag: Gauge::default(),
            leader: Gauge::default(),
            leader_changes: Counter::default(),
            snapshots_built: Counter::default(),
            snapshots_installed: Counter::default(),
            snapshot_bytes: Gauge::default(),
            // 1 ms to about 33 s.
            snapshot_build: Histogram::new(super::buckets(0.001, 2.0, 16)),
            entries_sent: Counter::default(),
            entries_found_held: Counter::default(),
            committed: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            last_leader: Mutex::new(None),
        };
        registry.register("archon_raft_term", "The Raft term this node is in", m.term.clone());
        registry.register(
            "archon_raft_commit_index",
            "The index of the last Raft log entry this node knows committed",
            m.commit_index.clone(),
        );
        registry.register(
            "archon_raft_applied_index",
            "The index of the last Raft log entry applied to this node's state",
            m.applied_index.clone(),
        );
        registry.register(
            "archon_raft_apply_lag_entries",
            "Committed Raft log entries not yet applied on this node",
            m.apply_lag.clone(),
        );
        registry.register("archon_raft_is_leader", "1 while this node is the Raft leader, else 0", m.leader.clone());
        registry.register(
            "archon_raft_leader_changes",
            "Times this node saw a new leader (a new term or another node)",
            m.leader_changes.clone(),
        );
        registry.register(
            "archon_raft_snapshots_built",
            "Snapshots this node took of its state (each lets the log before it go)",
            m.snapshots_built.clone(),
        );
        registry.register(
            "archon_raft_snapshots_installed",
            "Snapshots this node installed from the leader (it was too far behind for the log)",
            m.snapshots_installed.clone(),
        );
        registry.register(
            "archon_raft_snapshot_bytes",
            "The size of this node's latest snapshot of its state, built, installed or loaded at start",
            m.snapshot_bytes.clone(),
        );
        registry.register(
            "archon_raft_snapshot_build_seconds",
            "How long taking a snapshot took: writing the history it covers, encoding the state and storing it durably",
            m.snapshot_build.clone(),
        );
        registry.register(
            "archon_raft_entries_sent",
            "Log entries this node sent to followers in AppendEntries",
            m.entries_sent.clone(),
        );
        registry.register(
            "archon_raft_entries_found_held",
            "Log entries a follower was found to hold already, by a probe of its log, instead of being sent again",
            m.entries_found_held.clone(),
        );
        m
    }

    /// Counts log entries sent to a follower.
    pub fn entries_sent(&self, n: u64) {
        self.entries_sent.inc_by(n);
    }

    /// Counts log entries a probe found a follower to hold already.
    pub fn entries_found_held(&self, n: u64) {
        self.entries_found_held.inc_by(n);
    }

    /// Log entries sent to followers, and found held by them, so far.
    pub fn replication(&self) -> (u64, u64) {
        (self.entries_sent.get(), self.entries_found_held.get())
    }

    /// Counts a snapshot this node took, of `bytes`, in `took`.
    pub fn snapshot_built(&self, bytes: u64, took: Duration) {
        self.snapshots_built.inc();
        self.snapshot_build.observe(took.as_secs_f64());
        self.snapshot_loaded(bytes);
    }

    /// Counts a snapshot of `bytes` this node installed from the leader.
    pub fn snapshot_installed(&self, bytes: u64) {
        self.snapshots_installed.inc();
        self.snapshot_loaded(bytes);
    }

    /// Records the size of the snapshot this node now holds (also the one it
    /// found at start).
    pub fn snapshot_loaded(&self, bytes: u64) {
        self.snapshot_bytes.set(gauge_value(bytes));
    }

    /// Snapshots built and installed so far.
    pub fn snapshots(&self) -> (u64, u64) {
        (self.snapshots_built.get(), self.snapshots_installed.get())
    }

    /// Records where the node stands now.
    pub fn observe(&self, progress: RaftProgress) {
        self.term.set(gauge_value(progress.term));
        self.leader.set(i64::from(progress.is_leader));
        self.applied.store(progress.applied, Ordering::Relaxed);
        self.applied_index.set(gauge_value(progress.applied));
        if let Some(leader) = progress.leader {
            let mut last = self.last_leader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *last != Some((progress.term, leader)) {
                *last = Some((progress.term, leader));
                self.leader_changes.inc();
            }
        }
        self.update_lag();
    }

    /// Records the committed index (the log saves it as it advances).
    pub fn committed(&self, index: u64) {
        self.committed.store(index, Ordering::Relaxed);
        self.commit_index.set(gauge_value(index));
        self.update_lag();
    }

    fn update_lag(&self) {
        let lag = self.committed.load(Ordering::Relaxed).saturating_sub(self.applied.load(Ordering::Relaxed));
        self.apply_lag.set(gauge_value(lag));
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
