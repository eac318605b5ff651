//! The client side of the `archon.raft.v1.Raft` service: [`GrpcNetwork`], how
//! openraft reaches its peers, and [`AdminClient`], how the CLI and the daemons ask
//! a group about its members and change them.
//!
//! Peers are reached over lazily connected tonic channels, one per address, shared
//! by every client of a [`GrpcNetwork`]. A peer that cannot be reached is an
//! [`RPCError::Unreachable`], so openraft backs off before trying it again; an error
//! raised by the peer's Raft comes back as an [`RPCError::RemoteError`] holding it.
//!
//! [`Links`] is a fault-injection seam for partition tests: a network built with
//! [`GrpcNetwork::with_links`] treats an RPC over a cut link as unreachable.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use archon_core::metrics::Metrics;
use archon_net::tls::Dialer;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::service::proto::{self, raft_client::RaftClient};
use crate::service::{CATCH_UP_TIMEOUT, FIELD_KEY, LEADER_KEY, MAX_MESSAGE_BYTES};
use crate::{Error, TypeConfig};

/// The format of a Raft message that carries no log entry (a vote, a snapshot
/// chunk, whose file states its own format): the first cut's, readable by every
/// node of this release.
const BASE_FORMAT: u32 = 1;

/// The format of an AppendEntries: the newest among its entries, so a node that
/// does not know the cron commands still takes entries without them (a rolling
/// upgrade) and refuses the rest with an error naming both formats.
fn entries_format(entries: &[openraft::Entry<TypeConfig>]) -> u32 {
    entries
        .iter()
        .filter_map(|e| match &e.payload {
            openraft::EntryPayload::Normal(p) => Some(p.format),
            _ => None,
        })
        .fold(BASE_FORMAT, u32::max)
}

/// How long connecting to a peer may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings detect a dead peer on an idle connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an admin query (status, members) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a membership change may take: a join waits for the learner to catch up.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(CATCH_UP_TIMEOUT.as_secs() + 30);
/// How many not-leader redirects an admin call follows from one starting address.
const MAX_REDIRECTS: usize = 5;
/// How long an admin call keeps looking for a leader while none is known.
const FIND_LEADER_FOR: Duration = Duration::from_secs(15);
/// The pause between those tries.
const FIND_LEADER_PAUSE: Duration = Duration::from_millis(150);

/// openraft's [`RaftNetworkFactory`] over gRPC: a node's [`BasicNode::addr`] is the
/// `HOST:PORT` (or `http://HOST:PORT`) of its `archon.raft.v1.Raft` service.
#[derive(Clone, Default)]
pub struct GrpcNetwork {
    channels: Channels,
    /// This node's id and the link table its RPCs obey, when faults are injected.
    links: Option<(u64, Links)>,
    /// Where replication is counted (a private registry unless given one).
    metrics: Metrics,
}

impl std::fmt::Debug for GrpcNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcNetwork").field("channels", &self.channels).field("links", &self.links).finish()
    }
}

impl GrpcNetwork {
    /// A network with no connection yet; each peer is connected on first use.
    pub fn new() -> GrpcNetwork {
        GrpcNetwork::default()
    }

    /// A network for node `node_id` whose RPCs obey `links`: an RPC to a peer
    /// over a cut link fails as unreachable without being sent, and a reply that
    /// arrives after its link was cut is lost the same way. For partition tests.
    pub fn with_links(node_id: u64, links: Links) -> GrpcNetwork {
        GrpcNetwork { channels: Channels::default(), links: Some((node_id, links)), metrics: Metrics::new() }
    }

    /// A network that reaches its peers through `dialer`: over mutual TLS with
    /// this manager's certificate, when the cluster has TLS.
    pub fn with_dialer(dialer: Dialer) -> GrpcNetwork {
        GrpcNetwork { channels: Channels::new(dialer), links: None, metrics: Metrics::new() }
    }

    /// The same network, counting the entries it replicates in `metrics`
    /// (`archon_raft_entries_sent_total`, `archon_raft_entries_found_held_total`).
    pub fn with_metrics(mut self, metrics: Metrics) -> GrpcNetwork {
        self.metrics = metrics;
        self
    }
}

