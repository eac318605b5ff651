//! The manager and worker across a change of leadership, in process: a store
//! whose leadership the test switches off and on, like a Raft failover.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use archon_core::Error;
use archon_core::api::Api;
use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::model::{AttemptResult, ExitStatus, JobSpec, Resources, RunState, Task};
use archon_core::state::{ClusterState, Command, Outcome};
use archon_core::store::{Leadership, MemStore, Store};
use archon_core::testkit::eventually;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A MemStore whose leadership the test controls. With `lose_finishes` set, a
/// proposal carrying a finished attempt waits until leadership is switched off
/// and then fails, as a leader deposed before committing it would.
struct SwitchedStore {
    inner: MemStore,
    leadership: watch::Sender<Leadership>,
    lose_finishes: AtomicBool,
}

impl SwitchedStore {
    fn new() -> Arc<SwitchedStore> {
        Arc::new(SwitchedStore {
            inner: MemStore::new(),
            leadership: watch::channel(Leadership { is_leader: true, leader: None, term: 1, elected: false }).0,
            lose_finishes: AtomicBool::new(false),
        })
    }

    fn lead(&self, is_leader: bool) {
        self.leadership.send_modify(|l| {
            l.is_leader = is_leader;
            l.term += 1;
        });
    }
}

#[async_trait]
impl Store for SwitchedStore {
    async fn propose(&self, commands: Vec<Command>) -> Result<Vec<Outcome>, Error> {
        if !self.leadership.borrow().is_leader {
            return Err(Error::NotLeader { leader: None });
        }
        let finishes = commands.iter().any(|c| matches!(c, Command::FinishAttempt { .. }));
        if finishes && self.lose_finishes.swap(false, Ordering::SeqCst) {
            let mut rx = self.leadership.subscribe();
            let _ = rx.wait_for(|l| !l.is_leader).await;
            return Err(Error::NotLeader { leader: None });
        }
        self.inner.propose(commands).await
    }

    fn read(&self, reader: &mut dyn FnMut(&ClusterState)) {
        self.inner.read(reader);
    }

    fn history(&self) -> Arc<dyn archon_core::history::History> {
        self.inner.history()
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.subscribe()
    }
}

/// A manager with default settings on `store`, running until the token is cancelled.
fn running(store: &Arc<SwitchedStore>) -> (Manager, CancellationToken) {
    let manager = Manager::builder(store.clone()).config(ManagerConfig::default()).build();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (m, s) = (manager.clone(), stop.clone());
        async move { m.run(s).await }
    });
    (manager, stop)
}

/// Runs `function:quick` and `function:chatty`, counting executions.
#[derive(Default)]
struct Quick {
    runs: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl Executor for Quick {
    fn capabilities(&self) -> Vec<String> {
        vec!["function:quick".into(), "function:chatty".into()]
    }

    /// `quick` ends at once; `chatty` prints a line and runs until cancelled.
    async fn execute(&self, mut ctx: ExecContext) -> AttemptResult {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if matches!(&ctx.spec.task, Task::Function { name, .. } if name == "chatty") {
            ctx.output.write(archon_core::model::OutputStream::Stdout, "hello\n".into()).await;
            ctx.cancel.cancelled().await;
        }
        ctx.output.finish(ExitStatus::Exited { code: 0 })
    }
}

// On a paused clock, like the grace-period test below: a pause ends only once every
// task has reacted to what came before it (tokio advances the clock when all are
// idle), so "deposed for a while" cannot race the manager on a busy machine.
#[tokio::test(start_paused = true)]
async fn a_result_lost_with_a_deposed_leader_is_sent_again_and_the_run_is_not_rerun() {
    let store = SwitchedStore::new();
    let (manager, stop) = running(&store);
    let quick = Arc::new(Quick::default());
    let mut config =
        WorkerConfig::new("w1", Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Default::default() });
    config.reconnect_base = Duration::from_millis(20);
    config.reconnect_cap = Duration::from_millis(100);
    let worker = Arc::new(WorkerRuntime::new(
        config,
        Arc::new(ExecutorRegistry::new().with(quick.clone())),
        Arc::new(InProcTransport::new(manager.clone())),
    ));
    tokio::spawn({
        let (w, s) = (worker.clone(), stop.clone());
        async move { w.run(s).await }
    });
    eventually("the worker connects", async || manager.list_workers().await.unwrap().iter().any(|w| w.connected)).await;

    store.lose_finishes.store(true, Ordering::SeqCst);
    let spec = JobSpec::new("q", Task::Function { name: "quick".into(), input: "null".into() });
    let run = manager.submit(vec![spec]).await.unwrap().remove(0).unwrap().run.unwrap();
    // The result reaches the manager, whose proposal of it is then lost with its leadership.
    eventually("the result is in flight", async || !store.lose_finishes.load(Ordering::SeqCst)).await;
    // Deposed long enough for the proposal to fail and the manager to close its sessions.
    store.lead(false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.lead(true);

    let detail = tokio::time::timeout(Duration::from_secs(10), manager.wait(run)).await.expect("run ended").unwrap();
    assert_eq!(detail.run.state, RunState::Succeeded);
    assert_eq!(detail.attempts.len(), 1, "the result was sent again, not the run rerun: {:?}", detail.attempts);
    assert_eq!(quick.runs.load(Ordering::SeqCst), 1, "the job ran once");
    stop.cancel();
}

#[tokio::test]
async fn following_output_ends_with_not_leader_when_the_manager_is_deposed() {
    let store = SwitchedStore::new();
    let manager = Manager::builder(store.clone()).build();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (m, s) = (manager.clone(), stop.clone());
        async move { m.run(s).await }
    });
    let worker = Arc::new(WorkerRuntime::new(
        WorkerConfig::new("w1", Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Default::default() }),
        Arc::new(ExecutorRegistry::new().with(Arc::new(Quick::default()))),
        Arc::new(InProcTransport::new(manager.clone())),
    ));
    tokio::spawn({
        let (w, s) = (worker.clone(), stop.clone());
        async move { w.run(s).await }
    });
    eventually("the worker connects", async || manager.list_workers().await.unwrap().iter().any(|w| w.connected)).await;
    let spec = JobSpec::new("c", Task::Function { name: "chatty".into(), input: "null".into() });
    let run = manager.submit(vec![spec]).await.unwrap().remove(0).unwrap().run.unwrap();
    let mut follow = manager.follow(run).await.unwrap();
    use futures::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(&first.data[..], b"hello\n");
    store.lead(false);
    let end = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.expect("the stream ends");
    assert!(matches!(end, Some(Err(Error::NotLeader { .. }))), "{end:?}");
    stop.cancel();
}

