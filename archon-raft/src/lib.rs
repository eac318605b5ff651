//! Archon's replicated [`Store`](archon_core::store::Store): Raft (openraft, storage
//! v2) over a durable redb file, with Raft's RPCs carried by tonic.
//!
//! - [`storage`]: the log (entries, vote, committed index) and the state machine,
//!   which is archon-core's [`ClusterState::apply`](archon_core::state::ClusterState::apply)
//!   itself; snapshots are the state's JSON, kept in the same redb file so a restart
//!   recovers from snapshot + log.
//! - [`network`] and [`service`]: Raft RPCs (append entries, vote, snapshot) and the
//!   membership admin calls, over gRPC.
//! - [`RaftStore`]: the `Store` the manager proposes to.

mod error;
pub mod network;
pub mod service;
pub mod storage;
mod store;

pub use error::Error;
pub use store::{RaftConfig, RaftStore};

/// Archon's Raft types: a log entry carries one batch of commands, and its
/// response is one outcome per command. A node is known by its gRPC address.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// Archon's Raft type configuration.
    pub TypeConfig:
        D = Vec<archon_core::state::Command>,
        R = Vec<archon_core::state::Outcome>,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

/// The Raft handle of a node.
pub type Raft = openraft::Raft<TypeConfig>;
