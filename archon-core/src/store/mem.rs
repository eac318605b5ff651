//! [`MemStore`]: the cluster state and its history in memory, for tests and
//! ephemeral use. Always the leader; nothing survives the process. The history is
//! bounded: past its capacity the oldest finished runs are pruned, through the
//! state machine like any retention.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Leadership, Store};
use crate::error::Error;
use crate::history::{History, MemHistory};
use crate::state::{ClusterState, Command, Outcome};

/// Finished runs a [`MemStore`] keeps by default.
pub const DEFAULT_MEM_HISTORY: usize = 100_000;

/// A [`Store`] held in memory.
#[derive(Debug)]
pub struct MemStore {
    state: Mutex<ClusterState>,
    history: Arc<MemHistory>,
    /// The most finished runs the history holds.
    capacity: usize,
    leadership: watch::Sender<Leadership>,
}

impl MemStore {
    /// An empty store keeping the last [`DEFAULT_MEM_HISTORY`] finished runs.
    pub fn new() -> MemStore {
        MemStore::with_capacity(DEFAULT_MEM_HISTORY)
    }

    /// An empty store keeping at most `capacity` finished runs (the newest).
    pub fn with_capacity(capacity: usize) -> MemStore {
        let (leadership, _) = watch::channel(Leadership { is_leader: true, leader: None, term: 0, elected: false });
        MemStore {
            state: Mutex::new(ClusterState::new()),
            history: Arc::new(MemHistory::new()),
            capacity: capacity.max(1),
            leadership,
        }
    }

    /// A store starting from `state` (a restored snapshot) with an empty history.
    pub fn from_state(state: ClusterState) -> MemStore {
        let store = MemStore::new();
        *store.lock() = state;
        store
    }

    /// A copy of the live state (a snapshot).
    pub fn snapshot(&self) -> ClusterState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClusterState> {
        // A panic while applying cannot leave the state half-changed in a way we
        // could repair, but apply never panics; recover the guard regardless.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

#[async_trait]
impl Store for MemStore {
    async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, Error> {
        let mut state = self.lock();
        let outcomes = commands.iter().map(|c| state.apply(c)).collect();
        // Written before the state lock goes, so a reader that misses a run in the
        // state finds it here.
        self.history.apply(&state.take_history());
        let excess = self.history.len().saturating_sub(self.capacity);
        let excess_workflows = self.history.workflow_count().saturating_sub(self.capacity);
        if excess > 0 || excess_workflows > 0 {
            let at = commands.last().map(Command::at).unwrap_or_default();
            let oldest = self.history.oldest(excess);
            let mut jobs: Vec<_> = oldest.iter().map(|e| e.job).filter(|j| state.job(*j).is_none()).collect();
            jobs.sort_unstable();
            jobs.dedup();
            let runs = oldest.into_iter().map(|e| (e.run, e.state)).collect();
            let workflows = self.history.oldest_workflows(excess_workflows);
            state.apply(&Command::Prune { at, runs, jobs, workflows, keys_before: None });
            self.history.apply(&state.take_history());
        }
        Ok(outcomes)
    }

    fn read(&self, reader: &mut dyn FnMut(&ClusterState)) {
        reader(&self.lock());
    }

    fn history(&self) -> Arc<dyn History> {
        self.history.clone()
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.subscribe()
    }
}
