//! Durable Raft storage: per node, the log's own segment files (`raft.wal/`,
//! [`SegmentFiles`]) hold the log, the vote and the committed log id, a redb file beside
//! them (`raft.history.redb`, `history_db`) the history, and a second
//! (`raft.snapshot.redb`) the latest snapshot. A data dir written before the log
//! had files of its own keeps it in `raft.redb`; the next open moves it.
//!
//! The one thing to know: the state machine is archon-core's [`ClusterState`] —
//! the small live state — kept in memory behind a shared lock and made durable
//! through snapshots, while what it lets go (finished runs, their output) is
//! written to the history tables (the `history` module) as entries apply. A restart
//! loads the latest snapshot and openraft re-applies the committed log after it;
//! that replay writes again what the history already holds, which changes
//! nothing. Log writes are one write of records each, with an fsync before
//! openraft is told; history writes are fsync'd before the snapshot that
//! lets their log entries go. [`verify`] checks a stopped node's files and
//! rebuilds its state from them, as a restart would.
//!
//! An embedder may keep the files off disk ([`StorageOptions::backends`]:
//! segment files and redb storage backends of its own, e.g. in memory; snapshot files for peers
//! are then buffers in memory too) and run their work inline rather than on
//! tokio's blocking threads ([`BlockingWork::Inline`]): a deterministic
//! simulation does both.

mod history;
mod history_db;
mod history_read;
mod history_writer;
mod log;
mod log_writer;
mod recent;
mod snapshot_file;
mod state_machine;
mod verify;
mod wal;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use archon_core::metrics::Metrics;
use archon_core::state::ClusterState;
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition};

pub use history_read::RedbHistory;
pub use log::LogStore;
pub use snapshot_file::{Body, Scratch, SnapshotFile};
pub use state_machine::{SNAPSHOT_FORMAT, SnapshotBuilder, StateMachine};
pub use verify::{
    LOG_FILE, LogReport, Position, Replayed, SnapshotSummary, StateSummary, VoteSummary, state_digest, verify,
    verify_backend,
};
pub use wal::{SegmentDir, SegmentFiles};

use crate::Error;

/// openraft's id of a node, as [`TypeConfig`](crate::TypeConfig) declares it.
type NodeId = u64;

/// Log entries by index; each value is a JSON `openraft::Entry<TypeConfig>`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// The log's bookkeeping (vote, committed and last purged log ids), JSON by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The latest snapshot: its JSON `SnapshotMeta` and its data, by name. In the
/// snapshot file; a data dir written before it existed has it in the log's.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// How a node's storage runs.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// redb's page cache for reading a log an older Archon kept in `raft.redb`
    /// while it is moved to the log's own files, in bytes.
    pub cache_bytes: usize,
    /// redb's page cache for the history's file, in bytes.
    pub history_cache_bytes: usize,
    /// Ask for a snapshot once this many bytes of entries were written to the log
    /// since the last one (so a restart replays about that much at most).
    pub snapshot_bytes: u64,
    /// Ask for a snapshot once this many commands were written since the last one.
    pub snapshot_commands: u64,
    /// Ask for a snapshot once this many entries were written since the last one.
    /// Each of the three limits grows with the state (see [`SnapshotDue`]).
    pub snapshot_entries: u64,
    /// The node's metrics; the log reports its committed index there, the
    /// state machine the snapshots it builds and installs.
    pub metrics: Metrics,
    /// Where the two databases live: files at the path given to [`open_with`]
    /// (`None`, the default), or backends of the embedder's own — and then
    /// the snapshot files sent to and received from peers are kept in memory.
    pub backends: Option<Arc<dyn Backends>>,
    /// Where blocking work on them (transactions, fsyncs) runs.
    pub blocking: BlockingWork,
}

