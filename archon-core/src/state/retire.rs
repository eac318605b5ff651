//! Leaving the live state: a run that ended goes to the history with its
//! attempts, and a job that can produce no more runs follows it. Also the one-time
//! upgrade of a state written by Archon 0.1, which kept everything.

use std::sync::Arc;

use super::{ClusterState, FORMAT, decrement};
use crate::history::HistoryOp;
use crate::model::{AttemptId, AttemptResult, JobId, JobRecord, OutputStream, RunId, RunRecord, RunState, Timestamp};

impl ClusterState {
    /// Hands a terminal run to the history, and its job once the job can produce
    /// no more runs. Nothing leaves a legacy state.
    pub(super) fn retire_run(&mut self, run_id: RunId) {
        if self.is_legacy() {
            return;
        }
        let Some(run) = self.runs.get(&run_id) else { return };
        if !run.state.is_terminal() {
            return;
        }
        let Some(run) = self.runs.remove(&run_id) else { return };
        decrement(&mut self.run_states, run.state);
        *self.retained.entry(run.state).or_insert(0) += 1;
        let attempts = run
            .attempts
            .iter()
            .filter_map(|a| {
                self.output_written.remove(a);
                self.attempts.remove(a)
            })
            .collect();
        let job = self.jobs.get(&run.job);
        let job_name = job.map(|j| j.spec.name.clone()).unwrap_or_default();
        let finished = run.finished_at.unwrap_or(run.created_at);
        let expires_at = job.and_then(|j| j.spec.retention).map(|r| finished.plus(r));
        let job_id = run.job;
        let state = run.state;
        self.outbox.0.push(HistoryOp::Run(Arc::new(RunRecord { run, job_name, attempts, expires_at })));
        self.retire_job_if_done(job_id, Some((state, finished)));
    }

    /// Hands a job to the history once it can produce no more runs: none of its
    /// runs is live, and it has no schedule left to fire (a cron job retires
    /// once cancelled). Nothing leaves a legacy state.
    /// `last` is how and when its last run ended.
    pub(super) fn retire_job_if_done(&mut self, job_id: JobId, last: Option<(RunState, Timestamp)>) {
        if self.is_legacy() {
            return;
        }
        let done = self.jobs.get(&job_id).is_some_and(|j| {
            (j.cancelled || !self.schedules.contains_key(&job_id)) && j.runs.iter().all(|r| !self.runs.contains_key(r))
        });
        if done && let Some(job) = self.jobs.remove(&job_id) {
            self.schedules.remove(&job_id);
            self.scheduled_workflows.remove(&job_id);
            self.leave_workflow(job_id, last);
            self.retained_jobs += 1;
            let last_state = last.map(|(state, _)| state);
            self.outbox.0.push(HistoryOp::Job(Arc::new(JobRecord { job, last_state })));
        }
    }

    /// Hands a finished attempt's output bytes to the history (after any chunks
    /// already stored for it) and returns the rest of its result, to keep.
    pub(super) fn store_output(&mut self, run: RunId, attempt: AttemptId, result: &AttemptResult) -> AttemptResult {
        let written = self.output_written.remove(&attempt).unwrap_or_default();
        for stream in OutputStream::BOTH {
            let data = &result.tail(stream).data;
            if !data.is_empty() {
                let offset = written[stream.index()];
                self.outbox.0.push(HistoryOp::Output { run, attempt, stream, offset, data: data.clone() });
            }
        }
        result.without_output()
    }

    /// Leaves Archon 0.1's format: every finished attempt's output and every
    /// terminal run (with its job, once it can produce no more) goes to the
    /// history. Stores call this before applying the first log entry written in
    /// the current format; it does nothing on a current state.
    pub fn upgrade(&mut self) {
        if !self.is_legacy() {
            return;
        }
        self.format = FORMAT;
        let finished: Vec<(RunId, AttemptId, AttemptResult)> = self
            .attempts
            .values()
            .filter_map(|a| a.result.as_ref().map(|r| (a.run, a.id, r.clone())))
            .filter(|(_, _, r)| !r.stdout.data.is_empty() || !r.stderr.data.is_empty())
            .collect();
        for (run, attempt, result) in finished {
            let kept = self.store_output(run, attempt, &result);
            if let Some(a) = self.attempts.get_mut(&attempt) {
                a.result = Some(kept);
            }
        }
        let terminal: Vec<RunId> = self.runs.values().filter(|r| r.state.is_terminal()).map(|r| r.id).collect();
        for run in terminal {
            self.retire_run(run);
        }
    }
}
