//! Checking a stopped node's files: [`verify`] reads a manager's log (`raft.wal/`)
//! and snapshot and checks what a restart relies on — the log is contiguous from the entry after
//! the last purged one, its terms never decrease, every entry decodes (commands,
//! a membership or a blank), the snapshot reads, and the committed log id and
//! the snapshot agree with the entries at their indexes — then rebuilds the state
//! as a restart does: the snapshot, then the log after it, applied through the
//! state machine's own door ([`apply_proposal`]).
//!
//! The one thing to know: the rebuilt state is reduced to a canonical digest
//! ([`state_digest`]), so replicas compare by value — at one index. A follower's
//! committed index on disk may trail what it applied (it reaches disk with the
//! next append, not on its own), so compare replicas replayed `through` the same
//! index, one every node applied.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use archon_core::state::ClusterState;
use openraft::{Entry, EntryPayload, LogId, SnapshotMeta, Vote};
use redb::{Database, ReadableDatabase};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::log::StoredLogId;
use super::state_machine::{DATA_KEY, META_KEY, SnapshotImage, apply_proposal};
use super::wal::{SegmentDir, SegmentFiles, Wal};
use super::{NodeId, SNAPSHOT};
use crate::{Error, Node, TypeConfig};

/// The name a node's storage is opened at in its data dir: its files are named
/// after it — the log in `raft.wal/`, the history in `raft.history.redb`, the
/// snapshot in `raft.snapshot.redb` (a data dir of Archon before the log had
/// files of its own holds the log in `raft.redb` itself, until its next start).
pub const LOG_FILE: &str = "raft.redb";

/// Entries read from the log at a time while verifying, in bytes.
const READ_BYTES: usize = 16 << 20;

/// The most problems a report lists (a badly damaged log has thousands).
const MAX_PROBLEMS: usize = 50;

/// redb's page cache while verifying, in bytes.
const CACHE_BYTES: usize = 32 << 20;

/// A log entry's place: its index and the term of the leader that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// The log index.
    pub index: u64,
    /// The term.
    pub term: u64,
}

impl From<LogId<NodeId>> for Position {
    fn from(id: LogId<NodeId>) -> Position {
        Position { index: id.index, term: id.leader_id.term }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "index {} (term {})", self.index, self.term)
    }
}

/// The vote a node last saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VoteSummary {
    /// The newest term the node has seen.
    pub term: u64,
    /// The node it voted for in that term.
    pub node: Option<NodeId>,
    /// Whether a quorum granted that vote (the node it names leads the term).
    pub committed: bool,
}

/// The snapshot a node keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotSummary {
    /// The last entry it reflects.
    pub last: Option<Position>,
    /// Its id.
    pub id: String,
    /// The format its image was written in.
    pub format: u32,
}

/// The state rebuilt from the snapshot and the log after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// The last entry it reflects (`None`: nothing was ever applied).
    pub through: Option<Position>,
    /// How many entries after the snapshot were applied.
    pub entries: u64,
    /// The state's [`state_digest`].
    pub digest: String,
    /// The state as `archon status` counts it.
    pub state: StateSummary,
}

/// A cluster state as `archon status` counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateSummary {
    /// Commands applied, rejected ones included.
    pub commands: u64,
    /// Jobs, live and retained.
    pub jobs: u64,
    /// Runs by state, live and retained.
    pub runs: BTreeMap<String, u64>,
    /// Workers by state.
    pub workers: BTreeMap<String, u64>,
    /// Runs waiting for a worker.
    pub queued: u64,
}

impl StateSummary {
    /// The counts of `state`.
    pub fn of(state: &ClusterState) -> StateSummary {
        let mut workers = BTreeMap::new();
        for worker in state.workers().values() {
            *workers.entry(worker.state.to_string()).or_insert(0) += 1;
        }
        StateSummary {
            commands: state.applied(),
            jobs: state.job_count(),
            runs: state.run_counts().iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            workers,
            queued: state.queued_len() as u64,
        }
    }
}

