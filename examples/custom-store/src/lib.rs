//! A template for plugging a store of your own into Archon: [`FileStore`] keeps
//! the cluster state durable in a single append-only file.
//!
//! The one thing to know: the file is the truth and the state is derived from
//! it. Each accepted proposal is appended as one line (the batch of commands as
//! a JSON array) and fsync'd before it is applied and `propose` returns; on open
//! the lines are replayed through [`ClusterState::apply`], which rebuilds the
//! very same state, because the state machine is deterministic. A torn last line
//! (a crash mid-append) was never acknowledged, so open drops it.
//!
//! What this template leaves out, on purpose:
//! - The history (finished runs, their output) is kept in memory, in a
//!   [`MemHistory`] that the replay rebuilds. A real store would keep it on disk
//!   beside the log.
//! - The file is never compacted: it grows with every proposal and open replays
//!   all of it. A real store would snapshot the state now and then and start a
//!   new file.
//! - One node, always the leader: no replication, no elections.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use archon_core::Error;
use archon_core::history::{History, MemHistory};
use archon_core::state::{ClusterState, Command, Outcome};
use archon_core::store::{Leadership, Store};
use async_trait::async_trait;
use tokio::sync::watch;

/// A [`Store`] whose state is the replay of one append-only file.
#[derive(Debug)]
pub struct FileStore {
    inner: Arc<Inner>,
    leadership: watch::Sender<Leadership>,
}

/// What a proposal needs, shared with the blocking thread that writes.
#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Held from the append to the apply, so the file's order is the state's order.
    log: Mutex<Log>,
    state: Mutex<ClusterState>,
    history: Arc<MemHistory>,
}

#[derive(Debug)]
struct Log {
    file: File,
    /// Records (lines) the file holds.
    records: u64,
    /// A write or fsync failed: what is on disk is unknown, so accept nothing
    /// more until the store is reopened (which replays what did land).
    failed: bool,
}

impl FileStore {
    /// Opens the store kept in the file at `path`, creating an empty one if there
    /// is none, and replays it. A torn last record is cut off; a record that does
    /// not decode anywhere else is corruption and fails the open.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileStore> {
        let path = path.as_ref().to_path_buf();
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;

        let mut state = ClusterState::new();
        let history = Arc::new(MemHistory::new());
        let (records, whole) = replay(&path, &bytes, &mut state, &history)?;
        if whole < bytes.len() {
            let torn = bytes.len() - whole;
            tracing::warn!(path = %path.display(), bytes = torn, "dropping a torn last record (a crash mid-append)");
            file.set_len(whole as u64)?;
            file.sync_data()?;
        }
        tracing::info!(path = %path.display(), records, "replayed the store's file");

        let (leadership, _) = watch::channel(Leadership { is_leader: true, leader: None, term: 0, elected: false });
        let log = Mutex::new(Log { file, records, failed: false });
        let inner = Inner { path, log, state: Mutex::new(state), history };
        Ok(FileStore { inner: Arc::new(inner), leadership })
    }

    /// How many records (accepted proposals) the file holds.
    pub fn records(&self) -> u64 {
        lock(&self.inner.log).records
    }

    /// The file the store is kept in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Inner {
    /// Appends `commands` as one record, fsyncs it, then applies it.
    fn append_and_apply(&self, commands: &[Command]) -> Result<Vec<Outcome>, Error> {
        let mut line = serde_json::to_vec(commands).map_err(|e| Error::Internal(format!("encoding commands: {e}")))?;
        line.push(b'\n');
        let mut log = lock(&self.log);
        if log.failed {
            let message = format!("{}: an earlier write failed; reopen the store", self.path.display());
            return Err(Error::Unavailable(message));
        }
        if let Err(e) = log.file.write_all(&line).and_then(|()| log.file.sync_data()) {
            log.failed = true;
            return Err(Error::Unavailable(format!("appending to {}: {e}", self.path.display())));
        }
        log.records += 1;
        Ok(apply(&mut lock(&self.state), &self.history, commands))
    }
}

/// Replays the whole records of `bytes` into `state` and `history`; returns how
/// many there were and where the last of them ends. The last line may be what a
/// crash mid-append left (unterminated or not decoding): replay stops before it.
/// Any other line that does not decode is damage, and an error.
fn replay(path: &Path, bytes: &[u8], state: &mut ClusterState, history: &MemHistory) -> io::Result<(u64, usize)> {
    let (mut records, mut offset) = (0, 0);
    while let Some(end) = bytes[offset..].iter().position(|b| *b == b'\n') {
        let next = offset + end + 1;
        match serde_json::from_slice::<Vec<Command>>(&bytes[offset..next - 1]) {
            Ok(batch) => {
                apply(state, history, &batch);
            }
            Err(_) if next == bytes.len() => break,
            Err(e) => {
                let message = format!("{}: record {} does not decode: {e}", path.display(), records + 1);
                return Err(io::Error::new(io::ErrorKind::InvalidData, message));
            }
        }
        records += 1;
        offset = next;
    }
    Ok((records, offset))
}

/// Applies a batch to the state and hands what it retired to the history, as
/// every store does. Replay and `propose` both come through here.
fn apply(state: &mut ClusterState, history: &MemHistory, commands: &[Command]) -> Vec<Outcome> {
    let outcomes = commands.iter().map(|c| state.apply(c)).collect();
    history.apply(&state.take_history());
    outcomes
}

/// A panic elsewhere cannot leave these half-changed (apply does not panic), so
/// a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl Store for FileStore {
    async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, Error> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        // The write and fsync block, so they run off the async threads, and in a
        // task of their own: if the caller stops waiting, the append and the
        // apply still happen together.
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.append_and_apply(&commands))
            .await
            .map_err(|e| Error::Internal(format!("the append task failed: {e}")))?
    }

    fn read(&self, reader: &mut dyn FnMut(&ClusterState)) {
        reader(&lock(&self.inner.state));
    }

    fn history(&self) -> Arc<dyn History> {
        self.inner.history.clone()
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.subscribe()
    }
}
