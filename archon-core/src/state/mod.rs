//! The deterministic state machine. [`ClusterState::apply`] is the only way state
//! changes: pure (no clock, no randomness, no I/O), one `apply_<variant>` per
//! [`Command`] variant, and invalid transitions come back as
//! [`Outcome::Rejected`] without touching anything. Replaying the same log on any
//! replica gives an equal state.
//!
//! The state is the **live** state only (see [`crate::history`]): a run that ends
//! leaves it, its record handed to the store's history through the outbox
//! ([`ClusterState::take_history`]); a one-off job leaves with its run. Output
//! bytes pass straight through to the outbox. Counters of what the history holds
//! (by run state) stay here, so status needs no history read.
//!
//! A state written by Archon 0.1 (format 0, [`ClusterState::is_legacy`]) kept
//! everything; it still applies that release's commands exactly as 0.1 did, with
//! nothing leaving memory, until [`ClusterState::upgrade`] — which stores call
//! before the first log entry of the current format — hands every finished run
//! to the history at once.

mod apply;
mod command;
mod image;
mod outcome;
mod retire;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "testkit"))]
pub mod generate;

pub use command::{COMMAND_FORMAT, Command};
pub use outcome::{Event, FireResult, Outcome, Rejection};

use crate::history::HistoryOp;
use crate::model::{
    Attempt, AttemptId, Job, JobId, Run, RunId, RunState, ScheduleState, Timestamp, Worker, WorkerId, Workflow,
    WorkflowId,
};

/// The state format this build writes: 1, the live state only.
pub const FORMAT: u32 = 1;

/// Ordering key of the ready queue: higher priority first, then oldest run first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct ReadyKey {
    neg_priority: i64,
    run: RunId,
}

impl ReadyKey {
    fn new(priority: i32, run: RunId) -> ReadyKey {
        ReadyKey { neg_priority: -i64::from(priority), run }
    }
}

/// An idempotency key's submit: the job it created, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct KeyEntry {
    job: JobId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<RunId>,
    at: Timestamp,
}

/// History handed over by `apply` that the store has not taken yet. Not part of
/// the state proper: it is never serialized and two states compare equal
/// whatever their outboxes hold.
#[derive(Debug, Clone, Default)]
struct Outbox(Vec<HistoryOp>);

impl PartialEq for Outbox {
    fn eq(&self, _: &Outbox) -> bool {
        true
    }
}

impl Eq for Outbox {}

