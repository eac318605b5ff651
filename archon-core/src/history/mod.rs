//! The history: what the live state lets go of. Memory grows with live work only.
//!
//! The in-memory [`ClusterState`](crate::state::ClusterState) holds what
//! scheduling needs: workers, jobs that can still produce runs, runs that are not
//! terminal and their attempts. When a run ends, `apply` moves its record out —
//! deterministically, the same on every replica — as a [`HistoryOp`] in the
//! state's outbox, and the store writes it to where it keeps history: redb tables
//! in each Raft node's `raft.history.redb`, beside its log (archon-raft), SQL rows (archon-store), a bounded map
//! ([`MemHistory`], for `MemStore`). Output bytes never enter the live state: they
//! go from the worker's report through the log straight to the history, by
//! attempt and stream.
//!
//! Reads of finished runs come from the [`History`] a store hands out, by index
//! (id, job, state, time), never by scanning the state under its lock. Removal is
//! a state-machine step too: the leader proposes `Command::Prune` with the ids its
//! retention policy picked, and every replica removes the same records.
//!
//! The one thing to know when implementing [`History`]: every operation must be
//! idempotent. A Raft node replays its log from its last snapshot after a restart
//! while its history may already hold what that replay writes again, so writing a
//! record twice, removing one twice, or writing the same output chunk twice must
//! leave the same history as doing it once.

mod mem;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use mem::MemHistory;

use crate::error::Error;
use crate::model::{
    AttemptId, JobId, JobRecord, OutputStream, RunId, RunRecord, RunState, TaskKind, Timestamp, Workflow, WorkflowId,
    WorkflowRecord, WorkflowState,
};

/// A change the state machine hands to the history as it applies commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryOp {
    /// Bytes of an attempt's kept output, at `offset` within it.
    Output {
        /// The run.
        run: RunId,
        /// The attempt.
        attempt: AttemptId,
        /// Which stream.
        stream: OutputStream,
        /// Where in the stream's kept output the bytes start.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// A run ended and left the live state.
    Run(Arc<RunRecord>),
    /// A job can produce no more runs and left the live state.
    Job(Arc<JobRecord>),
    /// A workflow's last job retired and the workflow left the live state.
    Workflow(Arc<WorkflowRecord>),
    /// The retention policy removes these runs (with their output), jobs and
    /// workflows.
    Remove {
        /// Runs to remove.
        runs: Vec<RunId>,
        /// Jobs to remove.
        jobs: Vec<JobId>,
        /// Workflows to remove.
        workflows: Vec<WorkflowId>,
    },
}

/// Which finished runs a listing wants, newest (highest id) first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs with ids below this.
    pub before: Option<RunId>,
    /// Only runs created at or after this instant.
    pub since: Option<Timestamp>,
    /// Only runs created before this instant.
    pub until: Option<Timestamp>,
}

impl RunFilter {
    /// Whether `record` passes the filter.
    pub fn matches(&self, record: &RunRecord) -> bool {
        self.state.is_none_or(|s| s == record.run.state)
            && self.before.is_none_or(|b| record.id() < b)
            && self.since.is_none_or(|t| record.run.created_at >= t)
            && self.until.is_none_or(|t| record.run.created_at < t)
    }
}

/// Which retired jobs a listing wants, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs whose name contains this.
    pub name: Option<String>,
    /// Only jobs with ids below this.
    pub before: Option<JobId>,
    /// Only jobs whose task is of this kind.
    pub kind: Option<TaskKind>,
    /// Only jobs whose last run ended in this state (a job that never ran has none).
    pub state: Option<RunState>,
}

impl JobFilter {
    /// Whether `record` passes the filter.
    pub fn matches(&self, record: &JobRecord) -> bool {
        self.name.as_deref().is_none_or(|n| record.job.spec.name.contains(n))
            && self.before.is_none_or(|b| record.id() < b)
            && self.kind.is_none_or(|k| record.job.spec.task.kind() == k)
            && self.state.is_none_or(|s| record.last_state == Some(s))
    }
}

