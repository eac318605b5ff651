//! The Raft log in redb: entries by index in the `log` table; the vote, the
//! committed log id and the last purged log id in the `meta` table. Every change
//! goes through the log's writer ([`LogWriter`]), which commits what queued up
//! together in one fsync'd transaction: an append reports its flush, and a vote,
//! truncation or purge returns, only once committed. The entries not yet applied
//! are also held decoded ([`Recent`]) from the moment they are queued, so reading
//! them back seldom touches the file; a read that does waits for the writer first.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use archon_core::metrics::Metrics;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote};
use redb::{ReadableDatabase, ReadableTable};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::log_writer::{Change, Done, LogWriter};
use super::recent::Recent;
use super::{BlockingWork, Failure, LOG, META, NodeId, SnapshotDue, blocking};
use crate::TypeConfig;

/// `meta` key of the last saved vote.
pub(super) const VOTE: &str = "vote";
/// `meta` key of the last saved committed log id.
pub(super) const COMMITTED: &str = "committed";
/// `meta` key of the last purged log id.
pub(super) const LAST_PURGED: &str = "last_purged";

/// The most bytes of entries (as stored) one AppendEntries carries, though
/// always at least one entry. openraft gives an AppendEntries its heartbeat
/// interval (100 ms by default) to be sent, written and fsync'd by the follower
/// and answered; a message of many large entries never makes that and is
/// retried whole forever, so replication reads the log in slices this big.
pub(super) const APPEND_BYTES: usize = 512 << 10;

/// The node's Raft log (and vote) in its redb file. Clones share the file; openraft
/// uses a clone as its log reader.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<super::Db>,
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
        db: Arc<super::Db>,
        recent: Arc<Recent>,
        snapshots: Arc<SnapshotDue>,
        metrics: Metrics,
        blocking: BlockingWork,
    ) -> LogStore {
        let writer = LogWriter::new(Arc::clone(&db), blocking);
        LogStore { db, recent, snapshots, metrics, blocking, writer }
    }

    /// Waits until every change asked of the log so far is in its file.
    pub(crate) async fn flush(&self) -> Result<(), crate::Error> {
        self.writer.flush().await.map_err(|e| crate::Error::Storage(e.to_string()))
    }

    /// Reads the JSON value at `key` of the `meta` table.
    async fn read_meta<T>(&self, key: &'static str) -> Result<Option<T>, Failure>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.writer.flush().await?;
        let db = Arc::clone(&self.db);
        blocking(self.blocking, move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(META)?;
            let value = table.get(key)?;
            Ok(value.map(|v| serde_json::from_slice(v.value())).transpose()?)
        })
        .await
    }

    /// Sets (or, given `None`, removes) the JSON value at `key` of the `meta` table.
    /// `durable` waits for the fsync'd commit; otherwise the value is queued and
    /// reaches disk with the next commit that syncs.
    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: Option<&T>,
        durable: bool,
    ) -> Result<(), Failure> {
        let value = value.map(serde_json::to_vec).transpose()?;
        let change = Change::Meta { key, value, durable };
        if durable {
            self.writer.write(change).await
        } else {
            self.writer.queue(change, Done::Nobody);
            Ok(())
        }
    }
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
        self.writer.flush().await.map_err(|e| e.at(ErrorSubject::Logs, ErrorVerb::Read))?;
        let db = Arc::clone(&self.db);
        blocking(self.blocking, move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let mut entries = Vec::new();
            for row in table.range::<u64>(range)? {
                let (_, value) = row?;
                // Most of what replication reads after a failover is never
                // sent (a probe finds the follower holds it): left unread.
                entries.push(crate::proposal::read_unread(value.value())?);
            }
            Ok(entries)
        })
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
        self.writer.flush().await.map_err(|e| e.at(ErrorSubject::Logs, ErrorVerb::Read))?;
        let db = Arc::clone(&self.db);
        blocking(self.blocking, move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let (mut entries, mut bytes) = (Vec::new(), 0usize);
            for row in table.range::<u64>(start..end.max(start))? {
                let (_, value) = row?;
                bytes = bytes.saturating_add(value.value().len());
                if !entries.is_empty() && bytes > APPEND_BYTES {
                    break;
                }
                // Most of what replication reads after a failover is never
                // sent (a probe finds the follower holds it): left unread.
                entries.push(crate::proposal::read_unread(value.value())?);
            }
            Ok(entries)
        })
        .await
        .map_err(|e| e.at(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.writer.flush().await.map_err(|e| e.at(ErrorSubject::Logs, ErrorVerb::Read))?;
        let db = Arc::clone(&self.db);
        blocking(self.blocking, move || {
            let txn = db.begin_read()?;
            let last_purged_log_id: Option<LogId<NodeId>> = match txn.open_table(META)?.get(LAST_PURGED)? {
                Some(value) => Some(serde_json::from_slice(value.value())?),
                None => None,
            };
            let last_entry = match txn.open_table(LOG)?.last()? {
                Some((_, value)) => Some(serde_json::from_slice::<StoredLogId>(value.value())?.log_id),
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
        self.write_meta(VOTE, Some(vote), true).await.map_err(|e| e.at(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(VOTE).await.map_err(|e| e.at(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Not fsync'd on its own: Raft does not need the committed index to be
    /// durable (a restart that finds an older one re-applies less, and the leader
    /// re-establishes the rest), and an fsync per commit would double the cost of
    /// every proposal. It reaches disk with the next append or vote.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(COMMITTED, committed.as_ref(), false)
            .await
            .map_err(|e| e.at(ErrorSubject::Store, ErrorVerb::Write))?;
        self.metrics.raft().committed(committed.map_or(0, |c| c.index));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.read_meta(COMMITTED).await.map_err(|e| e.at(ErrorSubject::Store, ErrorVerb::Read))
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
        // writer's next commit is.
        self.recent.appended(held);
        self.snapshots.appended(rows.len() as u64, commands, bytes);
        self.writer.queue(Change::Append(rows), Done::Flushed(callback));
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
