//! The client face of a manager: submit, inspect, cancel, wait, follow output,
//! cluster status. The [`crate::manager::Manager`] implements [`Api`] in process;
//! archon-net's gRPC client implements it over the wire, so the CLI and embedders
//! hold an `Arc<dyn Api>` either way.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::{
    Attempt, ExitStatus, Job, JobId, JobSpec, OutputChunk, OverlapPolicy, Run, RunId, RunState, ScheduleState,
    TaskKind, Timestamp, Worker, WorkerId, Workflow, WorkflowId, WorkflowSpec, WorkflowState,
};
use crate::state::{FireResult, Rejection};

/// What a submit of one spec gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The job.
    pub job: JobId,
    /// Its first run.
    pub run: Option<RunId>,
    /// True when the idempotency key matched an earlier job (nothing new was created).
    pub duplicate: bool,
}

/// One submit result per spec, in order.
pub type SubmitResult = Result<Submitted, Rejection>;

/// A job with its runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDetail {
    /// The job.
    pub job: Job,
    /// Its runs, oldest first (a cron job's newest 100; all of them are listed
    /// by `list_runs` with its id).
    pub runs: Vec<Run>,
    /// A cron job's schedule: where it stands and its next fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleInfo>,
}

/// Where a cron job's schedule stands, as `archon get` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// Its state: cursor, pause, buffered and active fires, counts of fired,
    /// skipped and missed fires with their latest instants.
    pub state: ScheduleState,
    /// Its next fire instants (none while paused or once cancelled).
    pub next: Vec<Timestamp>,
}

/// What an operator does to a cron job's schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ScheduleAction {
    /// Stop firing until resumed; `note` says why.
    Pause {
        /// Why.
        note: Option<String>,
    },
    /// Fire again, from now on (fires that fell in the pause do not run).
    Resume,
    /// One fire now, under the overlap policy.
    Trigger,
    /// The fires of a past range `[from, to]`, oldest first, under `overlap`
    /// (default: the schedule's own policy).
    Backfill {
        /// The first instant of the range.
        from: Timestamp,
        /// The last.
        to: Timestamp,
        /// An overlap policy for these fires.
        overlap: Option<OverlapPolicy>,
    },
}

/// What a workflow submit gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedWorkflow {
    /// The workflow (none for a cron workflow: each fire starts one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowId>,
    /// The job of each node, in the order of the nodes (none for a cron workflow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobId>,
    /// A cron workflow's job: its schedule fires instances of the workflow
    /// (`archon schedule pause` it, `archon cancel` it to stop the fires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<JobId>,
}

/// A workflow with each node's latest run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowDetail {
    /// The workflow.
    pub workflow: Workflow,
    /// How it stands.
    pub state: WorkflowState,
    /// When its last job ended (none while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Each node's latest run, in the order of the nodes (none once removed by
    /// the retention policy).
    pub runs: Vec<Option<Run>>,
}

/// One fire an operator's action made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleFire {
    /// Its instant.
    pub instant: Timestamp,
    /// What it did.
    pub result: FireResult,
}

/// A run with its attempts (and their captured output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The run.
    pub run: Run,
    /// Its job's name.
    pub job_name: String,
    /// Its attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// Why a pending run is not placed yet (the leader's latest placement pass:
    /// capacity, constraints, no workers), when it is waiting for a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
}

impl RunDetail {
    /// The last attempt's exit status, if it ended.
    pub fn exit(&self) -> Option<&ExitStatus> {
        self.attempts.last().and_then(|a| a.result.as_ref()).map(|r| &r.status)
    }

    /// The last attempt's stdout as text (the kept tail), empty if none ended.
    pub fn stdout(&self) -> String {
        self.attempts.last().and_then(|a| a.result.as_ref()).map(|r| r.stdout.text()).unwrap_or_default()
    }
}

/// A line of `archon jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The job.
    pub id: JobId,
    /// Its name.
    pub name: String,
    /// Its task kind.
    pub kind: String,
    /// What it runs, in one line.
    pub task: String,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// How many runs it has.
    pub runs: u32,
    /// Its latest run's state.
    pub last_state: Option<RunState>,
    /// A cron job's next fire (none while paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<Timestamp>,
    /// A cron job whose schedule is paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A line of `archon runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run.
    pub id: RunId,
    /// Its job.
    pub job: JobId,
    /// Its job's name.
    pub job_name: String,
    /// Its state.
    pub state: RunState,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// How many attempts it made.
    pub attempts: u32,
    /// Its last attempt's exit status.
    pub exit: Option<ExitStatus>,
}

/// Paging and filters for listing jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobQuery {
    /// Only jobs whose name contains this.
    pub name: Option<String>,
    /// Only jobs with ids below this (the previous page's `next`); newest first.
    pub before: Option<JobId>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<u32>,
    /// Only jobs whose task is of this kind (a live cron workflow, listed as
    /// `workflow`, is of none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TaskKind>,
    /// Only jobs whose latest run is in this state (a job with no run yet has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RunState>,
}

