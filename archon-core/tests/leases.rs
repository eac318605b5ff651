//! Worker leases in process: a worker whose heartbeats no leader can confirm
//! kills its attempt when its lease ends (before any manager could declare it
//! lost), reports it fenced, holds what it is assigned meanwhile, and runs it
//! once its lease is renewed; the run executes once at a time throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use archon_core::Error;
use archon_core::api::{Api, ManagerInfo};
use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::history::History;
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::model::{AttemptResult, ExitStatus, JobSpec, OnDisconnect, Resources, RunState, Task, WorkerState};
use archon_core::state::{ClusterState, Command, Outcome};
use archon_core::store::{Leadership, MemStore, Store};
use archon_core::testkit::eventually;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A [`MemStore`] whose leadership can be made unconfirmable, as a leader cut
/// off from its quorum is.
struct Doubting {
    inner: MemStore,
    confirms: AtomicBool,
}

#[async_trait]
impl Store for Doubting {
    async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, Error> {
        self.inner.propose(commands).await
    }

    fn read(&self, reader: &mut dyn FnMut(&ClusterState)) {
        self.inner.read(reader);
    }

    fn history(&self) -> Arc<dyn History> {
        self.inner.history()
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership()
    }

    async fn confirm_leadership(&self) -> Result<(), Error> {
        if self.confirms.load(Ordering::SeqCst) { Ok(()) } else { Err(Error::Unavailable("no quorum".into())) }
    }

    async fn managers(&self) -> Vec<ManagerInfo> {
        Vec::new()
    }
}

/// Runs `function:hold` until cancelled or released, noting when each attempt
/// ran.
#[derive(Default)]
struct Hold {
    release: Notify,
    spans: Mutex<Vec<(String, Instant, Instant, &'static str)>>,
}

#[async_trait]
impl Executor for Hold {
    fn capabilities(&self) -> Vec<String> {
        vec!["function:hold".into()]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        let start = Instant::now();
        let (status, how) = tokio::select! {
            () = ctx.cancel.cancelled() => (ExitStatus::Cancelled, "killed"),
            () = self.release.notified() => (ExitStatus::Exited { code: 0 }, "released"),
        };
        self.spans.lock().unwrap().push((ctx.attempt.to_string(), start, Instant::now(), how));
        ctx.output.finish(status)
    }
}

struct Setup {
    store: Arc<Doubting>,
    manager: Manager,
    worker: Arc<WorkerRuntime>,
    hold: Arc<Hold>,
    shutdown: CancellationToken,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A manager on a [`Doubting`] store and one worker serving `function:hold`,
/// with a lease of 2 s − 2 % − 400 ms = 1.56 s renewed every 50 ms.
fn setup() -> Setup {
    let store = Arc::new(Doubting { inner: MemStore::new(), confirms: AtomicBool::new(true) });
    let config = ManagerConfig {
        heartbeat_interval: Duration::from_millis(50),
        worker_timeout: Duration::from_secs(2),
        ..ManagerConfig::default()
    };
    config.check().unwrap();
    let manager = Manager::builder(store.clone()).config(config).build();
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let (m, s) = (manager.clone(), shutdown.clone());
        async move { m.run(s).await }
    });
    let hold = Arc::new(Hold::default());
    let worker = Arc::new(WorkerRuntime::new(
        WorkerConfig::new("w1", Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Resources::default() }),
        Arc::new(ExecutorRegistry::new().with(hold.clone())),
        Arc::new(InProcTransport::new(manager.clone())),
    ));
    tokio::spawn({
        let (w, s) = (worker.clone(), shutdown.child_token());
        async move { w.run(s).await }
    });
    Setup { store, manager, worker, hold, shutdown }
}

fn hold_job(on_disconnect: OnDisconnect) -> JobSpec {
    JobSpec { on_disconnect, ..JobSpec::new("held", Task::Function { name: "hold".into(), input: "null".into() }) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_no_leader_confirms_fences_its_attempt_holds_new_work_and_runs_it_once_renewed() {
    let Setup { store, manager, worker, hold, .. } = &setup();
    let mut lease = worker.lease();

    let submitted = manager.submit(vec![hold_job(OnDisconnect::Kill)]).await.unwrap();
    let run = submitted[0].as_ref().unwrap().run.unwrap();
    eventually("the first attempt runs", async || worker.running_count() == 1).await;
    let generation = lease.borrow_and_update().generation;

    // No leader can confirm: the lease ends, the attempt is killed and reported
    // fenced; the manager, still hearing the worker, never declares it lost.
    store.confirms.store(false, Ordering::SeqCst);
    eventually("the lease lapses", async || lease.borrow().generation > generation).await;
    eventually("the fenced attempt ends", async || hold.spans.lock().unwrap().len() == 1).await;
    assert_eq!(hold.spans.lock().unwrap()[0].3, "killed");
    eventually("the run is assigned again", async || manager.get_run(run).await.unwrap().attempts.len() == 2).await;
    let detail = manager.get_run(run).await.unwrap();
    assert_eq!(detail.attempts[0].result.as_ref().map(|r| &r.status), Some(&ExitStatus::Lost), "{detail:?}");
    assert_eq!(worker.running_count(), 0, "the new assignment is held, not started, while the lease has lapsed");

    // Confirmation returns: the lease is renewed and the held attempt starts.
    store.confirms.store(true, Ordering::SeqCst);
    eventually("the held attempt starts", async || worker.running_count() == 1).await;
    hold.release.notify_one();
    eventually("the run succeeds", async || manager.get_run(run).await.unwrap().run.state == RunState::Succeeded).await;

    let workers = manager.list_workers().await.unwrap();
    assert_eq!(workers[0].worker.state, WorkerState::Ready, "the worker was never declared lost");
    let spans = hold.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert!(spans[0].2 <= spans[1].1, "the attempts overlapped: {spans:?}");
    let metrics = manager.metrics().encode();
    assert!(metrics.contains("archon_attempts_fenced_total 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_of_a_keep_job_runs_on_through_a_lapsed_lease_and_its_result_counts() {
    let Setup { store, manager, worker, hold, .. } = &setup();
    let mut lease = worker.lease();
    let submitted = manager.submit(vec![hold_job(OnDisconnect::Keep)]).await.unwrap();
    let run = submitted[0].as_ref().unwrap().run.unwrap();
    eventually("the attempt runs", async || worker.running_count() == 1).await;
    let generation = lease.borrow_and_update().generation;
    store.confirms.store(false, Ordering::SeqCst);
    eventually("the lease lapses", async || lease.borrow().generation > generation).await;
    assert_eq!(worker.running_count(), 1, "a keep attempt is not killed");
    store.confirms.store(true, Ordering::SeqCst);
    eventually("the lease is renewed", async || lease.borrow().until.is_some()).await;
    hold.release.notify_one();
    eventually("the run succeeds", async || manager.get_run(run).await.unwrap().run.state == RunState::Succeeded).await;
    let detail = manager.get_run(run).await.unwrap();
    assert_eq!(detail.attempts.len(), 1, "one attempt, never fenced: {detail:?}");
    assert_eq!(hold.spans.lock().unwrap()[0].3, "released");
}
