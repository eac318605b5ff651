//! [`Archon`]: a started manager (and local worker), what a program submits
//! through, and [`JobHandle`], a submitted job to wait on. The one thing to
//! know: stopping kills what the local worker runs — [`Archon::shutdown`]
//! waits for that and for the store to close; dropping starts the same on the
//! runtime and does not wait.

use std::sync::Arc;
use std::time::Duration;

use archon_core::api::{Api, RunDetail, SubmittedWorkflow};
use archon_core::manager::{Manager, WeakManager};
use archon_core::metrics::Metrics;
use archon_core::model::{JobId, JobSpec, RunId, RunState, Task, WorkflowSpec};
use archon_core::worker::WorkerRuntime;
use archon_raft::RaftStore;
use archon_store::PgStore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Error, Handle};

/// How long a stopping worker may take to kill what it runs.
const WORKER_STOP: Duration = Duration::from_secs(15);
/// How long a stopping manager may take to finish its turn.
const MANAGER_STOP: Duration = Duration::from_secs(5);

/// The store behind the manager, when it needs closing.
pub(crate) enum StoreHandle {
    /// The embedded Raft store.
    Raft(RaftStore),
    /// PostgreSQL.
    Postgres(PgStore),
    /// Memory or the embedder's own: nothing to close.
    Other,
}

/// What a running Archon is made of.
pub(crate) struct Parts {
    pub(crate) manager: Manager,
    pub(crate) store: StoreHandle,
    pub(crate) metrics: Metrics,
    pub(crate) manager_stop: CancellationToken,
    pub(crate) manager_task: Option<JoinHandle<Result<(), archon_core::Error>>>,
    pub(crate) worker: Option<Arc<WorkerRuntime>>,
    pub(crate) worker_stop: CancellationToken,
    pub(crate) worker_task: Option<JoinHandle<Result<(), archon_core::Error>>>,
    pub(crate) keeper: Option<JoinHandle<()>>,
}

/// A running manager with its store and (from [`Archon::embedded`]) a local
/// worker. Submit jobs with [`Archon::submit`] or call functions with
/// [`Archon::call`]; everything else the API offers is on
/// [`Archon::manager`] (it implements [`Api`]).
pub struct Archon {
    parts: Option<Parts>,
}

impl std::fmt::Debug for Archon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let worker = self.worker().map(|_| "local");
        f.debug_struct("Archon").field("worker", &worker).field("stopped", &self.parts.is_none()).finish()
    }
}

impl Archon {
    pub(crate) fn from_parts(parts: Parts) -> Archon {
        Archon { parts: Some(parts) }
    }

    fn parts(&self) -> &Parts {
        // Only `shutdown(self)` and `drop` take the parts, and both consume `self`.
        self.parts.as_ref().unwrap_or_else(|| unreachable!("an Archon is used after it stopped"))
    }

    /// The manager: the whole [`Api`] (jobs, runs, workflows, schedules, workers, tokens).
    pub fn manager(&self) -> &Manager {
        &self.parts().manager
    }

    /// The embedded Raft store, when the state lives in one (to serve its RPCs).
    pub fn raft(&self) -> Option<&RaftStore> {
        match &self.parts().store {
            StoreHandle::Raft(raft) => Some(raft),
            _ => None,
        }
    }

    /// The local worker, if there is one.
    pub fn worker(&self) -> Option<&Arc<WorkerRuntime>> {
        self.parts().worker.as_ref()
    }

    /// The Prometheus registry everything here records into.
    pub fn metrics(&self) -> &Metrics {
        &self.parts().metrics
    }

    /// Submits one job; wait on the returned handle for its run.
    pub async fn submit(&self, spec: JobSpec) -> Result<JobHandle, Error> {
        crate::handle::submit(self.manager(), spec).await
    }

    /// A handle for request handlers and tasks: cloneable, and it does not
    /// keep this Archon running, so [`Archon::shutdown`] still takes `self`
    /// with handles about (their calls then fail with
    /// [`archon_core::Error::ShuttingDown`]).
    pub fn handle(&self) -> Handle {
        Handle::new(self.manager())
    }

    /// Runs the function `name` with `input` as a job and returns its output:
    /// [`function_job`], [`Archon::submit`] and [`JobHandle::wait_typed`] in one.
    pub async fn call<In: Serialize, Out: DeserializeOwned>(&self, name: &str, input: &In) -> Result<Out, Error> {
        self.submit(function_job(name, input)?).await?.wait_typed().await
    }

    /// Submits a workflow (a DAG of jobs); see [`Api::submit_workflow`].
    pub async fn submit_workflow(&self, spec: WorkflowSpec) -> Result<SubmittedWorkflow, Error> {
        Ok(self.manager().submit_workflow(spec).await?)
    }

