//! Submitting and cancelling workflows. The leader checks what `apply` must
//! not decide (the limits, the size in the log); the state machine checks the
//! shape and creates every job or none.
//!
//! The [`crate::api::Api`] methods call these. A workflow leaves the live
//! state with its last job, for a record in the history that the retention
//! policy removes `history_retention` after it ended.

use std::sync::Arc;

use super::{Manager, queries};
use crate::api::{Page, SubmittedWorkflow, WorkflowDetail, WorkflowQuery, WorkflowSummary};
use crate::error::Error;
use crate::history::{WorkflowFilter, merge_newest_first, workflow_record};
use crate::model::{SpecError, Timestamp, Workflow, WorkflowId, WorkflowSpec, WorkflowState};
use crate::state::{Command, Event, Outcome, Rejection};
use crate::store::StoreExt;

impl Manager {
    /// Submits a workflow: every node becomes a job, all or none; returns the
    /// workflow and its jobs in the order of its nodes. A workflow may have up
    /// to `max_workflow_nodes` nodes, each within the job limits.
    /// A workflow with a schedule becomes a cron job whose fires start
    /// instances of it: the answer names that job and no workflow yet.
    pub async fn submit_workflow(&self, spec: WorkflowSpec) -> Result<SubmittedWorkflow, Error> {
        self.ensure_leader().await?;
        let limits = &self.shared.config.limits;
        let at = self.shared.clock.now();
        let rejected = |e: SpecError| Error::Rejected(Rejection::InvalidSpec(e));
        spec.validate(limits.max_workflow_nodes).map_err(rejected)?;
        if let Some(schedule) = &spec.schedule {
            // Checked by the leader, as for cron jobs (see `Api::submit`).
            crate::cron::validate(schedule, at).map_err(rejected)?;
        }
        for (i, node) in spec.nodes.iter().enumerate() {
            limits
                .check_spec(&node.job)
                .map_err(|e| rejected(SpecError::new(format!("nodes[{i}].{}", e.field), e.message)))?;
        }
        let command = Command::SubmitWorkflow { at, spec: Arc::new(spec) };
        let (size, entry) = (command.size_hint(), self.shared.config.max_batch_bytes);
        if size > entry {
            return Err(rejected(SpecError::new(
                "nodes",
                format!(
                    "the workflow takes about {} in the log, more than one entry holds ({}, max_entry_bytes); split it",
                    crate::model::units::format_bytes(size as u64),
                    crate::model::units::format_bytes(entry as u64)
                ),
            )));
        }
        match self.propose(vec![command]).await?.pop() {
            Some(Outcome::Applied(events)) => events
                .into_iter()
                .find_map(|e| match e {
                    Event::WorkflowAccepted { workflow, jobs } => {
                        Some(SubmittedWorkflow { workflow: Some(workflow), jobs, schedule: None })
                    }
                    Event::JobAccepted { job, .. } => {
                        Some(SubmittedWorkflow { workflow: None, jobs: Vec::new(), schedule: Some(job) })
                    }
                    _ => None,
                })
                .ok_or_else(|| Error::Internal("the workflow was applied without its jobs".into())),
            Some(Outcome::Rejected(r)) => Err(Error::Rejected(r)),
            None => Err(Error::Internal("no outcome for a proposal".into())),
        }
    }

    /// Cancels a workflow's unfinished jobs.
    pub async fn cancel_workflow(&self, id: WorkflowId) -> Result<(), Error> {
        self.ensure_leader().await?;
        let at = self.shared.clock.now();
        match self.propose(vec![Command::CancelWorkflow { at, workflow: id }]).await?.pop() {
            Some(Outcome::Applied(_)) => Ok(()),
            Some(Outcome::Rejected(r)) => Err(Error::Rejected(r)),
            None => Err(Error::Internal("no outcome for a proposal".into())),
        }
    }

    /// A workflow, live or finished, with each node's latest run (from the
    /// live state or the history); its jobs' secret values redacted.
    pub async fn workflow_detail(&self, id: WorkflowId) -> Result<WorkflowDetail, Error> {
        self.ensure_leader().await?;
        let (live, issued) = self.shared.store.query(|s| (s.workflow(id).cloned(), s.issued_workflow(id)));
        let (mut workflow, state, finished_at) = match live {
            Some(w) => (w, WorkflowState::Running, None),
            None => match workflow_record(&*self.shared.history, id).await? {
                Some(record) => {
                    let state = record.state();
                    (record.workflow, state, Some(record.finished_at))
                }
                None => return Err(queries::gone(&self.shared, id.to_string(), issued)),
            },
        };
        let mut runs = Vec::with_capacity(workflow.jobs.len());
        for job in &workflow.jobs {
            let run = match queries::job_detail(&self.shared, *job).await {
                Ok(detail) => detail.runs.into_iter().last(),
                Err(Error::NotFound(_) | Error::Removed { .. }) => None,
                Err(e) => return Err(e),
            };
            runs.push(run);
        }
        // Its jobs' secret values reach only their workers; readers see `***`.
        workflow.redact_secrets();
        Ok(WorkflowDetail { workflow, state, finished_at, runs })
    }

    /// Workflows, live then finished, newest first.
    pub(super) async fn workflow_list(&self, q: &WorkflowQuery) -> Result<Page<WorkflowSummary, WorkflowId>, Error> {
        let limit = queries::page_size(q.limit);
        let filter = WorkflowFilter { name: q.name.clone(), state: q.state, before: q.before };
        let live: Vec<WorkflowSummary> = self.shared.store.query(|s| {
            let upper = q.before.unwrap_or(WorkflowId(u64::MAX));
            s.workflows()
                .range(..upper)
                .rev()
                .map(|(_, w)| w)
                .filter(|w| filter.matches(w, WorkflowState::Running))
                .take(limit + 1)
                .map(|w| summary(w, WorkflowState::Running, None))
                .collect()
        });
        let finished: Vec<WorkflowSummary> = self
            .shared
            .history
            .list_workflows(&filter, limit + 1)
            .await?
            .iter()
            .map(|r| summary(&r.workflow, r.state(), Some(r.finished_at)))
            .collect();
        let items = merge_newest_first(live, finished, |w| w.id, limit + 1);
        Ok(queries::page(items, limit, |w| w.id))
    }
}

fn summary(w: &Workflow, state: WorkflowState, finished_at: Option<Timestamp>) -> WorkflowSummary {
    WorkflowSummary {
        id: w.id,
        name: w.spec.name.clone(),
        state,
        nodes: u32::try_from(w.jobs.len()).unwrap_or(u32::MAX),
        created_at: w.created_at,
        finished_at,
    }
}
