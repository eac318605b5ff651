//! A worker session reports only on its own worker's attempts, and `Lost` is a
//! status only the manager assigns. Workers are played by hand over
//! [`InProcTransport`] sessions; the manager's refusals are watched through its
//! `archon_worker_reports_refused_total` counter and the run's state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use archon_core::api::Api;
use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::manager::Manager;
use archon_core::model::{
    AttemptId, AttemptResult, AttemptState, ExitStatus, JobSpec, OutputChunk, OutputStream, OutputTail, Resources,
    RunId, RunState, Task, WorkerId,
};
use archon_core::store::MemStore;
use archon_core::testkit::eventually;
use archon_core::transport::{Assignment, Hello, InProcTransport, ManagerMessage, Session, Transport, WorkerMessage};
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// A running manager on a MemStore and an in-process transport to it; stops
/// the manager when dropped.
struct Fixture {
    manager: Manager,
    transport: InProcTransport,
    stop: CancellationToken,
}

impl Fixture {
    fn start() -> Fixture {
        let manager = Manager::builder(Arc::new(MemStore::new())).build();
        let stop = CancellationToken::new();
        tokio::spawn({
            let (manager, stop) = (manager.clone(), stop.clone());
            async move { manager.run(stop).await }
        });
        Fixture { transport: InProcTransport::new(manager.clone()), manager, stop }
    }

    /// A session for a worker named `name` that can run `capability`.
    async fn connect(&self, name: &str, capability: &str) -> Session {
        let hello = Hello {
            protocol: archon_core::transport::PROTOCOL,
            name: name.into(),
            address: String::new(),
            labels: Default::default(),
            capacity: Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Resources::default() },
            capabilities: [capability.to_owned()].into(),
            running: Vec::new(),
            queue: 0,
        };
        self.transport.connect(hello).await.unwrap()
    }

    async fn submit(&self, spec: JobSpec) -> RunId {
        self.manager.submit(vec![spec]).await.unwrap().pop().unwrap().unwrap().run.unwrap()
    }

    /// How many reports the manager refused for `reason`.
    fn refused(&self, reason: &str) -> f64 {
        let text = self.manager.metrics().encode();
        let series = format!("archon_worker_reports_refused_total{{reason=\"{reason}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&series)?.parse().ok()).unwrap_or(0.0)
    }

    async fn until_refused(&self, reason: &str, count: f64) {
        eventually(&format!("{count} reports are refused as {reason}"), || async { self.refused(reason) >= count })
            .await;
        assert_eq!(self.refused(reason), count, "exactly {count} reports are refused as {reason}");
    }

    async fn until_run(&self, run: RunId, state: RunState) {
        eventually(&format!("{run} is {state}"), || async {
            self.manager.get_run(run).await.unwrap().run.state == state
        })
        .await;
    }

    async fn connected(&self, worker: WorkerId) -> bool {
        self.manager.list_workers().await.unwrap().iter().any(|w| w.worker.id == worker && w.connected)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The next message a session receives, within 10 s.
async fn next_message(session: &mut Session) -> ManagerMessage {
    tokio::time::timeout(Duration::from_secs(10), session.inbound.recv())
        .await
        .expect("a message within 10 s")
        .expect("the session is open")
}

async fn next_assignment(session: &mut Session) -> Assignment {
    match next_message(session).await {
        ManagerMessage::Assign(mut batch) if batch.len() == 1 => batch.remove(0),
        other => panic!("expected one assignment, got {other:?}"),
    }
}

async fn send(session: &Session, message: WorkerMessage) {
    session.outbound.send(message).await.unwrap();
}

fn job(name: &str) -> JobSpec {
    JobSpec::new(name, Task::Function { name: "ok".into(), input: "null".into() })
}

fn exited(code: i32, stdout: &'static [u8]) -> AttemptResult {
    AttemptResult {
        stdout: OutputTail { data: Bytes::from_static(stdout), truncated: 0 },
        ..AttemptResult::status(ExitStatus::Exited { code })
    }
}

fn chunk(a: &Assignment, data: &'static [u8]) -> OutputChunk {
    OutputChunk { run: a.run, attempt: a.attempt, stream: OutputStream::Stdout, data: Bytes::from_static(data) }
}

#[tokio::test]
async fn reports_on_another_workers_attempt_are_refused_and_the_run_stays_with_its_worker() {
    let f = Fixture::start();
    let mut owner = f.connect("owner", "function:ok").await;
    // Runs nothing the job needs, so nothing is ever placed on it.
    let mut other = f.connect("other", "function:other").await;
    let run = f.submit(job("owned")).await;
    let a = next_assignment(&mut owner).await;
    assert_eq!(a.run, run);
    let mut follow = f.manager.follow(run).await.unwrap();

    send(&other, WorkerMessage::Started { run, attempt: a.attempt }).await;
    send(&other, WorkerMessage::Output(chunk(&a, b"forged\n"))).await;
    send(&other, WorkerMessage::Finished { run, attempt: a.attempt, result: exited(0, b"forged\n") }).await;
    f.until_refused("not_assigned", 3.0).await;

    match next_message(&mut other).await {
        ManagerMessage::Cancel { run: r, attempt } => {
            assert_eq!((r, attempt), (run, a.attempt), "the refused start is killed on the worker that claimed it");
        }
        message => panic!("expected a cancel for the refused start, got {message:?}"),
    }
    let detail = f.manager.get_run(run).await.unwrap();
    assert_eq!(detail.run.state, RunState::Scheduled, "neither the start nor the finish was applied");
    assert_eq!(detail.run.current_attempt, Some(a.attempt));
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].worker, owner.welcome.worker, "the attempt stays with its worker");
    assert_eq!(detail.attempts[0].state, AttemptState::Assigned);
    assert!(f.connected(other.welcome.worker).await, "a refused report does not end the session");

    send(&owner, WorkerMessage::Started { run, attempt: a.attempt }).await;
    send(&owner, WorkerMessage::Output(chunk(&a, b"honest\n"))).await;
    let live = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.expect("live output within 10 s");
    assert_eq!(live.unwrap().unwrap(), chunk(&a, b"honest\n"), "followers never saw the forged chunk");
    send(&owner, WorkerMessage::Finished { run, attempt: a.attempt, result: exited(0, b"honest\n") }).await;
    let done = tokio::time::timeout(Duration::from_secs(10), f.manager.wait(run)).await.unwrap().unwrap();
    assert_eq!(done.run.state, RunState::Succeeded);
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(done.attempts[0].worker, owner.welcome.worker);
    assert_eq!(done.attempts[0].result.as_ref().unwrap().stdout.text(), "honest\n", "the owner's result is kept");
    assert_eq!(f.refused("not_assigned"), 3.0, "the owner's reports are all accepted");
}

