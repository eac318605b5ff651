//! Workflows: submitting one (every node becomes a job, all or none, a node
//! waiting on its parents), how a parent's end settles a child through the
//! condition of their edge, and cancelling a workflow.
//!
//! A workflow with a schedule is a cron job of its own ([`WORKFLOW_TASK`]):
//! it has no runs; each fire starts an instance — a new workflow with new
//! jobs — and the schedule's overlap policy treats an instance's unfinished
//! runs as its running ones (`skip` skips a fire while an instance runs,
//! `cancel_other` cancels the instance, and so on).

use std::sync::Arc;

use crate::history::HistoryOp;
use crate::model::{
    EdgeCondition, Job, JobId, JobSpec, Run, RunId, RunState, ScheduleState, SpecError, Task, Timestamp, WORKFLOW_TASK,
    Workflow, WorkflowId, WorkflowRecord, WorkflowSpec,
};
use crate::state::{ClusterState, Event, Outcome, ReadyKey, Rejection, transition};

impl ClusterState {
    pub(in crate::state) fn apply_submit_workflow(&mut self, at: Timestamp, spec: &Arc<WorkflowSpec>) -> Outcome {
        // The node limit is the leader's to check; here, the shape.
        if let Err(e) = spec.validate(usize::MAX) {
            return Outcome::Rejected(Rejection::InvalidSpec(e));
        }
        for (i, node) in spec.nodes.iter().enumerate() {
            if node.job.idempotency_key.is_some() {
                return Outcome::Rejected(Rejection::InvalidSpec(SpecError::new(
                    format!("nodes[{i}].idempotency_key"),
                    "a workflow's jobs take no idempotency key of their own",
                )));
            }
            if let Err(reason) = self.check_schedulable(&node.job) {
                return Outcome::Rejected(Rejection::Unschedulable { reason: format!("{}: {reason}", node.name) });
            }
        }
        if let Some(schedule) = &spec.schedule {
            // A cron workflow: a cron job whose fires start instances.
            let mut holder = JobSpec::new(
                spec.name.clone(),
                Task::Function { name: WORKFLOW_TASK.into(), input: format!("{}", spec.nodes.len()) },
            );
            holder.schedule = Some(schedule.clone());
            holder.resources = Default::default();
            self.next_job += 1;
            let job = JobId(self.next_job);
            self.jobs.insert(
                job,
                Job { id: job, spec: Arc::new(holder), created_at: at, runs: Vec::new(), cancelled: false },
            );
            self.schedules.insert(job, ScheduleState { cursor: at, ..ScheduleState::default() });
            self.scheduled_workflows.insert(job, spec.clone());
            return Outcome::Applied(vec![Event::JobAccepted { job, run: None, duplicate: false }]);
        }
        let mut events = Vec::new();
        self.start_instance(at, spec, None, &mut events);
        Outcome::Applied(events)
    }