/// Everything scheduling needs: workers, the jobs that can still produce runs,
/// runs that are not terminal and their attempts, the queues derived from them,
/// idempotency keys in their window, and counts of what the history holds. Equal
/// logs give equal states (`PartialEq`), and the whole thing serializes as a
/// snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "image::StateImage")]
pub struct ClusterState {
    /// 0: Archon 0.1's (nothing leaves memory); [`FORMAT`]: the live state only.
    format: u32,
    applied: u64,
    next_job: u64,
    next_run: u64,
    next_attempt: u64,
    next_worker: u64,
    /// Runs that reached a terminal state.
    finished_runs: u64,
    /// Runs that reached each terminal state, ever (never decreases: the
    /// dashboard's rates are differences of these).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    ended: BTreeMap<RunState, u64>,
    /// How many live runs are in each state (kept by [`transition`], never recounted).
    run_states: BTreeMap<RunState, u64>,
    /// How many finished runs the history holds, by state.
    retained: BTreeMap<RunState, u64>,
    /// How many retired jobs the history holds.
    retained_jobs: u64,
    jobs: BTreeMap<JobId, Job>,
    runs: BTreeMap<RunId, Run>,
    attempts: BTreeMap<AttemptId, Attempt>,
    workers: BTreeMap<WorkerId, Worker>,
    worker_names: BTreeMap<String, WorkerId>,
    idempotency: BTreeMap<String, KeyEntry>,
    /// Pending runs, in placement order.
    ready: BTreeSet<ReadyKey>,
    /// Retrying runs by the instant they become placeable.
    delayed: BTreeSet<(Timestamp, RunId)>,
    /// Waiting runs by the unfinished job they wait on.
    waiting_on: BTreeMap<JobId, BTreeSet<RunId>>,
    /// Each waiting run's unfinished dependencies.
    remaining_deps: BTreeMap<RunId, BTreeSet<JobId>>,
    /// Output bytes stored so far per live attempt (stdout, stderr).
    output_written: BTreeMap<AttemptId, [u64; 2]>,
    /// Cron schedules, by the job they fire, and where each stands.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    schedules: BTreeMap<JobId, ScheduleState>,
    /// Workflows with a live job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    workflows: BTreeMap<WorkflowId, Workflow>,
    /// The workflow of each live job that belongs to one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    job_workflow: BTreeMap<JobId, WorkflowId>,
    #[serde(default)]
    next_workflow: u64,
    /// Cron workflows: the definition each fire of the cron job starts an
    /// instance of, by that job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    scheduled_workflows: BTreeMap<JobId, std::sync::Arc<crate::model::WorkflowSpec>>,
    /// API tokens, by id (digests only; see [`crate::auth`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tokens: BTreeMap<crate::auth::TokenId, crate::auth::TokenRecord>,
    #[serde(skip)]
    outbox: Outbox,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            format: FORMAT,
            applied: 0,
            next_job: 0,
            next_run: 0,
            next_attempt: 0,
            next_worker: 0,
            finished_runs: 0,
            ended: BTreeMap::new(),
            run_states: BTreeMap::new(),
            retained: BTreeMap::new(),
            retained_jobs: 0,
            jobs: BTreeMap::new(),
            runs: BTreeMap::new(),
            attempts: BTreeMap::new(),
            workers: BTreeMap::new(),
            worker_names: BTreeMap::new(),
            idempotency: BTreeMap::new(),
            ready: BTreeSet::new(),
            delayed: BTreeSet::new(),
            waiting_on: BTreeMap::new(),
            remaining_deps: BTreeMap::new(),
            output_written: BTreeMap::new(),
            schedules: BTreeMap::new(),
            workflows: BTreeMap::new(),
            job_workflow: BTreeMap::new(),
            next_workflow: 0,
            scheduled_workflows: BTreeMap::new(),
            tokens: BTreeMap::new(),
            outbox: Outbox::default(),
        }
    }
}

impl ClusterState {
    /// An empty cluster.
    pub fn new() -> ClusterState {
        ClusterState::default()
    }

    /// An empty cluster that keeps everything in memory, as Archon 0.1 did: the
    /// reference a property test compares live state plus history against.
    pub fn keeping_everything() -> ClusterState {
        ClusterState { format: 0, ..ClusterState::default() }
    }

