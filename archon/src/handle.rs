//! [`Handle`]: a running [`Archon`](crate::Archon) shared with request
//! handlers and tasks. Clone it freely; it does not keep Archon running, so
//! the program that started Archon keeps it and can always
//! [`shutdown`](crate::Archon::shutdown) — no waiting for every clone to be
//! dropped first. Once Archon has stopped, a handle's calls are
//! [`archon_core::Error::ShuttingDown`].

use archon_core::api::{Api, SubmittedWorkflow};
use archon_core::manager::{Manager, WeakManager};
use archon_core::model::{JobSpec, WorkflowSpec};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::running::{JobHandle, function_job};

/// A way into a running Archon that does not keep it running: what a web
/// server's state or a spawned task holds. From [`Archon::handle`](crate::Archon::handle).
#[derive(Debug, Clone)]
pub struct Handle {
    manager: WeakManager,
}

impl Handle {
    pub(crate) fn new(manager: &Manager) -> Handle {
        Handle { manager: manager.downgrade() }
    }

    /// The manager, for the whole [`Api`] (runs, output, workflows, workers,
    /// tokens); [`archon_core::Error::ShuttingDown`] once Archon has stopped.
    /// Hold it for a call, not for good: while a manager is held, a stopping
    /// Archon's store cannot close its files.
    pub fn manager(&self) -> Result<Manager, Error> {
        Ok(self.manager.upgrade().ok_or(archon_core::Error::ShuttingDown)?)
    }

    /// Submits one job; wait on the returned handle for its run. As [`Archon::submit`](crate::Archon::submit).
    pub async fn submit(&self, spec: JobSpec) -> Result<JobHandle, Error> {
        submit(&self.manager()?, spec).await
    }

    /// Runs the function `name` with `input` as a job and returns its output.
    /// As [`Archon::call`](crate::Archon::call).
    pub async fn call<In: Serialize, Out: DeserializeOwned>(&self, name: &str, input: &In) -> Result<Out, Error> {
        self.submit(function_job(name, input)?).await?.wait_typed().await
    }

    /// Submits a workflow (a DAG of jobs); see [`Api::submit_workflow`].
    pub async fn submit_workflow(&self, spec: WorkflowSpec) -> Result<SubmittedWorkflow, Error> {
        Ok(self.manager()?.submit_workflow(spec).await?)
    }
}

/// Submits `spec` to `manager` and returns the job's handle.
pub(crate) async fn submit(manager: &Manager, spec: JobSpec) -> Result<JobHandle, Error> {
    let answer = manager.submit(vec![spec]).await?.into_iter().next();
    let submitted =
        answer.ok_or_else(|| archon_core::Error::Internal("a submit of one spec answered nothing".into()))?;
    let submitted = submitted.map_err(archon_core::Error::from)?;
    Ok(JobHandle::new(submitted.job, submitted.run, manager.downgrade()))
}