#[tokio::test]
async fn a_lost_status_from_a_worker_is_refused_and_the_run_is_not_requeued() {
    let f = Fixture::start();
    let mut worker = f.connect("w1", "function:ok").await;
    let run = f.submit(job("claims-lost")).await;
    let a = next_assignment(&mut worker).await;
    send(&worker, WorkerMessage::Started { run, attempt: a.attempt }).await;
    f.until_run(run, RunState::Running).await;

    let lost = AttemptResult::status(ExitStatus::Lost);
    send(&worker, WorkerMessage::Finished { run, attempt: a.attempt, result: lost }).await;
    f.until_refused("lost_status", 1.0).await;

    let detail = f.manager.get_run(run).await.unwrap();
    assert_eq!(detail.run.state, RunState::Running, "the run is not requeued");
    assert_eq!(detail.run.current_attempt, Some(a.attempt));
    assert_eq!(detail.run.retries_used, 0);
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].state, AttemptState::Running);
    assert!(f.connected(worker.welcome.worker).await, "the session stays open");

    send(&worker, WorkerMessage::Finished { run, attempt: a.attempt, result: exited(0, b"done\n") }).await;
    let done = tokio::time::timeout(Duration::from_secs(10), f.manager.wait(run)).await.unwrap().unwrap();
    assert_eq!(done.run.state, RunState::Succeeded, "a real end is still accepted");
    assert_eq!(done.attempts.len(), 1, "no second attempt was ever made");
    assert_eq!(f.refused("not_assigned"), 0.0);
}

#[tokio::test]
async fn a_report_on_an_attempt_not_issued_yet_is_refused_and_does_not_finish_it_later() {
    let f = Fixture::start();
    let mut owner = f.connect("owner", "function:ok").await;
    let other = f.connect("other", "function:other").await;
    let first = f.submit(job("first")).await;
    let a = next_assignment(&mut owner).await;
    assert_eq!(a.run, first);

    // Ids are sequential: the other worker guesses the next run and attempt.
    let (run, attempt) = (RunId(first.get() + 1), AttemptId(a.attempt.get() + 1));
    send(&other, WorkerMessage::Finished { run, attempt, result: exited(0, b"guessed\n") }).await;
    f.until_refused("unknown_attempt", 1.0).await;

    assert_eq!(f.submit(job("second")).await, run);
    let b = next_assignment(&mut owner).await;
    assert_eq!((b.run, b.attempt), (run, attempt), "the guessed ids were the next ones issued");
    assert_eq!(f.manager.get_run(run).await.unwrap().run.state, RunState::Scheduled, "the guess finished nothing");
    send(&owner, WorkerMessage::Finished { run, attempt, result: exited(0, b"real\n") }).await;
    let done = tokio::time::timeout(Duration::from_secs(10), f.manager.wait(run)).await.unwrap().unwrap();
    assert_eq!(done.attempts[0].result.as_ref().unwrap().stdout.text(), "real\n");
    assert!(f.connected(other.welcome.worker).await, "the guessing session stays open");
}

/// `function:vanish` returns `Lost`, which a worker never reports.
struct ClaimsLost;

#[async_trait]
impl Executor for ClaimsLost {
    fn capabilities(&self) -> Vec<String> {
        vec!["function:vanish".into()]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        ctx.output.finish(ExitStatus::Lost)
    }
}

#[tokio::test]
async fn an_executor_returning_lost_is_reported_as_a_failure_that_spends_retries() {
    let f = Fixture::start();
    let config = WorkerConfig::new("w1", Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Resources::default() });
    let registry = ExecutorRegistry::new().with(Arc::new(ClaimsLost));
    let worker = WorkerRuntime::new(config, Arc::new(registry), Arc::new(f.transport.clone()));
    tokio::spawn({
        let stop = f.stop.clone();
        async move { worker.run(stop).await }
    });
    let mut spec = JobSpec::new("vanish", Task::Function { name: "vanish".into(), input: "null".into() });
    spec.retry.max_retries = 1;
    spec.retry.backoff_base = Duration::from_millis(10);
    spec.retry.backoff_max = Duration::from_millis(10);
    let run = f.submit(spec).await;

    let done = tokio::time::timeout(Duration::from_secs(10), f.manager.wait(run)).await.unwrap().unwrap();
    assert_eq!(done.run.state, RunState::Failed, "the run fails once its retries are spent");
    assert_eq!(done.attempts.len(), 2, "one try and one retry, not endless requeues");
    match done.exit() {
        Some(ExitStatus::Failed { reason }) => assert!(reason.contains("lost"), "the reason says why: {reason}"),
        other => panic!("expected a failure with a reason, got {other:?}"),
    }
    assert_eq!(f.refused("lost_status"), 0.0, "the worker never sent Lost");
}
