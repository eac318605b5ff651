//! Submitting and cancelling workflows. The leader checks what `apply` must
//! not decide (the limits, the size in the log); the state machine checks the
//! shape and creates every job or none.
//!
//! The [`crate::api::Api`] methods call these; the CLI and a history record of
//! finished workflows come next (a workflow leaves the live state with its
//! last job).

use std::sync::Arc;

use super::{Manager, queries};
use crate::api::WorkflowDetail;
use crate::error::Error;
use crate::model::{JobId, SpecError, WorkflowId, WorkflowSpec};
use crate::state::{Command, Event, Outcome, Rejection};
use crate::store::StoreExt;

impl Manager {
    /// Submits a workflow: every node becomes a job, all or none; returns the
    /// workflow and its jobs in the order of its nodes. A workflow may have up
    /// to `max_submit_specs` nodes, each within the job limits.
    pub async fn submit_workflow(&self, spec: WorkflowSpec) -> Result<(WorkflowId, Vec<JobId>), Error> {
        self.ensure_leader()?;
        let limits = &self.shared.config.limits;
        let at = self.shared.clock.now();
        let rejected = |e: SpecError| Error::Rejected(Rejection::InvalidSpec(e));
        spec.validate(limits.max_submit_specs).map_err(rejected)?;
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
                    Event::WorkflowAccepted { workflow, jobs } => Some((workflow, jobs)),
                    _ => None,
                })
                .ok_or_else(|| Error::Internal("the workflow was applied without its jobs".into())),
            Some(Outcome::Rejected(r)) => Err(Error::Rejected(r)),
            None => Err(Error::Internal("no outcome for a proposal".into())),
        }
    }

    /// Cancels a workflow's unfinished jobs.
    pub async fn cancel_workflow(&self, id: WorkflowId) -> Result<(), Error> {
        self.ensure_leader()?;
        let at = self.shared.clock.now();
        match self.propose(vec![Command::CancelWorkflow { at, workflow: id }]).await?.pop() {
            Some(Outcome::Applied(_)) => Ok(()),
            Some(Outcome::Rejected(r)) => Err(Error::Rejected(r)),
            None => Err(Error::Internal("no outcome for a proposal".into())),
        }
    }

    /// A workflow while any of its jobs is live, with each node's latest run
    /// (from the live state or the history).
    pub async fn workflow_detail(&self, id: WorkflowId) -> Result<WorkflowDetail, Error> {
        self.ensure_leader()?;
        let (workflow, issued) = self.shared.store.query(|s| (s.workflow(id).cloned(), s.issued_workflow(id)));
        let Some(workflow) = workflow else {
            return Err(Error::NotFound(if issued {
                format!(
                    "{id} (it has finished: a workflow is shown until its last job ends; its jobs are in the history)"
                )
            } else {
                id.to_string()
            }));
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
        Ok(WorkflowDetail { workflow, runs })
    }
}
