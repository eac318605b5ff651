//! The leader's housekeeping: removing what the retention policy chose from the
//! history (runs, jobs, workflows), and forgetting idempotency keys past their window.

use crate::history::HistoryOp;
use crate::model::{JobId, RunId, RunState, Timestamp, WorkflowId};
use crate::state::{ClusterState, Event, Outcome, decrement};

impl ClusterState {
    pub(in crate::state) fn apply_prune(
        &mut self,
        _at: Timestamp,
        runs: &[(RunId, RunState)],
        jobs: &[JobId],
        workflows: &[WorkflowId],
        keys_before: Option<Timestamp>,
    ) -> Outcome {
        // Only what has left the live state is the history's to remove.
        let runs: Vec<(RunId, RunState)> = runs
            .iter()
            .filter(|(id, state)| state.is_terminal() && self.issued_run(*id) && !self.runs.contains_key(id))
            .copied()
            .collect();
        for (_, state) in &runs {
            decrement(&mut self.retained, *state);
        }
        let runs: Vec<RunId> = runs.into_iter().map(|(id, _)| id).collect();
        let jobs: Vec<JobId> =
            jobs.iter().filter(|id| self.issued_job(**id) && !self.jobs.contains_key(id)).copied().collect();
        self.retained_jobs = self.retained_jobs.saturating_sub(jobs.len() as u64);
        let workflows: Vec<WorkflowId> = workflows
            .iter()
            .filter(|id| self.issued_workflow(**id) && !self.workflows.contains_key(id))
            .copied()
            .collect();
        let keys_before_count = self.idempotency.len();
        if let Some(before) = keys_before {
            self.idempotency.retain(|_, entry| entry.at >= before);
        }
        let keys = (keys_before_count - self.idempotency.len()) as u64;
        let event = Event::HistoryPruned { runs: runs.len() as u64, jobs: jobs.len() as u64, keys };
        if !runs.is_empty() || !jobs.is_empty() || !workflows.is_empty() {
            self.outbox.0.push(HistoryOp::Remove { runs, jobs, workflows });
        }
        Outcome::Applied(vec![event])
    }
}
