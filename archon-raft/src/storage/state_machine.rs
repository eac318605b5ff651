//! The state machine: archon-core's [`ClusterState`], applied in memory behind the
//! shared lock, with its snapshots kept in the redb `snapshot` table.
//!
//! A snapshot's data is the JSON of [`SnapshotImage`]: the state together with the
//! log position it reflects. The builder captures that image when openraft asks for
//! it (between two applies), so the state and `last_applied` always agree even
//! though the build itself runs in a separate task.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use archon_core::state::{ClusterState, Outcome};
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::{Failure, NodeId, SNAPSHOT, blocking};
use crate::{Node, TypeConfig};

/// The meta of one of this node's snapshots.
type Meta = SnapshotMeta<NodeId, Node>;

/// `snapshot` key of the JSON `SnapshotMeta`.
const META_KEY: &str = "meta";
/// `snapshot` key of the snapshot data.
const DATA_KEY: &str = "data";

/// What a snapshot's data holds.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotImage {
    /// The last log entry the state reflects.
    last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    last_membership: StoredMembership<NodeId, Node>,
    /// The cluster state after `last_applied`.
    state: ClusterState,
}

/// Applies committed entries to the shared [`ClusterState`] and keeps its
/// snapshots. Created by [`open`](super::open).
pub struct StateMachine {
    db: Arc<Database>,
    state: Arc<RwLock<ClusterState>>,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, Node>,
    /// Snapshot builders handed out by this process; makes snapshot ids unique.
    builders: u64,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("last_applied", &self.last_applied)
            .field("last_membership", &self.last_membership)
            .finish_non_exhaustive()
    }
}

impl StateMachine {
    /// Loads the stored snapshot (if any) into `state`; an empty state otherwise.
    pub(super) fn load(db: Arc<Database>, state: Arc<RwLock<ClusterState>>) -> Result<StateMachine, Failure> {
        let (last_applied, last_membership, loaded) = match read_snapshot(&db)? {
            Some((meta, data)) => {
                let image: SnapshotImage = serde_json::from_slice(&data)?;
                (meta.last_log_id, meta.last_membership, image.state)
            }
            None => (None, StoredMembership::default(), ClusterState::default()),
        };
        replace_state(&state, loaded)?;
        Ok(StateMachine { db, state, last_applied, last_membership, builders: 0 })
    }
}

/// Swaps in a new state, dropping the old one after the write lock is released.
fn replace_state(shared: &RwLock<ClusterState>, new: ClusterState) -> Result<(), Failure> {
    let old = {
        let mut state = shared.write().map_err(|_| Failure::Poisoned)?;
        std::mem::replace(&mut *state, new)
    };
    drop(old);
    Ok(())
}

/// The stored snapshot's meta and data, if there is one.
fn read_snapshot(db: &Database) -> Result<Option<(Meta, Vec<u8>)>, Failure> {
    let txn = db.begin_read()?;
    let table = txn.open_table(SNAPSHOT)?;
    let (Some(meta), Some(data)) = (table.get(META_KEY)?, table.get(DATA_KEY)?) else {
        return Ok(None);
    };
    Ok(Some((serde_json::from_slice(meta.value())?, data.value().to_vec())))
}

/// Which snapshot [`write_snapshot`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// The new one, always (an installed snapshot).
    New,
    /// The newer by last log id (a built snapshot may finish after a newer install).
    Newer,
}

/// Stores a snapshot in place of the previous one, in one transaction.
fn write_snapshot(db: &Database, meta: &Meta, data: &[u8], keep: Keep) -> Result<(), Failure> {
    let meta_json = serde_json::to_vec(meta)?;
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(SNAPSHOT)?;
        if keep == Keep::Newer {
            let stored: Option<Meta> = match table.get(META_KEY)? {
                Some(value) => Some(serde_json::from_slice(value.value())?),
                None => None,
            };
            if stored.is_some_and(|stored| stored.last_log_id > meta.last_log_id) {
                drop(table);
                txn.abort()?;
                return Ok(());
            }
        }
        table.insert(META_KEY, meta_json.as_slice())?;
        table.insert(DATA_KEY, data)?;
    }
    txn.commit()?;
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Outcome>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries.into_iter();
        let mut responses = Vec::with_capacity(entries.size_hint().0);
        for entry in entries {
            let outcomes = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(commands) => {
                    let mut state = self
                        .state
                        .write()
                        .map_err(|_| Failure::Poisoned.at(ErrorSubject::Apply(entry.log_id), ErrorVerb::Write))?;
                    commands.iter().map(|cmd| state.apply(cmd)).collect()
                }
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            self.last_applied = Some(entry.log_id);
            responses.push(outcomes);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.builders += 1;
        // Captured now, between two applies, so state and last_applied agree.
        let image = self.state.read().ok().map(|state| {
            Arc::new(SnapshotImage {
                last_applied: self.last_applied,
                last_membership: self.last_membership.clone(),
                state: state.clone(),
            })
        });
        let snapshot_id = match self.last_applied {
            Some(log_id) => format!("{log_id}-{}", self.builders),
            None => format!("none-{}", self.builders),
        };
        SnapshotBuilder { db: Arc::clone(&self.db), image, snapshot_id }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let on_error = |e: Failure| e.at(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write);
        let data = snapshot.into_inner();
        let db = Arc::clone(&self.db);
        let stored_meta = meta.clone();
        let image = blocking(move || {
            let image: SnapshotImage = serde_json::from_slice(&data)?;
            write_snapshot(&db, &stored_meta, &data, Keep::New)?;
            Ok(image)
        })
        .await
        .map_err(on_error)?;
        replace_state(&self.state, image.state).map_err(on_error)?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let db = Arc::clone(&self.db);
        let stored = blocking(move || read_snapshot(&db))
            .await
            .map_err(|e| e.at(ErrorSubject::Snapshot(None), ErrorVerb::Read))?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

/// Builds a snapshot of the state as it was when openraft asked for the builder,
/// and stores it as the node's current snapshot.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    /// `None` when the state lock was poisoned.
    image: Option<Arc<SnapshotImage>>,
    snapshot_id: String,
}

impl std::fmt::Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder").field("snapshot_id", &self.snapshot_id).finish_non_exhaustive()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let on_error = |e: Failure| e.at(ErrorSubject::Snapshot(None), ErrorVerb::Write);
        let image = self.image.clone().ok_or(Failure::Poisoned).map_err(on_error)?;
        let meta = SnapshotMeta {
            last_log_id: image.last_applied,
            last_membership: image.last_membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        };
        let db = Arc::clone(&self.db);
        let stored_meta = meta.clone();
        let data = blocking(move || {
            let data = serde_json::to_vec(&*image)?;
            write_snapshot(&db, &stored_meta, &data, Keep::Newer)?;
            Ok(data)
        })
        .await
        .map_err(on_error)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
