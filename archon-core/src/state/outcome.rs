//! What applying a command did: the events it caused, or why it was rejected.
//! Rejections are ordinary results (a stale attempt, a finished run), not errors:
//! the state is unchanged and every replica rejects the same way.

use serde::{Deserialize, Serialize};

use crate::model::{
    AttemptId, ExitStatus, JobId, OutputStream, RunId, RunState, SpecError, Timestamp, WorkerId, WorkerState,
    WorkflowId,
};

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The command changed state; these things happened.
    Applied(Vec<Event>),
    /// The command changed nothing.
    Rejected(Rejection),
}

impl Outcome {
    /// The events, empty when rejected.
    pub fn events(&self) -> &[Event] {
        match self {
            Outcome::Applied(events) => events,
            Outcome::Rejected(_) => &[],
        }
    }

    /// The rejection, if any.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Outcome::Applied(_) => None,
            Outcome::Rejected(r) => Some(r),
        }
    }
}

/// Something that happened while applying a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A submit was accepted (or matched an earlier one by idempotency key).
    JobAccepted {
        /// The job.
        job: JobId,
        /// Its first run, for one-off jobs.
        run: Option<RunId>,
        /// True when an earlier job with the same idempotency key was returned.
        duplicate: bool,
    },
    /// A run was created.
    RunCreated {
        /// The run.
        run: RunId,
        /// Its job.
        job: JobId,
        /// Pending or Waiting.
        state: RunState,
    },
    /// A run became placeable again (dependencies met, or its worker was lost).
    RunQueued {
        /// The run.
        run: RunId,
    },
    /// An attempt was placed on a worker.
    AttemptAssigned {
        /// The run.
        run: RunId,
        /// The new attempt.
        attempt: AttemptId,
        /// Where.
        worker: WorkerId,
    },
    /// A worker started an attempt.
    AttemptStarted {
        /// The run.
        run: RunId,
        /// The attempt.
        attempt: AttemptId,
    },
    /// An attempt ended and released its resources.
    AttemptEnded {
        /// The run.
        run: RunId,
        /// The attempt.
        attempt: AttemptId,
        /// Where it ran.
        worker: WorkerId,
        /// How it ended.
        status: ExitStatus,
    },
    /// A failed run will be tried again.
    RunRetrying {
        /// The run.
        run: RunId,
        /// Not placed before this.
        not_before: Timestamp,
    },
    /// A run reached a terminal state.
    RunFinished {
        /// The run.
        run: RunId,
        /// Its job.
        job: JobId,
        /// The terminal state.
        state: RunState,
    },
    /// A cancel must reach the worker running this attempt.
    CancelRequested {
        /// The run.
        run: RunId,
        /// The attempt to kill.
        attempt: AttemptId,
        /// Where it runs.
        worker: WorkerId,
    },
    /// A worker registered; `stale` are attempts it announced that it must kill.
    WorkerRegistered {
        /// The worker.
        worker: WorkerId,
        /// Announced attempts that are no longer theirs to run.
        stale: Vec<AttemptId>,
    },
    /// A worker changed state.
    WorkerStateChanged {
        /// The worker.
        worker: WorkerId,
        /// Its new state.
        state: WorkerState,
    },
    /// A workflow was accepted: its jobs, in the order of its nodes.
    WorkflowAccepted {
        /// The workflow.
        workflow: WorkflowId,
        /// Its jobs.
        jobs: Vec<JobId>,
    },
    /// A workflow was cancelled: its jobs, each now marked cancelled.
    WorkflowCancelled {
        /// The workflow.
        workflow: WorkflowId,
        /// Its jobs still live when it was cancelled.
        jobs: Vec<JobId>,
    },
    /// A cron job's schedule fired at `instant`.
    ScheduleFired {
        /// The cron job.
        job: JobId,
        /// The fire instant.
        instant: Timestamp,
        /// What the fire did.
        result: FireResult,
    },
    /// Housekeeping removed finished runs and jobs from the history and forgot
    /// idempotency keys.
    HistoryPruned {
        /// Runs removed.
        runs: u64,
        /// Jobs removed.
        jobs: u64,
        /// Keys forgotten.
        keys: u64,
    },
}

