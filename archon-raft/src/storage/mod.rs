//! Durable Raft storage: one redb file per node holds the log, the vote, the
//! committed log id and the latest snapshot.
//!
//! The one thing to know: the state machine is archon-core's [`ClusterState`], kept
//! in memory behind a shared lock and made durable **only through snapshots**. A
//! restart loads the latest snapshot, and openraft then re-applies the committed log
//! after it (the committed log id is persisted for exactly that). Every write is one
//! redb transaction, committed with immediate (fsync'd) durability before openraft
//! is told it happened.

mod log;
mod state_machine;

use std::path::Path;
use std::sync::{Arc, RwLock};

use archon_core::state::ClusterState;
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use redb::{Database, TableDefinition};

pub use log::LogStore;
pub use state_machine::{SnapshotBuilder, StateMachine};

use crate::Error;

/// openraft's id of a node, as [`TypeConfig`](crate::TypeConfig) declares it.
type NodeId = u64;

/// Log entries by index; each value is a JSON `openraft::Entry<TypeConfig>`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// The log's bookkeeping (vote, committed and last purged log ids), JSON by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The latest snapshot: its JSON `SnapshotMeta` and its data, by name.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// Opens (creating if missing, parent directories included) the node's storage at
/// `path`, a redb file.
///
/// `state` is the shared applied [`ClusterState`]: the [`StateMachine`] writes it,
/// the rest of the crate reads it. On open it is replaced by the latest snapshot's
/// state, or by an empty state when there is no snapshot, because openraft re-applies
/// the committed log from the snapshot on.
///
/// A redb file can be open only once at a time; drop every [`LogStore`] clone and the
/// [`StateMachine`] before opening the same path again.
pub fn open(path: &Path, state: Arc<RwLock<ClusterState>>) -> Result<(LogStore, StateMachine), Error> {
    let data_dir = |message: String| Error::DataDir { path: path.display().to_string(), message };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| data_dir(format!("cannot create {}: {e}", parent.display())))?;
    }
    let db = Database::create(path).map_err(|e| data_dir(format!("cannot open the redb file: {e}")))?;
    create_tables(&db).map_err(|e| Error::Storage(e.to_string()))?;
    let db = Arc::new(db);
    let state_machine =
        StateMachine::load(Arc::clone(&db), state).map_err(|e| Error::Storage(format!("loading the snapshot: {e}")))?;
    Ok((LogStore::new(db), state_machine))
}

/// Creates the tables a fresh file lacks, so that read transactions can always open them.
fn create_tables(db: &Database) -> Result<(), Failure> {
    let txn = db.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(META)?;
    txn.open_table(SNAPSHOT)?;
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
    redb::SetDurabilityError
);

impl Failure {
    /// The openraft error for this failure, saying what was being done to what.
    fn at(self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> StorageError<NodeId> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// Runs blocking redb work (fsyncs included) off the async worker threads.
async fn blocking<T, F>(work: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    tokio::task::spawn_blocking(work).await?
}
