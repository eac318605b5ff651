//! The state machine: archon-core's [`ClusterState`], applied in memory behind the
//! shared lock; the history it hands over, written to the history file by the
//! [`HistoryWriter`] off apply's path; snapshots in a redb file of their own
//! (`raft.snapshot.redb`), so storing one never holds up the log's writes.
//!
//! A stored snapshot is the JSON of [`SnapshotImage`] — the small live state and
//! the log position it reflects — captured between two applies, so the two always
//! agree. It is stored only once the history handed over before it is written and
//! fsync'd, so a restart from it finds everything the state let go. Sent to a
//! peer, a snapshot is a file: a header, the image, then every history row,
//! streamed from a read transaction; the peer replaces its history with those rows
//! (fsync'd), then stores the image. The rows may be newer than the image (applies
//! go on while the file is written): the entries after the image, replayed, write
//! them again, which changes nothing.

use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::{Arc, RwLock};

use archon_core::metrics::Metrics;
use archon_core::state::{ClusterState, Outcome};
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::history_db::HistoryDb;
use super::history_writer::{HistoryWriter, output_bytes};
use super::recent::Recent;
use super::snapshot_file::{Body, Scratch, SnapshotFile};
use super::{Failure, NodeId, SNAPSHOT, SnapshotDue, blocking, history};
use crate::{Node, Proposal, TypeConfig};

/// The meta of one of this node's snapshots.
type Meta = SnapshotMeta<NodeId, Node>;

/// The newest snapshot format this build writes and reads: 1, the live state
/// (Archon 0.1's, format 0, held the whole state and no `v`); 2 once it holds
/// cron schedules (a snapshot is labelled with what its state needs, see
/// [`ClusterState::format_needed`]).
pub const SNAPSHOT_FORMAT: u32 = archon_core::state::COMMAND_FORMAT;

/// The layout of the file a peer installs (header, image, history rows); the
/// image inside states its own format.
const FILE_FORMAT: u32 = 1;

/// `snapshot` key of the JSON `SnapshotMeta`.
pub(super) const META_KEY: &str = "meta";
/// `snapshot` key of the snapshot data.
pub(super) const DATA_KEY: &str = "data";

/// What a snapshot file sent to a peer starts with.
const MAGIC: &[u8; 16] = b"ARCHON-SNAPSHOT\n";

/// What a stored snapshot's data holds.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SnapshotImage {
    /// The format (absent, 0, in Archon 0.1's).
    #[serde(default)]
    pub(super) v: u32,
    /// The last log entry the state reflects.
    pub(super) last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    last_membership: StoredMembership<NodeId, Node>,
    /// The cluster state after `last_applied`.
    pub(super) state: ClusterState,
}

