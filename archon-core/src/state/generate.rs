//! Random command sequences for property tests: abstract [`Step`]s (a
//! proptest [`step`] strategy) turned into concrete commands against the
//! evolving state by [`to_command`], so most commands meet a real target (an
//! existing run, the current attempt) and some deliberately do not (stale
//! attempts, unknown ids). Submits name the finished dependencies' outcomes from
//! the history, as the leader does, and pruning steps pick runs from it. The
//! state machine's own property tests use it, and so can a store's (feature
//! `testkit`, as `archon_core::testkit::commands`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::{ClusterState, Command};
use crate::history::MemHistory;
use crate::model::{
    AttemptId, AttemptResult, ExitStatus, JobId, JobSpec, OutputStream, OutputTail, Resources, RetryPolicy, RunId,
    Task, Timestamp, WorkerId,
};

/// An abstract step; indices are mapped onto ids that may or may not exist.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Step {
    Register {
        name: u8,
        cpu: u64,
        mem: u64,
        running: Vec<u8>,
        queue: u32,
    },
    Lost(u8),
    Left(u8),
    Drain(u8, bool),
    Submit {
        cpu: u64,
        mem: u64,
        retries: u32,
        priority: i32,
        dep: Option<u8>,
        key: Option<u8>,
    },
    Assign {
        run: u8,
        worker: u8,
    },
    Start {
        run: u8,
        stale: Option<u8>,
    },
    Finish {
        run: u8,
        stale: Option<u8>,
        status: u8,
        output: u8,
    },
    Output {
        run: u8,
        stderr: bool,
        len: u16,
        replay: bool,
    },
    CancelRun(u8),
    CancelJob(u8),
    /// Remove up to this many of the oldest finished runs (and their retired jobs)
    /// and the idempotency keys given in the first half of the time so far.
    Prune(u8),
    /// A cron job (every minute) under one of the overlap policies.
    Schedule(u8),
    /// A fire of a job's schedule: from the ticker (`source` 0, at `minutes`
    /// after its cursor, 0 being a repeat), a trigger (1) or a backfill (2).
    Fire {
        job: u8,
        source: u8,
        minutes: u8,
    },
    /// Pause or resume a job's schedule.
    Pause(u8, bool),
    /// A workflow of `nodes` jobs, node i after node i / 2 (a tree), the edge
    /// conditions cycling through success, failure and completion.
    Workflow {
        nodes: u8,
        conditions: u8,
    },
    /// Cancel a workflow.
    CancelWorkflow(u8),
}

/// A random step, weighted towards submits, assignments and reports.
pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..4u8, prop::sample::select(vec![500u64, 1000, 2000]), prop::sample::select(vec![256u64, 1024]), prop::collection::vec(0..40u8, 0..3), prop::sample::select(vec![0u32, 0, 1, 3]))
            .prop_map(|(name, cpu, mem, running, queue)| Step::Register { name, cpu, mem, running, queue }),
        1 => (0..5u8).prop_map(Step::Lost),
        1 => (0..5u8).prop_map(Step::Left),
        1 => (0..5u8, any::<bool>()).prop_map(|(w, d)| Step::Drain(w, d)),
        4 => (prop::sample::select(vec![0u64, 100, 400, 900, 3000]), prop::sample::select(vec![0u64, 64, 512, 4096]), 0..3u32, -2..3i32, prop::option::weighted(0.2, 0..20u8), prop::option::weighted(0.15, 0..4u8))
            .prop_map(|(cpu, mem, retries, priority, dep, key)| Step::Submit { cpu, mem, retries, priority, dep, key }),
        6 => (0..30u8, 0..5u8).prop_map(|(run, worker)| Step::Assign { run, worker }),
        4 => (0..30u8, prop::option::weighted(0.2, 0..40u8)).prop_map(|(run, stale)| Step::Start { run, stale }),
        5 => (0..30u8, prop::option::weighted(0.2, 0..40u8), 0..6u8, 0..5u8).prop_map(|(run, stale, status, output)| Step::Finish { run, stale, status, output }),
        2 => (0..30u8, any::<bool>(), 1..600u16, prop::bool::weighted(0.2)).prop_map(|(run, stderr, len, replay)| Step::Output { run, stderr, len, replay }),
        1 => (0..30u8).prop_map(Step::CancelRun),
        1 => (0..20u8).prop_map(Step::CancelJob),
        1 => (0..3u8).prop_map(Step::Prune),
        1 => (0..5u8).prop_map(Step::Schedule),
        3 => (0..20u8, prop::sample::select(vec![0u8, 0, 0, 1, 2]), 0..4u8).prop_map(|(job, source, minutes)| Step::Fire { job, source, minutes }),
        1 => (0..20u8, any::<bool>()).prop_map(|(job, paused)| Step::Pause(job, paused)),
        1 => (1..6u8, any::<u8>()).prop_map(|(nodes, conditions)| Step::Workflow { nodes, conditions }),
        1 => (0..4u8).prop_map(Step::CancelWorkflow),
    ]
}