/// What [`verify`] found in a node's files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogReport {
    /// The log read.
    pub file: String,
    /// The node was killed mid-write: the log's torn tail was cut (or the
    /// snapshot's file recovered by redb) before reading, as the node's next
    /// start would have.
    pub recovered: bool,
    /// The vote last saved.
    pub vote: Option<VoteSummary>,
    /// The committed log id last saved.
    pub committed: Option<Position>,
    /// The last entry removed behind a snapshot.
    pub last_purged: Option<Position>,
    /// The index of the first entry the log holds.
    pub first_index: Option<u64>,
    /// The index of the last entry the log holds.
    pub last_index: Option<u64>,
    /// That entry's term (`None` when it does not decode).
    pub last_term: Option<u64>,
    /// Entries read, each decoded.
    pub entries: u64,
    /// Commands in them.
    pub commands: u64,
    /// Entries carrying a membership.
    pub memberships: u64,
    /// Blank entries (a new leader's first).
    pub blanks: u64,
    /// The snapshot, if there is one.
    pub snapshot: Option<SnapshotSummary>,
    /// The state rebuilt; `None` when a problem prevents it.
    pub replayed: Option<Replayed>,
    /// What is unusual but sound (e.g. a tail past the committed index).
    pub notes: Vec<String>,
    /// What is wrong; empty when the data is sound.
    pub problems: Vec<String>,
}

impl LogReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, message: String) {
        match self.problems.len() {
            n if n < MAX_PROBLEMS => self.problems.push(message),
            n if n == MAX_PROBLEMS => self.problems.push("(more problems are not listed)".into()),
            _ => {}
        }
    }
}

/// Reads the node's files at `path` (its data dir, or the `raft.redb` path its
/// storage was opened at), checks them and rebuilds its state through the
/// committed index they record (or the snapshot's, if later), or through
/// `through` when given. The node must be stopped (its log is locked while it
/// runs); a log torn by a crash mid-write has its torn tail cut first, as the
/// node's next start would, and a file left by a killed node is recovered by
/// redb. Nothing else is written. `Err` when the files cannot be read at all;
/// every other finding is in the report ([`LogReport::is_clean`]).
pub fn verify(path: &Path, through: Option<u64>) -> Result<LogReport, Error> {
    let base = if path.is_dir() { path.join(LOG_FILE) } else { path.to_path_buf() };
    let wal_dir = super::wal_path_for(&base);
    let data_dir = |message: String| Error::DataDir { path: path.display().to_string(), message };
    if base.is_file() {
        return Err(data_dir(format!(
            "the log here is still in {LOG_FILE}, as an Archon before the log had files of its own wrote it: start \
             the manager once (it moves the log to raft.wal/), stop it, then verify"
        )));
    }
    if !wal_dir.is_dir() {
        return Err(data_dir("no log here (give a manager's data dir, which holds raft.wal/)".into()));
    }
    let files = SegmentDir::new(&wal_dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => data_dir("the log is in use: stop its manager first".into()),
        _ => data_dir(format!("cannot open the log: {e}")),
    })?;
    let snapshot_file = super::snapshot_path_for(&base);
    let (snapshot, snapshot_recovered) =
        if snapshot_file.is_file() { open(&snapshot_file).map(|(db, r)| (Some(db), r))? } else { (None, false) };
    let name = wal_dir.display().to_string();
    verify_log(Box::new(files), snapshot.as_deref(), &name, snapshot_recovered, through)
}

/// [`verify`] for a log kept on segment files of the embedder's own
/// ([`super::StorageOptions::backends`]), e.g. a copy of a simulated disk, and
/// a snapshot on a redb storage backend; `name` names them in the report.
pub fn verify_backend(
    log: impl SegmentFiles,
    snapshot: impl redb::StorageBackend,
    name: &str,
    through: Option<u64>,
) -> Result<LogReport, Error> {
    let snapshot = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(super::Backend(Box::new(snapshot)))
        .map_err(|e| Error::Storage(format!("opening {name}'s snapshot: {e}")))?;
    verify_log(Box::new(log), Some(&snapshot), name, false, through)
}