#[tokio::test]
async fn a_follower_refuses_the_api_naming_the_leader_and_serves_status() {
    let store = SwitchedStore::new();
    store.leadership.send_modify(|l| {
        l.is_leader = false;
        l.leader = Some("http://10.0.0.9:50051".into());
    });
    let manager = Manager::builder(store.clone()).build();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (m, s) = (manager.clone(), stop.clone());
        async move { m.run(s).await }
    });
    let spec = JobSpec::new("q", Task::Function { name: "quick".into(), input: "null".into() });
    let err = manager.submit(vec![spec]).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotLeader { leader: Some(l) } if l == "http://10.0.0.9:50051"),
        "submit on a follower: {err:?}"
    );
    assert!(matches!(manager.list_workers().await, Err(Error::NotLeader { .. })));
    let status = manager.status().await.unwrap();
    assert_eq!(status.managers[0].role, "follower");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_new_leader_gives_known_workers_a_fresh_grace_period_before_reaping() {
    use archon_core::model::WorkerState;
    use archon_core::transport::{Hello, Transport};
    let store = SwitchedStore::new();
    let config = ManagerConfig {
        heartbeat_interval: Duration::from_millis(100),
        worker_timeout: Duration::from_millis(800),
        ..ManagerConfig::default()
    };
    let manager = Manager::builder(store.clone()).config(config).build();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (m, s) = (manager.clone(), stop.clone());
        async move { m.run(s).await }
    });
    // A worker that registers and then says nothing (its session stays open).
    let hello = Hello {
        protocol: archon_core::transport::PROTOCOL,
        name: "quiet".into(),
        address: String::new(),
        labels: Default::default(),
        capacity: Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Default::default() },
        capabilities: ["shell".to_owned()].into(),
        running: Vec::new(),
        queue: 0,
    };
    let mut session = InProcTransport::new(manager.clone()).connect(hello).await.unwrap();
    // The clock is paused (see above): these instants and pauses are exact.
    let registered = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Leadership moves away and comes back 0.5 s after the worker was last heard.
    store.lead(false);
    let ended =
        tokio::time::timeout(Duration::from_secs(10), async { while session.inbound.recv().await.is_some() {} });
    ended.await.expect("the deposed manager ends the worker's session");
    store.lead(true);
    let regained = tokio::time::Instant::now();
    let state = || async { manager.list_workers().await.ok().and_then(|w| w.first().map(|w| w.worker.state)) };
    // Silent for 0.8 s since it was last heard, but not since this leadership began.
    tokio::time::sleep_until(registered + Duration::from_millis(1000)).await;
    assert_eq!(state().await, Some(WorkerState::Ready), "reaped before its fresh grace period ended");
    eventually("the silent worker is reaped after its grace", async || state().await == Some(WorkerState::Lost)).await;
    assert!(regained.elapsed() >= Duration::from_millis(800), "reaped {:?} after regaining", regained.elapsed());
    stop.cancel();
}

// Paused clock: the manager's wait for a just-elected store is bounded in time,
// and the test reads that bound without sleeping through it.
#[tokio::test(start_paused = true)]
async fn a_submit_reaching_a_node_just_elected_waits_for_it_to_lead_and_one_that_never_leads_is_refused() {
    let store = SwitchedStore::new();
    let (manager, stop) = running(&store);
    let submit = |name: &str| {
        let (m, spec) =
            (manager.clone(), JobSpec::new(name, Task::Function { name: "quick".into(), input: "null".into() }));
        tokio::spawn(async move { m.submit(vec![spec]).await })
    };

    // Won the election; its first entry has not applied yet.
    store.leadership.send_modify(|l| {
        l.is_leader = false;
        l.elected = true;
    });
    let mut held = submit("held");
    // The paused clock moves only once every task is idle: no answer by then is no answer at all.
    let early = tokio::time::timeout(Duration::from_millis(500), &mut held).await;
    assert!(early.is_err(), "a submit to a node just elected is held, not refused: {early:?}");
    store.leadership.send_modify(|l| {
        l.is_leader = true;
        l.elected = false;
    });
    let accepted = held.await.unwrap().expect("accepted once the node leads");
    assert!(accepted[0].is_ok(), "{accepted:?}");

    // Elected, and never leading: refused once the wait is over, as any follower refuses.
    store.leadership.send_modify(|l| {
        l.is_leader = false;
        l.elected = true;
    });
    let refused = submit("refused").await.unwrap();
    assert!(matches!(refused, Err(Error::NotLeader { .. })), "{refused:?}");
    stop.cancel();
}