/// Paging and filters for listing workflows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowQuery {
    /// Only workflows whose name contains this.
    pub name: Option<String>,
    /// Only workflows in this state.
    pub state: Option<WorkflowState>,
    /// Only workflows with ids below this (the previous page's `next`); newest first.
    pub before: Option<WorkflowId>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<u32>,
}

/// A workflow in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowSummary {
    /// The workflow.
    pub id: WorkflowId,
    /// Its name.
    pub name: String,
    /// How it stands.
    pub state: WorkflowState,
    /// How many jobs it has.
    pub nodes: u32,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// When its last job ended (none while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
}

/// Paging and filters for listing runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuery {
    /// Only runs of this job.
    pub job: Option<JobId>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs with ids below this (the previous page's `next`); newest first.
    pub before: Option<RunId>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<u32>,
    /// Only runs created at or after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Only runs created before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

/// The default and largest page sizes.
pub const DEFAULT_PAGE: u32 = 50;
/// The largest page a list returns.
pub const MAX_PAGE: u32 = 1000;

/// A page of results, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T, C> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next: Option<C>,
}

/// What to cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelTarget {
    /// A job: all its unfinished runs.
    Job(JobId),
    /// One run.
    Run(RunId),
    /// A workflow: the unfinished runs of all its jobs.
    Workflow(WorkflowId),
}

/// A manager as `archon status` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerInfo {
    /// Its node id.
    pub id: u64,
    /// Its client address.
    pub address: String,
    /// `leader`, `follower` or `candidate`.
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The last log index it applied.
    pub last_applied: u64,
}

/// The cluster at a glance.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The managers and who leads.
    pub managers: Vec<ManagerInfo>,
    /// Workers by state.
    pub workers: BTreeMap<String, u64>,
    /// How many jobs exist.
    pub jobs: u64,
    /// Runs by state.
    pub runs: BTreeMap<String, u64>,
    /// Runs waiting for a worker.
    pub queued: u64,
}

/// A worker as `archon workers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's record.
    pub worker: Worker,
    /// Whether it has a session with this manager now.
    pub connected: bool,
    /// When the manager last heard from it.
    pub last_seen: Option<Timestamp>,
}

/// A stream of live output; ends when the run ends.
pub type OutputFollow = BoxStream<'static, Result<OutputChunk, Error>>;

/// The client API of a manager.
#[async_trait]
pub trait Api: Send + Sync + 'static {
    /// Submits jobs; one result per spec. Bad specs are rejected one by one and
    /// nothing is stored for them.
    async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<SubmitResult>, Error>;

    /// A job and its runs. Its `secret_env` values are `***`: only the worker
    /// running an attempt gets them.
    async fn get_job(&self, id: JobId) -> Result<JobDetail, Error>;

    /// A run, its attempts and their output.
    async fn get_run(&self, id: RunId) -> Result<RunDetail, Error>;

    /// Jobs, newest first.
    async fn list_jobs(&self, query: JobQuery) -> Result<Page<JobSummary, JobId>, Error>;

    /// Runs, newest first.
    async fn list_runs(&self, query: RunQuery) -> Result<Page<RunSummary, RunId>, Error>;

    /// Cancels a job or a run. Running attempts are killed on their worker.
    async fn cancel(&self, target: CancelTarget) -> Result<(), Error>;

    /// Waits until the run ends and returns it.
    async fn wait(&self, id: RunId) -> Result<RunDetail, Error>;

    /// Follows a run's output live, from what is still buffered; ends with the run.
    async fn follow(&self, id: RunId) -> Result<OutputFollow, Error>;

    /// The cluster at a glance.
    async fn status(&self) -> Result<ClusterStatus, Error>;

    /// All registered workers.
    async fn list_workers(&self) -> Result<Vec<WorkerInfo>, Error>;

    /// Stops (`draining = true`) or resumes new placements on a worker. Running
    /// attempts finish; a draining worker can then leave without losing work.
    async fn set_draining(&self, worker: WorkerId, draining: bool) -> Result<(), Error>;

    /// Pauses, resumes, triggers or backfills a cron job's schedule; the fires
    /// it made (none for a pause or resume).
    async fn schedule(&self, job: JobId, action: ScheduleAction) -> Result<Vec<ScheduleFire>, Error>;

    /// Submits a workflow: every node becomes a job, all or none.
    async fn submit_workflow(&self, spec: WorkflowSpec) -> Result<SubmittedWorkflow, Error>;

    /// A workflow, live or finished, with each node's latest run (secret
    /// values `***`, as in [`Api::get_job`]).
    async fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowDetail, Error>;

    /// Workflows, live and finished, newest first.
    async fn list_workflows(&self, query: WorkflowQuery) -> Result<Page<WorkflowSummary, WorkflowId>, Error>;

    /// Creates an API token; the result holds the token, shown this once.
    async fn create_token(&self, spec: crate::auth::TokenSpec) -> Result<crate::auth::IssuedToken, Error>;

    /// Every API token: ids, names, scopes, expiry — never a secret.
    async fn list_tokens(&self) -> Result<Vec<crate::auth::TokenInfo>, Error>;

    /// Revokes a token: no manager accepts it once the revoke is committed.
    async fn revoke_token(&self, id: crate::auth::TokenId) -> Result<(), Error>;
}
