#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A caller's proposal goes to the store on its own, not in the driver's
//! batch: it is answered while a batch of the driver's is held up in the store,
//! and the driver still does what its outcome asks (places the run it queued).

#[path = "held/mod.rs"]
mod held;

use std::sync::Arc;
use std::time::Duration;

use archon_core::api::{Api, CancelTarget};
use archon_core::executor::ExecutorRegistry;
use archon_core::manager::Manager;
use archon_core::model::{JobSpec, Resources, RunState, Task};
use archon_core::state::Command;
use archon_core::testkit::eventually;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use held::HeldProposal;

/// Far longer than an answer takes; only a proposal stuck behind the held
/// batch reaches it.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_proposal_is_answered_while_a_batch_of_the_drivers_is_held_in_the_store() {
    // The first batch placing a run: the driver's own.
    let store = HeldProposal::new(|c| matches!(c, Command::AssignAttempt { .. }));
    let manager = Manager::builder(store.clone()).build();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (m, s) = (manager.clone(), stop.clone());
        async move { m.run(s).await }
    });
    let worker = WorkerRuntime::new(
        WorkerConfig::new("w1", Resources { cpu_millis: 4000, memory_bytes: 1 << 30, ..Resources::default() }),
        Arc::new(ExecutorRegistry::new().with(Arc::new(Noop))),
        Arc::new(InProcTransport::new(manager.clone())),
    );
    tokio::spawn({
        let s = stop.clone();
        async move { worker.run(s).await }
    });
    eventually("the worker to join", async || manager.list_workers().await.unwrap().iter().any(|w| w.connected)).await;

    // The driver's batch placing the first job is held in the store…
    let first = JobSpec::new("first", Task::Function { name: "noop".into(), input: "null".into() });
    manager.submit(vec![first]).await.unwrap().pop().unwrap().unwrap();
    store.held().await;

    // …while callers' proposals are answered: a submit and a cancel.
    let spec = |name: &str| JobSpec::new(name, Task::Function { name: "noop".into(), input: "null".into() });
    let second = answered(manager.submit(vec![spec("second")]), "a submit").await.pop().unwrap().unwrap();
    let third = answered(manager.submit(vec![spec("third")]), "a second submit").await.pop().unwrap().unwrap();
    answered(manager.cancel(CancelTarget::Job(third.job)), "a cancel").await;

    // Released, the driver places and runs what the submit queued.
    store.release();
    let run = second.run.unwrap();
    eventually("the second job to succeed", async || {
        manager.get_run(run).await.unwrap().run.state == RunState::Succeeded
    })
    .await;
    let cancelled = manager.get_run(third.run.unwrap()).await.unwrap().run.state;
    assert_eq!(cancelled, RunState::Cancelled, "the cancel applied");
    stop.cancel();
}

/// What `call` answers, failing the test if it takes [`ANSWER_WITHIN`] (it
/// waits behind the held batch) or fails.
async fn answered<T, E: std::fmt::Debug>(call: impl Future<Output = Result<T, E>>, what: &str) -> T {
    match tokio::time::timeout(ANSWER_WITHIN, call).await {
        Ok(answer) => answer.unwrap_or_else(|e| panic!("{what} failed: {e:?}")),
        Err(_) => panic!("{what} is not answered while the driver's batch is held"),
    }
}

/// An executor of `function:noop` that succeeds at once.
struct Noop;

#[async_trait]
impl archon_core::executor::Executor for Noop {
    fn capabilities(&self) -> Vec<String> {
        vec!["function:noop".into()]
    }

    async fn execute(&self, ctx: archon_core::executor::ExecContext) -> archon_core::model::AttemptResult {
        ctx.output.finish(archon_core::model::ExitStatus::Exited { code: 0 })
    }
}
