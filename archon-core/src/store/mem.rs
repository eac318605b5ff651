//! [`MemStore`]: the cluster state in memory, for tests and ephemeral use. Always
//! the leader; nothing survives the process.

use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Leadership, Store};
use crate::error::Error;
use crate::state::{ClusterState, Command, Outcome};

/// A [`Store`] held in memory.
#[derive(Debug)]
pub struct MemStore {
    state: Mutex<ClusterState>,
    leadership: watch::Sender<Leadership>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::from_state(ClusterState::new())
    }

    /// A store starting from `state` (a restored snapshot).
    pub fn from_state(state: ClusterState) -> MemStore {
        let (leadership, _) = watch::channel(Leadership { is_leader: true, leader: None, term: 0 });
        MemStore { state: Mutex::new(state), leadership }
    }

    /// A copy of the whole state (a snapshot).
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
        Ok(commands.iter().map(|c| state.apply(c)).collect())
    }

    fn read(&self, reader: &mut dyn FnMut(&ClusterState)) {
        reader(&self.lock());
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.subscribe()
    }
}