/// Which directed links between Raft nodes are cut: the fault-injection table a
/// [`GrpcNetwork::with_links`] consults before sending each RPC and on its reply.
/// A request and its reply travel on the link of the node that sends the request,
/// so cutting both directions between two nodes partitions them. Cheap to clone;
/// clones share the table. All links are whole when it is new.
#[derive(Debug, Clone, Default)]
pub struct Links {
    cut: Arc<RwLock<BTreeSet<(u64, u64)>>>,
}

impl Links {
    /// A table with every link whole.
    pub fn new() -> Links {
        Links::default()
    }

    /// Cuts the link from node `from` to node `to` (one direction).
    pub fn cut(&self, from: u64, to: u64) {
        self.cut.write().unwrap_or_else(PoisonError::into_inner).insert((from, to));
    }

    /// Restores the link from node `from` to node `to`.
    pub fn heal(&self, from: u64, to: u64) {
        self.cut.write().unwrap_or_else(PoisonError::into_inner).remove(&(from, to));
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        self.cut.write().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Whether the link from node `from` to node `to` is cut.
    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.cut.read().unwrap_or_else(PoisonError::into_inner).contains(&(from, to))
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> GrpcPeer {
        let client = self.channels.get(&node.addr).map(|channel| {
            RaftClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        });
        let link = self.links.as_ref().map(|(from, links)| (*from, links.clone()));
        let metrics = self.metrics.clone();
        GrpcPeer { target, node: node.clone(), client, link, metrics, probing: true, probed: (0, 0, None) }
    }
}

/// One peer as openraft's [`RaftNetwork`]: Raft RPCs to `target` at `node.addr`.
#[derive(Clone)]
pub struct GrpcPeer {
    target: u64,
    node: BasicNode,
    /// The client, or why the address is unusable.
    client: Result<RaftClient<Channel>, String>,
    /// The sending node and the link table, when faults are injected.
    link: Option<(u64, Links)>,
    metrics: Metrics,
    /// Whether entries are offered as a probe first (see [`GrpcPeer::append_entries`]).
    probing: bool,
    /// Probes so far, the entries they found held, and when the first was sent.
    probed: (u32, u64, Option<std::time::Instant>),
}

impl std::fmt::Debug for GrpcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcPeer")
            .field("target", &self.target)
            .field("node", &self.node)
            .field("probing", &self.probing)
            .finish_non_exhaustive()
    }
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl RaftNetwork<TypeConfig> for GrpcPeer {
    /// Sends `rpc`; while probing, asks first whether the follower holds the
    /// entries of earlier terms in it.
    ///
    /// A new leader does not know where a follower's log ends: openraft 0.9
    /// starts its search half-way between the start of the log and its end and
    /// sends every entry from there, so after a failover a follower that was
    /// up to date is sent back up to the whole log the leader keeps — for a
    /// large state, hundreds of MiB before the new leader's first entry
    /// commits. So until the entries of the leader's own term are reached, a
    /// request goes first as a probe: the same request with no entries, whose
    /// `prev_log_id` is the last of its entries from an earlier term. By Raft's
    /// log matching, a follower holding that id holds every entry before it,
    /// so on success only the entries after it are sent (none, mostly), and
    /// that answer — the follower's accepted log id and commit index are what
    /// the full request would have left — stands for the request's. Any other
    /// answer to the probe (a conflict, which cuts nothing the full request
    /// would not have cut, or an error) ends the probing and the request is
    /// sent as it is.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        if !self.probing || rpc.entries.is_empty() {
            return self.send_counted(rpc, option).await;
        }
        let term = rpc.vote.leader_id().get_term();
        // The entries a follower may hold already: those of earlier terms.
        let held = rpc.entries.iter().take_while(|e| e.log_id.leader_id.term < term).count();
        if held == 0 {
            // Past them: what follows is this leader's, sent as openraft asks.
            self.stop_probing("reached this term's entries");
            return self.send_counted(rpc, option).await;
        }
        let mut rpc = rpc;
        let probe = AppendEntriesRequest {
            vote: rpc.vote,
            prev_log_id: Some(rpc.entries[held - 1].log_id),
            leader_commit: rpc.leader_commit,
            entries: Vec::new(),
        };
        self.probed.0 += 1;
        self.probed.2.get_or_insert_with(std::time::Instant::now);
        match self.send_entries(probe, option.clone()).await {
            Ok(AppendEntriesResponse::Success) => {
                self.probed.1 += held as u64;
                self.metrics.raft().entries_found_held(held as u64);
                let rest = rpc.entries.split_off(held);
                if rest.is_empty() {
                    return Ok(AppendEntriesResponse::Success);
                }
                let prev_log_id = rpc.entries.last().map(|e| e.log_id);
                let reply = self.send_counted(AppendEntriesRequest { prev_log_id, entries: rest, ..rpc }, option).await;
                // Not reached if openraft's timeout drops this call: its retry probes again.
                self.stop_probing("reached this term's entries");
                reply
            }
            Ok(higher @ AppendEntriesResponse::HigherVote(_)) => Ok(higher),
            _ => {
                self.stop_probing("the follower lacks them or did not answer");
                self.send_counted(rpc, option).await
            }
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>> {
        let payload = self.to_json("vote", &rpc)?;
        let reply = self
            .send(
                "vote",
                proto::RaftRequest { payload, format: BASE_FORMAT },
                option.hard_ttl(),
                |mut c, r| async move { c.vote(r).await },
            )
            .await
            .map_err(Failure::into_rpc_error)?;
        self.decode_reply("vote", &reply)
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        // The chunk's bytes travel beside the JSON rather than as an array of numbers in it.
        let data = std::mem::take(&mut rpc.data);
        let payload = self.to_json("install_snapshot", &rpc)?;
        let reply = self
            .send(
                "install_snapshot",
                proto::SnapshotChunk { payload, data, format: BASE_FORMAT },
                option.hard_ttl(),
                |mut c, r| async move { c.install_snapshot(r).await },
            )
            .await
            .map_err(Failure::into_rpc_error)?;
        self.decode_reply("install_snapshot", &reply)
    }
}

