//! The log's writer: a single writer puts every change into the log's file, in
//! the order asked, and folds whatever queued up while it was busy into one write
//! of records — fsync'd if any change in it must be durable.
//!
//! An `append` queues its rows; its flush callback runs once the write holding
//! them is synced. When the writer is idle and the append small, the append
//! writes them itself before it returns ([`LogWriter::queue_awaited`]):
//! openraft's core waits for that flush before anything else anyway. The
//! committed log id, which need not be durable, rides along with the next write
//! instead of costing one of its own in openraft's core loop.
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
//!
//! With [`BlockingWork::Threads`] the writer is a thread of its own, woken by a
//! condition variable, that writes and answers in place: one wake-up from the
//! core to it and one back per entry, where a task handing each write to tokio's
//! blocking pool took four — and none for an append written in place. One
//! writer at a time (the thread or an append in place), each taking what is
//! queued in order, keeps the file's order the order asked. With
//! [`BlockingWork::Inline`] (a simulation) it is a task that writes in place.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, Weak};

use openraft::storage::LogFlushed;
use tokio::sync::{Notify, oneshot};

use super::wal::{LogFile, Record};
use super::{BlockingWork, Failure};
use crate::TypeConfig;

/// The most requests one write takes, so a flood still commits (and answers)
/// in steps.
const MAX_GROUP: usize = 1024;

/// The most bytes written in place ([`LogWriter::queue_awaited`]) rather than on
/// the writer's thread: a small write and its fsync hold a tokio worker about as
/// long as the thread's two wake-ups take; a large one would hold it far longer
/// (batched submits lost 14 % when every append was written in place).
const IN_PLACE_BYTES: usize = 64 << 10;

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
    /// About how many bytes it writes.
    fn bytes(&self) -> usize {
        match self {
            Change::Append(rows) => rows.iter().map(|(_, row)| row.len() + 16).sum(),
            Change::Purge { last_purged: bytes, .. } | Change::Vote(bytes) => bytes.len() + 16,
            Change::Committed(bytes) => bytes.as_ref().map_or(16, |b| b.len() + 16),
            Change::Truncate(_) | Change::Barrier => 16,
        }
    }

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
    shared: Arc<Shared>,
}

/// What the writer (task or thread) shares with the handles without keeping
/// the file open: the queue and how to wake the writer.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the task: something queued, or the last handle is gone.
    wake: Notify,
    /// Wakes the thread, the same way.
    queued: Condvar,
}

#[derive(Default)]
struct Queue {
    requests: VecDeque<Request>,
    started: bool,
    /// A group is being written (by the thread or by an append in place).
    writing: bool,
    /// The last handle is gone (what was queued is written): the writer ends.
    closed: bool,
}

impl LogWriter {
    pub(super) fn new(file: Arc<LogFile>, blocking: BlockingWork) -> LogWriter {
        let inner = Inner { file, blocking, shared: Arc::default() };
        LogWriter { inner: Arc::new(inner) }
    }

    /// Queues `change`; `done` hears when it is committed (or failed).
    pub(super) fn queue(&self, change: Change, done: Done) {
        self.queue_as(change, done, false);
    }

    /// Queues `change` for a caller that waits for it before anything else (an
    /// append from openraft's core, which awaits each flush): when the writer
    /// is idle and what is queued small, it is written here and now, on a
    /// worker of a multi-threaded runtime, sparing the wake-up of the writer's
    /// thread and the one back. Else as [`LogWriter::queue`].
    pub(super) fn queue_awaited(&self, change: Change, done: Done) {
        self.queue_as(change, done, true);
    }