/// The output a finish step reports: none, text, binary, a longer text, or both streams.
fn output(kind: u8, attempt: AttemptId) -> (OutputTail, OutputTail) {
    let text = |s: String| OutputTail { data: Bytes::from(s), truncated: 0 };
    match kind {
        1 => (text(format!("ok {attempt}\n")), OutputTail::default()),
        2 => (OutputTail { data: Bytes::from(vec![0xff, 0, attempt.0 as u8]), truncated: 3 }, OutputTail::default()),
        3 => (text("x".repeat(300)), text(format!("warning from {attempt}\n"))),
        _ => (OutputTail::default(), OutputTail::default()),
    }
}

/// Turns abstract steps into concrete commands against the evolving state, with
/// `history` the store's (finished dependencies' outcomes, runs to prune).
pub fn to_command(state: &ClusterState, history: &MemHistory, step: &Step, at: Timestamp) -> Command {
    // Runs and jobs are picked among existing ones (plus one unknown id) so most
    // commands meet a real target; stale attempts and unknown workers stay random.
    let run_id = |i: u8| RunId(u64::from(i) % (state.next_run + 1) + 1);
    match step {
        Step::Register { name, cpu, mem, running, queue } => Command::RegisterWorker {
            at,
            name: format!("w{name}"),
            address: String::new(),
            labels: BTreeMap::new(),
            capacity: Resources { cpu_millis: *cpu, memory_bytes: *mem, ..Resources::default() },
            capabilities: BTreeSet::from(["shell".to_owned()]),
            running: running.iter().map(|a| AttemptId(u64::from(*a) + 1)).collect(),
            queue: *queue,
        },
        Step::Lost(w) => Command::WorkerLost { at, worker: WorkerId(u64::from(*w) + 1) },
        Step::Left(w) => Command::WorkerLeft { at, worker: WorkerId(u64::from(*w) + 1) },
        Step::Drain(w, d) => Command::SetDraining { at, worker: WorkerId(u64::from(*w) + 1), draining: *d },
        Step::Submit { cpu, mem, retries, priority, dep, key } => {
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
            spec.idempotency_key = key.map(|k| format!("key-{k}"));
            let finished_deps = spec
                .depends_on
                .iter()
                .filter(|d| state.job(**d).is_none())
                .filter_map(|d| history.job_record(*d).and_then(|r| r.last_state).map(|s| (*d, s)))
                .collect();
            Command::SubmitJob { at, spec: Arc::new(spec), finished_deps }
        }
        Step::Assign { run, worker } => {
            Command::AssignAttempt { at, run: run_id(*run), worker: WorkerId(u64::from(*worker) + 1) }
        }
        Step::Start { run, stale } => {
            let attempt = pick_attempt(state, run_id(*run), *stale);
            Command::StartAttempt { at, run: run_id(*run), attempt }
        }
        Step::Finish { run, stale, status, output: kind } => {
            let attempt = pick_attempt(state, run_id(*run), *stale);
            let status = match status {
                0 | 1 => ExitStatus::Exited { code: 0 },
                2 => ExitStatus::Exited { code: 3 },
                3 => ExitStatus::TimedOut,
                4 => ExitStatus::Cancelled,
                _ => ExitStatus::Signaled { signal: 9 },
            };
            let (stdout, stderr) = output(*kind, attempt);
            Command::FinishAttempt {
                at,
                run: run_id(*run),
                attempt,
                result: AttemptResult { status, stdout, stderr, usage: None },
            }
        }
        Step::Output { run, stderr, len, replay } => {
            let attempt = pick_attempt(state, run_id(*run), None);
            let stream = if *stderr { OutputStream::Stderr } else { OutputStream::Stdout };
            let written = state.output_written(attempt)[stream.index()];
            // Now and then a chunk sent again (a retried proposal), which changes nothing.
            let offset = if *replay { written.saturating_sub(u64::from(*len)) } else { written };
            let fill = b'a' + (attempt.0 % 26) as u8;
            Command::AttemptOutput {
                at,
                run: run_id(*run),
                attempt,
                stream,
                offset,
                data: Bytes::from(vec![fill; usize::from(*len)]),
            }
        }
        Step::Schedule(policy) => {
            let mut spec = JobSpec::new("cron", Task::Shell { command: "true".into() });
            spec.resources = Resources { cpu_millis: 100, memory_bytes: 64, ..Resources::default() };
            let overlap = crate::model::OverlapPolicy::ALL[usize::from(*policy) % 5];
            spec.schedule =
                Some(Box::new(crate::model::Schedule { overlap, ..crate::model::Schedule::new("* * * * *") }));
            Command::ScheduleJob { at, spec: Arc::new(spec) }
        }
        Step::Fire { job, source, minutes } => {
            let job = JobId(u64::from(*job) % (state.next_job + 1) + 1);
            let cursor = state.schedule(job).map_or(at, |s| s.cursor);
            let instant = Timestamp(cursor.0 + i64::from(*minutes) * 60_000);
            let (source, instants) = match source {
                0 => (crate::model::FireSource::Cron, vec![instant]),
                1 => (crate::model::FireSource::Trigger, vec![at]),
                _ => (crate::model::FireSource::Backfill, (1..=3).map(|m| Timestamp(at.0 - m * 60_000)).collect()),
            };
            Command::FireSchedule { at, job, instants, source, overlap: None, missed: None }
        }
        Step::Pause(j, paused) => Command::PauseSchedule {
            at,
            job: JobId(u64::from(*j) % (state.next_job + 1) + 1),
            paused: *paused,
            note: None,
        },
        Step::Workflow { nodes, conditions } => {
            use crate::model::{Edge, EdgeCondition, WorkflowNode, WorkflowSpec};
            let nodes = (0..*nodes)
                .map(|i| {
                    let mut job = JobSpec::new(format!("n{i}"), Task::Shell { command: "true".into() });
                    job.resources = Resources { cpu_millis: 100, memory_bytes: 64, ..Resources::default() };
                    let when = EdgeCondition::ALL[usize::from(conditions.wrapping_shr(u32::from(i))) % 3];
                    let after = if i == 0 { vec![] } else { vec![Edge { parent: format!("n{}", i / 2), when }] };
                    WorkflowNode { name: format!("n{i}"), job, after }
                })
                .collect();
            Command::SubmitWorkflow { at, spec: Arc::new(WorkflowSpec { name: "wf".into(), nodes, schedule: None }) }
        }
        Step::CancelWorkflow(w) => Command::CancelWorkflow {
            at,
            workflow: crate::model::WorkflowId(u64::from(*w) % (state.next_workflow + 1) + 1),
        },
        Step::CancelRun(r) => Command::CancelRun { at, run: run_id(*r) },
        Step::CancelJob(j) => Command::CancelJob { at, job: JobId(u64::from(*j) % (state.next_job + 1) + 1) },
        Step::Prune(n) => {
            let oldest = history.oldest(usize::from(*n));
            let removing: BTreeSet<RunId> = oldest.iter().map(|e| e.run).collect();
            let mut jobs: Vec<JobId> = oldest
                .iter()
                .map(|e| e.job)
                .filter(|j| state.job(*j).is_none())
                .filter(|j| {
                    history.job_record(*j).is_some_and(|r| {
                        r.job.runs.iter().all(|run| removing.contains(run) || history.run_record(*run).is_none())
                    })
                })
                .collect();
            jobs.sort_unstable();
            jobs.dedup();
            let keys_before = Some(Timestamp(at.0 / 2 + 500_000));
            let runs = oldest.into_iter().map(|e| (e.run, e.state)).collect();
            let workflows = history.oldest_workflows(usize::from(*n) / 4);
            Command::Prune { at, runs, jobs, workflows, keys_before }
        }
    }
}

/// The run's current attempt, or (when `stale` is set) an arbitrary attempt id.
fn pick_attempt(state: &ClusterState, run: RunId, stale: Option<u8>) -> AttemptId {
    match stale {
        None => state.run(run).and_then(|r| r.current_attempt).unwrap_or(AttemptId(1)),
        Some(i) => AttemptId(u64::from(i) + 1),
    }
}
