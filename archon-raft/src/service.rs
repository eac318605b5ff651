//! The `archon.raft.v1.Raft` gRPC service: the Raft RPCs a leader sends its peers
//! (append entries, vote, snapshot chunks) and the membership admin calls (node
//! status, members, join, remove). [`raft_service`] gives a tonic server that can
//! share a port with the manager's other services.
//!
//! Raft RPCs carry openraft's own messages as JSON and answer with the JSON of
//! `Result<response, RaftError>`, so an error raised by the remote Raft comes back
//! as that very error. Admin calls other than `NodeStatus` must reach the leader;
//! any other node answers `FAILED_PRECONDITION` "not the leader", with the leader's
//! address in the [`LEADER_KEY`] metadata entry when it knows it.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{BasicNode, ChangeMembers, Membership, RaftMetrics, ServerState};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::{ENTRY_FORMAT, Raft, TypeConfig};

/// Generated protobuf messages and gRPC stubs of `archon.raft.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("archon.raft.v1");

    /// The compiled `archon.raft.v1` proto (a `google.protobuf.FileDescriptorSet`),
    /// for tools and tests that enumerate its methods.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/archon_raft_descriptor.bin"));
}

use proto::raft_server::Raft as RaftRpc;
pub use proto::raft_server::RaftServer;

/// The metadata entry naming the leader's address on a not-leader error (the same
/// key archon-net uses for its redirects).
pub const LEADER_KEY: &str = "archon-leader";
/// The metadata entry naming the request field an `INVALID_ARGUMENT` is about.
pub const FIELD_KEY: &str = "archon-field";
/// The largest message either side sends or accepts: an append-entries batch or
/// a snapshot chunk.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// How long `Join` waits for a new learner to catch up before promoting it to voter.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// The Raft service of a node, as a tonic server with [`MAX_MESSAGE_BYTES`] limits.
/// Add it to a tonic `Server` or `Routes` beside the manager's other services.
pub fn raft_service(raft: Raft) -> RaftServer<RaftService> {
    RaftServer::new(RaftService { raft })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Answers the `archon.raft.v1.Raft` calls with a node's [`Raft`].
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
}

impl fmt::Debug for RaftService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftService").finish_non_exhaustive()
    }
}

type Metrics = RaftMetrics<u64, BasicNode>;
type WriteError = RaftError<u64, ClientWriteError<u64, BasicNode>>;

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, request: Request<proto::RaftRequest>) -> Result<Response<proto::RaftReply>, Status> {
        let request = request.into_inner();
        known_format(request.format)?;
        let rpc: AppendEntriesRequest<TypeConfig> = from_json(&request.payload)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<proto::RaftRequest>) -> Result<Response<proto::RaftReply>, Status> {
        let request = request.into_inner();
        known_format(request.format)?;
        let rpc: VoteRequest<u64> = from_json(&request.payload)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<proto::SnapshotChunk>,
    ) -> Result<Response<proto::RaftReply>, Status> {
        let chunk = request.into_inner();
        known_format(chunk.format)?;
        let mut rpc: InstallSnapshotRequest<TypeConfig> = from_json(&chunk.payload)?;
        rpc.data = chunk.data;
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn node_status(
        &self,
        _request: Request<proto::NodeStatusRequest>,
    ) -> Result<Response<proto::NodeStatusReply>, Status> {
        let metrics = self.metrics();
        Ok(Response::new(node_status_of(&metrics)))
    }

    async fn members(&self, _request: Request<proto::MembersRequest>) -> Result<Response<proto::MembersReply>, Status> {
        let metrics = self.leader_metrics()?;
        Ok(Response::new(members_of(metrics.membership_config.membership(), Some(metrics.id))))
    }

    async fn join(&self, request: Request<proto::JoinRequest>) -> Result<Response<proto::MembersReply>, Status> {
        let proto::JoinRequest { node_id, address } = request.into_inner();
        let address = address.trim().to_owned();
        if address.is_empty() || address.contains(char::is_whitespace) {
            return Err(invalid(
                "address",
                format!("{address:?} is not an address (try HOST:PORT, e.g. 10.0.0.2:50051)"),
            ));
        }
        let metrics = self.leader_metrics()?;
        let membership = metrics.membership_config.membership();
        if let Some(node) = membership.get_node(&node_id) {
            if node.addr != address {
                return Err(invalid(
                    "node_id",
                    format!(
                        "node {node_id} is already a member at {}; remove it before joining it at {address}",
                        node.addr
                    ),
                ));
            }
            if membership.voter_ids().any(|id| id == node_id) {
                return Ok(Response::new(members_of(membership, Some(metrics.id))));
            }
        }
        let learner = BasicNode::new(address.clone());
        match tokio::time::timeout(CATCH_UP_TIMEOUT, self.raft.add_learner(node_id, learner, true)).await {
            Ok(added) => added.map_err(write_error)?,
            Err(_elapsed) => {
                return Err(Status::unavailable(format!(
                    "node {node_id} at {address} was added as a learner but has not caught up within {}s; \
                     check that it runs and that the leader reaches it, then join it again",
                    CATCH_UP_TIMEOUT.as_secs()
                )));
            }
        };
        let changed = self
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
            .await
            .map_err(write_error)?;
        Ok(Response::new(self.members_after(changed.membership)))
    }

    async fn remove(&self, request: Request<proto::RemoveRequest>) -> Result<Response<proto::MembersReply>, Status> {
        let node_id = request.into_inner().node_id;
        let metrics = self.leader_metrics()?;
        let membership = metrics.membership_config.membership();
        if membership.get_node(&node_id).is_none() {
            return Ok(Response::new(members_of(membership, Some(metrics.id))));
        }
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let change = if voters.contains(&node_id) {
            if voters.len() == 1 {
                return Err(invalid(
                    "node_id",
                    format!("node {node_id} is the last voter; join another node before removing it"),
                ));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
        };
        let changed = self.raft.change_membership(change, false).await.map_err(write_error)?;
        Ok(Response::new(self.members_after(changed.membership)))
    }
}

impl RaftService {
    fn metrics(&self) -> Metrics {
        self.raft.metrics().borrow().clone()
    }

    /// This node's metrics when it leads, else the not-leader status.
    #[allow(clippy::result_large_err)]
    fn leader_metrics(&self) -> Result<Metrics, Status> {
        let metrics = self.metrics();
        match metrics.state {
            ServerState::Leader if metrics.current_leader == Some(metrics.id) => Ok(metrics),
            ServerState::Shutdown => Err(Status::unavailable("raft stopped on this node")),
            _ if metrics.current_leader == Some(metrics.id) => Err(not_leader(None)),
            _ => Err(not_leader(leader_address(&metrics))),
        }
    }

    /// The members after a change this node committed as leader.
    fn members_after(&self, membership: Option<Membership<u64, BasicNode>>) -> proto::MembersReply {
        let metrics = self.metrics();
        let membership = membership.unwrap_or_else(|| metrics.membership_config.membership().clone());
        members_of(&membership, metrics.current_leader)
    }
}

fn node_status_of(metrics: &Metrics) -> proto::NodeStatusReply {
    let membership = metrics.membership_config.membership();
    let role = match metrics.state {
        ServerState::Leader => proto::Role::Leader,
        ServerState::Follower => proto::Role::Follower,
        ServerState::Candidate => proto::Role::Candidate,
        ServerState::Learner => proto::Role::Learner,
        ServerState::Shutdown => proto::Role::Shutdown,
    };
    proto::NodeStatusReply {
        node_id: metrics.id,
        address: membership.get_node(&metrics.id).map(|n| n.addr.clone()),
        role: role.into(),
        term: metrics.current_term,
        last_applied: metrics.last_applied.map(|l| l.index),
        last_log_index: metrics.last_log_index,
        leader_id: metrics.current_leader,
        leader_address: leader_address(metrics),
    }
}

fn members_of(membership: &Membership<u64, BasicNode>, leader: Option<u64>) -> proto::MembersReply {
    let member = |id: u64| membership.get_node(&id).map(|node| proto::Member { id, address: node.addr.clone() });
    proto::MembersReply {
        voters: membership.voter_ids().filter_map(member).collect(),
        learners: membership.learner_ids().filter_map(member).collect(),
        leader: leader.and_then(member),
    }
}

/// The address of the leader this node knows of, from its membership.
fn leader_address(metrics: &Metrics) -> Option<String> {
    let leader = metrics.current_leader?;
    metrics.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())
}

