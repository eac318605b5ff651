//! How proposals become log entries. openraft 0.9 writes one client write at
//! a time — its core waits for each entry's fsync before it takes the next —
//! so many small proposals made at once would each pay an fsync in turn. The
//! proposer instead keeps one entry on its way and gathers every proposal
//! made meanwhile into the next one: under load an entry carries what
//! arrived during the last write, and each caller gets back the outcomes of
//! its own commands, in order. A proposal larger than
//! [`RaftConfig::max_entry_bytes`](crate::RaftConfig::max_entry_bytes) goes
//! alone, as several entries one after another.

use archon_core::metrics::Metrics;
use archon_core::state::{Command, Outcome};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{Proposal, Raft};

type Reply = oneshot::Sender<Result<Vec<Outcome>, archon_core::Error>>;

/// A caller's proposal waiting for its entry.
struct Pending {
    commands: Vec<Command>,
    bytes: usize,
    reply: Reply,
}

/// The handle callers propose through; the task ends when every handle is gone.
#[derive(Clone)]
pub(crate) struct Proposer {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Proposer {
    /// Starts the task proposing to `raft` entries of at most `max_entry_bytes`.
    pub(crate) fn start(raft: Raft, metrics: Metrics, max_entry_bytes: usize) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, metrics, max_entry_bytes.max(1), rx));
        Proposer { tx }
    }

    /// Proposes `commands` (not empty) and returns their outcomes.
    pub(crate) async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, archon_core::Error> {
        let bytes = commands.iter().map(Command::size_hint).sum();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { commands, bytes, reply })
            .map_err(|_| archon_core::Error::Unavailable("raft stopped".into()))?;
        answer.await.map_err(|_| archon_core::Error::Unavailable("raft stopped".into()))?
    }
}

/// The proposer task: one entry at a time, each with every proposal that
/// waited for it (within the byte bound), in the order they were made.
async fn run(raft: Raft, metrics: Metrics, max: usize, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut next: Option<Pending> = None;
    loop {
        let first = match next.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        if first.bytes > max {
            let Pending { commands, reply, .. } = first;
            let _ = reply.send(write_split(&raft, &metrics, commands, max).await);
            continue;
        }
        let mut bytes = first.bytes;
        let mut group = vec![first];
        while let Ok(p) = rx.try_recv() {
            if bytes + p.bytes > max {
                next = Some(p);
                break;
            }
            bytes += p.bytes;
            group.push(p);
        }
        let counts: Vec<usize> = group.iter().map(|p| p.commands.len()).collect();
        let mut replies = Vec::with_capacity(group.len());
        let mut commands = Vec::with_capacity(counts.iter().sum());
        for p in group {
            commands.extend(p.commands);
            replies.push(p.reply);
        }
        match write_entry(&raft, &metrics, commands).await {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (reply, n) in replies.into_iter().zip(counts) {
                    let _ = reply.send(Ok(outcomes.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A proposal too large for one entry, as several in order.
async fn write_split(
    raft: &Raft,
    metrics: &Metrics,
    commands: Vec<Command>,
    max: usize,
) -> Result<Vec<Outcome>, archon_core::Error> {
    let mut outcomes = Vec::new();
    for entry in split_entries(commands, max)? {
        outcomes.extend(write_entry(raft, metrics, entry).await?);
    }
    Ok(outcomes)
}

/// Proposes `commands` as one log entry.
///
/// openraft 0.9 answers a proposal when its entry is applied here or cut
/// from the log, but never when a snapshot from a newer leader replaces
/// it: a leader deposed with proposals in flight that then installs a
/// snapshot would wait on them forever (fixed upstream in 0.10, openraft
/// #1761). So a proposal made while leading also ends once this node has
/// lost that leadership and applied past every entry it held then — by
/// then its entry was applied, cut or replaced, and if no answer came it
/// was replaced: committed or not, this node cannot tell.
async fn write_entry(
    raft: &Raft,
    store_metrics: &Metrics,
    commands: Vec<Command>,
) -> Result<Vec<Outcome>, archon_core::Error> {
    let (started, count) = (std::time::Instant::now(), commands.len());
    let mut metrics = raft.metrics();
    let leading = {
        let m = metrics.borrow_and_update();
        (m.state == ServerState::Leader).then_some(m.current_term)
    };
    let written = raft.client_write(Proposal::new(commands));
    let result = match leading {
        None => written.await,
        Some(term) => tokio::select! {
            biased;
            result = written => result,
            () = stranded(&mut metrics, term) => {
                return Err(archon_core::Error::Unavailable(format!(
                    "the outcome of this proposal is unknown: this manager lost its leadership of term {term} \
                     before the entry's fate reached it; retry with the same idempotency key"
                )));
            }
        },
    };
    match result {
        Ok(response) => {
            store_metrics.store().committed(count, started.elapsed());
            Ok(response.data)
        }
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(archon_core::Error::NotLeader { leader: f.leader_node.map(|n| n.addr) })
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(archon_core::Error::Internal(e.to_string()))
        }
        Err(RaftError::Fatal(e)) => Err(archon_core::Error::Unavailable(format!("raft stopped: {e}"))),
    }
}

/// Resolves once a proposal made while leading `term` can no longer be
/// answered by openraft (see [`write_entry`]): this node no longer
/// leads `term` and has applied past the last entry its log held when it
/// stopped — plus a short grace for an answer already on its way. Pending
/// forever while the node leads `term` or Raft stops.
async fn stranded(metrics: &mut watch::Receiver<RaftMetrics<u64, BasicNode>>, term: u64) {
    let deposed = |m: &RaftMetrics<u64, BasicNode>| m.state != ServerState::Leader || m.current_term != term;
    let Ok(at_deposition) = metrics.wait_for(deposed).await.map(|m| m.last_log_index) else {
        return std::future::pending().await;
    };
    let Some(last) = at_deposition else { return };
    let past = |m: &RaftMetrics<u64, BasicNode>| m.last_applied.is_some_and(|applied| applied.index >= last);
    if metrics.wait_for(past).await.is_err() {
        return std::future::pending().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// `commands` cut into runs of at most `max` bytes each (by their size hints);
/// `Err` names a single command larger than that.
fn split_entries(commands: Vec<Command>, max: usize) -> Result<Vec<Vec<Command>>, archon_core::Error> {
    let sizes: Vec<usize> = commands.iter().map(Command::size_hint).collect();
    if let Some(&size) = sizes.iter().find(|&&size| size > max) {
        return Err(archon_core::Error::invalid(
            "proposal",
            format!(
                "a command of about {} is larger than a log entry may be (max_entry_bytes {}); it was not proposed",
                archon_core::model::units::format_bytes(size as u64),
                archon_core::model::units::format_bytes(max as u64)
            ),
        ));
    }
    if sizes.iter().sum::<usize>() <= max {
        return Ok(vec![commands]);
    }
    let mut entries = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for (command, size) in commands.into_iter().zip(sizes) {
        if bytes + size > max && !current.is_empty() {
            entries.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(command);
    }
    if !current.is_empty() {
        entries.push(current);
    }
    Ok(entries)
}