// The errors are openraft's `RPCError`, as large as the trait makes them.
#[allow(clippy::result_large_err)]
impl GrpcPeer {
    /// Ends the probing after a failover, saying what it found.
    fn stop_probing(&mut self, why: &str) {
        self.probing = false;
        let (probes, held, since) = self.probed;
        if probes > 0 {
            tracing::debug!(
                follower = self.target, probes, held, took = ?since.map(|t| t.elapsed()), why,
                "probed the follower's log instead of sending it again"
            );
        }
    }

    /// One AppendEntries, its entries counted as sent when the follower took them.
    async fn send_counted(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        let entries = rpc.entries.len() as u64;
        let reply = self.send_entries(rpc, option).await;
        if entries > 0 && matches!(reply, Ok(AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)))
        {
            self.metrics.raft().entries_sent(entries);
        }
        reply
    }

    /// One AppendEntries, as it is.
    async fn send_entries(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        let entries = rpc.entries.len();
        let format = entries_format(&rpc.entries);
        let payload = self.to_json("append_entries", &rpc)?;
        // openraft drops an AppendEntries at its heartbeat interval (the hard
        // TTL) and sends the same entries again, so a batch that cannot be
        // encoded, sent, written and fsync'd by the follower within it would be
        // retried forever. Giving up at the soft TTL instead lets it be answered
        // with a smaller batch next (openraft keeps the hint for a few RPCs).
        let deadline = if entries > 1 { option.soft_ttl() } else { option.hard_ttl() };
        let sent = self
            .send("append_entries", proto::RaftRequest { payload, format }, deadline, |mut c, r| async move {
                c.append_entries(r).await
            })
            .await;
        match sent {
            Err(failure) if (failure.too_large || failure.slow) && entries > 1 => {
                tracing::debug!(%failure, entries, "sending fewer entries per AppendEntries to this peer");
                Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2) as u64)))
            }
            Err(failure) => Err(failure.into_rpc_error()),
            Ok(reply) => self.decode_reply("append_entries", &reply),
        }
    }

    /// Sends one RPC within `ttl`; the reply's payload or why it failed.
    async fn send<M, F, Fut>(&self, rpc: &'static str, message: M, ttl: Duration, call: F) -> Result<Vec<u8>, Failure>
    where
        F: FnOnce(RaftClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<proto::RaftReply>, Status>>,
    {
        let client = self.client.clone().map_err(|why| self.failure(rpc, why))?;
        self.check_link(rpc, "not sent")?;
        let mut request = Request::new(message);
        request.set_timeout(ttl);
        match tokio::time::timeout(ttl, call(client, request)).await {
            Ok(Ok(reply)) => {
                self.check_link(rpc, "reply lost")?;
                Ok(reply.into_inner().payload)
            }
            Ok(Err(status)) => {
                let mut failure = self.failure(rpc, describe(&status));
                failure.too_large = status.code() == Code::OutOfRange;
                failure.slow = status.code() == Code::DeadlineExceeded;
                Err(failure)
            }
            Err(_elapsed) => {
                let mut failure = self.failure(rpc, format!("no answer within {ttl:?}"));
                failure.slow = true;
                Err(failure)
            }
        }
    }

    /// Fails when fault injection has cut the link to the target.
    fn check_link(&self, rpc: &'static str, what: &str) -> Result<(), Failure> {
        match &self.link {
            Some((from, links)) if links.is_cut(*from, self.target) => {
                Err(self.failure(rpc, format!("the link from node {from} is cut ({what})")))
            }
            _ => Ok(()),
        }
    }

    fn failure(&self, rpc: &'static str, message: String) -> Failure {
        Failure { rpc, target: self.target, addr: self.node.addr.clone(), message, slow: false, too_large: false }
    }

    fn to_json<T: serde::Serialize, E: std::error::Error>(
        &self,
        rpc: &'static str,
        message: &T,
    ) -> RpcResult<Vec<u8>, E> {
        serde_json::to_vec(message)
            .map_err(|e| self.failure(rpc, format!("cannot encode the request: {e}")).into_rpc_error())
    }

    /// The peer's answer: its response, or the error its Raft raised.
    fn decode_reply<T, E>(&self, rpc: &'static str, payload: &[u8]) -> RpcResult<T, E>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<T, RaftError<u64, E>> = serde_json::from_slice(payload).map_err(|e| {
            self.failure(rpc, format!("cannot decode the reply (is the peer another version?): {e}")).into_rpc_error()
        })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

/// Why a Raft RPC got no answer.
#[derive(Debug, thiserror::Error)]
#[error("{rpc} to node {target} at {addr}: {message}")]
struct Failure {
    rpc: &'static str,
    target: u64,
    addr: String,
    message: String,
    /// The peer is there but did not answer in time: retry without backing off,
    /// as openraft does after its own timeouts.
    slow: bool,
    /// The message exceeded a size limit.
    too_large: bool,
}

impl Failure {
    fn into_rpc_error<E: std::error::Error>(self) -> RPCError<u64, BasicNode, E> {
        if self.slow {
            RPCError::Network(NetworkError::new(&self))
        } else {
            RPCError::Unreachable(Unreachable::new(&self))
        }
    }
}

/// A node as [`AdminClient::node_status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Its Raft node id.
    pub node_id: u64,
    /// Its address in the membership; `None` while it belongs to no group.
    pub address: Option<String>,
    /// `leader`, `follower`, `candidate`, `learner` (replicating, not voting) or
    /// `shutdown` (Raft stopped).
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The index of the last log entry it applied.
    pub last_applied: Option<u64>,
    /// The index of the last entry in its log.
    pub last_log_index: Option<u64>,
    /// The leader it knows of.
    pub leader_id: Option<u64>,
    /// That leader's address.
    pub leader_address: Option<String>,
}