/// Gives the storage backends of a node's three redb databases instead of files:
/// for a simulation, in memory. Asked anew at each open, so a node reopened
/// after a crash finds what its last incarnation made durable.
pub trait Backends: Send + Sync + std::fmt::Debug + 'static {
    /// The log's segment files (what `raft.wal/` holds).
    fn log(&self) -> Box<dyn SegmentFiles>;
    /// The history's database (what `raft.history.redb` holds).
    fn history(&self) -> Box<dyn StorageBackend>;
    /// The snapshot's database (what `raft.snapshot.redb` holds).
    fn snapshot(&self) -> Box<dyn StorageBackend>;
}

/// Where blocking storage work runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlockingWork {
    /// Off the async workers (the default: commits fsync): the log's writer on
    /// a thread of its own, the rest on tokio's blocking threads.
    #[default]
    Threads,
    /// Inline, on the task that asks: for backends that never block, under a
    /// deterministic simulation, where another thread's timing would make two
    /// runs of one seed differ.
    Inline,
}

/// A backend an embedder gave, as redb takes it.
#[derive(Debug)]
struct Backend(Box<dyn StorageBackend>);

impl StorageBackend for Backend {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }

    fn close(&self) -> std::io::Result<()> {
        self.0.close()
    }
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            cache_bytes: 32 << 20,
            history_cache_bytes: 16 << 20,
            snapshot_bytes: 64 << 20,
            snapshot_commands: 200_000,
            snapshot_entries: 20_000,
            metrics: Metrics::new(),
            backends: None,
            blocking: BlockingWork::Threads,
        }
    }
}

/// When the log since the last snapshot has grown enough that the node should
/// take another: the log counts what it writes, the store asks openraft.
///
/// Each limit is multiplied by the last snapshot's size over
/// [`StorageOptions::snapshot_bytes`] (at least 1): a snapshot costs about its
/// size to build and store, so taking one per that much log keeps snapshot work
/// proportional to the log written, however large the state — a state of 1 GiB
/// is snapshotted about every GiB of log rather than every 64 MiB — and a
/// restart replays at most about a snapshot's worth of log.
#[derive(Debug, Default)]
pub struct SnapshotDue {
    bytes: AtomicU64,
    commands: AtomicU64,
    entries: AtomicU64,
    /// The bytes of the last snapshot stored or loaded.
    last_size: AtomicU64,
    notify: tokio::sync::Notify,
    /// (bytes, commands, entries) before scaling.
    limits: (u64, u64, u64),
}

impl SnapshotDue {
    fn new(options: &StorageOptions) -> SnapshotDue {
        SnapshotDue {
            limits: (options.snapshot_bytes, options.snapshot_commands, options.snapshot_entries),
            ..SnapshotDue::default()
        }
    }

    /// Counts entries written to the log, their commands and their bytes there;
    /// wakes [`SnapshotDue::wait`] past a limit.
    fn appended(&self, entries: u64, commands: u64, bytes: u64) {
        let b = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let c = self.commands.fetch_add(commands, Ordering::Relaxed) + commands;
        let e = self.entries.fetch_add(entries, Ordering::Relaxed) + entries;
        if self.past_limit(b, c, e) {
            self.notify.notify_one();
        }
    }

    /// Whether this much log since the last snapshot calls for another.
    fn past_limit(&self, bytes: u64, commands: u64, entries: u64) -> bool {
        let scale = self.scale();
        let (lb, lc, le) = self.limits;
        bytes >= lb.saturating_mul(scale) || commands >= lc.saturating_mul(scale) || entries >= le.saturating_mul(scale)
    }

    /// What the limits are multiplied by: the last snapshot's size in units of
    /// the bytes limit, at least 1.
    fn scale(&self) -> u64 {
        (self.last_size.load(Ordering::Relaxed) / self.limits.0.max(1)).max(1)
    }

    /// Starts counting again (a snapshot is being taken).
    fn reset(&self) {
        self.bytes.store(0, Ordering::Relaxed);
        self.commands.store(0, Ordering::Relaxed);
        self.entries.store(0, Ordering::Relaxed);
    }

