//! The [`Store`] plug point: an ordered, linearizable log of [`Command`]s applied
//! to a [`ClusterState`]. `propose` returns once the batch is durable (where the
//! implementation is durable) and applied; a batch is one group commit. Only the
//! leader proposes: followers answer [`Error::NotLeader`].
//!
//! A store also keeps the history the state machine hands over as it applies
//! (see [`crate::history`]) and serves it through [`Store::history`]. When
//! `propose` returns, what its commands retired is readable there.

mod mem;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

pub use mem::{DEFAULT_MEM_HISTORY, MemStore};

use crate::api::ManagerInfo;
use crate::error::Error;
use crate::history::History;
use crate::state::{ClusterState, Command, Outcome};

/// Who leads the store's replication group, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leadership {
    /// Whether this node is the leader and may propose.
    pub is_leader: bool,
    /// The leader's client address, when known.
    pub leader: Option<String>,
    /// The current term (0 for stores without elections).
    pub term: u64,
    /// This node won the election of `term` but may not propose yet (an entry
    /// of its term has not applied, or a quorum has not answered it): it leads
    /// within moments, so callers and workers that reached it wait rather than
    /// being sent away.
    pub elected: bool,
}

/// Ordered, durable application of commands to the cluster state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends `commands` in order and applies them; returns one outcome per command.
    async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, Error>;

    /// Calls `reader` once with the applied state. Do not block inside it.
    fn read(&self, reader: &mut dyn FnMut(&ClusterState));

    /// The finished runs and jobs the state has let go of. A run that leaves the
    /// state is readable here before `read` stops showing it.
    fn history(&self) -> Arc<dyn History>;

    /// Leadership changes, as a watch channel.
    fn leadership(&self) -> watch::Receiver<Leadership>;

    /// Confirms that this node still leads, by a round that starts after the
    /// call: on `Ok`, no other node had become leader when the call began.
    /// Worker leases rest on it ([`crate::manager`]'s lease granter). A store
    /// with no rival leaders (a single node) leads for as long as it runs.
    async fn confirm_leadership(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Every manager of the replication group as each reports itself (for
    /// status). Empty for a store with no group: the manager describes itself.
    async fn managers(&self) -> Vec<ManagerInfo> {
        Vec::new()
    }
}

/// Convenience reads on any [`Store`].
pub trait StoreExt: Store {
    /// Runs `f` on the applied state and returns what it computes.
    fn query<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let mut f = Some(f);
        let mut out = None;
        self.read(&mut |state| {
            if let Some(f) = f.take() {
                out = Some(f(state));
            }
        });
        #[allow(clippy::expect_used)]
        out.expect("Store::read must call its reader exactly once")
    }
}

impl<S: Store + ?Sized> StoreExt for S {}