impl SnapshotImage {
    /// Reads an image, refusing a format this build does not know.
    pub(super) fn read(bytes: &[u8]) -> Result<SnapshotImage, Failure> {
        #[derive(Deserialize)]
        struct Version {
            #[serde(default)]
            v: u32,
        }
        let Version { v } = serde_json::from_slice(bytes)?;
        if v > SNAPSHOT_FORMAT {
            return Err(Failure::Format(format!(
                "snapshot format {v} is newer than this node reads ({SNAPSHOT_FORMAT}); upgrade this node"
            )));
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Applies committed entries to the shared [`ClusterState`], writes the history it
/// hands over, and keeps its snapshots. Created by [`open`](super::open).
pub struct StateMachine {
    /// The snapshot's database.
    db: Arc<super::Db>,
    history: Arc<HistoryDb>,
    state: Arc<RwLock<ClusterState>>,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, Node>,
    /// Snapshot builders handed out by this process; makes snapshot ids unique.
    builders: u64,
    snapshots: Arc<SnapshotDue>,
    /// Where snapshot files are made (the data dir, or memory).
    scratch: Scratch,
    /// Writes what apply hands over, off apply's path.
    writer: HistoryWriter,
    /// The log's decoded tail, which forgets what is applied.
    recent: Arc<Recent>,
    /// Counts the snapshots built and installed.
    metrics: Metrics,
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
    /// How the node's history readers wait for its writer.
    pub(super) fn history_progress(&self) -> super::history_writer::WriterProgress {
        self.writer.progress()
    }

    /// Loads the stored snapshot (if any) into `state`; an empty state otherwise.
    pub(super) fn load(
        db: Arc<super::Db>,
        history: Arc<HistoryDb>,
        state: Arc<RwLock<ClusterState>>,
        snapshots: Arc<SnapshotDue>,
        recent: Arc<Recent>,
        scratch: Scratch,
        metrics: Metrics,
    ) -> Result<StateMachine, Failure> {
        let (last_applied, last_membership, loaded) = match read_snapshot(&db)? {
            Some((meta, data)) => {
                snapshots.stored(data.len() as u64);
                metrics.raft().snapshot_loaded(data.len() as u64);
                let image = SnapshotImage::read(&data)?;
                (meta.last_log_id, meta.last_membership, image.state)
            }
            None => (None, StoredMembership::default(), ClusterState::new()),
        };
        if loaded.is_legacy() {
            tracing::info!("the data dir was written by Archon 0.1; it is upgraded at the first entry of this version");
        }
        replace_state(&state, loaded)?;
        let writer = HistoryWriter::new(Arc::clone(&history), Arc::clone(&state));
        Ok(StateMachine {
            db,
            history,
            state,
            last_applied,
            last_membership,
            builders: 0,
            snapshots,
            scratch,
            writer,
            recent,
            metrics,
        })
    }
}

/// Applies one entry's commands to `state` (upgrading a state of Archon 0.1 first
/// when the entry is of a newer format): the one door through which both the
/// state machine and [`verify`](super::verify) apply the log.
pub(super) fn apply_proposal(
    state: &mut ClusterState,
    proposal: &Proposal,
    index: u64,
) -> Result<Vec<Outcome>, crate::ProposalError> {
    let commands = proposal.commands()?;
    if proposal.format > 0 && state.is_legacy() {
        tracing::info!(index, "upgrading the state written by Archon 0.1");
        state.upgrade();
    }
    Ok(commands.iter().map(|cmd| state.apply(cmd)).collect())
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

/// Which snapshot [`store_snapshot`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// The new one, always (an installed snapshot).
    New,
    /// The newer by last log id (a built snapshot may finish after a newer install).
    Newer,
}

/// Stores a snapshot in place of the previous one, in `txn`. False when a newer
/// one is kept instead.
fn store_snapshot(txn: &redb::WriteTransaction, meta: &Meta, data: &[u8], keep: Keep) -> Result<bool, Failure> {
    let meta_json = serde_json::to_vec(meta)?;
    let mut table = txn.open_table(SNAPSHOT)?;
    if keep == Keep::Newer {
        let stored: Option<Meta> = match table.get(META_KEY)? {
            Some(value) => Some(serde_json::from_slice(value.value())?),
            None => None,
        };
        if stored.is_some_and(|stored| stored.last_log_id > meta.last_log_id) {
            return Ok(false);
        }
    }
    table.insert(META_KEY, meta_json.as_slice())?;
    table.insert(DATA_KEY, data)?;
    Ok(true)
}

/// Writes the file a peer installs: the header, the stored image, then every
/// history row as of now.
fn dump_file(db: &Database, history: &HistoryDb, scratch: &Scratch) -> Result<Body, Failure> {
    let file = scratch.create()?;
    let data = {
        let txn = db.begin_read()?;
        let table = txn.open_table(SNAPSHOT)?;
        let Some(data) = table.get(DATA_KEY)? else {
            return Err(Failure::Format("there is no snapshot to send".into()));
        };
        data.value().to_vec()
    };
    let txn = history.read()?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(MAGIC)?;
    out.write_all(&FILE_FORMAT.to_le_bytes())?;
    out.write_all(&(data.len() as u64).to_le_bytes())?;
    out.write_all(&data)?;
    let rows = history::dump(&txn, &mut out)?;
    let file = out.into_inner().map_err(|e| Failure::Io(e.into_error()))?;
    tracing::info!(rows, "wrote a snapshot file for a peer");
    Ok(file)
}

/// A received snapshot file, read as far as its image; the reader is left at
/// the history rows (`None`: a snapshot of Archon 0.1, which has none).
fn read_received(file: Body) -> Result<(Vec<u8>, Option<BufReader<Body>>), Failure> {
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 16];
    let mut read = 0;
    while read < magic.len() {
        let n = input.read(&mut magic[read..])?;
        if n == 0 {
            break;
        }
        read += n;
    }
    if magic.first() == Some(&b'{') {
        // Archon 0.1 sent the image's JSON alone.
        let mut data = magic[..read].to_vec();
        input.read_to_end(&mut data)?;
        return Ok((data, None));
    }
    if read < magic.len() || &magic != MAGIC {
        return Err(Failure::Format("the received snapshot is not an Archon snapshot".into()));
    }
    let mut word = [0u8; 4];
    input.read_exact(&mut word)?;
    let format = u32::from_le_bytes(word);
    if format > FILE_FORMAT {
        return Err(Failure::Format(format!(
            "the received snapshot's format {format} is newer than this node reads ({FILE_FORMAT}); upgrade this node"
        )));
    }
    let mut len = [0u8; 8];
    input.read_exact(&mut len)?;
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| Failure::Format("image too long".into()))?;
    let mut data = vec![0u8; len];
    input.read_exact(&mut data)?;
    Ok((data, Some(input)))
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
        let (mut handed, mut handed_bytes) = (0u64, 0u64);
        for entry in entries {
            let failed = |e: Failure| e.at(ErrorSubject::Apply(entry.log_id), ErrorVerb::Write);
            let outcomes = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(proposal) => {
                    let mut state = self.state.write().map_err(|_| failed(Failure::Poisoned))?;
                    let before = state.pending_history().len();
                    let outcomes = apply_proposal(&mut state, &proposal, entry.log_id.index)
                        .map_err(|e| failed(Failure::Format(e.to_string())))?;
                    let new = &state.pending_history()[before..];
                    handed += new.len() as u64;
                    handed_bytes += new.iter().map(output_bytes).sum::<u64>();
                    drop(state);
                    outcomes
                }
                EntryPayload::Membership(membership) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            self.last_applied = Some(entry.log_id);
            responses.push(outcomes);
        }
        let last = self.last_applied;
        if let Some(last) = last {
            self.recent.through(last.index);
        }
        let subject = last.map_or(ErrorSubject::Store, ErrorSubject::Apply);
        if let Some(e) = self.writer.error() {
            return Err(Failure::Format(format!("writing the history failed: {e}")).at(subject, ErrorVerb::Write));
        }
        self.writer.handed(handed, handed_bytes);
        // Memory stays bounded: far behind, apply waits for the writer.
        self.writer.backpressure().await;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.builders += 1;
        self.snapshots.reset();
        // Captured now, between two applies (the history of everything applied
        // is written), so state and last_applied agree.
        let image = self.state.read().ok().map(|state| {
            Arc::new(SnapshotImage {
                v: if state.is_legacy() { 0 } else { state.format_needed() },
                last_applied: self.last_applied,
                last_membership: self.last_membership.clone(),
                state: state.clone(),
            })
        });
        let snapshot_id = match self.last_applied {
            Some(log_id) => format!("{log_id}-{}", self.builders),
            None => format!("none-{}", self.builders),
        };
        SnapshotBuilder {
            db: Arc::clone(&self.db),
            history: Arc::clone(&self.history),
            image,
            snapshot_id,
            scratch: self.scratch.clone(),
            writer: self.writer.clone(),
            history_through: self.writer.handed_so_far(),
            metrics: self.metrics.clone(),
            snapshots: Arc::clone(&self.snapshots),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError<NodeId>> {
        let body =
            self.scratch.create().map_err(|e| Failure::Io(e).at(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        Ok(Box::new(SnapshotFile::ready(body)))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<SnapshotFile>) -> Result<(), StorageError<NodeId>> {
        let on_error = |e: Failure| e.at(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write);
        let file = snapshot.into_body().await.map_err(|e| on_error(Failure::Io(e)))?;
        // What was pending is replaced with the snapshot's own history: drop it.
        let paused = self.writer.pause().await;
        let pending = paused.pending().map_err(on_error)?;
        let (db, history) = (Arc::clone(&self.db), Arc::clone(&self.history));
        let stored_meta = meta.clone();
        let state = blocking(self.history.blocking, move || {
            let (data, rows) = read_received(file)?;
            let image = SnapshotImage::read(&data)?;
            let stored = serde_json::to_vec(&image)?;
            // The history first, fsync'd: the snapshot stored next relies on it.
            let loaded = history.write(true, |txn| match rows {
                Some(mut rows) => history::load(txn, &mut rows),
                None => history::load(txn, &mut std::io::Cursor::new([0u8])),
            })?;
            let txn = db.begin_write()?;
            store_snapshot(&txn, &stored_meta, &stored, Keep::New)?;
            txn.commit()?;
            tracing::info!(rows = loaded, bytes = stored.len(), "installed a snapshot from the leader");
            Ok((image.state, stored.len() as u64))
        })
        .await
        .map_err(on_error)?;
        let (state, size) = state;
        self.snapshots.stored(size);
        replace_state(&self.state, state).map_err(on_error)?;
        paused.dropped(pending);
        self.metrics.raft().snapshot_installed(size);
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let db = Arc::clone(&self.db);
        let stored = blocking(self.history.blocking, move || read_snapshot(&db))
            .await
            .map_err(|e| e.at(ErrorSubject::Snapshot(None), ErrorVerb::Read))?;
        let (db, history, scratch) = (Arc::clone(&self.db), Arc::clone(&self.history), self.scratch.clone());
        let mode = self.history.blocking;
        Ok(stored.map(|(meta, _)| Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile::lazy(mode, move || {
                dump_file(&db, &history, &scratch).map_err(|e| std::io::Error::other(e.to_string()))
            })),
        }))
    }
}

/// Builds a snapshot of the state as it was when openraft asked for the builder,
/// and stores it as the node's current snapshot.
pub struct SnapshotBuilder {
    /// The snapshot's database.
    db: Arc<super::Db>,
    history: Arc<HistoryDb>,
    /// `None` when the state lock was poisoned.
    image: Option<Arc<SnapshotImage>>,
    snapshot_id: String,
    scratch: Scratch,
    writer: HistoryWriter,
    /// The history handed over up to the image: written before it is stored.
    history_through: u64,
    metrics: Metrics,
    /// Told the size of the snapshot stored.
    snapshots: Arc<SnapshotDue>,
}

impl std::fmt::Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder").field("snapshot_id", &self.snapshot_id).finish_non_exhaustive()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let on_error = |e: Failure| e.at(ErrorSubject::Snapshot(None), ErrorVerb::Write);
        let started = std::time::Instant::now();
        let image = self.image.clone().ok_or(Failure::Poisoned).map_err(on_error)?;
        let meta = SnapshotMeta {
            last_log_id: image.last_applied,
            last_membership: image.last_membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        };
        // The history of what the image reflects is written and fsync'd first.
        self.writer.written_at_least(self.history_through).await.map_err(on_error)?;
        let (db, history) = (Arc::clone(&self.db), Arc::clone(&self.history));
        let stored_meta = meta.clone();
        let size = blocking(self.history.blocking, move || {
            history.sync()?;
            let data = serde_json::to_vec(&*image)?;
            let txn = db.begin_write()?;
            store_snapshot(&txn, &stored_meta, &data, Keep::Newer)?;
            txn.commit()?;
            Ok(data.len() as u64)
        })
        .await
        .map_err(on_error)?;
        self.snapshots.stored(size);
        self.metrics.raft().snapshot_built(size, started.elapsed());
        let (db, history, scratch) = (Arc::clone(&self.db), Arc::clone(&self.history), self.scratch.clone());
        let mode = self.history.blocking;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile::lazy(mode, move || {
                dump_file(&db, &history, &scratch).map_err(|e| std::io::Error::other(e.to_string()))
            })),
        })
    }
}
