//! [`ScriptExecutor`]: runs [`Task::Script`] bodies. The body is written to a
//! private temporary file (mode 0600, unique per attempt) that is run as
//! `interpreter <file>` and removed when the attempt ends, however it ends.

use std::io::Write;
use std::time::Duration;

use archon_core::executor::{ExecContext, Executor};
use archon_core::model::{AttemptId, AttemptResult, Task, TaskKind};
use async_trait::async_trait;
use tempfile::TempPath;

use crate::child::ChildRunner;
use crate::error::ExecError;

/// Runs `Task::Script { interpreter, body }` as `interpreter <temp file>`; the
/// interpreter is a program name or path, not split on spaces. Capability `script`.
#[derive(Debug, Clone, Default)]
pub struct ScriptExecutor {
    runner: ChildRunner,
}

impl ScriptExecutor {
    /// A script executor with the default kill grace ([`crate::DEFAULT_KILL_GRACE`]).
    pub fn new() -> ScriptExecutor {
        ScriptExecutor::default()
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
impl Executor for ScriptExecutor {
    fn capabilities(&self) -> Vec<String> {
        vec![TaskKind::Script.as_str().to_owned()]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        let spec = ctx.spec.clone();
        let Task::Script { interpreter, body } = &spec.task else {
            let error = ExecError::WrongKind { executor: TaskKind::Script, task: spec.task.kind() };
            return ctx.output.finish(error.into_status());
        };
        let file = match write_script(ctx.attempt, body.clone()).await {
            Ok(file) => file,
            Err(e) => return ctx.output.finish(e.into_status()),
        };
        let result = self.runner.run(interpreter, [file.as_os_str()], ctx).await;
        remove_script(file).await;
        result
    }
}

/// Writes `body` to a new 0600 temporary file. The returned path removes the file
/// when dropped, so an abandoned attempt cleans up too.
async fn write_script(attempt: AttemptId, body: String) -> Result<TempPath, ExecError> {
    let write = move || -> std::io::Result<TempPath> {
        let mut file = tempfile::Builder::new().prefix(&format!("archon-{attempt}-")).suffix(".script").tempfile()?;
        file.write_all(body.as_bytes())?;
        file.flush()?;
        Ok(file.into_temp_path())
    };
    match tokio::task::spawn_blocking(write).await {
        Ok(Ok(path)) => Ok(path),
        Ok(Err(e)) => Err(ExecError::ScriptFile(e.to_string())),
        Err(e) => Err(ExecError::ScriptFile(e.to_string())),
    }
}

/// Removes the script file, logging (not failing the attempt) when it cannot.
async fn remove_script(file: TempPath) {
    let shown = file.display().to_string();
    match tokio::task::spawn_blocking(move || file.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(file = shown, error = %e, "cannot remove the script file"),
        Err(e) => tracing::warn!(file = shown, error = %e, "cannot remove the script file"),
    }
}