    /// Applies one command. Never panics; a rejected command changes nothing but
    /// the applied counter.
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        self.applied += 1;
        match cmd {
            Command::RegisterWorker { at, name, address, labels, capacity, capabilities, running, queue } => {
                self.apply_register_worker(*at, name, address, labels, capacity, capabilities, running, *queue)
            }
            Command::WorkerLost { at, worker } => self.apply_worker_lost(*at, *worker),
            Command::WorkerLeft { at, worker } => self.apply_worker_left(*at, *worker),
            Command::SetDraining { at, worker, draining } => self.apply_set_draining(*at, *worker, *draining),
            Command::SubmitJob { at, spec, finished_deps } => self.apply_submit_job(*at, spec, finished_deps),
            Command::AssignAttempt { at, run, worker } => self.apply_assign_attempt(*at, *run, *worker),
            Command::StartAttempt { at, run, attempt } => self.apply_start_attempt(*at, *run, *attempt),
            Command::FinishAttempt { at, run, attempt, result } => {
                self.apply_finish_attempt(*at, *run, *attempt, result)
            }
            Command::AttemptOutput { at, run, attempt, stream, offset, data } => {
                self.apply_attempt_output(*at, *run, *attempt, *stream, *offset, data)
            }
            Command::Prune { at, runs, jobs, workflows, keys_before } => {
                self.apply_prune(*at, runs, jobs, workflows, *keys_before)
            }
            Command::CancelRun { at, run } => self.apply_cancel_run(*at, *run),
            Command::CancelJob { at, job } => self.apply_cancel_job(*at, *job),
            Command::ScheduleJob { at, spec } => self.apply_schedule_job(*at, spec),
            Command::FireSchedule { at, job, instants, source, overlap, missed } => {
                self.apply_fire_schedule(*at, *job, instants, *source, *overlap, missed.as_ref())
            }
            Command::PauseSchedule { at, job, paused, note } => {
                self.apply_pause_schedule(*at, *job, *paused, note.as_deref())
            }
            Command::SubmitWorkflow { at, spec } => self.apply_submit_workflow(*at, spec),
            Command::CancelWorkflow { at, workflow } => self.apply_cancel_workflow(*at, *workflow),
            Command::CreateToken { at, token } => self.apply_create_token(*at, token),
            Command::RevokeToken { at, token } => self.apply_revoke_token(*at, token),
        }
    }

    /// Whether this state was written by Archon 0.1 and keeps everything in
    /// memory until [`ClusterState::upgrade`].
    pub fn is_legacy(&self) -> bool {
        self.format < FORMAT
    }

    /// The history handed over by `apply` and not taken yet, oldest first.
    pub fn pending_history(&self) -> &[HistoryOp] {
        &self.outbox.0
    }

    /// Takes the history handed over by `apply`; the store writes it.
    pub fn take_history(&mut self) -> Vec<HistoryOp> {
        std::mem::take(&mut self.outbox.0)
    }

    /// Drops the first `n` operations of [`ClusterState::pending_history`], once
    /// the store has written them (it reads them meanwhile, so readers find a run
    /// that left the state either here or in the history).
    pub fn drop_history(&mut self, n: usize) {
        let n = n.min(self.outbox.0.len());
        self.outbox.0.drain(..n);
    }

    /// How many commands have been applied (rejected ones included).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// How many runs have reached a terminal state.
    pub fn finished_runs(&self) -> u64 {
        self.finished_runs
    }

    /// How many runs have reached each terminal state since the cluster began
    /// (states none reached are absent). Unlike [`ClusterState::run_counts`],
    /// these never go down when the history lets runs go.
    pub fn ended_runs(&self) -> &BTreeMap<RunState, u64> {
        &self.ended
    }

    /// A live job by id.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// A live run by id.
    pub fn run(&self, id: RunId) -> Option<&Run> {
        self.runs.get(&id)
    }

    /// An attempt of a live run by id.
    pub fn attempt(&self, id: AttemptId) -> Option<&Attempt> {
        self.attempts.get(&id)
    }

    /// A worker by id.
    pub fn worker(&self, id: WorkerId) -> Option<&Worker> {
        self.workers.get(&id)
    }

    /// A worker by its registered name.
    pub fn worker_by_name(&self, name: &str) -> Option<&Worker> {
        self.worker_names.get(name).and_then(|id| self.workers.get(id))
    }

    /// The live jobs, by id.
    pub fn jobs(&self) -> &BTreeMap<JobId, Job> {
        &self.jobs
    }

    /// The live runs, by id.
    pub fn runs(&self) -> &BTreeMap<RunId, Run> {
        &self.runs
    }

    /// The attempts of live runs, by id.
    pub fn attempts(&self) -> &BTreeMap<AttemptId, Attempt> {
        &self.attempts
    }

    /// The API tokens, by id.
    pub fn tokens(&self) -> &BTreeMap<crate::auth::TokenId, crate::auth::TokenRecord> {
        &self.tokens
    }

    /// Every worker, by id.
    pub fn workers(&self) -> &BTreeMap<WorkerId, Worker> {
        &self.workers
    }

    /// The newest run id handed out (`run-0` before any).
    pub fn last_run_id(&self) -> RunId {
        RunId(self.next_run)
    }

    /// The newest job id handed out (`job-0` before any).
    pub fn last_job_id(&self) -> JobId {
        JobId(self.next_job)
    }

    /// Whether `id` was ever handed out (so a run neither live nor in the history
    /// was removed from it).
    pub fn issued_run(&self, id: RunId) -> bool {
        id.0 >= 1 && id.0 <= self.next_run
    }

    /// Whether `id` was ever handed out.
    pub fn issued_job(&self, id: JobId) -> bool {
        id.0 >= 1 && id.0 <= self.next_job
    }

    /// Runs that may be placed now: pending ones in priority order, then retrying
    /// ones whose delay has passed. At most `limit`.
    pub fn placeable_runs(&self, now: Timestamp, limit: usize) -> Vec<RunId> {
        let mut out: Vec<RunId> = self.ready.iter().take(limit).map(|k| k.run).collect();
        let room = limit.saturating_sub(out.len());
        out.extend(self.delayed.iter().take_while(|(t, _)| *t <= now).take(room).map(|(_, r)| *r));
        out
    }

    /// How many runs are waiting for placement (pending or retrying).
    pub fn queued_len(&self) -> usize {
        self.ready.len() + self.delayed.len()
    }

    /// The earliest instant a retrying run becomes placeable.
    pub fn next_retry_at(&self) -> Option<Timestamp> {
        self.delayed.first().map(|(t, _)| *t)
    }

    /// How many live runs are in each state (states with none are absent).
    pub fn live_run_counts(&self) -> &BTreeMap<RunState, u64> {
        &self.run_states
    }

    /// How many runs exist in each state: live ones and those the history holds.
    pub fn run_counts(&self) -> BTreeMap<RunState, u64> {
        let mut counts = self.run_states.clone();
        for (state, n) in &self.retained {
            *counts.entry(*state).or_insert(0) += n;
        }
        counts
    }

    /// How many jobs exist: live ones and those the history holds.
    pub fn job_count(&self) -> u64 {
        self.jobs.len() as u64 + self.retained_jobs
    }

    /// Output bytes stored so far for a live attempt (stdout, stderr): where the
    /// next chunk of each stream starts.
    pub fn output_written(&self, attempt: AttemptId) -> [u64; 2] {
        self.output_written.get(&attempt).copied().unwrap_or_default()
    }

    /// A cron job's schedule state.
    pub fn schedule(&self, job: JobId) -> Option<&ScheduleState> {
        self.schedules.get(&job)
    }

    /// A workflow with a live job.
    pub fn workflow(&self, id: WorkflowId) -> Option<&Workflow> {
        self.workflows.get(&id)
    }

    /// Workflows with a live job.
    pub fn workflows(&self) -> &BTreeMap<WorkflowId, Workflow> {
        &self.workflows
    }

    /// The workflow a cron job fires, if it fires one.
    pub fn scheduled_workflow(&self, job: JobId) -> Option<&std::sync::Arc<crate::model::WorkflowSpec>> {
        self.scheduled_workflows.get(&job)
    }

    /// The workflow a live job belongs to.
    pub fn workflow_of(&self, job: JobId) -> Option<WorkflowId> {
        self.job_workflow.get(&job).copied()
    }

    /// Whether `id` was ever handed out.
    pub fn issued_workflow(&self, id: WorkflowId) -> bool {
        id.0 >= 1 && id.0 <= self.next_workflow
    }

    /// Every cron schedule, by job.
    pub fn schedules(&self) -> &BTreeMap<JobId, ScheduleState> {
        &self.schedules
    }

    /// The newest command format this state needs a reader to know: what its
    /// snapshot must be labelled with (see [`Command::format`]). Live jobs with
    /// `secret_env` need 3 (one scan of the live jobs, once per snapshot);
    /// finished ones in the history are only read back, redacted, so they need none.
    /// A worker with a queue needs 4.
    pub fn format_needed(&self) -> u32 {
        // A worker with a queue: an older node would not place into it.
        if self.workers.values().any(|w| w.queue > 0 || !w.queued.is_empty()) {
            return 4;
        }
        let secrets = self.jobs.values().any(|j| !j.spec.secret_env.is_empty())
            || self.workflows.values().any(|w| w.spec.has_secrets())
            || self.scheduled_workflows.values().any(|w| w.has_secrets());
        if secrets || !self.tokens.is_empty() {
            3
        } else if self.schedules.is_empty() && self.workflows.is_empty() {
            1
        } else {
            2
        }
    }

    /// How many idempotency keys are remembered, and when the oldest was given.
    pub fn idempotency_keys(&self) -> (usize, Option<Timestamp>) {
        (self.idempotency.len(), self.idempotency.values().map(|e| e.at).min())
    }
}

/// Moves `run` to state `to`, keeping the per-state counts. Every change of a
/// run's state goes through here.
fn transition(counts: &mut BTreeMap<RunState, u64>, run: &mut crate::model::Run, to: RunState) {
    decrement(counts, run.state);
    *counts.entry(to).or_insert(0) += 1;
    run.state = to;
}

/// Takes one from `state`'s count, dropping counts that reach zero.
fn decrement(counts: &mut BTreeMap<RunState, u64>, state: RunState) {
    if let Some(n) = counts.get_mut(&state) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(&state);
        }
    }
}

/// A deterministic pseudo-random number from a seed (splitmix64), used for retry
/// jitter so that every replica computes the same delay.
pub(crate) fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