/// A member of a Raft group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Its Raft node id.
    pub id: u64,
    /// Where its gRPC port is reached (`HOST:PORT`).
    pub address: String,
}

/// A group's membership, as its leader knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// The members that vote, by id.
    pub voters: Vec<Member>,
    /// The members that only replicate, by id.
    pub learners: Vec<Member>,
    /// The leader that answered.
    pub leader: Option<Member>,
}

/// The admin calls of a Raft group: node status, members, join and remove.
/// Group-wide calls go to the given addresses in turn and follow not-leader
/// redirects to the leader. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct AdminClient {
    addrs: Vec<String>,
    channels: Channels,
}

impl AdminClient {
    /// A client of the group whose members (any of them) are at `addrs`
    /// (`HOST:PORT` or `http://HOST:PORT`). Nothing is connected yet.
    pub fn new(addrs: Vec<String>) -> AdminClient {
        AdminClient { addrs, channels: Channels::default() }
    }

    /// A client like [`AdminClient::new`] connecting through `dialer`. Over TLS
    /// the group answers only a manager's certificate.
    pub fn with_dialer(addrs: Vec<String>, dialer: Dialer) -> AdminClient {
        AdminClient { addrs, channels: Channels::new(dialer) }
    }

    /// The node at `addr`, as it sees itself. Any node answers, leader or not.
    pub async fn node_status(&self, addr: &str) -> Result<NodeStatus, Error> {
        let reply = self
            .call(addr, proto::NodeStatusRequest {}, QUERY_TIMEOUT, |mut c, r| async move { c.node_status(r).await })
            .await?;
        Ok(NodeStatus::from(reply))
    }