/// Which finished workflows a listing wants, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowFilter {
    /// Only workflows whose name contains this.
    pub name: Option<String>,
    /// Only workflows in this state.
    pub state: Option<WorkflowState>,
    /// Only workflows with ids below this.
    pub before: Option<WorkflowId>,
}

impl WorkflowFilter {
    /// Whether `workflow`, in `state`, passes the filter.
    pub fn matches(&self, workflow: &Workflow, state: WorkflowState) -> bool {
        self.name.as_deref().is_none_or(|n| workflow.spec.name.contains(n))
            && self.state.is_none_or(|s| s == state)
            && self.before.is_none_or(|b| workflow.id < b)
    }
}

/// A finished run the retention policy may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expired {
    /// The run.
    pub run: RunId,
    /// Its terminal state (the state machine keeps counts by state).
    pub state: RunState,
    /// Its job.
    pub job: JobId,
}

/// What a history holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Finished runs.
    pub runs: u64,
    /// Retired jobs.
    pub jobs: u64,
    /// Finished workflows.
    pub workflows: u64,
    /// Bytes of output kept.
    pub output_bytes: u64,
    /// Bytes on disk (0 for a history in memory).
    pub disk_bytes: u64,
}

/// Reads of the history a store keeps. Writes come only from applying commands
/// (see the module docs), so this is all a reader needs.
#[async_trait]
pub trait History: Send + Sync + 'static {
    /// The finished runs among `ids`, in the order given; ids it does not hold
    /// are left out.
    async fn runs(&self, ids: &[RunId]) -> Result<Vec<RunRecord>, Error>;

    /// The retired jobs among `ids`, in the order given.
    async fn jobs(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, Error>;

    /// Finished runs passing `filter`, highest id first, at most `limit`. Uses an
    /// index for the state and stops at the `since` bound (run ids grow with
    /// creation time) rather than scanning every record.
    async fn list_runs(&self, filter: &RunFilter, limit: usize) -> Result<Vec<RunRecord>, Error>;

    /// Retired jobs passing `filter`, highest id first, at most `limit`.
    async fn list_jobs(&self, filter: &JobFilter, limit: usize) -> Result<Vec<JobRecord>, Error>;

    /// The finished workflows among `ids`, in the order given.
    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>, Error>;

    /// Finished workflows passing `filter`, highest id first, at most `limit`.
    async fn list_workflows(&self, filter: &WorkflowFilter, limit: usize) -> Result<Vec<WorkflowRecord>, Error>;

    /// Finished workflows that ended before `cutoff`, oldest first, at most
    /// `limit` (the retention policy removes them).
    async fn expired_workflows(&self, cutoff: Timestamp, limit: usize) -> Result<Vec<WorkflowId>, Error>;

    /// The kept output of an attempt: stdout, then stderr (empty when none).
    async fn output(&self, attempt: AttemptId) -> Result<[Bytes; 2], Error>;

    /// Finished runs due for removal at `now`, at most `limit` of them (the
    /// oldest, roughly; the pruner asks again for the rest): those that ended
    /// more than `retention` ago, and those past their own job's shorter
    /// `retention` (`RunRecord::expires_at`).
    async fn expired(&self, now: Timestamp, retention: Duration, limit: usize) -> Result<Vec<Expired>, Error>;

    /// How much it holds.
    async fn stats(&self) -> Result<HistoryStats, Error>;
}

/// One run's record from `history`, if it holds it.
pub async fn run_record(history: &dyn History, id: RunId) -> Result<Option<RunRecord>, Error> {
    Ok(history.runs(&[id]).await?.into_iter().next())
}

/// One workflow's record from `history`, if it holds it.
pub async fn workflow_record(history: &dyn History, id: WorkflowId) -> Result<Option<WorkflowRecord>, Error> {
    Ok(history.workflows(&[id]).await?.into_iter().next())
}

/// One job's record from `history`, if it holds it.
pub async fn job_record(history: &dyn History, id: JobId) -> Result<Option<JobRecord>, Error> {
    Ok(history.jobs(&[id]).await?.into_iter().next())
}

