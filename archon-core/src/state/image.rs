//! Reading a serialized [`ClusterState`] (a snapshot), whichever release wrote it.
//! Archon 0.1's snapshots (format 0) lack the fields added since and keep
//! idempotency keys as bare job ids; what they lack is derived here from what
//! they hold, so the state applies the rest of a 0.1 log exactly as 0.1 did.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{ClusterState, KeyEntry, Outbox, ReadyKey};
use crate::model::{
    Attempt, AttemptId, Job, JobId, Run, RunId, RunState, ScheduleState, Timestamp, Worker, WorkerId, Workflow,
    WorkflowId,
};

/// An idempotency key's value: this release's entry, or 0.1's bare job id.
#[derive(Deserialize)]
#[serde(untagged)]
enum KeyValue {
    Entry(KeyEntry),
    Legacy(JobId),
}

/// The serialized fields of a [`ClusterState`], any release's.
#[derive(Deserialize)]
pub(super) struct StateImage {
    /// Absent in 0.1's snapshots: format 0.
    #[serde(default)]
    format: u32,
    #[serde(default)]
    applied: u64,
    #[serde(default)]
    next_job: u64,
    #[serde(default)]
    next_run: u64,
    #[serde(default)]
    next_attempt: u64,
    #[serde(default)]
    next_worker: u64,
    #[serde(default)]
    finished_runs: u64,
    #[serde(default)]
    ended: BTreeMap<RunState, u64>,
    #[serde(default)]
    run_states: BTreeMap<RunState, u64>,
    #[serde(default)]
    retained: BTreeMap<RunState, u64>,
    #[serde(default)]
    retained_jobs: u64,
    #[serde(default)]
    jobs: BTreeMap<JobId, Job>,
    #[serde(default)]
    runs: BTreeMap<RunId, Run>,
    #[serde(default)]
    attempts: BTreeMap<AttemptId, Attempt>,
    #[serde(default)]
    workers: BTreeMap<WorkerId, Worker>,
    #[serde(default)]
    worker_names: BTreeMap<String, WorkerId>,
    #[serde(default)]
    idempotency: BTreeMap<String, KeyValue>,
    #[serde(default)]
    ready: BTreeSet<ReadyKey>,
    #[serde(default)]
    delayed: BTreeSet<(Timestamp, RunId)>,
    #[serde(default)]
    waiting_on: BTreeMap<JobId, BTreeSet<RunId>>,
    #[serde(default)]
    remaining_deps: BTreeMap<RunId, BTreeSet<JobId>>,
    #[serde(default)]
    output_written: BTreeMap<AttemptId, [u64; 2]>,
    #[serde(default)]
    schedules: BTreeMap<JobId, ScheduleState>,
    #[serde(default)]
    workflows: BTreeMap<WorkflowId, Workflow>,
    #[serde(default)]
    job_workflow: BTreeMap<JobId, WorkflowId>,
    #[serde(default)]
    next_workflow: u64,
    #[serde(default)]
    scheduled_workflows: BTreeMap<JobId, std::sync::Arc<crate::model::WorkflowSpec>>,
    #[serde(default)]
    tokens: BTreeMap<crate::auth::TokenId, crate::auth::TokenRecord>,
}

impl From<StateImage> for ClusterState {
    fn from(image: StateImage) -> ClusterState {
        let legacy = image.format == 0;
        let idempotency = image
            .idempotency
            .into_iter()
            .map(|(key, value)| {
                let entry = match value {
                    KeyValue::Entry(entry) => entry,
                    KeyValue::Legacy(job) => {
                        let known = image.jobs.get(&job);
                        KeyEntry {
                            job,
                            run: known.and_then(|j| j.runs.first().copied()),
                            at: known.map_or(Timestamp(0), |j| j.created_at),
                        }
                    }
                };
                (key, entry)
            })
            .collect();
        let mut state = ClusterState {
            format: image.format,
            applied: image.applied,
            next_job: image.next_job,
            next_run: image.next_run,
            next_attempt: image.next_attempt,
            next_worker: image.next_worker,
            finished_runs: image.finished_runs,
            ended: image.ended,
            run_states: image.run_states,
            retained: image.retained,
            retained_jobs: image.retained_jobs,
            jobs: image.jobs,
            runs: image.runs,
            attempts: image.attempts,
            workers: image.workers,
            worker_names: image.worker_names,
            idempotency,
            ready: image.ready,
            delayed: image.delayed,
            waiting_on: image.waiting_on,
            remaining_deps: image.remaining_deps,
            output_written: image.output_written,
            schedules: image.schedules,
            workflows: image.workflows,
            job_workflow: image.job_workflow,
            next_workflow: image.next_workflow,
            scheduled_workflows: image.scheduled_workflows,
            tokens: image.tokens,
            outbox: Outbox::default(),
        };
        if legacy {
            state.derive_dependencies();
        }
        state
    }
}

impl ClusterState {
    /// 0.1 re-evaluated every dependency when one ended and kept stale entries in
    /// `waiting_on`; this release tracks each waiting run's unfinished ones.
    /// Derives them from the full state 0.1 kept.
    fn derive_dependencies(&mut self) {
        let unfinished = |state: &ClusterState, dep: &JobId| {
            let latest = state.jobs.get(dep).and_then(|j| j.runs.last()).and_then(|r| state.runs.get(r));
            !latest.is_some_and(|r| r.state.is_terminal())
        };
        let mut remaining = BTreeMap::new();
        for run in self.runs.values().filter(|r| r.state == RunState::Waiting) {
            let Some(job) = self.jobs.get(&run.job) else { continue };
            let deps: BTreeSet<JobId> = job.spec.depends_on.iter().filter(|d| unfinished(self, d)).copied().collect();
            remaining.insert(run.id, deps);
        }
        let mut waiting_on: BTreeMap<JobId, BTreeSet<RunId>> = BTreeMap::new();
        for (run, deps) in &remaining {
            for dep in deps {
                waiting_on.entry(*dep).or_default().insert(*run);
            }
        }
        self.remaining_deps = remaining;
        self.waiting_on = waiting_on;
    }
}