/// Checks the log in `files` from the snapshot in `snapshot_db`.
fn verify_log(
    files: Box<dyn SegmentFiles>,
    snapshot_db: Option<&dyn ReadableDatabase>,
    name: &str,
    snapshot_recovered: bool,
    through: Option<u64>,
) -> Result<LogReport, Error> {
    let wal = Wal::open(files).map_err(|e| Error::Storage(format!("reading {name}: {e}")))?;
    let recovered = wal.cut_torn_tail() || snapshot_recovered;
    let mut report = LogReport { file: name.to_owned(), recovered, ..LogReport::default() };
    if wal.cut_torn_tail() {
        report.notes.push("the log's tail was torn by a crash mid-write: cut before reading, as a start would".into());
    }
    if snapshot_recovered {
        report.notes.push("the snapshot's file was not closed cleanly: recovered by redb before reading".into());
    }

    let vote: Option<Vote<NodeId>> = decoded(&mut report, wal.vote(), "the vote");
    let committed: Option<LogId<NodeId>> = decoded(&mut report, wal.committed(), "the committed log id");
    let last_purged: Option<LogId<NodeId>> = decoded(&mut report, wal.purged(), "the last purged log id");
    report.vote =
        vote.map(|v| VoteSummary { term: v.leader_id.term, node: v.leader_id.voted_for(), committed: v.committed });
    report.committed = committed.map(Position::from);
    report.last_purged = last_purged.map(Position::from);

    let found = match snapshot_db {
        Some(snapshot_db) => {
            let unreadable = |e: redb::Error| format!("reading the snapshot of {name}: {e}");
            match snapshot_db.begin_read().map_err(|e| unreadable(e.into())) {
                Ok(txn) => match txn.open_table(SNAPSHOT) {
                    Ok(table) => read_snapshot(&table),
                    Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                    Err(e) => Err(unreadable(e.into())),
                },
                Err(e) => Err(e),
            }
        }
        None => Ok(None),
    };
    let (snapshot, start) = match found {
        Ok(Some((meta, image))) => {
            report.snapshot = Some(SnapshotSummary {
                last: meta.last_log_id.map(Position::from),
                id: meta.snapshot_id,
                format: image.v,
            });
            if image.last_applied.is_some_and(|applied| Some(applied) != meta.last_log_id) {
                report.problem("the snapshot's meta and its image name different last entries".into());
            }
            (meta.last_log_id, Some(image.state))
        }
        Ok(None) => (None, Some(ClusterState::new())),
        Err(e) => {
            report.problem(format!("the snapshot does not read: {e}"));
            (None, None)
        }
    };

    // Replay through `through`, else through what the files prove committed.
    let target = through.or(committed.map(|c| c.index).max(snapshot.map(|s| s.index)));
    let mut replay =
        start.map(|state| Replay { state, next: snapshot.map_or(0, |s| s.index + 1), ..Replay::default() });
    if let (Some(through), Some(snapshot)) = (through, snapshot)
        && through < snapshot.index
    {
        let snapshot = Position::from(snapshot);
        report.problem(format!("through {through}: the snapshot already reflects {snapshot}; replay starts there"));
        replay = None;
    }

    let mut walk = Walk { report, committed, last_purged, snapshot, target, replay, previous: None, tail: 0 };
    let mut next = 0;
    loop {
        let rows = wal.read(next.., READ_BYTES).map_err(|e| Error::Storage(format!("reading {name}: {e}")))?;
        let Some(last) = rows.last().map(|(index, _)| *index) else { break };
        for (index, bytes) in rows {
            walk.entry(index, &bytes);
        }
        next = last + 1;
    }
    Ok(walk.finish())
}

/// Opens the file for reading: read-only, unless it needs redb's recovery
/// first (true), as a file left by a killed node does.
fn open(file: &Path) -> Result<(Box<dyn ReadableDatabase>, bool), Error> {
    let data_dir = |message: String| Error::DataDir { path: file.display().to_string(), message };
    if !file.is_file() {
        return Err(data_dir("no such file".into()));
    }
    match Database::builder().set_cache_size(CACHE_BYTES).open_read_only(file) {
        Ok(db) => Ok((Box::new(db), false)),
        Err(redb::DatabaseError::RepairAborted) => {
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .open(file)
                .map_err(|e| data_dir(format!("cannot recover the redb file: {e}")))?;
            Ok((Box::new(db), true))
        }
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            Err(data_dir("the file is in use: stop its manager first".into()))
        }
        Err(e) => Err(data_dir(format!("cannot open the redb file: {e}"))),
    }
}

/// The walk over the log, in index order: what it checks entry by entry, and
/// the state it rebuilds as it goes.
struct Walk {
    report: LogReport,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    /// The snapshot's last log id.
    snapshot: Option<LogId<NodeId>>,
    /// The last index to replay.
    target: Option<u64>,
    /// `None` once a problem prevents rebuilding the state.
    replay: Option<Replay>,
    /// The index and term (when it decodes) of the entry before.
    previous: Option<(u64, Option<u64>)>,
    /// Entries past `target`.
    tail: u64,
}

