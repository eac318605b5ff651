#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A cancel that races the job's end: the job is live when the cancel looks,
//! ends and leaves the live state before the cancel's command takes its turn.
//! The caller gets what a cancel of an ended job gets (nothing to cancel), not
//! "no such job" (schemathesis found it: `POST /jobs/{id}/cancel` right after a
//! `true` job was submitted answered 404).

#[path = "held/mod.rs"]
mod held;

use std::sync::Arc;

use archon_core::api::{Api, CancelTarget};
use archon_core::executor::ExecutorRegistry;
use archon_core::manager::Manager;
use archon_core::model::{JobSpec, Resources, Task};
use archon_core::state::Command;
use archon_core::store::StoreExt;
use archon_core::testkit::eventually;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use held::HeldProposal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_whose_job_ends_before_its_turn_finds_nothing_to_cancel_rather_than_no_job() {
    let store = HeldProposal::new(|c| matches!(c, Command::CancelJob { .. }));
    let manager = Manager::builder(store.clone()).build();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (m, s) = (manager.clone(), stop.clone());
        async move { m.run(s).await }
    });
    let gate = Arc::new(Notify::new());
    let executor = gated(gate.clone());
    let worker = WorkerRuntime::new(
        WorkerConfig::new("w1", Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Resources::default() }),
        Arc::new(executor),
        Arc::new(InProcTransport::new(manager.clone())),
    );
    tokio::spawn({
        let s = stop.clone();
        async move { worker.run(s).await }
    });
    eventually("the worker to join", async || manager.list_workers().await.unwrap().iter().any(|w| w.connected)).await;

    let spec = JobSpec::new("short", Task::Function { name: "gate".into(), input: "null".into() });
    let submitted = manager.submit(vec![spec]).await.unwrap().pop().unwrap().unwrap();
    let job = submitted.job;
    let run = submitted.run.unwrap();
    eventually("the run to start", async || {
        manager.get_run(run).await.unwrap().attempts.iter().any(|a| a.started_at.is_some())
    })
    .await;

    // The cancel sees the job live, then its command is held back…
    let cancel = tokio::spawn({
        let m = manager.clone();
        async move { m.cancel(CancelTarget::Job(job)).await }
    });
    store.held().await;
    // …while the job ends and leaves the live state.
    gate.notify_one();
    eventually("the job to leave the live state", async || store.query(|s| s.job(job).is_none())).await;
    store.release();

    let answer = cancel.await.unwrap();
    assert!(answer.is_ok(), "a cancel of a job that ended answers as one that had ended before: {answer:?}");
    stop.cancel();
}

/// An executor of `function:gate` that succeeds once the gate opens.
fn gated(gate: Arc<Notify>) -> ExecutorRegistry {
    struct Gate(Arc<Notify>);
    #[async_trait]
    impl archon_core::executor::Executor for Gate {
        fn capabilities(&self) -> Vec<String> {
            vec!["function:gate".into()]
        }
        async fn execute(&self, ctx: archon_core::executor::ExecContext) -> archon_core::model::AttemptResult {
            self.0.notified().await;
            ctx.output.finish(archon_core::model::ExitStatus::Exited { code: 0 })
        }
    }
    ExecutorRegistry::new().with(Arc::new(Gate(gate)))
}
