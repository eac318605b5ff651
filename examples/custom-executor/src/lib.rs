//! An executor for a task kind of your own: HTTP requests. A job carries
//! `Task::Custom { executor: "http", input }` with the request as JSON; a worker
//! that registered [`HttpExecutor`] advertises the capability `custom:http`, so
//! only such workers are given these jobs.
//!
//! The one thing to know: an executor turns whatever it runs into what a process
//! would give — output on stdout and stderr (streamed as it arrives), an exit code
//! — and honours the job's timeout and cancellation. Here a 2xx response's body
//! goes to stdout with exit 0; any other status's body goes to stderr with the
//! status's hundreds digit as the exit code (404 → 4, 503 → 5); a request that
//! cannot be sent ends the attempt as `Failed`, saying why.

use std::collections::BTreeMap;
use std::time::Duration;

use archon_core::executor::{ExecContext, Executor};
use archon_core::model::{AttemptResult, ExitStatus, OutputStream, Task, custom_capability};
use async_trait::async_trait;
use serde::Deserialize;

/// The name jobs give as their task's `executor`.
pub const EXECUTOR: &str = "http";

/// What an `http` task asks for (its `input`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// `http://host:port/path` (plain HTTP in this template).
    pub url: String,
    /// `GET` unless given.
    #[serde(default = "get")]
    pub method: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A request body, sent as is.
    #[serde(default)]
    pub body: Option<String>,
}

fn get() -> String {
    "GET".to_owned()
}

/// The task that runs `request` on a worker with [`HttpExecutor`].
pub fn http_task(request: &serde_json::Value) -> Task {
    Task::Custom { executor: EXECUTOR.to_owned(), input: request.to_string() }
}

/// Runs `http` tasks with one shared connection pool.
#[derive(Debug, Clone, Default)]
pub struct HttpExecutor {
    client: reqwest::Client,
}

impl HttpExecutor {
    /// An executor with a fresh connection pool.
    pub fn new() -> HttpExecutor {
        HttpExecutor::default()
    }

    /// Sends the request and streams the response into `ctx.output`; the exit status.
    async fn send(&self, request: HttpRequest, ctx: &mut ExecContext) -> ExitStatus {
        let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
            Ok(method) => method,
            Err(_) => return failed(format!("method: {:?} is not an HTTP method", request.method)),
        };
        let mut builder = self.client.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(e) => return failed(format!("{} {}: {e}", request.method, request.url)),
        };
        let status = response.status();
        let stream = if status.is_success() { OutputStream::Stdout } else { OutputStream::Stderr };
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => ctx.output.write(stream, chunk).await,
                Ok(None) => break,
                Err(e) => return failed(format!("reading the response of {}: {e}", request.url)),
            }
        }
        ExitStatus::Exited { code: if status.is_success() { 0 } else { i32::from(status.as_u16() / 100) } }
    }
}

fn failed(reason: String) -> ExitStatus {
    ExitStatus::Failed { reason }
}

#[async_trait]
impl Executor for HttpExecutor {
    fn capabilities(&self) -> Vec<String> {
        vec![custom_capability(EXECUTOR)]
    }

    async fn execute(&self, mut ctx: ExecContext) -> AttemptResult {
        let request = match &ctx.spec.task {
            Task::Custom { executor, input } if executor == EXECUTOR => serde_json::from_str::<HttpRequest>(input)
                .map_err(|e| format!("input: not an HTTP request ({e}); e.g. {{\"url\": \"http://host/path\"}}")),
            other => Err(format!("the http executor cannot run a {} task", other.kind())),
        };
        let request = match request {
            Ok(request) => request,
            Err(reason) => return ctx.output.finish(failed(reason)),
        };
        let (cancel, timeout) = (ctx.cancel.clone(), ctx.spec.timeout.unwrap_or(Duration::MAX));
        // Dropping the request's future closes its connection: nothing is left running.
        let status = tokio::select! {
            biased;
            () = cancel.cancelled() => ExitStatus::Cancelled,
            status = tokio::time::timeout(timeout, self.send(request, &mut ctx)) => {
                status.unwrap_or(ExitStatus::TimedOut)
            }
        };
        ctx.output.finish(status)
    }
}