    /// The group's membership, from its leader.
    pub async fn members(&self) -> Result<Members, Error> {
        let reply = self
            .on_leader(proto::MembersRequest {}, QUERY_TIMEOUT, |mut c, r| async move { c.members(r).await })
            .await?;
        Ok(Members::from(reply))
    }

    /// Adds node `node_id`, reached at `address`, to the group: as a learner until
    /// it has caught up, then as a voter. Joining a voter again at the same address
    /// changes nothing. Returns the membership after the change.
    pub async fn join(&self, node_id: u64, address: &str) -> Result<Members, Error> {
        let request = proto::JoinRequest { node_id, address: address.to_owned() };
        let reply = self.on_leader(request, CHANGE_TIMEOUT, |mut c, r| async move { c.join(r).await }).await?;
        Ok(Members::from(reply))
    }

    /// Removes node `node_id` (voter or learner) from the group; removing a node
    /// that is not a member changes nothing, removing the last voter is refused.
    /// Returns the membership after the change.
    pub async fn remove(&self, node_id: u64) -> Result<Members, Error> {
        let request = proto::RemoveRequest { node_id };
        let reply = self.on_leader(request, CHANGE_TIMEOUT, |mut c, r| async move { c.remove(r).await }).await?;
        Ok(Members::from(reply))
    }

    /// Makes the call on the leader: tries each address in turn, following
    /// not-leader redirects, and returns the first answer or the last error.
    async fn on_leader<M, T, F, Fut>(&self, message: M, timeout: Duration, call: F) -> Result<T, Error>
    where
        M: Clone,
        F: Fn(RaftClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        // While no node knows a leader (an election is under way), ask again.
        let deadline = tokio::time::Instant::now() + FIND_LEADER_FOR;
        loop {
            match self.on_leader_once(message.clone(), timeout, &call).await {
                Err(Error::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(FIND_LEADER_PAUSE).await;
                }
                answer => return answer,
            }
        }
    }

