//! The log's writer: one task writes every change to the log's file, in the
//! order asked, and folds whatever queued up while it was busy into one write
//! of records — fsync'd if any change in it must be durable.
//!
//! An `append` only queues its rows and returns; its flush callback runs once
//! the write holding them is synced. The committed log id, which need not be
//! durable, rides along with the next write instead of costing one of its own
//! in openraft's core loop.
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
use tokio::sync::{Notify, oneshot};

use super::wal::{LogFile, Record};
use super::{BlockingWork, Failure, blocking};
use crate::TypeConfig;

/// The most requests one write takes, so a flood still commits (and answers)
/// in steps.
const MAX_GROUP: usize = 1024;

/// One change to the log's file.
pub(super) enum Change {
    /// Entries at the log's end, as (index, JSON).
    Append(Vec<(u64, Vec<u8>)>),
    /// Removes the entries from this index on.
    Truncate(u64),
    /// Removes the entries up to this index and records the last purged id.
    Purge { through: u64, last_purged: Vec<u8> },
    /// Saves the vote (durably).
    Vote(Vec<u8>),
    /// Saves the committed log id (not durably on its own).
    Committed(Option<Vec<u8>>),
    /// Nothing: waiting for it waits for everything queued before.
    Barrier,
}

impl Change {
    fn durable(&self) -> bool {
        match self {
            Change::Append(_) | Change::Truncate(_) | Change::Purge { .. } | Change::Vote(_) => true,
            Change::Committed(_) | Change::Barrier => false,
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
    file: Arc<LogFile>,
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
    pub(super) fn new(file: Arc<LogFile>, blocking: BlockingWork) -> LogWriter {
        let inner = Inner { file, blocking, queue: Mutex::default(), wake: Arc::new(Notify::new()) };
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
            let result = commit(&self.file, changes).map_err(|e| e.to_string());
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
        let (group, file, mode) = {
            let Some(inner) = inner.upgrade() else { return };
            (inner.take(), Arc::clone(&inner.file), inner.blocking)
        };
        if group.is_empty() {
            drop(file);
            wake.notified().await;
            continue;
        }
        let (changes, dones): (Vec<Change>, Vec<Done>) = group.into_iter().map(|r| (r.change, r.done)).unzip();
        tracing::trace!(changes = changes.len(), "committing a group of log changes");
        let result = blocking(mode, move || commit(&file, changes)).await.map_err(|e| e.to_string());
        for done in dones {
            answer(done, result.clone());
        }
    }
}

/// Writes `changes` in order as one write of records, synced if any of them
/// asks; a purge then removes the segments it emptied.
fn commit(file: &LogFile, changes: Vec<Change>) -> Result<(), Failure> {
    let sync = changes.iter().any(Change::durable);
    let mut purged = false;
    let mut records = Vec::with_capacity(changes.len());
    for change in changes {
        match change {
            Change::Append(rows) => {
                records.extend(rows.into_iter().map(|(index, bytes)| Record::Entry { index, bytes }))
            }
            Change::Truncate(from) => records.push(Record::Truncate { from }),
            Change::Purge { through, last_purged } => {
                purged = true;
                records.push(Record::Purged { index: through, bytes: last_purged });
            }
            Change::Vote(bytes) => records.push(Record::Vote(bytes)),
            Change::Committed(bytes) => records.push(Record::Committed(bytes.unwrap_or_default())),
            Change::Barrier => {}
        }
    }
    let mut wal = file.lock();
    wal.append(records, sync)?;
    if purged {
        wal.remove_purged()?;
    }
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