    /// A snapshot of `size` bytes was stored (built, installed or loaded).
    fn stored(&self, size: u64) {
        self.last_size.store(size, Ordering::Relaxed);
    }

    /// Waits until a snapshot is due.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}

/// A node's opened storage.
#[derive(Debug)]
pub struct Storage {
    /// The log, for openraft.
    pub log: LogStore,
    /// The state machine, for openraft.
    pub state_machine: StateMachine,
    /// The history, for readers.
    pub history: RedbHistory,
    /// Tells when a snapshot is due.
    pub snapshots: Arc<SnapshotDue>,
    /// Tells when every user of the files let go of them.
    pub files: OpenFiles,
}

/// Tells when a node's three redb files are closed: a redb file can be open only
/// once at a time, so a process that reopens a data dir it has shut down waits
/// for [`OpenFiles::closed`] (every user let go and the databases' drops ended).
#[derive(Debug, Clone)]
pub struct OpenFiles {
    log: Arc<ClosedFlag>,
    history: Arc<ClosedFlag>,
    snapshot: Arc<ClosedFlag>,
}

impl OpenFiles {
    /// Whether all three files are closed.
    pub fn closed(&self) -> bool {
        self.flags().iter().all(|flag| flag.is_set())
    }

    /// Waits until all three files are closed, woken as each closes; `false`
    /// if they are still open after `timeout`.
    pub async fn wait_closed(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        for flag in self.flags() {
            if !flag.wait_until(deadline).await {
                return false;
            }
        }
        true
    }

    fn flags(&self) -> [&ClosedFlag; 3] {
        [&self.log, &self.history, &self.snapshot]
    }
}

/// Set, and its waiters woken, once what it watches is dropped.
#[derive(Debug, Default)]
pub(crate) struct ClosedFlag {
    set: AtomicBool,
    notify: tokio::sync::Notify,
}

impl ClosedFlag {
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Waits until it is set, at most until `deadline`; whether it is.
    pub(crate) async fn wait_until(&self, deadline: tokio::time::Instant) -> bool {
        let mut set = std::pin::pin!(self.notify.notified());
        // Registered before looking, so a drop in between still wakes it.
        set.as_mut().enable();
        if !self.is_set() {
            let _ = tokio::time::timeout_at(deadline, set).await;
        }
        self.is_set()
    }
}

/// Sets its flag when dropped: declared after what it watches, after that is dropped.
#[derive(Debug)]
pub(crate) struct Dropped(Arc<ClosedFlag>);

impl Dropped {
    /// A guard and the flag it sets.
    pub(crate) fn new() -> (Dropped, Arc<ClosedFlag>) {
        let flag = Arc::new(ClosedFlag::default());
        (Dropped(Arc::clone(&flag)), flag)
    }
}

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.set.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }
}

/// A redb database that says when it has been dropped (its file closed).
#[derive(Debug)]
pub(crate) struct Db {
    db: Database,
    _dropped: Dropped,
}

impl Db {
    fn new(db: Database) -> (Db, Arc<ClosedFlag>) {
        let (dropped, flag) = Dropped::new();
        (Db { db, _dropped: dropped }, flag)
    }
}

