//! The log's writer: one task writes every change to the log's redb file, in
//! the order asked, and folds whatever queued up while it was busy into one
//! transaction — fsync'd if any change in it must be durable.
//!
//! An `append` only queues its rows and returns; its flush callback runs once
//! the transaction holding them committed with immediate durability. The
//! committed log id, which need not be durable, rides along with the next
//! commit instead of costing a transaction of its own in openraft's core loop.
//! openraft 0.9's core still waits for each append's flush before it takes the
//! next client write (`RaftCore::append_to_log`), so concurrent proposals do
//! not share an fsync here: [`crate::proposer`] gathers them into one entry.
//! Should openraft stop waiting (0.10 does), appends queued together already
//! share one commit.
//!
//! Changes that must be on disk before their call returns (the vote, a
//! truncation, a purge) queue and then wait for their commit. A read that must
//! see the file as the log stands first waits for the writer to drain
//! ([`LogWriter::flush`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use openraft::storage::LogFlushed;
use redb::Database;
use tokio::sync::{Notify, oneshot};

use super::{BlockingWork, Failure, LOG, META, blocking};
use crate::TypeConfig;

/// The most requests one transaction takes, so a flood still commits (and
/// answers) in steps.
const MAX_GROUP: usize = 1024;

/// One change to the log's file.
pub(super) enum Change {
    /// Entries at the log's end, as (index, JSON).
    Append(Vec<(u64, Vec<u8>)>),
    /// Removes the entries from this index on.
    Truncate(u64),
    /// Removes the entries up to this index and records the last purged id.
    Purge { through: u64, last_purged: Vec<u8> },
    /// Sets (or removes) a `meta` value; `durable` asks for an fsync.
    Meta { key: &'static str, value: Option<Vec<u8>>, durable: bool },
    /// Nothing: waiting for it waits for everything queued before.
    Barrier,
}

impl Change {
    fn durable(&self) -> bool {
        match self {
            Change::Append(_) | Change::Truncate(_) | Change::Purge { .. } => true,
            Change::Meta { durable, .. } => *durable,
            Change::Barrier => false,
        }
    }
}

/// Who hears that a change was committed.
pub(super) enum Done {
    /// No one.
    Nobody,
    /// openraft, for an append.
    Flushed(LogFlushed<TypeConfig>),
    /// A caller waiting on the change.
    Caller(oneshot::Sender<Result<(), String>>),
}

struct Request {
    change: Change,
    done: Done,
}

/// The handle to the writer; clones share it. The task starts with the first
/// change (opening the storage needs no runtime). When the last handle goes,
/// whatever is still queued is committed there and then, so the file is closed
/// with everything asked of it — a reopen in the same process finds it all.
#[derive(Clone)]
pub(super) struct LogWriter {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<super::Db>,
    blocking: BlockingWork,
    queue: Mutex<Queue>,
    /// Wakes the task: something queued, or the last handle is gone.
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Queue {
    requests: VecDeque<Request>,
    started: bool,
}

impl LogWriter {
    pub(super) fn new(db: Arc<super::Db>, blocking: BlockingWork) -> LogWriter {
        let inner = Inner { db, blocking, queue: Mutex::default(), wake: Arc::new(Notify::new()) };
        LogWriter { inner: Arc::new(inner) }
    }

    /// Queues `change`; `done` hears when it is committed (or failed).
    pub(super) fn queue(&self, change: Change, done: Done) {
        let mut queue = self.inner.lock();
        queue.requests.push_back(Request { change, done });
        if !queue.started {
            queue.started = true;
            tokio::spawn(run(Arc::downgrade(&self.inner), Arc::clone(&self.inner.wake)));
        }
        drop(queue);
        self.inner.wake.notify_one();
    }

    /// Queues `change` and waits until it is committed.
    pub(super) async fn write(&self, change: Change) -> Result<(), Failure> {
        let (done, rx) = oneshot::channel();
        self.queue(change, Done::Caller(done));
        match rx.await {
            Ok(result) => result.map_err(Failure::Writer),
            Err(_) => Err(Failure::Writer("the log writer has stopped".to_owned())),
        }
    }

    /// Waits until everything queued so far is in the file.
    pub(super) async fn flush(&self) -> Result<(), Failure> {
        self.write(Change::Barrier).await
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Up to [`MAX_GROUP`] queued requests, oldest first.
    fn take(&self) -> Vec<Request> {
        let mut queue = self.lock();
        let n = queue.requests.len().min(MAX_GROUP);
        queue.requests.drain(..n).collect()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: what is still queued is written now, here.
        let rest: Vec<Request> = self.lock().requests.drain(..).collect();
        if !rest.is_empty() {
            let (changes, dones): (Vec<Change>, Vec<Done>) = rest.into_iter().map(|r| (r.change, r.done)).unzip();
            let result = commit(&self.db, &changes).map_err(|e| e.to_string());
            for done in dones {
                answer(done, result.clone());
            }
        }
        self.wake.notify_one();
    }
}

/// The writer task: a transaction per group of queued requests. It holds the
/// writer only while committing, so dropping the last handle closes the file.
async fn run(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let (group, db, mode) = {
            let Some(inner) = inner.upgrade() else { return };
            (inner.take(), Arc::clone(&inner.db), inner.blocking)
        };
        if group.is_empty() {
            drop(db);
            wake.notified().await;
            continue;
        }
        let (changes, dones): (Vec<Change>, Vec<Done>) = group.into_iter().map(|r| (r.change, r.done)).unzip();
        tracing::trace!(changes = changes.len(), "committing a group of log changes");
        let result = blocking(mode, move || commit(&db, &changes)).await.map_err(|e| e.to_string());
        for done in dones {
            answer(done, result.clone());
        }
    }
}

/// Writes `changes` in order in one transaction, fsync'd if any of them asks.
fn commit(db: &Database, changes: &[Change]) -> Result<(), Failure> {
    if changes.iter().all(|c| matches!(c, Change::Barrier)) {
        return Ok(());
    }
    let mut txn = db.begin_write()?;
    if !changes.iter().any(Change::durable) {
        txn.set_durability(redb::Durability::None)?;
    }
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        for change in changes {
            match change {
                Change::Append(rows) => {
                    for (index, bytes) in rows {
                        log.insert(index, bytes.as_slice())?;
                    }
                }
                Change::Truncate(from) => {
                    log.retain_in::<u64, _>(from.., |_, _| false)?;
                }
                Change::Purge { through, last_purged } => {
                    meta.insert(super::log::LAST_PURGED, last_purged.as_slice())?;
                    log.retain_in::<u64, _>(..=through, |_, _| false)?;
                }
                Change::Meta { key, value, .. } => match value {
                    Some(bytes) => {
                        meta.insert(key, bytes.as_slice())?;
                    }
                    None => {
                        meta.remove(key)?;
                    }
                },
                Change::Barrier => {}
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn answer(done: Done, result: Result<(), String>) {
    match done {
        Done::Nobody => {}
        Done::Flushed(callback) => callback.log_io_completed(result.map_err(std::io::Error::other)),
        Done::Caller(tx) => {
            let _ = tx.send(result);
        }
    }
}