    /// One pass over the addresses, following redirects.
    async fn on_leader_once<M, T, F, Fut>(&self, message: M, timeout: Duration, call: &F) -> Result<T, Error>
    where
        M: Clone,
        F: Fn(RaftClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let mut last = Error::Invalid {
            field: "addrs",
            message: "no address of a group member was given (try HOST:PORT, e.g. 10.0.0.2:50051)".into(),
        };
        for start in &self.addrs {
            let mut addr = start.clone();
            for _hop in 0..=MAX_REDIRECTS {
                match self.call(&addr, message.clone(), timeout, call).await {
                    Ok(answer) => return Ok(answer),
                    Err(Error::NotLeader { leader: Some(leader) }) if leader != addr => {
                        last = Error::NotLeader { leader: Some(leader.clone()) };
                        addr = leader;
                    }
                    // The node answered for the group: the same question elsewhere gets the same answer.
                    Err(err @ Error::Invalid { .. }) => return Err(err),
                    Err(err) => {
                        last = err;
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// Makes one call to the node at `addr`.
    async fn call<M, T, F, Fut>(&self, addr: &str, message: M, timeout: Duration, call: F) -> Result<T, Error>
    where
        F: FnOnce(RaftClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let channel = self.channels.get(addr).map_err(|message| Error::Invalid { field: "address", message })?;
        let mut request = Request::new(message);
        request.set_timeout(timeout);
        match tokio::time::timeout(timeout, call(RaftClient::new(channel), request)).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(status_error(addr, &status)),
            Err(_elapsed) => {
                Err(Error::Rpc { peer: addr.to_owned(), message: format!("no answer within {}s", timeout.as_secs()) })
            }
        }
    }
}

/// The error an admin call's status stands for.
fn status_error(addr: &str, status: &Status) -> Error {
    match status.code() {
        Code::FailedPrecondition => Error::NotLeader {
            leader: status.metadata().get(LEADER_KEY).and_then(|v| v.to_str().ok()).map(str::to_owned),
        },
        Code::InvalidArgument => {
            let field = match status.metadata().get(FIELD_KEY).and_then(|v| v.to_str().ok()) {
                Some("node_id") => "node_id",
                Some("address") => "address",
                Some("payload") => "payload",
                Some("format") => "format",
                _ => "request",
            };
            let message = status.message();
            let message = message.strip_prefix(field).and_then(|m| m.strip_prefix(": ")).unwrap_or(message);
            Error::Invalid { field, message: message.to_owned() }
        }
        _ => Error::Rpc { peer: addr.to_owned(), message: describe(status) },
    }
}

impl From<proto::NodeStatusReply> for NodeStatus {
    fn from(reply: proto::NodeStatusReply) -> NodeStatus {
        let role = match proto::Role::try_from(reply.role) {
            Ok(proto::Role::Leader) => "leader",
            Ok(proto::Role::Follower) => "follower",
            Ok(proto::Role::Candidate) => "candidate",
            Ok(proto::Role::Learner) => "learner",
            Ok(proto::Role::Shutdown) => "shutdown",
            Ok(proto::Role::Unspecified) | Err(_) => "unknown",
        };
        NodeStatus {
            node_id: reply.node_id,
            address: reply.address,
            role: role.to_owned(),
            term: reply.term,
            last_applied: reply.last_applied,
            last_log_index: reply.last_log_index,
            leader_id: reply.leader_id,
            leader_address: reply.leader_address,
        }
    }
}

impl From<proto::Member> for Member {
    fn from(member: proto::Member) -> Member {
        Member { id: member.id, address: member.address }
    }
}

impl From<proto::MembersReply> for Members {
    fn from(reply: proto::MembersReply) -> Members {
        Members {
            voters: reply.voters.into_iter().map(Member::from).collect(),
            learners: reply.learners.into_iter().map(Member::from).collect(),
            leader: reply.leader.map(Member::from),
        }
    }
}

/// Lazily connected channels by address, shared by clones.
#[derive(Debug, Clone, Default)]
struct Channels(Arc<Mutex<HashMap<String, Channel>>>, Dialer);

impl Channels {
    fn new(dialer: Dialer) -> Channels {
        Channels(Arc::default(), dialer)
    }

    /// The channel to `addr` (`HOST:PORT` or `http://HOST:PORT`), or why the address is unusable.
    fn get(&self, addr: &str) -> Result<Channel, String> {
        let uri = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
        let mut channels = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(&uri) {
            return Ok(channel.clone());
        }
        let endpoint = self
            .1
            .endpoint(&uri)
            .map_err(|e| format!("{addr:?} is not an address (try HOST:PORT, e.g. 10.0.0.2:50051): {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        let channel = self.1.connect_lazy(endpoint);
        channels.insert(uri, channel.clone());
        Ok(channel)
    }
}

/// A status's message followed by its source chain (what a transport failure says).
fn describe(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut next = std::error::Error::source(status);
    while let Some(err) = next {
        let part = err.to_string();
        if !part.is_empty() && part != "transport error" && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        next = err.source();
    }
    if text.is_empty() { format!("{:?}", status.code()) } else { text }
}
