//! The history writer: writes what the state machine hands over to the history
//! tables on a task of its own, so that applying an entry never waits on it.
//!
//! Until written, the operations stay in the state's outbox, where readers find
//! them ([`RedbHistory`](super::RedbHistory) overlays it), so a run that leaves the
//! live state is never missing. The outbox is bounded: an apply that finds too
//! much unwritten waits for the writer. A wake-up lets a small batch gather for
//! a few milliseconds first, unless someone waits on the writer. A snapshot is stored only once everything
//! handed over before it is written (its durable commit makes those writes
//! durable too), and installing one first stops the writer and drops what was
//! pending: the snapshot brings its own history.
//!
//! When the state machine goes, the writer lets go of the file at once (waiting
//! out a batch being written), so the node can be reopened in the same process;
//! what it had not written is replayed from the log.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use archon_core::history::HistoryOp;
use archon_core::state::ClusterState;
use tokio::sync::{Notify, watch};

use super::history_db::{Compaction, HistoryDb};
use super::{BlockingWork, Failure, blocking, history};

/// Operations written per transaction. The history has its own file, so a long
/// transaction holds up nothing but the next batch; large ones amortise redb's
/// commit (measured on the durable gRPC path: 4,096 → 16,384 gave about 8 %
/// more throughput; larger batches gave no more and raised memory).
const BATCH: usize = 16_384;

/// Unwritten operations past which apply waits for the writer.
const MAX_BACKLOG: u64 = 32_768;

/// Unwritten output bytes past which apply waits for the writer. Held in
/// memory until written, so it counts in the RSS under a burst of large output
/// (measured with 10,000 × 1 MiB: 64 MiB left `archon dev` at 197 MiB, 24 MiB at
/// 171 MiB, at the same output rate).
const MAX_BACKLOG_BYTES: u64 = 24 << 20;

/// How long a wake-up lets a small batch gather before writing it: one
/// transaction per few milliseconds instead of one per applied entry (measured on
/// `archon dev`, one job per call from 8 clients: the manager's CPU per job fell
/// 7–19 %). Readers meanwhile find the records in the outbox.
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// Unwritten operations, or output bytes, at which the writer stops lingering.
const LINGER_OPS: u64 = 4_096;
const LINGER_BYTES: u64 = MAX_BACKLOG_BYTES / 4;

struct Shared {
    /// The file, until the last handle goes; locked while a batch is written.
    db: Mutex<Option<Arc<HistoryDb>>>,
    state: Arc<RwLock<ClusterState>>,
    /// Operations handed over so far, and output bytes among them.
    handed: AtomicU64,
    handed_bytes: AtomicU64,
    /// Operations written (or dropped by an install) so far, and their output bytes.
    written: watch::Sender<(u64, u64)>,
    wake: Notify,
    /// Ends a linger early: someone waits on the writer, or enough gathered.
    hurry: Notify,
    /// Held while a batch is written, and by an install.
    writing: tokio::sync::Mutex<()>,
    /// Why writing failed; the next apply fails with it.
    failed: Mutex<Option<String>>,
    started: AtomicBool,
    /// Set when the last handle went: the writer stops.
    closed: AtomicBool,
    /// Where its transactions run.
    blocking: BlockingWork,
}

/// A handle on the node's history writer. Cheap to clone.
#[derive(Clone)]
pub(super) struct HistoryWriter {
    shared: Arc<Shared>,
    _handles: Arc<Handles>,
}

/// A way to wait for the writer that does not keep it open: what readers hold.
#[derive(Clone)]
pub(super) struct WriterProgress {
    shared: Arc<Shared>,
}