    fn queue_as(&self, change: Change, done: Done, in_place: bool) {
        let mut queue = self.inner.lock();
        queue.requests.push_back(Request { change, done });
        if !queue.started {
            queue.started = true;
            let (inner, shared) = (Arc::downgrade(&self.inner), Arc::clone(&self.inner.shared));
            match self.inner.blocking {
                BlockingWork::Threads => {
                    let spawned = std::thread::Builder::new()
                        .name("archon-log-writer".into())
                        .spawn(move || run_thread(&inner, &shared));
                    if let Err(e) = spawned {
                        // No thread to be had: the requests fail, now and later.
                        tracing::error!(error = %e, "cannot start the log writer's thread");
                        queue.closed = true;
                        return fail_queued(queue, &format!("cannot start the log writer's thread: {e}"));
                    }
                }
                BlockingWork::Inline => {
                    tokio::spawn(run_task(inner, shared));
                }
            }
        }
        if queue.closed {
            return fail_queued(queue, "the log writer has stopped");
        }
        if in_place
            && !queue.writing
            && queue.requests.iter().map(|r| r.change.bytes()).sum::<usize>() <= IN_PLACE_BYTES
            && self.inner.blocking == BlockingWork::Threads
            && in_place_allowed()
        {
            queue.writing = true;
            let group = queue.take();
            drop(queue);
            write_group(&self.inner.file, group);
            let mut queue = self.inner.lock();
            queue.writing = false;
            if queue.requests.is_empty() {
                return;
            }
        } else {
            drop(queue);
        }
        self.inner.shared.wake.notify_one();
        self.inner.shared.queued.notify_one();
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
        self.shared.lock()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Queue {
    /// Up to [`MAX_GROUP`] queued requests, oldest first.
    fn take(&mut self) -> Vec<Request> {
        let n = self.requests.len().min(MAX_GROUP);
        self.requests.drain(..n).collect()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: what is still queued is written now, here.
        let rest: Vec<Request> = {
            let mut queue = self.lock();
            queue.closed = true;
            queue.requests.drain(..).collect()
        };
        if !rest.is_empty() {
            write_group(&self.file, rest);
        }
        self.shared.wake.notify_one();
        self.shared.queued.notify_one();
    }
}

/// Fails every request `queue` holds with `why` (answered once it is unlocked).
fn fail_queued(mut queue: std::sync::MutexGuard<'_, Queue>, why: &str) {
    let failed: Vec<Request> = queue.requests.drain(..).collect();
    drop(queue);
    for request in failed {
        answer(request.done, Err(why.to_owned()));
    }
}

/// Writes `group` as one commit and answers each request.
fn write_group(file: &LogFile, group: Vec<Request>) {
    let (changes, dones): (Vec<Change>, Vec<Done>) = group.into_iter().map(|r| (r.change, r.done)).unzip();
    tracing::trace!(changes = changes.len(), "committing a group of log changes");
    let result = commit(file, changes).map_err(|e| e.to_string());
    for done in dones {
        answer(done, result.clone());
    }
}

/// The writer thread: a commit per group of queued requests. It holds the
/// writer only while committing, so dropping the last handle closes the file.
fn run_thread(inner: &Weak<Inner>, shared: &Shared) {
    loop {
        let mut queue = shared.lock();
        while (queue.requests.is_empty() || queue.writing) && !queue.closed {
            queue = shared.queued.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        // Closed: the last handle's drop wrote what was queued.
        if queue.requests.is_empty() {
            return;
        }
        // Upgraded under the lock: the last handle's drop, which drains the
        // queue under it too, either comes after this group or took it.
        let Some(inner) = inner.upgrade() else { return };
        let group = queue.take();
        queue.writing = true;
        drop(queue);
        write_group(&inner.file, group);
        shared.lock().writing = false;
    }
}

/// Whether this thread may block in place: a worker of a multi-threaded
/// runtime (tokio hands its other tasks on), not a current-thread runtime.
fn in_place_allowed() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// The writer task (simulations): the same, writing in place.
async fn run_task(inner: Weak<Inner>, shared: Arc<Shared>) {
    loop {
        let (group, file) = {
            let Some(inner) = inner.upgrade() else { return };
            (inner.lock().take(), Arc::clone(&inner.file))
        };
        if group.is_empty() {
            drop(file);
            shared.wake.notified().await;
            continue;
        }
        write_group(&file, group);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::wal::{SegmentDir, Wal};
    use super::*;

    /// A writer on its own thread over a fresh log in `dir`, and its file's close flag.
    fn threaded_writer(dir: &std::path::Path) -> (LogWriter, Arc<super::super::ClosedFlag>) {
        let wal = Wal::open(Box::new(SegmentDir::new(dir.join("raft.wal")).unwrap())).unwrap();
        let (file, closed) = LogFile::new(wal);
        (LogWriter::new(Arc::new(file), BlockingWork::Threads), closed)
    }

    /// Drops the last handle, waits for the file to close and opens it again.
    async fn closed_and_reopened(writer: LogWriter, closed: &super::super::ClosedFlag, dir: &std::path::Path) -> Wal {
        drop(writer);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        assert!(closed.wait_until(deadline).await, "the log file still open 30 s after its last handle went");
        Wal::open(Box::new(SegmentDir::new(dir.join("raft.wal")).unwrap())).unwrap()
    }

    /// On its own thread, the writer commits what many tasks queue at once, in
    /// the order queued, and lets the file go when the last handle does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_thread_commits_in_order_and_closes_the_file_with_the_last_handle() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, closed) = threaded_writer(dir.path());
        let mut answers = Vec::new();
        for index in 1..=500u64 {
            let (done, answer) = oneshot::channel();
            writer.queue(Change::Append(vec![(index, index.to_le_bytes().to_vec())]), Done::Caller(done));
            answers.push(answer);
        }
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                tokio::spawn({
                    let writer = writer.clone();
                    async move { writer.flush().await }
                })
            })
            .collect();
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        for task in waiting {
            task.await.unwrap().unwrap();
        }
        assert!(!closed.is_set());
        let wal = closed_and_reopened(writer, &closed, dir.path()).await;
        let entries = wal.read(.., usize::MAX).unwrap();
        assert_eq!(entries.len(), 500);
        assert!(entries.iter().zip(1u64..).all(|((index, bytes), i)| *index == i && *bytes == i.to_le_bytes()));
    }

    /// Appends awaited one by one are written in place, in order with what
    /// goes to the thread meanwhile (records that no one waits for, flushes
    /// from other tasks); a large one goes to the thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn awaited_appends_write_in_place_in_order_with_the_threads_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, closed) = threaded_writer(dir.path());
        let flushing: Vec<_> = (0..4)
            .map(|_| {
                tokio::spawn({
                    let writer = writer.clone();
                    async move {
                        for _ in 0..50 {
                            writer.flush().await.unwrap();
                        }
                    }
                })
            })
            .collect();
        let large = IN_PLACE_BYTES + 1;
        let mut in_place = 0;
        for index in 1..=300u64 {
            let bytes = if index % 100 == 0 { vec![index as u8; large] } else { index.to_le_bytes().to_vec() };
            let (done, mut answer) = oneshot::channel();
            writer.queue_awaited(Change::Append(vec![(index, bytes)]), Done::Caller(done));
            if answer.try_recv().is_ok_and(|r| r.is_ok()) {
                in_place += 1;
            } else {
                answer.await.unwrap().unwrap();
            }
            if index % 3 == 0 {
                writer.queue(Change::Committed(Some(index.to_le_bytes().to_vec())), Done::Nobody);
            }
        }
        for task in flushing {
            task.await.unwrap();
        }
        assert!(in_place > 0, "no append was written in place");
        assert!(in_place < 300, "the large appends were written in place too");
        let wal = closed_and_reopened(writer, &closed, dir.path()).await;
        let entries = wal.read(.., usize::MAX).unwrap();
        assert_eq!(entries.len(), 300);
        assert!(entries.iter().zip(1u64..).all(|((index, _), i)| *index == i));
        assert_eq!(wal.committed(), Some(&300u64.to_le_bytes()[..]), "the last committed record is the last written");
    }
}