/// Refuses a Raft message written in a format newer than this node reads.
#[allow(clippy::result_large_err)]
fn known_format(format: u32) -> Result<(), Status> {
    if format > ENTRY_FORMAT {
        return Err(invalid(
            "format",
            format!(
                "the sender writes log entry format {format}, newer than this node reads ({ENTRY_FORMAT}); upgrade \
                 this node (managers one at a time, followers first)"
            ),
        ));
    }
    Ok(())
}

#[allow(clippy::result_large_err)]
fn from_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(payload)
        .map_err(|e| invalid("payload", format!("not the JSON of an openraft request of this version: {e}")))
}

#[allow(clippy::result_large_err)]
fn reply<T: Serialize>(result: &T) -> Result<Response<proto::RaftReply>, Status> {
    serde_json::to_vec(result)
        .map(|payload| Response::new(proto::RaftReply { payload, format: ENTRY_FORMAT }))
        .map_err(|e| Status::internal(format!("cannot encode the reply: {e}")))
}

/// `FAILED_PRECONDITION` "not the leader", with the leader's address in metadata.
fn not_leader(leader: Option<String>) -> Status {
    let Some(leader) = leader else {
        return Status::failed_precondition(
            "not the leader, and no leader is known (an election may be under way; retry shortly)",
        );
    };
    let mut status = Status::failed_precondition(format!("not the leader; the leader is {leader}"));
    if let Ok(value) = MetadataValue::try_from(leader.as_str()) {
        status.metadata_mut().insert(LEADER_KEY, value);
    }
    status
}

/// `INVALID_ARGUMENT` "{field}: {message}", naming the field in metadata.
fn invalid(field: &'static str, message: String) -> Status {
    let mut status = Status::invalid_argument(format!("{field}: {message}"));
    status.metadata_mut().insert(FIELD_KEY, MetadataValue::from_static(field));
    status
}

fn write_error(err: WriteError) -> Status {
    match err {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            not_leader(forward.leader_node.map(|n| n.addr))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => match e {
            ChangeMembershipError::InProgress(e) => {
                Status::unavailable(format!("another membership change is in progress ({e}); retry shortly"))
            }
            ChangeMembershipError::EmptyMembership(e) => invalid("node_id", e.to_string()),
            ChangeMembershipError::LearnerNotFound(e) => {
                Status::unavailable(format!("{e} (the membership changed meanwhile; retry)"))
            }
        },
        RaftError::Fatal(e) => Status::unavailable(format!("raft stopped on this node: {e}")),
    }
}