/// Merges two lists sorted by descending key into one, keeping at most `limit`
/// and dropping items of `b` whose key `a` already has.
pub fn merge_newest_first<T, K: Ord + Copy>(a: Vec<T>, b: Vec<T>, key: impl Fn(&T) -> K, limit: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(limit.min(a.len() + b.len()));
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while out.len() < limit {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => {
                let (kx, ky) = (key(x), key(y));
                if kx == ky {
                    b.next();
                    true
                } else {
                    kx > ky
                }
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{JobFilter, merge_newest_first};
    use crate::model::{DockerTask, Job, JobId, JobRecord, JobSpec, RunState, Task, TaskKind, Timestamp};

    fn task(kind: TaskKind) -> Task {
        match kind {
            TaskKind::Shell => Task::Shell { command: "true".into() },
            TaskKind::Script => Task::Script { interpreter: "sh".into(), body: "true".into() },
            TaskKind::Process => Task::Process { argv: vec!["true".into()] },
            TaskKind::Docker => Task::Docker(Box::new(DockerTask {
                image: "busybox".into(),
                command: Vec::new(),
                entrypoint: None,
                network: "none".into(),
                user: None,
                mounts: Vec::new(),
                pull: Default::default(),
            })),
            TaskKind::Function => Task::Function { name: "resize".into(), input: "null".into() },
            TaskKind::Custom => Task::Custom { executor: "http".into(), input: "null".into() },
        }
    }

    fn record(id: u64, name: &str, kind: TaskKind, last_state: Option<RunState>) -> JobRecord {
        let spec = Arc::new(JobSpec::new(name, task(kind)));
        JobRecord {
            job: Job { id: JobId(id), spec, created_at: Timestamp(0), runs: Vec::new(), cancelled: false },
            last_state,
        }
    }

    #[test]
    fn a_job_filter_keeps_the_jobs_of_its_kind_whose_last_run_ended_in_its_state() {
        let states = RunState::ALL.map(Some).into_iter().chain([None]);
        for (kind, last_state) in TaskKind::ALL.into_iter().flat_map(|k| states.clone().map(move |s| (k, s))) {
            let job = record(7, "nightly-report", kind, last_state);
            assert_eq!(task(kind).kind(), kind);
            for want_kind in TaskKind::ALL.map(Some).into_iter().chain([None]) {
                for want_state in RunState::ALL.map(Some).into_iter().chain([None]) {
                    let filter = JobFilter { kind: want_kind, state: want_state, ..JobFilter::default() };
                    let expected =
                        want_kind.is_none_or(|k| k == kind) && want_state.is_none_or(|s| last_state == Some(s));
                    assert_eq!(filter.matches(&job), expected, "{filter:?} on a {kind} job last {last_state:?}");
                }
            }
        }
        // The kind and state narrow the name and page filters, never widen them.
        let job = record(7, "nightly-report", TaskKind::Shell, Some(RunState::Failed));
        let both = JobFilter { kind: Some(TaskKind::Shell), state: Some(RunState::Failed), ..JobFilter::default() };
        assert!(both.matches(&job));
        assert!(!JobFilter { name: Some("hourly".into()), ..both.clone() }.matches(&job));
        assert!(!JobFilter { before: Some(JobId(7)), ..both.clone() }.matches(&job));
        assert!(JobFilter { name: Some("nightly".into()), before: Some(JobId(8)), ..both }.matches(&job));
    }

    #[test]
    fn merging_keeps_order_drops_duplicates_and_stops_at_the_limit() {
        let merged = merge_newest_first(vec![9, 7, 4], vec![8, 7, 3, 1], |x| *x, 10);
        assert_eq!(merged, [9, 8, 7, 4, 3, 1]);
        assert_eq!(merge_newest_first(vec![9, 7, 4], vec![8, 7, 3, 1], |x| *x, 3), [9, 8, 7]);
        assert_eq!(merge_newest_first(Vec::<u8>::new(), vec![2, 1], |x| *x, 5), [2, 1]);
    }
}