impl std::ops::Deref for Db {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

impl Storage {
    /// The log and the state machine, as openraft takes them.
    pub fn into_parts(self) -> (LogStore, StateMachine) {
        (self.log, self.state_machine)
    }
}

/// Opens (creating if missing, parent directories included) the node's storage
/// named after `path` (`raft.redb` in the data dir), with default options.
///
/// `state` is the shared applied [`ClusterState`]: the [`StateMachine`] writes it,
/// the rest of the crate reads it. On open it is replaced by the latest snapshot's
/// state, or by an empty state when there is no snapshot, because openraft re-applies
/// the committed log from the snapshot on. A snapshot written by Archon 0.1 loads
/// as a state that keeps everything until the first entry of this format upgrades it.
///
/// The log is kept in the directory `path` with the extension `wal`
/// (`raft.redb` → `raft.wal/`), the history in `path` with the extension
/// `history.redb`, the snapshot in `snapshot.redb`.
///
/// The files can be open only once at a time; drop every [`LogStore`] clone, the
/// [`StateMachine`] and the [`RedbHistory`] before opening the same path again.
pub fn open(path: &Path, state: Arc<RwLock<ClusterState>>) -> Result<Storage, Error> {
    open_with(path, state, &StorageOptions::default())
}

/// [`open`] with `options`. With [`StorageOptions::backends`], the databases
/// are on those and `path` only names them (in errors); nothing is created on
/// disk: the snapshot files sent to or received from peers are kept in memory.
pub fn open_with(path: &Path, state: Arc<RwLock<ClusterState>>, options: &StorageOptions) -> Result<Storage, Error> {
    let data_dir = |message: String| Error::DataDir { path: path.display().to_string(), message };
    let history_path = history_db::HistoryDb::path_for(path);
    let history_error = |e: redb::DatabaseError| Error::DataDir {
        path: history_path.display().to_string(),
        message: format!("cannot open the redb file: {e}"),
    };
    let snapshot_path = snapshot_path_for(path);
    let (log_files, legacy, history_db, snapshot_db, scratch) = match &options.backends {
        Some(backends) => {
            let history = history_db::HistoryDb::open_on(
                Backend(backends.history()),
                options.history_cache_bytes,
                options.blocking,
            )
            .map_err(history_error)?;
            let snapshot = Database::builder()
                .set_cache_size(SNAPSHOT_CACHE_BYTES)
                .create_with_backend(Backend(backends.snapshot()))
                .map_err(|e| data_dir(format!("cannot open the snapshot's redb database: {e}")))?;
            (backends.log(), None, history, snapshot, Scratch::Memory)
        }
        None => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| data_dir(format!("cannot create {}: {e}", parent.display())))?;
            }
            let wal_path = wal_path_for(path);
            let log_files = wal::SegmentDir::new(&wal_path).map_err(|e| Error::DataDir {
                path: wal_path.display().to_string(),
                message: match e.kind() {
                    std::io::ErrorKind::WouldBlock => {
                        "the log is in use: is another manager running on this data dir?".into()
                    }
                    _ => format!("cannot open the log's directory: {e}"),
                },
            })?;
            // A data dir written before the log had files of its own keeps it in
            // `raft.redb`: it is moved over below, then the file goes.
            let legacy = if path.is_file() {
                let mut builder = Database::builder();
                builder.set_cache_size(options.cache_bytes);
                Some(builder.open(path).map_err(|e| data_dir(format!("cannot open the redb file: {e}")))?)
            } else {
                None
            };
            let history =
                history_db::HistoryDb::open(history_path.clone(), options.history_cache_bytes, options.blocking)
                    .map_err(history_error)?;
            let snapshot =
                Database::builder().set_cache_size(SNAPSHOT_CACHE_BYTES).create(&snapshot_path).map_err(|e| {
                    Error::DataDir {
                        path: snapshot_path.display().to_string(),
                        message: format!("cannot open the redb file: {e}"),
                    }
                })?;
            let scratch = path.parent().map_or_else(|| Path::new(".").to_path_buf(), Path::to_path_buf);
            (Box::new(log_files) as Box<dyn wal::SegmentFiles>, legacy, history, snapshot, Scratch::Dir(scratch))
        }
    };
    move_legacy_snapshot(legacy.as_ref(), &snapshot_db)
        .map_err(|e| Error::Storage(format!("moving the snapshot: {e}")))?;
    let wal = match legacy {
        Some(legacy) => {
            let wal = import_legacy_log(&legacy, log_files)
                .map_err(|e| Error::Storage(format!("moving the log out of {}: {e}", path.display())))?;
            drop(legacy);
            remove_durably(path).map_err(|e| data_dir(format!("cannot remove it once its log was moved: {e}")))?;
            wal
        }
        None => wal::Wal::open(log_files).map_err(|e| Error::Storage(format!("opening the log: {e}")))?,
    };
    let (snapshot_db, snapshot_closed) = Db::new(snapshot_db);
    let snapshot_db = Arc::new(snapshot_db);
    let (log_file, log_closed) = wal::LogFile::new(wal);
    history_db.create_tables().map_err(|e| Error::Storage(e.to_string()))?;
    let files = OpenFiles { log: log_closed, history: history_db.closed(), snapshot: snapshot_closed };
    let history_db = Arc::new(history_db);
    let snapshots = Arc::new(SnapshotDue::new(options));
    let recent = Arc::new(recent::Recent::new());
    let state_machine = StateMachine::load(
        snapshot_db,
        Arc::clone(&history_db),
        state.clone(),
        snapshots.clone(),
        recent.clone(),
        scratch,
        options.metrics.clone(),
    )
    .map_err(|e| Error::Storage(format!("loading the snapshot: {e}")))?;
    let history = RedbHistory::new(history_db, state).with_writer(state_machine.history_progress());
    let log = LogStore::new(Arc::new(log_file), recent, snapshots.clone(), options.metrics.clone(), options.blocking);
    Ok(Storage { log, state_machine, history, snapshots, files })
}

