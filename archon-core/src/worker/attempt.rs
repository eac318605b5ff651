//! One attempt on the worker: started with a [`Started`](WorkerMessage::Started)
//! report, run by its executor with live output going to the outbox, and
//! reported as [`Finished`](WorkerMessage::Finished) — or as
//! [`Fenced`](WorkerMessage::Fenced) when the lease lapsed while it ran, whatever
//! its executor said.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::executor::{ExecContext, Executor, OutputSink, OutputWriter};
use crate::metrics::Metrics;
use crate::model::{AttemptResult, ExitStatus, OutputChunk, TaskKind};
use crate::transport::{Assignment, WorkerMessage};

/// Forwards live output to the manager through the outbox. Never waits: live
/// output is best-effort (each attempt's tail is kept with its result anyway), so a
/// full outbox — a slow or unreachable manager — can neither stall an executor's
/// timeout or cancel nor crowd out results: chunks are dropped once less than a
/// quarter of the outbox is free.
pub(super) struct ReportSink {
    pub(super) outbox: mpsc::Sender<WorkerMessage>,
    pub(super) dropped: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl OutputSink for ReportSink {
    async fn send(&self, chunk: OutputChunk) {
        let room = self.outbox.capacity();
        if room * 4 >= self.outbox.max_capacity() && self.outbox.try_send(WorkerMessage::Output(chunk)).is_ok() {
            return;
        }
        let dropped = self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::warn!(dropped, "worker outbox nearly full; dropping live output (tails are kept)");
        }
    }
}

/// One attempt's sink: its output goes to the worker's shared sink, its spawn
/// time to the metrics.
struct AttemptSink {
    output: Arc<dyn OutputSink>,
    metrics: Metrics,
    kind: TaskKind,
}

#[async_trait]
impl OutputSink for AttemptSink {
    async fn send(&self, chunk: OutputChunk) {
        self.output.send(chunk).await;
    }

    fn spawned(&self, took: Duration) {
        self.metrics.worker().spawned(self.kind, took);
    }
}

/// Runs one attempt, inside the span `Shared::start_ready` made for it.
pub(super) async fn run_attempt(shared: Arc<Shared>, a: Assignment, cancel: CancellationToken) {
    let reports = shared.reports.clone();
    let _ = reports.send(WorkerMessage::Started { run: a.run, attempt: a.attempt }).await;
    tracing::debug!(task = a.spec.task.kind().as_str(), "attempt started");
    let kind = a.spec.task.kind();
    let metrics = shared.config.metrics.clone();
    metrics.worker().started(kind);
    let sink = Arc::new(AttemptSink { output: shared.sink.clone(), metrics: metrics.clone(), kind });
    // What the manager keeps: the job's own limit, else the manager's default.
    let default = shared.output_limit.load(std::sync::atomic::Ordering::Relaxed);
    let keep = usize::try_from(a.spec.output_limit.unwrap_or(default)).unwrap_or(usize::MAX);
    // The job's secret values print as `***` in its output.
    let output = OutputWriter::new(a.run, a.attempt, keep, Some(sink)).masking(a.spec.secret_env.values());
    let ctx = ExecContext { job: a.job, run: a.run, attempt: a.attempt, spec: a.spec, output, cancel };
    let result = reportable(shared.executors.execute(ctx).await);
    metrics.worker().ended(kind, &result.status);
    let generation = shared.running().get(&a.attempt).filter(|r| !r.keep).map(|r| r.generation);
    if generation.is_some_and(|g| shared.lease.fenced_since(g)) {
        // Killed when the lease lapsed (here, or by the outside keeper while the
        // worker was frozen): whatever the executor says, it was fenced.
        if shared.lease.check() {
            shared.fence_all();
        }
        tracing::warn!(status = %result.status, "attempt fenced: the lease lapsed while it ran");
        shared.running().remove(&a.attempt);
        if !shared.leaving.is_cancelled() {
            let _ = reports.send(WorkerMessage::Fenced { run: a.run, attempt: a.attempt }).await;
        }
        shared.start_ready();
        return;
    }
    if shared.leaving.is_cancelled() {
        // Killed because the worker is leaving: the manager requeues the run.
        tracing::info!(status = %result.status, "attempt ended as the worker leaves; not reported");
        shared.running().remove(&a.attempt);
        return;
    }
    // Announced as unreported from here until the result is handed to a session.
    shared.unreported().insert(a.attempt);
    shared.running().remove(&a.attempt);
    // Routine at debug; a failure is worth a line at info.
    if result.status.is_success() {
        tracing::debug!(status = %result.status, exit_code = 0, "attempt exited");
    } else {
        tracing::info!(status = %result.status, exit_code = result.status.code(), "attempt exited");
    }
    let _ = reports.send(WorkerMessage::Finished { run: a.run, attempt: a.attempt, result }).await;
    // Its resources are free: the next queued attempt starts now.
    shared.start_ready();
}

/// An executor's result as the worker reports it. `Lost` is a status only the
/// manager assigns (when it declares a worker lost) and refuses from a worker, so
/// an executor returning it is reported as a failure, which the job's retry
/// policy then governs.
fn reportable(mut result: AttemptResult) -> AttemptResult {
    if result.status == ExitStatus::Lost {
        tracing::warn!("the executor returned Lost, which only the manager assigns; reporting a failure instead");
        result.status = ExitStatus::Failed {
            reason: "the executor reported the attempt lost; only the manager declares attempts lost".into(),
        };
    }
    result
}
