//! A simulated worker host: archon-core's real [`WorkerRuntime`], reaching the
//! managers through the real gRPC transport over turmoil, with a
//! simulated executor that runs `function:sim` tasks by sleeping in virtual time.
//!
//! The one thing to know: the executor records when each attempt starts and
//! stops in the trace, so the checks see what *executed*, not only what the
//! managers believed — including attempts dropped with a crashed host.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::model::{AttemptId, AttemptResult, ExitStatus, JobSpec, Resources, RunId, Task};
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use archon_net::GrpcTransport;
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::manager::sim_dialer;
use crate::trace::{Event, Trace};

/// The function a simulated job runs: sleeps for its input, in milliseconds.
pub const FUNCTION: &str = "sim";

/// CPU a simulated job asks for, in millicores.
pub const JOB_CPU_MILLIS: u64 = 1_000;

/// How many simulated jobs a worker has room for at once: its capacity is
/// this many jobs' CPU, so the placer has to count.
pub const SLOTS: u64 = 2;

/// A job that runs for `millis` of virtual time, submitted with `key`.
pub fn sleep_job(key: &str, millis: u64) -> JobSpec {
    let mut spec = JobSpec::new(key, Task::Function { name: FUNCTION.into(), input: millis.to_string() });
    spec.idempotency_key = Some(key.into());
    spec.resources.cpu_millis = JOB_CPU_MILLIS;
    spec
}

/// A worker host's identity, kept across its incarnations.
#[derive(Debug)]
pub struct WorkerNode {
    /// Its host name (`worker-1`).
    pub name: String,
    /// The managers' addresses.
    pub managers: Vec<String>,
    /// Seeds its reconnect jitter.
    pub seed: u64,
    trace: Trace,
}

impl WorkerNode {
    /// Worker `name` reaching `managers`, recording into `trace`.
    pub fn new(name: String, managers: Vec<String>, seed: u64, trace: Trace) -> WorkerNode {
        WorkerNode { name, managers, seed, trace }
    }

    /// The host's software: a worker runtime until the host goes.
    pub async fn run(self: Arc<Self>) -> turmoil::Result {
        let capacity = Resources {
            cpu_millis: SLOTS * JOB_CPU_MILLIS,
            memory_bytes: 8 << 30,
            network_mbps: 1_000,
            devices: BTreeMap::new(),
        };
        let config = WorkerConfig {
            reconnect_base: Duration::from_millis(100),
            reconnect_cap: Duration::from_secs(2),
            reconnect_seed: Some(self.seed),
            ..WorkerConfig::new(self.name.clone(), capacity)
        };
        let executor = SimExecutor { worker: self.name.clone(), trace: self.trace.clone() };
        let registry = ExecutorRegistry::new().with(Arc::new(executor));
        let transport = Arc::new(GrpcTransport::with_dialer(self.managers.clone(), sim_dialer()));
        let worker = WorkerRuntime::new(config, Arc::new(registry), transport);
        worker.run(CancellationToken::new()).await?;
        Ok(())
    }
}

/// Runs `function:sim` tasks: sleeps for the input's milliseconds, or until cancelled.
#[derive(Debug)]
struct SimExecutor {
    worker: String,
    trace: Trace,
}

/// Records an attempt's stop, also when its future is dropped (the host crashed).
struct Running {
    worker: String,
    run: RunId,
    attempt: AttemptId,
    completed: bool,
    trace: Trace,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.trace.record(Event::AttemptStopped {
            worker: self.worker.clone(),
            run: self.run,
            attempt: self.attempt,
            completed: self.completed,
        });
    }
}

#[async_trait]
impl Executor for SimExecutor {
    fn capabilities(&self) -> Vec<String> {
        vec![format!("function:{FUNCTION}")]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        let Task::Function { name, input } = ctx.spec.task.clone() else {
            return ctx.output.finish(ExitStatus::Failed { reason: "not a function task".into() });
        };
        let Some(millis) = input.trim().parse::<u64>().ok().filter(|_| name == FUNCTION) else {
            return ctx.output.finish(ExitStatus::Failed { reason: format!("no function {name}({input})") });
        };
        self.trace.record(Event::AttemptStarted { worker: self.worker.clone(), run: ctx.run, attempt: ctx.attempt });
        let mut running = Running {
            worker: self.worker.clone(),
            run: ctx.run,
            attempt: ctx.attempt,
            completed: false,
            trace: self.trace.clone(),
        };
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {
                drop(running);
                ctx.output.finish(ExitStatus::Cancelled)
            }
            _ = tokio::time::sleep(Duration::from_millis(millis)) => {
                running.completed = true;
                drop(running);
                ctx.output.finish(ExitStatus::Exited { code: 0 })
            }
        }
    }
}