/// Where the log's segment files of the node whose storage is at `raft` live
/// (`raft.redb` → `raft.wal/`).
pub(crate) fn wal_path_for(raft: &Path) -> std::path::PathBuf {
    raft.with_extension("wal")
}

/// Moves the log a data dir written before the log file keeps in redb into
/// `files`: whatever a crash mid-move left there is dropped first, then the
/// vote, the committed and last purged log ids and every entry are written and
/// synced. Until its caller removes the redb file, a crash repeats the move.
fn import_legacy_log(legacy: &Database, files: Box<dyn wal::SegmentFiles>) -> Result<wal::Wal, Failure> {
    for number in files.list()? {
        files.remove(number)?;
    }
    files.sync()?;
    let mut wal = wal::Wal::open(files)?;
    let txn = legacy.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(table) => Some(table),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let value = |key: &str| -> Result<Option<Vec<u8>>, Failure> {
        match &meta {
            Some(table) => Ok(table.get(key)?.map(|v| v.value().to_vec())),
            None => Ok(None),
        }
    };
    let mut records = Vec::new();
    if let Some(vote) = value(log::VOTE)? {
        records.push(wal::Record::Vote(vote));
    }
    if let Some(committed) = value(log::COMMITTED)? {
        records.push(wal::Record::Committed(committed));
    }
    if let Some(purged) = value(log::LAST_PURGED)? {
        let id: openraft::LogId<NodeId> = serde_json::from_slice(&purged)?;
        records.push(wal::Record::Purged { index: id.index, bytes: purged });
    }
    let mut moved = 0usize;
    match txn.open_table(LOG) {
        Ok(table) => {
            for row in table.iter()? {
                let (index, bytes) = row?;
                records.push(wal::Record::Entry { index: index.value(), bytes: bytes.value().to_vec() });
                moved += 1;
                if records.len() >= 1024 {
                    wal.append(std::mem::take(&mut records), false)?;
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    wal.append(records, false)?;
    wal.sync()?;
    tracing::info!(entries = moved, "moved the log from raft.redb to files of its own (raft.wal)");
    Ok(wal)
}

/// Removes the file at `path` and syncs its directory.
fn remove_durably(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// Where the snapshot of the node whose log is at `raft` lives
/// (`raft.redb` → `raft.snapshot.redb`).
pub(crate) fn snapshot_path_for(raft: &Path) -> std::path::PathBuf {
    raft.with_extension("snapshot.redb")
}

/// redb's page cache for the snapshot's file: it is read once at start and
/// written whole, so a cache would only hold pages no one reads again.
const SNAPSHOT_CACHE_BYTES: usize = 1 << 20;

/// Gives the snapshot file its table, and moves a snapshot that a data dir
/// written before that file existed keeps in its old log file (`log`, when
/// there is one) into it. A crash before that old file is removed leaves both,
/// and the next open keeps the snapshot file's.
fn move_legacy_snapshot(log: Option<&Database>, snapshot: &Database) -> Result<(), Failure> {
    use state_machine::{DATA_KEY, META_KEY};
    let mut legacy = None;
    if let Some(log) = log {
        let read = log.begin_read()?;
        match read.open_table(SNAPSHOT) {
            Ok(table) => {
                if let (Some(meta), Some(data)) = (table.get(META_KEY)?, table.get(DATA_KEY)?) {
                    legacy = Some((meta.value().to_vec(), data.value().to_vec()));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let txn = snapshot.begin_write()?;
    {
        let mut table = txn.open_table(SNAPSHOT)?;
        if let Some((meta, data)) = &legacy
            && table.get(DATA_KEY)?.is_none()
        {
            tracing::info!(bytes = data.len(), "moving the snapshot from the log's file to a file of its own");
            table.insert(META_KEY, meta.as_slice())?;
            table.insert(DATA_KEY, data.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Why a storage operation failed, before openraft learns what it was doing.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// redb failed.
    #[error(transparent)]
    Db(#[from] redb::Error),
    /// Stored JSON could not be written or read back.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A panic while the shared state was locked left it possibly half-applied.
    #[error("the shared cluster state lock is poisoned (a panic happened while it was held)")]
    Poisoned,
    /// The blocking task running the transaction panicked or was cancelled.
    #[error("storage task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A snapshot file could not be written or read.
    #[error("snapshot file: {0}")]
    Io(#[from] std::io::Error),
    /// Stored or received data is not in a format this build reads.
    #[error("{0}")]
    Format(String),
    /// The log's writer failed a transaction, or has stopped.
    #[error("log write: {0}")]
    Writer(String),
}

/// redb's per-operation errors all fold into [`redb::Error`].
macro_rules! failure_from_redb {
    ($($error:ty),*) => {
        $(impl From<$error> for Failure {
            fn from(e: $error) -> Failure {
                Failure::Db(e.into())
            }
        })*
    };
}

failure_from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::CompactionError
);

impl Failure {
    /// The openraft error for this failure, saying what was being done to what.
    fn at(self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> StorageError<NodeId> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// Runs blocking redb work (fsyncs included) off the async worker threads, or
/// inline when so configured.
async fn blocking<T, F>(mode: BlockingWork, work: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    match mode {
        BlockingWork::Threads => tokio::task::spawn_blocking(work).await?,
        BlockingWork::Inline => work(),
    }
}

#[cfg(test)]
mod due_tests {
    use super::*;

    #[test]
    fn snapshot_limits_grow_with_the_last_snapshot_and_never_shrink_below_the_configured_ones() {
        let options = StorageOptions {
            snapshot_bytes: 64 << 20,
            snapshot_commands: 1_000,
            snapshot_entries: 100,
            ..StorageOptions::default()
        };
        let due = SnapshotDue::new(&options);
        // No snapshot yet, and a small one: the limits as configured.
        for size in [0, 10 << 20, (64 << 20) + 1] {
            due.stored(size);
            assert!(!due.past_limit((64 << 20) - 1, 999, 99), "size {size}");
            assert!(due.past_limit(64 << 20, 0, 0), "size {size}");
            assert!(due.past_limit(0, 1_000, 0), "size {size}");
            assert!(due.past_limit(0, 0, 100), "size {size}");
        }
        // A snapshot of 1 GiB: each limit 16 times larger.
        due.stored(1 << 30);
        assert!(!due.past_limit((1 << 30) - 1, 15_999, 1_599));
        assert!(due.past_limit(1 << 30, 0, 0));
        assert!(due.past_limit(0, 16_000, 0));
        assert!(due.past_limit(0, 0, 1_600));
    }
}
