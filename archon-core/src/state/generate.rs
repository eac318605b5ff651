//! Random command sequences for property tests: abstract [`Step`]s (a
//! proptest [`step`] strategy) turned into concrete commands against the
//! evolving state by [`to_command`], so most commands meet a real target (an
//! existing run, the current attempt) and some deliberately do not (stale
//! attempts, unknown ids). The state machine's own property tests use it, and so
//! can a store's (feature `testkit`, as `archon_core::testkit::commands`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::{ClusterState, Command};
use crate::model::{
    AttemptId, AttemptResult, ExitStatus, JobId, JobSpec, Resources, RetryPolicy, RunId, Task, Timestamp, WorkerId,
};

/// An abstract step; indices are mapped onto ids that may or may not exist.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Step {
    Register { name: u8, cpu: u64, mem: u64, running: Vec<u8> },
    Lost(u8),
    Left(u8),
    Drain(u8, bool),
    Submit { cpu: u64, mem: u64, retries: u32, priority: i32, dep: Option<u8> },
    Assign { run: u8, worker: u8 },
    Start { run: u8, stale: Option<u8> },
    Finish { run: u8, stale: Option<u8>, status: u8 },
    CancelRun(u8),
    CancelJob(u8),
}

/// A random step, weighted towards submits, assignments and reports.
pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..4u8, prop::sample::select(vec![500u64, 1000, 2000]), prop::sample::select(vec![256u64, 1024]), prop::collection::vec(0..40u8, 0..3))
            .prop_map(|(name, cpu, mem, running)| Step::Register { name, cpu, mem, running }),
        1 => (0..5u8).prop_map(Step::Lost),
        1 => (0..5u8).prop_map(Step::Left),
        1 => (0..5u8, any::<bool>()).prop_map(|(w, d)| Step::Drain(w, d)),
        4 => (prop::sample::select(vec![0u64, 100, 400, 900, 3000]), prop::sample::select(vec![0u64, 64, 512, 4096]), 0..3u32, -2..3i32, prop::option::weighted(0.2, 0..20u8))
            .prop_map(|(cpu, mem, retries, priority, dep)| Step::Submit { cpu, mem, retries, priority, dep }),
        6 => (0..30u8, 0..5u8).prop_map(|(run, worker)| Step::Assign { run, worker }),
        4 => (0..30u8, prop::option::weighted(0.2, 0..40u8)).prop_map(|(run, stale)| Step::Start { run, stale }),
        5 => (0..30u8, prop::option::weighted(0.2, 0..40u8), 0..6u8).prop_map(|(run, stale, status)| Step::Finish { run, stale, status }),
        1 => (0..30u8).prop_map(Step::CancelRun),
        1 => (0..20u8).prop_map(Step::CancelJob),
    ]
}

/// Turns abstract steps into concrete commands against the evolving state.
pub fn to_command(state: &ClusterState, step: &Step, at: Timestamp) -> Command {
    // Runs and jobs are picked among existing ones (plus one unknown id) so most
    // commands meet a real target; stale attempts and unknown workers stay random.
    let run_id = |i: u8| RunId(u64::from(i) % (state.next_run + 1) + 1);
    match step {
        Step::Register { name, cpu, mem, running } => Command::RegisterWorker {
            at,
            name: format!("w{name}"),
            address: String::new(),
            labels: BTreeMap::new(),
            capacity: Resources { cpu_millis: *cpu, memory_bytes: *mem, ..Resources::default() },
            capabilities: BTreeSet::from(["shell".to_owned()]),
            running: running.iter().map(|a| AttemptId(u64::from(*a) + 1)).collect(),
        },
        Step::Lost(w) => Command::WorkerLost { at, worker: WorkerId(u64::from(*w) + 1) },
        Step::Left(w) => Command::WorkerLeft { at, worker: WorkerId(u64::from(*w) + 1) },
        Step::Drain(w, d) => Command::SetDraining { at, worker: WorkerId(u64::from(*w) + 1), draining: *d },
        Step::Submit { cpu, mem, retries, priority, dep } => {
            let mut spec = JobSpec::new("p", Task::Shell { command: "true".into() });
            spec.resources = Resources { cpu_millis: *cpu, memory_bytes: *mem, ..Resources::default() };
            spec.priority = *priority;
            spec.retry = RetryPolicy {
                max_retries: *retries,
                backoff_base: Duration::from_millis(10),
                backoff_max: Duration::from_millis(40),
                jitter: true,
            };
            spec.depends_on = dep.iter().map(|d| JobId(u64::from(*d) + 1)).collect();
            Command::SubmitJob { at, spec: Arc::new(spec) }
        }
        Step::Assign { run, worker } => {
            Command::AssignAttempt { at, run: run_id(*run), worker: WorkerId(u64::from(*worker) + 1) }
        }
        Step::Start { run, stale } => {
            let attempt = pick_attempt(state, run_id(*run), *stale);
            Command::StartAttempt { at, run: run_id(*run), attempt }
        }
        Step::Finish { run, stale, status } => {
            let attempt = pick_attempt(state, run_id(*run), *stale);
            let status = match status {
                0 | 1 => ExitStatus::Exited { code: 0 },
                2 => ExitStatus::Exited { code: 3 },
                3 => ExitStatus::TimedOut,
                4 => ExitStatus::Cancelled,
                _ => ExitStatus::Signaled { signal: 9 },
            };
            Command::FinishAttempt { at, run: run_id(*run), attempt, result: AttemptResult::status(status) }
        }
        Step::CancelRun(r) => Command::CancelRun { at, run: run_id(*r) },
        Step::CancelJob(j) => Command::CancelJob { at, job: JobId(u64::from(*j) % (state.next_job + 1) + 1) },
    }
}

/// The run's current attempt, or (when `stale` is set) an arbitrary attempt id.
fn pick_attempt(state: &ClusterState, run: RunId, stale: Option<u8>) -> AttemptId {
    match stale {
        None => state.run(run).and_then(|r| r.current_attempt).unwrap_or(AttemptId(1)),
        Some(i) => AttemptId(u64::from(i) + 1),
    }
}