impl Walk {
    /// Checks the entry stored at `index`, and applies it if the replay needs it.
    fn entry(&mut self, index: u64, bytes: &[u8]) {
        let report = &mut self.report;
        report.entries += 1;
        let entry = serde_json::from_slice::<Entry<TypeConfig>>(bytes);
        let log_id = match &entry {
            Ok(entry) => Some(entry.log_id),
            Err(e) => {
                report.problem(format!("entry {index} does not decode: {e}"));
                serde_json::from_slice::<StoredLogId>(bytes).ok().map(|stored| stored.log_id)
            }
        };
        if let Some(id) = log_id.filter(|id| id.index != index) {
            report.problem(format!("the entry stored at index {index} names index {}", id.index));
        }
        let term = log_id.map(|id| id.leader_id.term);
        let term_before = match self.previous {
            Some((before, term)) => {
                if index != before + 1 {
                    report.problem(format!("entries {}..={} are missing (a gap in the log)", before + 1, index - 1));
                }
                term
            }
            None => {
                report.first_index = Some(index);
                let expected = self.last_purged.map_or(0, |p| p.index + 1);
                if index > expected {
                    report.problem(format!(
                        "the log starts at {index} but nothing before it was purged{}: entries {expected}..={} are \
                         missing",
                        self.last_purged.map(|p| format!(" past {}", p.index)).unwrap_or_default(),
                        index - 1
                    ));
                } else if index < expected {
                    report.problem(format!(
                        "entry {index} is still there though the log was purged through {}",
                        expected - 1
                    ));
                }
                self.last_purged.map(|p| p.leader_id.term)
            }
        };
        if let (Some(term), Some(before)) = (term, term_before)
            && term < before
        {
            report.problem(format!("entry {index} is of term {term}, after term {before}: terms must not decrease"));
        }
        if let (Some(term), Some(snapshot)) = (term, self.snapshot)
            && index == snapshot.index + 1
            && term < snapshot.leader_id.term
        {
            let snapshot = Position::from(snapshot);
            report.problem(format!("entry {index} is of term {term}, older than the snapshot's {snapshot}"));
        }
        for (what, expected) in [("committed log id", self.committed), ("snapshot's last log id", self.snapshot)] {
            if let Some(expected) = expected.filter(|e| e.index == index)
                && log_id != Some(expected)
            {
                report.problem(format!(
                    "the {what} is {} but the log's entry there is {}",
                    Position::from(expected),
                    term.map_or_else(|| "unreadable".into(), |term| Position { index, term }.to_string())
                ));
            }
        }
        if let Ok(entry) = &entry {
            match &entry.payload {
                EntryPayload::Normal(proposal) => report.commands += proposal.commands().map_or(0, <[_]>::len) as u64,
                EntryPayload::Membership(_) => report.memberships += 1,
                EntryPayload::Blank => report.blanks += 1,
            }
        }
        if self.target.is_none_or(|target| index > target) {
            self.tail += 1;
        } else if let (Some(replay), Ok(entry)) = (&mut self.replay, entry)
            && index == replay.next
        {
            replay.apply(index, entry);
        }
        (report.last_index, report.last_term) = (Some(index), term);
        self.previous = Some((index, term));
    }

    /// The checks that need the whole log, then the rebuilt state.
    fn finish(self) -> LogReport {
        let Walk { mut report, snapshot, target, replay, tail, .. } = self;
        let snapshot = snapshot.map(Position::from);
        if let (Some(term), Some(vote)) = (report.last_term, report.vote)
            && term > vote.term
        {
            report.problem(format!("the last entry is of term {term}, newer than the vote's term {}", vote.term));
        }
        let covered = [report.last_index, snapshot.map(|s| s.index), report.last_purged.map(|p| p.index)]
            .into_iter()
            .flatten()
            .max();
        if let Some(committed) = report.committed
            && covered.is_none_or(|covered| committed.index > covered)
        {
            report.problem(format!(
                "the committed log id is {committed} but the log ends at {}: committed entries are missing",
                covered.map_or_else(|| "nothing".into(), |c| c.to_string())
            ));
        }
        if let Some(snapshot) = snapshot
            && report.last_index.is_none_or(|last| last < snapshot.index)
        {
            report.notes.push(format!(
                "the log ends before the snapshot at {snapshot} (a snapshot installed from the leader): the next \
                 start purges it"
            ));
        }
        if tail > 0 {
            let after = target.map_or_else(|| "none is known committed".into(), |t| format!("after index {t}"));
            report.notes.push(format!("{tail} entries are not replayed ({after}): they are not known committed here"));
        }
        if let (Some(target), Some(committed)) = (target, report.committed)
            && target > committed.index
        {
            report.notes.push(format!("replayed past the committed index the files record ({})", committed.index));
        }
        report.replayed = replay.and_then(|replay| replay.finish(&mut report, target, snapshot));
        report
    }
}

