//! The history's own redb file, beside the log's in the node's data dir
//! (`raft.redb` → `raft.history.redb`).
//!
//! Two files because the two are written so differently: the log's commits are
//! small and fsync'd, one per Raft append, and must never wait behind a large
//! history batch (redb has one writer per file); the history takes bulk,
//! unsynced batches, and once retention has removed much of it, its file is
//! compacted so the data dir shrinks again — which holds the file for a while,
//! and must not hold up the log. The two stay consistent through the snapshot:
//! one is stored only after the history it relies on was fsync'd (see
//! [`state_machine`](super::state_machine)).

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

use super::{Backend, BlockingWork, Failure, history};

/// Compact once this many bytes are free inside the file and they are more
/// than what it holds.
const COMPACT_AT: u64 = 64 << 20;

/// See the module docs.
#[derive(Debug)]
pub(super) struct HistoryDb {
    /// Read-locked by every transaction's start, write-locked by a compaction
    /// (which needs the file to itself).
    db: RwLock<Database>,
    /// The file, unless the database is on a backend the embedder gave.
    path: Option<PathBuf>,
    /// Where work on it runs.
    pub(super) blocking: BlockingWork,
    /// Declared last: set once the database above is dropped.
    _dropped: super::Dropped,
    closed: std::sync::Arc<super::ClosedFlag>,
}

impl HistoryDb {
    /// Where the history of the node whose log is at `raft` lives.
    pub(crate) fn path_for(raft: &Path) -> PathBuf {
        raft.with_extension("history.redb")
    }

    /// Opens (or creates) the file, with its tables.
    pub(super) fn open(
        path: PathBuf,
        cache_bytes: usize,
        blocking: BlockingWork,
    ) -> Result<HistoryDb, redb::DatabaseError> {
        let db = Database::builder().set_cache_size(cache_bytes).create(&path)?;
        let (dropped, closed) = super::Dropped::new();
        Ok(HistoryDb { db: RwLock::new(db), path: Some(path), blocking, _dropped: dropped, closed })
    }

    /// Opens (or creates) the database on `backend` instead of a file.
    pub(super) fn open_on(
        backend: Backend,
        cache_bytes: usize,
        blocking: BlockingWork,
    ) -> Result<HistoryDb, redb::DatabaseError> {
        let db = Database::builder().set_cache_size(cache_bytes).create_with_backend(backend)?;
        let (dropped, closed) = super::Dropped::new();
        Ok(HistoryDb { db: RwLock::new(db), path: None, blocking, _dropped: dropped, closed })
    }

    /// The flag set once this database is dropped (its file closed).
    pub(super) fn closed(&self) -> std::sync::Arc<super::ClosedFlag> {
        std::sync::Arc::clone(&self.closed)
    }

    /// Creates the tables a fresh file lacks.
    pub(super) fn create_tables(&self) -> Result<(), Failure> {
        self.write(true, history::create_tables)
    }

    fn shared(&self) -> Result<std::sync::RwLockReadGuard<'_, Database>, Failure> {
        self.db.read().map_err(|_| Failure::Poisoned)
    }

    /// A read transaction.
    pub(super) fn read(&self) -> Result<ReadTransaction, Failure> {
        Ok(self.shared()?.begin_read()?)
    }

    /// Runs `work` in a write transaction and commits it, fsync'd if `durable`
    /// (else it is durable with the next durable commit). A durable commit also
    /// saves redb's allocator state (quick repair), so opening the file after a
    /// crash does not walk all of it — a history of a million runs would
    /// otherwise take seconds to open.
    pub(super) fn write<T>(
        &self,
        durable: bool,
        work: impl FnOnce(&WriteTransaction) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let db = self.shared()?;
        let mut txn = db.begin_write()?;
        if durable {
            txn.set_quick_repair(true);
        } else {
            txn.set_durability(redb::Durability::None)?;
        }
        let out = work(&txn)?;
        txn.commit()?;
        Ok(out)
    }

    /// Makes every commit so far durable.
    pub(super) fn sync(&self) -> Result<(), Failure> {
        self.write(true, |_| Ok(()))
    }

    /// The file's size in bytes (0 on a backend the embedder gave).
    pub(super) fn size(&self) -> u64 {
        self.path.as_ref().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len())
    }

    /// Compacts the file if enough of it is free space. Pages freed by the
    /// writer's non-durable commits count as free only after durable ones, so it
    /// commits durably twice first (redb's own compaction does the same).
    pub(super) fn compact_if_worthwhile(&self) -> Result<Compaction, Failure> {
        self.sync()?;
        self.sync()?;
        let stats = {
            let db = self.shared()?;
            let txn = db.begin_write()?;
            let stats = txn.stats()?;
            txn.abort()?;
            stats
        };
        let free = stats.fragmented_bytes();
        if free < COMPACT_AT || free < stats.stored_bytes() {
            return Ok(Compaction::NotWorthwhile);
        }
        let before = self.size();
        let mut db = self.db.write().map_err(|_| Failure::Poisoned)?;
        match db.compact() {
            Ok(_) => {
                drop(db);
                tracing::info!(before, after = self.size(), "compacted the history file");
                Ok(Compaction::Done)
            }
            Err(redb::CompactionError::TransactionInProgress) => Ok(Compaction::Busy),
            Err(e) => Err(e.into()),
        }
    }
}

/// What [`HistoryDb::compact_if_worthwhile`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compaction {
    /// The file was compacted.
    Done,
    /// Too little of it is free to be worth it.
    NotWorthwhile,
    /// A reader was open: try again later.
    Busy,
}