impl WriterProgress {
    /// Waits until what was handed over when called is written, hurrying a
    /// lingering writer; returns at once if the writer failed or stopped, and
    /// after at most `bound` in any case.
    pub(super) async fn caught_up(&self, bound: std::time::Duration) {
        let shared = &self.shared;
        let target = shared.handed.load(Ordering::Acquire);
        let mut written = shared.written.subscribe();
        let wait = async {
            loop {
                if written.borrow_and_update().0 >= target
                    || shared.closed.load(Ordering::Acquire)
                    || lock(&shared.failed).is_some()
                {
                    return;
                }
                shared.wake.notify_one();
                shared.hurry.notify_one();
                if written.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(bound, wait).await;
    }
}

/// Dropped with the last handle: closes the writer.
struct Handles {
    shared: Arc<Shared>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        // Waits out a batch being written, then lets go of the file.
        let db = lock(&self.shared.db).take();
        drop(db);
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        self.shared.hurry.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The output bytes an operation carries (what bounds the backlog's memory).
pub(super) fn output_bytes(op: &HistoryOp) -> u64 {
    match op {
        HistoryOp::Output { data, .. } => data.len() as u64,
        _ => 0,
    }
}

impl HistoryWriter {
    pub(super) fn new(db: Arc<HistoryDb>, state: Arc<RwLock<ClusterState>>) -> HistoryWriter {
        let shared = Arc::new(Shared {
            blocking: db.blocking,
            db: Mutex::new(Some(db)),
            state,
            handed: AtomicU64::new(0),
            handed_bytes: AtomicU64::new(0),
            written: watch::channel((0, 0)).0,
            wake: Notify::new(),
            hurry: Notify::new(),
            writing: tokio::sync::Mutex::new(()),
            failed: Mutex::new(None),
            started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        HistoryWriter { _handles: Arc::new(Handles { shared: Arc::clone(&shared) }), shared }
    }

    /// Counts `ops` more operations (with `bytes` of output) handed over by an
    /// apply and wakes the writer (started on first use, inside the runtime).
    pub(super) fn handed(&self, ops: u64, bytes: u64) {
        if ops == 0 {
            return;
        }
        self.shared.handed.fetch_add(ops, Ordering::AcqRel);
        self.shared.handed_bytes.fetch_add(bytes, Ordering::AcqRel);
        if gathered(&self.shared) {
            self.shared.hurry.notify_one();
        }
        if !self.shared.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(self.shared.clone()));
        }
        self.shared.wake.notify_one();
    }

    /// How readers wait for this writer, without keeping it open.
    pub(super) fn progress(&self) -> WriterProgress {
        WriterProgress { shared: Arc::clone(&self.shared) }
    }

    /// How many operations have been handed over so far.
    pub(super) fn handed_so_far(&self) -> u64 {
        self.shared.handed.load(Ordering::Acquire)
    }

    /// Why writing failed, if it did.
    pub(super) fn error(&self) -> Option<String> {
        lock(&self.shared.failed).clone()
    }

    /// Waits until the backlog is within bounds (or writing failed).
    pub(super) async fn backpressure(&self) {
        let mut written = self.shared.written.subscribe();
        loop {
            let (ops, bytes) = *written.borrow_and_update();
            let behind = self.shared.handed.load(Ordering::Acquire).saturating_sub(ops);
            let behind_bytes = self.shared.handed_bytes.load(Ordering::Acquire).saturating_sub(bytes);
            if (behind <= MAX_BACKLOG && behind_bytes <= MAX_BACKLOG_BYTES) || self.error().is_some() {
                return;
            }
            if written.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until the first `target` operations handed over are written.
    pub(super) async fn written_at_least(&self, target: u64) -> Result<(), Failure> {
        let mut written = self.shared.written.subscribe();
        loop {
            if written.borrow_and_update().0 >= target {
                return Ok(());
            }
            if let Some(e) = self.error() {
                return Err(Failure::Format(format!("writing the history failed: {e}")));
            }
            self.shared.wake.notify_one();
            self.shared.hurry.notify_one();
            if written.changed().await.is_err() {
                return Err(Failure::Format("the history writer stopped".into()));
            }
        }
    }

    /// Stops the writer until the returned guard goes, for an install that
    /// replaces the state and its history.
    pub(super) async fn pause(&self) -> Paused<'_> {
        Paused { _writing: self.shared.writing.lock().await, shared: &self.shared }
    }
}

/// The writer, stopped (see [`HistoryWriter::pause`]).
pub(super) struct Paused<'a> {
    _writing: tokio::sync::MutexGuard<'a, ()>,
    shared: &'a Shared,
}

impl Paused<'_> {
    /// What the state has pending now: (operations, output bytes).
    pub(super) fn pending(&self) -> Result<(u64, u64), Failure> {
        let state = self.shared.state.read().map_err(|_| Failure::Poisoned)?;
        let pending = state.pending_history();
        Ok((pending.len() as u64, pending.iter().map(output_bytes).sum::<u64>()))
    }

    /// Counts `pending` (from [`Paused::pending`], before the state was
    /// replaced) as done: the state holding them is gone, with them.
    pub(super) fn dropped(self, pending: (u64, u64)) {
        self.shared.written.send_modify(|(ops, out)| {
            *ops += pending.0;
            *out += pending.1;
        });
    }
}

/// How often the writer retries a compaction that found a reader open.
const COMPACT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The writer's loop: on each wake, writes everything pending, a batch at a
/// time; once removals were written and nothing is pending, compacts the file
/// if that is worth it (see [`HistoryDb::compact_if_worthwhile`]).
async fn run(shared: Arc<Shared>) {
    let mut compact_due = false;
    loop {
        if compact_due {
            let _ = tokio::time::timeout(COMPACT_RETRY, shared.wake.notified()).await;
        } else {
            shared.wake.notified().await;
        }
        linger(&shared).await;
        loop {
            if shared.closed.load(Ordering::Acquire) {
                return;
            }
            let _writing = shared.writing.lock().await;
            let ops: Vec<HistoryOp> = match shared.state.read() {
                Ok(state) => state.pending_history().iter().take(BATCH).cloned().collect(),
                Err(_) => return fail(&shared, "the shared state lock is poisoned".into()),
            };
            if ops.is_empty() {
                if compact_due {
                    compact_due = match compact(&shared).await {
                        Ok(done) => !done,
                        Err(e) => return fail(&shared, e),
                    };
                }
                break;
            }
            compact_due |= ops.iter().any(|op| matches!(op, HistoryOp::Remove { .. }));
            let (count, bytes) = (ops.len(), ops.iter().map(output_bytes).sum::<u64>());
            let on = Arc::clone(&shared);
            let written = blocking(shared.blocking, move || {
                let db = lock(&on.db);
                let Some(db) = db.as_ref() else {
                    return Ok(false);
                };
                db.write(false, |txn| history::write(txn, &ops))?;
                Ok(true)
            })
            .await;
            match written {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return fail(&shared, e.to_string()),
            }
            match shared.state.write() {
                Ok(mut state) => state.drop_history(count),
                Err(_) => return fail(&shared, "the shared state lock is poisoned".into()),
            }
            shared.written.send_modify(|(ops, out)| {
                *ops += count as u64;
                *out += bytes;
            });
        }
    }
}

/// Lets a small batch gather (see [`LINGER`]) unless enough is pending already
/// or someone waits on the writer.
async fn linger(shared: &Shared) {
    if gathered(shared) || shared.closed.load(Ordering::Acquire) {
        return;
    }
    let _ = tokio::time::timeout(LINGER, shared.hurry.notified()).await;
}

/// Whether enough is unwritten to write it without lingering.
fn gathered(shared: &Shared) -> bool {
    let (ops, bytes) = *shared.written.borrow();
    shared.handed.load(Ordering::Acquire).saturating_sub(ops) >= LINGER_OPS
        || shared.handed_bytes.load(Ordering::Acquire).saturating_sub(bytes) >= LINGER_BYTES
}

/// Retention freed space: gives it back to the disk when it is much. True
/// unless a reader was in the way (then the writer tries again shortly).
async fn compact(shared: &Arc<Shared>) -> Result<bool, String> {
    let on = Arc::clone(shared);
    blocking(shared.blocking, move || {
        let db = lock(&on.db);
        match db.as_ref() {
            Some(db) => Ok(db.compact_if_worthwhile()? != Compaction::Busy),
            None => Ok(true),
        }
    })
    .await
    .map_err(|e| e.to_string())
}

fn fail(shared: &Shared, why: String) {
    tracing::error!(error = %why, "cannot write the history; the next apply fails");
    *lock(&shared.failed) = Some(why);
    // Wake whoever waits on progress: they see the failure.
    shared.written.send_modify(|_| {});
}