/// What one fire of a schedule did, by its overlap policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FireResult {
    /// It started this run.
    Started(RunId),
    /// It waits for the running one to end.
    Buffered,
    /// It was skipped.
    Skipped,
}

/// Why a command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "rejection", rename_all = "snake_case")]
pub enum Rejection {
    /// A job spec field is not acceptable.
    #[error("invalid job spec: {0}")]
    InvalidSpec(SpecError),
    /// No such job.
    #[error("no job {0}")]
    UnknownJob(JobId),
    /// No such run.
    #[error("no run {0}")]
    UnknownRun(RunId),
    /// No such worker.
    #[error("no worker {0}")]
    UnknownWorker(WorkerId),
    /// A dependency names a job that does not exist.
    #[error("depends_on: no job {0}")]
    UnknownDependency(JobId),
    /// A dependency has left the live state and the command does not say how it
    /// ended (the leader reads that from the history and proposes again).
    #[error("depends_on: {0} has finished and left the live state; its outcome must come with the submit")]
    DependencyNotLive(JobId),
    /// An output chunk does not continue what is stored for its attempt.
    #[error("output of {attempt} ({stream:?}) at byte {offset} does not follow the {stored} bytes stored")]
    OutputGap {
        /// The attempt.
        attempt: AttemptId,
        /// The stream.
        stream: OutputStream,
        /// Where the chunk starts.
        offset: u64,
        /// How many bytes are stored.
        stored: u64,
    },
    /// No registered worker could ever run the job.
    #[error("unschedulable: {reason}")]
    Unschedulable {
        /// What no worker offers.
        reason: String,
    },
    /// A report from an attempt that is no longer the run's current one.
    #[error("attempt {attempt} of {run} is stale")]
    StaleAttempt {
        /// The run.
        run: RunId,
        /// The stale attempt.
        attempt: AttemptId,
    },
    /// The run is not in a state that allows this.
    #[error("{run} is {state}: cannot {action}")]
    InvalidTransition {
        /// The run.
        run: RunId,
        /// Its state.
        state: RunState,
        /// What was tried.
        action: String,
    },
    /// The worker does not accept this.
    #[error("worker {worker} is {state}")]
    WorkerUnavailable {
        /// The worker.
        worker: WorkerId,
        /// Its state.
        state: WorkerState,
    },
    /// The placement does not fit the worker (resources, constraints, capability).
    #[error("{run} does not fit on {worker}: {reason}")]
    DoesNotFit {
        /// The run.
        run: RunId,
        /// The worker.
        worker: WorkerId,
        /// What is short.
        reason: String,
    },
    /// The job has no schedule to fire, pause or resume (or it ended when the
    /// job was cancelled).
    #[error("{0} has no cron schedule (or it ended when the job was cancelled)")]
    NotScheduled(JobId),
    /// A cron fire at or before the schedule's cursor: that instant was
    /// already handled (say by an earlier leader), so it does not fire again.
    #[error("{job} already fired at or after {instant}")]
    AlreadyFired {
        /// The cron job.
        job: JobId,
        /// The newest instant proposed.
        instant: Timestamp,
    },
    /// No such workflow.
    #[error("{0} not found")]
    UnknownWorkflow(WorkflowId),
    /// A cron fire for a paused schedule (proposed by a leader that had not
    /// applied the pause yet); an operator's trigger or backfill still runs.
    #[error("{0}'s schedule is paused (resume it with `archon schedule resume {0}`)")]
    SchedulePaused(JobId),
    /// A token with this id exists already (ids are random: propose again with another).
    #[error("a token with id {0} exists already")]
    TokenExists(crate::auth::TokenId),
    /// No such token (never created, or revoked already).
    #[error("no token {0} (see `archon token list`)")]
    UnknownToken(crate::auth::TokenId),
    /// The state holds [`MAX_TOKENS`](crate::auth::MAX_TOKENS) tokens already.
    #[error("{0} tokens exist already, the most kept; revoke unused ones first")]
    TooManyTokens(usize),
    /// A worker's announcement is not acceptable.
    #[error("worker {field}: {message}")]
    InvalidWorker {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}