    /// Creates a workflow's jobs and runs (parents first, roots queued);
    /// `fired` is the cron job and instant of a cron workflow's fire. Returns
    /// the new workflow's runs, in the order of its nodes.
    pub(in crate::state) fn start_instance(
        &mut self,
        at: Timestamp,
        spec: &Arc<WorkflowSpec>,
        fired: Option<(JobId, Timestamp)>,
        events: &mut Vec<Event>,
    ) -> Vec<RunId> {
        let order = spec.validate(usize::MAX).unwrap_or_default();
        self.next_workflow += 1;
        let id = WorkflowId(self.next_workflow);
        let jobs: Vec<JobId> = spec
            .nodes
            .iter()
            .map(|_| {
                self.next_job += 1;
                JobId(self.next_job)
            })
            .collect();
        let index: std::collections::HashMap<&str, usize> =
            spec.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        events.push(Event::WorkflowAccepted { workflow: id, jobs: jobs.clone() });
        let mut runs = vec![RunId(0); spec.nodes.len()];
        // Parents first, so a child's parents exist (and are unfinished) when it is made.
        for i in order {
            let node = &spec.nodes[i];
            let parents: Vec<JobId> =
                node.after.iter().filter_map(|e| index.get(e.parent.as_str())).map(|p| jobs[*p]).collect();
            let mut job_spec = node.job.clone();
            job_spec.depends_on = parents.clone();
            let job_id = jobs[i];
            self.next_run += 1;
            let run_id = RunId(self.next_run);
            runs[i] = run_id;
            let priority = job_spec.priority;
            self.jobs.insert(
                job_id,
                Job { id: job_id, spec: Arc::new(job_spec), created_at: at, runs: vec![run_id], cancelled: false },
            );
            self.job_workflow.insert(job_id, id);
            let mut run = Run { scheduled_for: fired.map(|(_, instant)| instant), ..Run::waiting(run_id, job_id, at) };
            *self.run_states.entry(RunState::Waiting).or_insert(0) += 1;
            if parents.is_empty() {
                transition(&mut self.run_states, &mut run, RunState::Pending);
                self.ready.insert(ReadyKey::new(priority, run_id));
            } else {
                for p in &parents {
                    self.waiting_on.entry(*p).or_default().insert(run_id);
                }
                self.remaining_deps.insert(run_id, parents.into_iter().collect());
            }
            events.push(Event::RunCreated { run: run_id, job: job_id, state: run.state });
            self.runs.insert(run_id, run);
        }
        self.workflows.insert(
            id,
            Workflow {
                id,
                spec: spec.clone(),
                created_at: at,
                jobs,
                cancelled: false,
                fired_by: fired.map(|(job, _)| job),
                failed: false,
            },
        );
        runs
    }

    /// The cron job that started the workflow `job` belongs to, if any.
    pub(in crate::state) fn fired_by(&self, job: JobId) -> Option<JobId> {
        self.workflows.get(self.job_workflow.get(&job)?)?.fired_by
    }

    pub(in crate::state) fn apply_cancel_workflow(&mut self, at: Timestamp, id: WorkflowId) -> Outcome {
        let Some(workflow) = self.workflows.get_mut(&id) else {
            return Outcome::Rejected(Rejection::UnknownWorkflow(id));
        };
        workflow.cancelled = true;
        let order = workflow.spec.validate(usize::MAX).unwrap_or_default();
        let jobs: Vec<JobId> = order.iter().rev().map(|i| workflow.jobs[*i]).collect();
        // Children first: a waiting child ends cancelled, not upstream-failed.
        let live: Vec<JobId> = jobs.iter().copied().filter(|j| self.jobs.contains_key(j)).collect();
        let mut events = vec![Event::WorkflowCancelled { workflow: id, jobs: live }];
        for job in jobs {
            if let Outcome::Applied(more) = self.apply_cancel_job(at, job) {
                events.extend(more);
            }
        }
        Outcome::Applied(events)
    }

    /// The condition of the workflow edge from `parent` to `child`, if both are
    /// jobs of one workflow.
    pub(in crate::state) fn edge_condition(&self, parent: JobId, child: JobId) -> Option<EdgeCondition> {
        let wf = self.job_workflow.get(&child)?;
        if self.job_workflow.get(&parent) != Some(wf) {
            return None;
        }
        self.workflows.get(wf)?.condition(parent, child)
    }

    /// A retired job leaves its workflow (`last`: how and when its last run
    /// ended); the workflow leaves the live state for the history with its last
    /// job.
    pub(in crate::state) fn leave_workflow(&mut self, job: JobId, last: Option<(RunState, Timestamp)>) {
        let Some(id) = self.job_workflow.remove(&job) else { return };
        let Some(workflow) = self.workflows.get_mut(&id) else { return };
        if last.is_some_and(|(state, _)| matches!(state, RunState::Failed | RunState::TimedOut)) {
            workflow.failed = true;
        }
        if workflow.jobs.iter().any(|j| self.jobs.contains_key(j)) {
            return;
        }
        if let Some(workflow) = self.workflows.remove(&id) {
            let finished_at = last.map_or(workflow.created_at, |(_, at)| at);
            self.outbox.0.push(HistoryOp::Workflow(Arc::new(WorkflowRecord { workflow, finished_at })));
        }
    }
}
