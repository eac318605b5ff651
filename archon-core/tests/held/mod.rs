//! A [`MemStore`] that holds back the first proposal a predicate picks until
//! the test releases it: for what happens while a proposal is on its way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use archon_core::Error;
use archon_core::history::History;
use archon_core::state::{ClusterState, Command, Outcome};
use archon_core::store::{Leadership, MemStore, Store};
use async_trait::async_trait;
use tokio::sync::{Notify, watch};

/// See the module docs.
pub(crate) struct HeldProposal {
    inner: MemStore,
    picks: fn(&Command) -> bool,
    holding: AtomicBool,
    held: Notify,
    release: Notify,
}

impl HeldProposal {
    /// Holds the first proposal with a command `picks` chooses.
    pub(crate) fn new(picks: fn(&Command) -> bool) -> Arc<HeldProposal> {
        Arc::new(HeldProposal {
            inner: MemStore::new(),
            picks,
            holding: AtomicBool::new(false),
            held: Notify::new(),
            release: Notify::new(),
        })
    }

    /// Waits until the proposal is held.
    pub(crate) async fn held(&self) {
        self.held.notified().await;
    }

    /// Lets the held proposal (or the one yet to be held) through.
    pub(crate) fn release(&self) {
        self.release.notify_one();
    }
}

#[async_trait]
impl Store for HeldProposal {
    async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, Error> {
        if commands.iter().any(self.picks) && !self.holding.swap(true, Ordering::SeqCst) {
            self.held.notify_one();
            self.release.notified().await;
        }
        self.inner.propose(commands).await
    }

    fn read(&self, reader: &mut dyn FnMut(&ClusterState)) {
        self.inner.read(reader);
    }

    fn history(&self) -> Arc<dyn History> {
        self.inner.history()
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership()
    }
}
