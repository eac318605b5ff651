//! [`ProcessExecutor`]: runs [`Task::Process`] argv directly, with no shell between
//! the job and the program, so arguments reach it verbatim.

use std::time::Duration;

use archon_core::executor::{ExecContext, Executor};
use archon_core::model::{AttemptResult, Task, TaskKind};
use async_trait::async_trait;

use crate::child::ChildRunner;
use crate::error::ExecError;

/// Runs `Task::Process { argv }`: `argv[0]` (looked up in `PATH`) with the rest as
/// its arguments. Capability `process`.
#[derive(Debug, Clone, Default)]
pub struct ProcessExecutor {
    runner: ChildRunner,
}

impl ProcessExecutor {
    /// A process executor with the default kill grace ([`crate::DEFAULT_KILL_GRACE`]).
    pub fn new() -> ProcessExecutor {
        ProcessExecutor::default()
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
impl Executor for ProcessExecutor {
    fn capabilities(&self) -> Vec<String> {
        vec![TaskKind::Process.as_str().to_owned()]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        let spec = ctx.spec.clone();
        let Task::Process { argv } = &spec.task else {
            let error = ExecError::WrongKind { executor: TaskKind::Process, task: spec.task.kind() };
            return ctx.output.finish(error.into_status());
        };
        let Some((program, args)) = argv.split_first() else {
            return ctx.output.finish(ExecError::EmptyArgv.into_status());
        };
        self.runner.run(program, args, ctx).await
    }
}
