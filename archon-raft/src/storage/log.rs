//! The Raft log in its own file ([`wal`](super::wal)): entries, the vote, the
//! committed log id and the last purged log id as records in segment files.
//! Every change goes through the log's writer ([`LogWriter`]), which writes
//! what queued up together with one write and one fsync: an append reports its
//! flush, and a vote, truncation or purge returns, only once synced. The entries not yet applied
//! are also held decoded ([`Recent`]) from the moment they are queued, so reading
//! them back seldom touches the file; a read that does waits for the writer first.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use archon_core::metrics::Metrics;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote};
use serde::de::DeserializeOwned;

use super::log_writer::{Change, Done, LogWriter};
use super::recent::Recent;
use super::wal::{LogFile, Wal};
use super::{BlockingWork, Failure, NodeId, SnapshotDue, blocking};
use crate::TypeConfig;

/// `meta` key of the last saved vote (in a log written before the log file).
pub(super) const VOTE: &str = "vote";
/// `meta` key of the last saved committed log id (idem).
pub(super) const COMMITTED: &str = "committed";
/// `meta` key of the last purged log id (idem).
pub(super) const LAST_PURGED: &str = "last_purged";

/// The most bytes of entries (as stored) one AppendEntries carries, though
/// always at least one entry. openraft gives an AppendEntries its heartbeat
/// interval (100 ms by default) to be sent, written and fsync'd by the follower
/// and answered; a message of many large entries never makes that and is
/// retried whole forever, so replication reads the log in slices this big.
pub(super) const APPEND_BYTES: usize = 512 << 10;

/// The node's Raft log (and vote) in its log file. Clones share the file;
/// openraft uses a clone as its log reader.
#[derive(Clone)]
pub struct LogStore {
    file: Arc<LogFile>,
    recent: Arc<Recent>,
    snapshots: Arc<SnapshotDue>,
    /// Told the committed index as it advances.
    metrics: Metrics,
    blocking: BlockingWork,
    writer: LogWriter,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

/// Just the log id of a stored entry, read without decoding its payload.
#[derive(serde::Deserialize)]
pub(super) struct StoredLogId {
    pub(super) log_id: LogId<NodeId>,
}

impl LogStore {
    pub(super) fn new(
        file: Arc<LogFile>,
        recent: Arc<Recent>,
        snapshots: Arc<SnapshotDue>,
        metrics: Metrics,
        blocking: BlockingWork,
    ) -> LogStore {
        let writer = LogWriter::new(Arc::clone(&file), blocking);
        LogStore { file, recent, snapshots, metrics, blocking, writer }
    }

    /// Waits until every change asked of the log so far is in its file.
    pub(crate) async fn flush(&self) -> Result<(), crate::Error> {
        self.writer.flush().await.map_err(|e| crate::Error::Storage(e.to_string()))
    }

    /// Reads the log once the writer has drained: `read` on the log as it stands.
    async fn read<T, F>(&self, read: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&Wal) -> Result<T, Failure> + Send + 'static,
    {
        self.writer.flush().await?;
        let file = Arc::clone(&self.file);
        blocking(self.blocking, move || read(&file.lock())).await
    }
}

/// A stored JSON value, decoded.
fn decoded<T: DeserializeOwned>(bytes: Option<&[u8]>) -> Result<Option<T>, Failure> {
    Ok(bytes.map(serde_json::from_slice).transpose()?)
}

/// Stored entries, their commands left unread: most of what replication reads
/// after a failover is never sent (a probe finds the follower holds it).
fn unread(rows: Vec<(u64, Vec<u8>)>) -> Result<Vec<Entry<TypeConfig>>, Failure> {
    Ok(rows.iter().map(|(_, bytes)| crate::proposal::read_unread(bytes)).collect::<Result<_, _>>()?)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let range: (Bound<u64>, Bound<u64>) = (range.start_bound().cloned(), range.end_bound().cloned());
        if let Some(entries) = self.recent.get(range) {
            return Ok(entries);
        }
        self.read(move |wal| unread(wal.read(range, usize::MAX)?))
            .await
            .map_err(|e| e.at(ErrorSubject::Logs, ErrorVerb::Read))
    }

    /// What replication sends next: entries from `start` within `APPEND_BYTES`.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        if let Some(entries) = self.recent.get_limited(start, end, APPEND_BYTES) {
            return Ok(entries);
        }
        self.read(move |wal| unread(wal.read(start..end.max(start), APPEND_BYTES)?))
            .await
            .map_err(|e| e.at(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.read(|wal| {
            let last_purged_log_id: Option<LogId<NodeId>> = decoded(wal.purged())?;
            let last_entry = match wal.last()? {
                Some((_, bytes)) => Some(serde_json::from_slice::<StoredLogId>(&bytes)?.log_id),
                None => None,
            };
            Ok(LogState { last_purged_log_id, last_log_id: last_entry.or(last_purged_log_id) })
        })
        .await
        .map_err(|e| e.at(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = serde_json::to_vec(vote).map_err(|e| Failure::from(e).at(ErrorSubject::Vote, ErrorVerb::Write))?;
        self.writer.write(Change::Vote(bytes)).await.map_err(|e| e.at(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read(|wal| decoded(wal.vote())).await.map_err(|e| e.at(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Not fsync'd on its own: Raft does not need the committed index to be
    /// durable (a restart that finds an older one re-applies less, and the leader
    /// re-establishes the rest), and an fsync per commit would double the cost of
    /// every proposal. It reaches disk with the next append or vote.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        let bytes = committed
            .as_ref()
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Failure::from(e).at(ErrorSubject::Store, ErrorVerb::Write))?;
        self.writer.queue(Change::Committed(bytes), Done::Nobody);
        self.metrics.raft().committed(committed.map_or(0, |c| c.index));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.read(|wal| decoded(wal.committed())).await.map_err(|e| e.at(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let rows = entries
            .iter()
            .map(|entry| Ok((entry.log_id.index, serde_json::to_vec(entry)?)))
            .collect::<Result<Vec<(u64, Vec<u8>)>, Failure>>()
            .map_err(|e| e.at(ErrorSubject::Logs, ErrorVerb::Write))?;
        let (mut commands, mut bytes) = (0u64, 0u64);
        let mut held = Vec::with_capacity(entries.len());
        for (entry, (_, row)) in entries.into_iter().zip(&rows) {
            if let EntryPayload::Normal(proposal) = &entry.payload {
                commands += proposal.commands().map_or(0, <[_]>::len) as u64;
                bytes += row.len() as u64;
            }
            held.push((entry, row.len()));
        }
        // Held (and readable) from now; on disk, and reported flushed, once the
        // writer's next commit is (this one's own, written here, when the
        // writer is idle and the entries small).
        self.recent.appended(held);
        self.snapshots.appended(rows.len() as u64, commands, bytes);
        self.writer.queue_awaited(Change::Append(rows), Done::Flushed(callback));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.recent.truncated(log_id.index);
        self.writer
            .write(Change::Truncate(log_id.index))
            .await
            .map_err(|e| e.at(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let last_purged = serde_json::to_vec(&log_id)
            .map_err(|e| Failure::from(e).at(ErrorSubject::Log(log_id), ErrorVerb::Delete))?;
        self.recent.through(log_id.index);
        self.writer
            .write(Change::Purge { through: log_id.index, last_purged })
            .await
            .map_err(|e| e.at(ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}