    /// Waits (up to `within`) until the local worker is in session with the manager.
    pub(crate) async fn wait_for_worker(&self, within: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.manager().list_workers().await?.iter().any(|w| w.connected) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(archon_core::Error::Unavailable(format!(
                    "the local worker did not join the manager within {within:?}"
                ))
                .into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops: the local worker kills what it runs (whole process trees) and
    /// leaves, then the manager stops and the store closes.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        match self.parts.take() {
            Some(parts) => stop(parts).await,
            None => Ok(()),
        }
    }
}

impl Drop for Archon {
    fn drop(&mut self) {
        let Some(parts) = self.parts.take() else { return };
        // Stop at once what can be stopped without waiting; the rest (closing
        // the store) on the runtime, if it is still there.
        parts.worker_stop.cancel();
        parts.manager_stop.cancel();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = stop(parts).await {
                    tracing::warn!(error = %e, "stopping a dropped Archon");
                }
            });
        }
    }
}

/// How long a stopped Raft store's files may take to close once everything
/// here let go of them (tasks still finishing a write).
const FILES_CLOSE: Duration = Duration::from_secs(10);

/// The shutdown sequence: worker, lease keeper, manager, store — and, for the
/// Raft store, its files closed, so the data dir can be opened again at once.
async fn stop(mut parts: Parts) -> Result<(), Error> {
    parts.worker_stop.cancel();
    if let Some(task) = parts.worker_task.take() {
        let _ = tokio::time::timeout(WORKER_STOP, task).await;
    }
    if let Some(keeper) = parts.keeper.take() {
        keeper.abort();
    }
    parts.manager_stop.cancel();
    if let Some(task) = parts.manager_task.take() {
        let _ = tokio::time::timeout(MANAGER_STOP, task).await;
    }
    let files = match &parts.store {
        StoreHandle::Raft(raft) => {
            raft.shutdown().await.map_err(Error::Raft)?;
            Some(raft.files())
        }
        StoreHandle::Postgres(pg) => {
            pg.shutdown();
            None
        }
        StoreHandle::Other => None,
    };
    drop(parts);
    if let Some(files) = files
        && !files.wait_closed(FILES_CLOSE).await
    {
        tracing::warn!("the Raft store's files are still open {FILES_CLOSE:?} after it stopped");
    }
    Ok(())
}

/// A submitted job: its id, its first run, and ways to wait for that run. It
/// does not keep the [`Archon`] alive: once that stopped, waiting is
/// [`archon_core::Error::ShuttingDown`].
#[derive(Debug, Clone)]
pub struct JobHandle {
    job: JobId,
    run: Option<RunId>,
    manager: WeakManager,
}

impl JobHandle {
    pub(crate) fn new(job: JobId, run: Option<RunId>, manager: WeakManager) -> JobHandle {
        JobHandle { job, run, manager }
    }

    /// The job.
    pub fn job(&self) -> JobId {
        self.job
    }

    /// Its first run (none for a cron job: its schedule makes its runs).
    pub fn run(&self) -> Option<RunId> {
        self.run
    }

    /// Waits until the run ends, whatever its outcome, and returns it with its attempts.
    pub async fn wait(&self) -> Result<RunDetail, Error> {
        let run = self.run.ok_or(Error::NoRun(self.job))?;
        let manager = self.manager.upgrade().ok_or(archon_core::Error::ShuttingDown)?;
        Ok(manager.wait(run).await?)
    }

    /// Waits until the run ends and reads its output — a function's return
    /// value, or a process's stdout as JSON — as `Out`. A run that did not
    /// succeed is [`Error::RunFailed`] with the function's error message (or the
    /// process's stderr).
    pub async fn wait_typed<Out: DeserializeOwned>(&self) -> Result<Out, Error> {
        let detail = self.wait().await?;
        let run = detail.run.id;
        let result = detail.attempts.last().and_then(|a| a.result.as_ref());
        if detail.run.state != RunState::Succeeded {
            let stderr = result.map(|r| r.stderr.text()).unwrap_or_default();
            let message = match stderr.trim() {
                "" => detail.exit().map_or_else(|| "no attempt ran".to_owned(), ToString::to_string),
                text => text.to_owned(),
            };
            return Err(Error::RunFailed { run, state: detail.run.state, message });
        }
        let Some(result) = result else {
            return Err(Error::RunFailed { run, state: detail.run.state, message: "no attempt ran".into() });
        };
        if result.stdout.truncated > 0 {
            return Err(Error::Truncated { run, dropped: result.stdout.truncated });
        }
        let stdout = result.stdout.text();
        serde_json::from_str(&stdout).map_err(|source| Error::Output {
            run,
            expected: std::any::type_name::<Out>(),
            source,
        })
    }
}

/// A job that calls the function `name` with `input` (as JSON), named after it.
pub fn function_job<In: Serialize + ?Sized>(name: &str, input: &In) -> Result<JobSpec, Error> {
    let input = serde_json::to_string(input).map_err(|source| Error::Input { function: name.to_owned(), source })?;
    Ok(JobSpec::new(name, Task::Function { name: name.to_owned(), input }))
}
