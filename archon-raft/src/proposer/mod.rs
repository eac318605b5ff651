//! How proposals become log entries. openraft 0.9 writes one client write at
//! a time — its core waits for each entry's fsync before it takes the next —
//! so many small proposals made at once would each pay an fsync in turn. The
//! proposer instead keeps one entry on its way and gathers every proposal
//! made meanwhile into the next one: under load an entry carries what
//! arrived during the last write, and each caller gets back the outcomes of
//! its own commands, in order. How proposals are cut into entries of at most
//! [`RaftConfig::max_entry_bytes`](crate::RaftConfig::max_entry_bytes) is
//! [`queue`]'s.
//!
//! Handing the next entry over as soon as the log has flushed the last one,
//! rather than once it is answered, was measured and not kept: on two cores
//! the entries get smaller and the work per job grows (RESULTS.md, issue 17).

mod queue;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use archon_core::metrics::Metrics;
use archon_core::state::{Command, Outcome};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio::sync::{mpsc, oneshot, watch};

use self::queue::{Queue, Reply};
use crate::{Proposal, Raft};

/// A caller's proposal on its way to the proposer task.
struct Pending {
    commands: Vec<Command>,
    reply: Reply,
}

/// Where the proposer's entries go: openraft, or a test's stand-in.
trait Entries: Send + 'static {
    /// Writes `commands` as one entry and answers with their outcomes.
    fn write(&self, commands: Vec<Command>) -> impl Future<Output = Result<Vec<Outcome>, archon_core::Error>> + Send;
}

/// The handle callers propose through; the task ends when every handle is gone.
#[derive(Clone)]
pub(crate) struct Proposer {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Proposer {
    /// Starts the task proposing to `raft` entries of at most `max_entry_bytes`.
    pub(crate) fn start(raft: Raft, metrics: Metrics, max_entry_bytes: usize) -> Proposer {
        Proposer::start_with(RaftEntries { raft, metrics }, max_entry_bytes)
    }

    fn start_with(entries: impl Entries, max_entry_bytes: usize) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(entries, Queue::new(max_entry_bytes), rx));
        Proposer { tx }
    }

    /// Proposes `commands` (not empty) and returns their outcomes.
    pub(crate) async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, archon_core::Error> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { commands, reply })
            .map_err(|_| archon_core::Error::Unavailable("raft stopped".into()))?;
        answer.await.map_err(|_| archon_core::Error::Unavailable("raft stopped".into()))?
    }
}

/// The proposer task: one entry at a time, each with what waited for it.
async fn run(entries: impl Entries, mut queue: Queue, mut rx: mpsc::UnboundedReceiver<Pending>) {
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(p) => queue.push(p.commands, p.reply),
                None => return,
            }
        }
        while let Ok(p) = rx.try_recv() {
            queue.push(p.commands, p.reply);
        }
        if let Some((commands, slices)) = queue.cut() {
            let result = entries.write(commands).await;
            queue.answer(slices, result);
        }
    }
}

/// Entries written through openraft.
struct RaftEntries {
    raft: Raft,
    metrics: Metrics,
}

impl Entries for RaftEntries {
    fn write(&self, commands: Vec<Command>) -> impl Future<Output = Result<Vec<Outcome>, archon_core::Error>> + Send {
        write_entry(&self.raft, &self.metrics, commands)
    }
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
