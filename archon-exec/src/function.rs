//! [`FunctionExecutor`]: runs [`Task::Function`] by calling a Rust function
//! registered under the task's name, in the worker's own process.
//!
//! It sits on the hot path of throughput benchmarks, so a call costs one boxed
//! future and the output buffer: no extra task, no copy of the input text.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use archon_core::executor::{ExecContext, Executor};
use archon_core::model::{AttemptResult, ExitStatus, OutputStream, Task, TaskKind, function_capability};
use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::error::ExecError;

/// A registered function, with its future boxed.
type Function = Box<dyn Fn(Value) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// Runs `Task::Function { name, input }` by calling the function registered as
/// `name` with `input` parsed as JSON. `Ok(v)` writes `v` as JSON text and a newline
/// to stdout and exits 0; `Err(msg)` writes `msg` and a newline to stderr and exits 1.
/// A timeout or cancel drops the function's future. Capabilities `function:NAME`.
#[derive(Default)]
pub struct FunctionExecutor {
    pub(crate) functions: BTreeMap<String, Function>,
}

impl std::fmt::Debug for FunctionExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionExecutor").field("functions", &self.functions.keys()).finish()
    }
}

impl FunctionExecutor {
    /// An executor with no functions.
    pub fn new() -> FunctionExecutor {
        FunctionExecutor::default()
    }

    /// Registers `f` as `name` (replacing an earlier one of that name).
    pub fn register<F, Fut>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, String>> + Send + 'static,
    {
        self.register_mut(name, f);
        self
    }

    /// In-place form of [`FunctionExecutor::register`].
    pub fn register_mut<F, Fut>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, String>> + Send + 'static,
    {
        self.functions.insert(name.into(), Box::new(move |input| Box::pin(f(input))));
        self
    }

    /// Adds the functions of `other`, replacing any of the same name.
    pub fn extend(&mut self, other: FunctionExecutor) -> &mut Self {
        self.functions.extend(other.functions);
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    fn unknown(&self, name: &str) -> ExecError {
        let registered =
            if self.functions.is_empty() { "none".to_owned() } else { self.names().collect::<Vec<_>>().join(", ") };
        ExecError::UnknownFunction { name: name.to_owned(), registered }
    }
}

/// How a call ended.
enum Outcome {
    Returned(Result<Value, String>),
    Panicked(String),
    TimedOut,
    Cancelled,
}

#[async_trait]
impl Executor for FunctionExecutor {
    fn capabilities(&self) -> Vec<String> {
        self.names().map(function_capability).collect()
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        let ExecContext { spec, mut output, cancel, .. } = ctx;
        let Task::Function { name, input } = &spec.task else {
            let error = ExecError::WrongKind { executor: TaskKind::Function, task: spec.task.kind() };
            return output.finish(error.into_status());
        };
        let Some(function) = self.functions.get(name.as_str()) else {
            return output.finish(self.unknown(name).into_status());
        };
        let input = match serde_json::from_str(input) {
            Ok(input) => input,
            Err(source) => return output.finish(ExecError::BadInput { name: name.clone(), source }.into_status()),
        };
        if cancel.is_cancelled() {
            return output.finish(ExitStatus::Cancelled);
        }

        let call = AssertUnwindSafe(function(input)).catch_unwind();
        let outcome = match spec.timeout {
            Some(limit) => tokio::select! {
                biased;
                returned = call => returned.map_or_else(|p| Outcome::Panicked(panic_message(p)), Outcome::Returned),
                () = cancel.cancelled() => Outcome::Cancelled,
                () = tokio::time::sleep(limit) => Outcome::TimedOut,
            },
            None => tokio::select! {
                biased;
                returned = call => returned.map_or_else(|p| Outcome::Panicked(panic_message(p)), Outcome::Returned),
                () = cancel.cancelled() => Outcome::Cancelled,
            },
        };

        let status = match outcome {
            Outcome::Returned(Ok(value)) => match serde_json::to_vec(&value) {
                Ok(mut text) => {
                    text.push(b'\n');
                    output.write(OutputStream::Stdout, Bytes::from(text)).await;
                    ExitStatus::Exited { code: 0 }
                }
                Err(source) => ExecError::BadOutput { name: name.clone(), source }.into_status(),
            },
            Outcome::Returned(Err(message)) => {
                let mut text = message.into_bytes();
                text.push(b'\n');
                output.write(OutputStream::Stderr, Bytes::from(text)).await;
                ExitStatus::Exited { code: 1 }
            }
            Outcome::Panicked(message) => ExecError::Panicked { name: name.clone(), message }.into_status(),
            Outcome::TimedOut => ExitStatus::TimedOut,
            Outcome::Cancelled => ExitStatus::Cancelled,
        };
        output.finish(status)
    }
}

/// The text of a panic payload, when it has one.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => (*message).to_owned(),
            Err(_) => "(no message)".to_owned(),
        },
    }
}