/// The state being rebuilt: applied through `next - 1`.
#[derive(Default)]
struct Replay {
    state: ClusterState,
    next: u64,
    last: Option<Position>,
    entries: u64,
}

impl Replay {
    /// Applies the entry stored at `index` (the next one).
    fn apply(&mut self, index: u64, entry: Entry<TypeConfig>) {
        if let EntryPayload::Normal(proposal) = &entry.payload {
            if apply_proposal(&mut self.state, proposal, index).is_err() {
                // Not applied: `finish` reports the entry as unreadable.
                return;
            }
            // What apply hands to the history is the history file's business.
            drop(self.state.take_history());
        }
        self.next = index + 1;
        self.last = Some(Position { index, term: entry.log_id.leader_id.term });
        self.entries += 1;
    }

    /// The rebuilt state, if it reached `target`; a problem otherwise.
    fn finish(self, report: &mut LogReport, target: Option<u64>, snapshot: Option<Position>) -> Option<Replayed> {
        if let Some(target) = target
            && self.next <= target
        {
            report.problem(format!(
                "the state cannot be rebuilt through {target}: entry {} is missing or unreadable",
                self.next
            ));
            return None;
        }
        match state_digest(&self.state) {
            Ok(digest) => Some(Replayed {
                through: self.last.or(snapshot),
                entries: self.entries,
                digest,
                state: StateSummary::of(&self.state),
            }),
            Err(e) => {
                report.problem(format!("the rebuilt state does not serialize: {e}"));
                None
            }
        }
    }
}

/// The JSON value at a `meta` key; a problem (and `None`) when it does not decode.
fn decoded<T: DeserializeOwned>(report: &mut LogReport, stored: Option<&[u8]>, what: &str) -> Option<T> {
    match serde_json::from_slice(stored?) {
        Ok(value) => Some(value),
        Err(e) => {
            report.problem(format!("{what} does not decode: {e}"));
            None
        }
    }
}

/// A snapshot's meta.
type Meta = SnapshotMeta<NodeId, Node>;

/// The stored snapshot's meta and image, if there is one.
fn read_snapshot(
    table: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
) -> Result<Option<(Meta, SnapshotImage)>, String> {
    let meta = table.get(META_KEY).map_err(|e| e.to_string())?;
    let data = table.get(DATA_KEY).map_err(|e| e.to_string())?;
    let (meta, data) = match (meta, data) {
        (Some(meta), Some(data)) => (meta, data),
        (None, None) => return Ok(None),
        (Some(_), None) => return Err("its meta is stored without its data".into()),
        (None, Some(_)) => return Err("its data is stored without its meta".into()),
    };
    let meta = serde_json::from_slice(meta.value()).map_err(|e| format!("its meta: {e}"))?;
    let image = SnapshotImage::read(data.value()).map_err(|e| format!("its image: {e}"))?;
    Ok(Some((meta, image)))
}

/// A digest of `state` that equal states share however they were built: its
/// JSON with every object's keys sorted, hashed with 128-bit FNV-1a (made to
/// compare replicas, not to resist forgery).
pub fn state_digest(state: &ClusterState) -> Result<String, Error> {
    let value = serde_json::to_value(state).map_err(|e| Error::Storage(format!("serializing the state: {e}")))?;
    let mut bytes = Vec::new();
    canonical(&value, &mut bytes).map_err(|e| Error::Storage(format!("serializing the state: {e}")))?;
    Ok(format!("fnv1a128:{:032x}", fnv1a_128(&bytes)))
}

/// `value` as JSON with every object's keys in order, whatever order the map kept.
fn canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, value)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                canonical(value, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

/// 128-bit FNV-1a.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |hash, byte| (hash ^ u128::from(*byte)).wrapping_mul(PRIME))
}
