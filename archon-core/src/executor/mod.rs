//! The [`Executor`] plug point: runs one attempt of one task on the worker. An
//! executor starts the task, streams its output through the [`OutputWriter`],
//! enforces the job's timeout (killing the whole process tree or container),
//! honours cancellation the same way, and returns how it ended. It never panics
//! on bad input: a task it cannot run ends as [`ExitStatus::Failed`](crate::model::ExitStatus::Failed).

mod mask;
mod output;
mod registry;

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use mask::MIN_MASKED;
pub use output::{DEFAULT_TAIL_LIMIT, OutputSink, OutputWriter};
pub use registry::ExecutorRegistry;

use crate::model::{AttemptId, AttemptResult, JobId, JobSpec, RunId};

/// Everything an executor needs to run one attempt.
pub struct ExecContext {
    /// The job.
    pub job: JobId,
    /// The run.
    pub run: RunId,
    /// The attempt.
    pub attempt: AttemptId,
    /// The job's definition (task, env, working dir, timeout, resources).
    pub spec: Arc<JobSpec>,
    /// Where output goes.
    pub output: OutputWriter,
    /// Fires when the attempt is cancelled; the executor kills what it started.
    pub cancel: CancellationToken,
}

impl std::fmt::Debug for ExecContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecContext").field("run", &self.run).field("attempt", &self.attempt).finish_non_exhaustive()
    }
}

/// Runs attempts of the task kinds it advertises.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// The capabilities it serves: task kind names (`shell`) or `function:NAME`.
    fn capabilities(&self) -> Vec<String>;

    /// Runs one attempt to its end (exit, timeout, cancel, or failure to start).
    async fn execute(&self, ctx: ExecContext) -> AttemptResult;
}

#[cfg(test)]
mod tests;
