//! [`ShellExecutor`]: runs [`Task::Shell`] command lines with `sh -c`, in their own
//! process group (see [`crate::child`] for timeouts, cancellation and output).

use std::time::Duration;

use archon_core::executor::{ExecContext, Executor};
use archon_core::model::{AttemptResult, Task, TaskKind};
use async_trait::async_trait;

use crate::child::ChildRunner;
use crate::error::ExecError;

/// Runs `Task::Shell { command }` as `sh -c command`. Capability `shell`.
#[derive(Debug, Clone, Default)]
pub struct ShellExecutor {
    runner: ChildRunner,
}

impl ShellExecutor {
    /// A shell executor with the default kill grace ([`crate::DEFAULT_KILL_GRACE`]).
    pub fn new() -> ShellExecutor {
        ShellExecutor::default()
    }

    /// Sets how long the process group gets between SIGTERM and SIGKILL on timeout
    /// or cancel.
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.runner.kill_grace = grace;
        self
    }

    /// Notes each attempt's process group in `ledger` while it runs (see
    /// [`ProcessLedger`](crate::ProcessLedger)).
    pub fn with_ledger(mut self, ledger: std::sync::Arc<crate::ProcessLedger>) -> Self {
        self.runner.ledger = Some(ledger);
        self
    }
}

#[async_trait]
impl Executor for ShellExecutor {
    fn capabilities(&self) -> Vec<String> {
        vec![TaskKind::Shell.as_str().to_owned()]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        let spec = ctx.spec.clone();
        let Task::Shell { command } = &spec.task else {
            let error = ExecError::WrongKind { executor: TaskKind::Shell, task: spec.task.kind() };
            return ctx.output.finish(error.into_status());
        };
        self.runner.run("sh", ["-c", command.as_str()], ctx).await
    }
}
