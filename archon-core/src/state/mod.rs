//! The deterministic state machine. [`ClusterState::apply`] is the only way state
//! changes: pure (no clock, no randomness, no I/O), one `apply_<variant>` per
//! [`Command`] variant, and invalid transitions come back as
//! [`Outcome::Rejected`] without touching anything. Replaying the same log on any
//! replica gives an equal state.

mod apply;
mod command;
mod outcome;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "testkit"))]
pub mod generate;

pub use command::Command;
pub use outcome::{Event, Outcome, Rejection};

use crate::model::{Attempt, AttemptId, Job, JobId, Run, RunId, RunState, Timestamp, Worker, WorkerId};

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

/// Everything the cluster knows: jobs, runs, attempts, workers, and the queues
/// derived from them. Equal logs give equal states (`PartialEq`), and the whole
/// thing serializes as a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    applied: u64,
    next_job: u64,
    next_run: u64,
    next_attempt: u64,
    next_worker: u64,
    /// Runs that reached a terminal state.
    finished_runs: u64,
    /// How many runs are in each state (kept by [`transition`], never recounted).
    run_states: BTreeMap<RunState, u64>,
    jobs: BTreeMap<JobId, Job>,
    runs: BTreeMap<RunId, Run>,
    attempts: BTreeMap<AttemptId, Attempt>,
    workers: BTreeMap<WorkerId, Worker>,
    worker_names: BTreeMap<String, WorkerId>,
    idempotency: BTreeMap<String, JobId>,
    /// Pending runs, in placement order.
    ready: BTreeSet<ReadyKey>,
    /// Retrying runs by the instant they become placeable.
    delayed: BTreeSet<(Timestamp, RunId)>,
    /// Waiting runs by the job they wait on.
    waiting_on: BTreeMap<JobId, BTreeSet<RunId>>,
}

impl ClusterState {
    /// An empty cluster.
    pub fn new() -> ClusterState {
        ClusterState::default()
    }

    /// Applies one command. Never panics; a rejected command changes nothing but
    /// the applied counter.
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        self.applied += 1;
        match cmd {
            Command::RegisterWorker { at, name, address, labels, capacity, capabilities, running } => {
                self.apply_register_worker(*at, name, address, labels, capacity, capabilities, running)
            }
            Command::WorkerLost { at, worker } => self.apply_worker_lost(*at, *worker),
            Command::WorkerLeft { at, worker } => self.apply_worker_left(*at, *worker),
            Command::SetDraining { at, worker, draining } => self.apply_set_draining(*at, *worker, *draining),
            Command::SubmitJob { at, spec } => self.apply_submit_job(*at, spec),
            Command::AssignAttempt { at, run, worker } => self.apply_assign_attempt(*at, *run, *worker),
            Command::StartAttempt { at, run, attempt } => self.apply_start_attempt(*at, *run, *attempt),
            Command::FinishAttempt { at, run, attempt, result } => {
                self.apply_finish_attempt(*at, *run, *attempt, result)
            }
            Command::CancelRun { at, run } => self.apply_cancel_run(*at, *run),
            Command::CancelJob { at, job } => self.apply_cancel_job(*at, *job),
        }
    }

    /// How many commands have been applied (rejected ones included).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// How many runs have reached a terminal state.
    pub fn finished_runs(&self) -> u64 {
        self.finished_runs
    }

    /// A job by id.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// A run by id.
    pub fn run(&self, id: RunId) -> Option<&Run> {
        self.runs.get(&id)
    }

    /// An attempt by id.
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

    /// All jobs, by id.
    pub fn jobs(&self) -> &BTreeMap<JobId, Job> {
        &self.jobs
    }

    /// All runs, by id.
    pub fn runs(&self) -> &BTreeMap<RunId, Run> {
        &self.runs
    }

    /// All attempts, by id.
    pub fn attempts(&self) -> &BTreeMap<AttemptId, Attempt> {
        &self.attempts
    }

    /// All workers, by id.
    pub fn workers(&self) -> &BTreeMap<WorkerId, Worker> {
        &self.workers
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

    /// How many runs are in each state (states with none are absent).
    pub fn run_counts(&self) -> &BTreeMap<RunState, u64> {
        &self.run_states
    }
}

/// Moves `run` to state `to`, keeping the per-state counts. Every change of a
/// run's state goes through here.
fn transition(counts: &mut BTreeMap<RunState, u64>, run: &mut crate::model::Run, to: RunState) {
    if let Some(n) = counts.get_mut(&run.state) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&run.state);
        }
    }
    *counts.entry(to).or_insert(0) += 1;
    run.state = to;
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
