//! Archon's replicated [`Store`](archon_core::store::Store): Raft (openraft, storage
//! v2) over a durable redb file, with Raft's RPCs carried by tonic.
//!
//! - [`storage`]: the log (entries, vote, committed index), the state machine —
//!   archon-core's [`ClusterState::apply`](archon_core::state::ClusterState::apply)
//!   itself — and the history it hands over, all in one redb file per node. A
//!   snapshot holds the small live state; a node that installs one from a peer
//!   receives the history tables streamed with it. [`storage::verify`] checks a
//!   stopped node's files and rebuilds its state from them.
//! - [`network`] and [`service`]: Raft RPCs (append entries, vote, snapshot) and the
//!   membership admin calls, over gRPC.
//! - [`RaftStore`]: the `Store` the manager proposes to.

mod error;
pub mod network;
mod proposal;
mod proposer;
pub mod service;
pub mod storage;
mod store;

pub use error::Error;
pub use proposal::{ENTRY_FORMAT, Proposal, ProposalError};
pub use store::{RaftConfig, RaftStore};

/// Archon's Raft types: a log entry carries one batch of commands (a
/// [`Proposal`]), and its response is one outcome per command. A node is known
/// by its gRPC address; a snapshot's data is a file the leader streams in chunks.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// Archon's Raft type configuration.
    pub TypeConfig:
        D = Proposal,
        R = Vec<archon_core::state::Outcome>,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = storage::SnapshotFile,
);

/// The Raft handle of a node.
pub type Raft = openraft::Raft<TypeConfig>;
