//! The transport conformance suite: every [`Transport`] runs [`run_all`] with a
//! [`TransportHarness`] that starts a fresh manager and a transport connected to
//! it. The suite plays the worker by hand — it sends [`WorkerMessage`]s on a
//! session's `outbound` and reads [`ManagerMessage`]s from its `inbound` — and
//! watches the effect through the manager's [`Api`], so a transport passes only if
//! every message crosses intact and a session's end is seen on the other side. A
//! failed check panics with the check's name, so the suite is called from a
//! `#[tokio::test]`.
//!
//! ```ignore
//! struct InProc;
//!
//! #[async_trait]
//! impl TransportHarness for InProc {
//!     async fn start(&self) -> TransportFixture {
//!         let stop = CancellationToken::new();
//!         let manager = spawn_manager(&stop);
//!         TransportFixture { transport: Arc::new(InProcTransport::new(manager.clone())), manager, stop }
//!     }
//! }
//!
//! #[tokio::test]
//! async fn inproc_transport_conforms() {
//!     run_all(&InProc).await;
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::api::{Api, CancelTarget, WorkerInfo};
use crate::manager::Manager;
use crate::model::{
    AttemptId, AttemptResult, ExitStatus, JobId, JobSpec, OutputChunk, OutputStream, OutputTail, ResourceUsage,
    Resources, RunId, RunState, Task, WorkerId, WorkerState,
};
use crate::store::MemStore;
use crate::transport::{Hello, ManagerMessage, Session, Transport, WorkerMessage};

/// A running manager and a transport connected to it, fresh for one check.
pub struct TransportFixture {
    /// The manager, already running.
    pub manager: Manager,
    /// A transport whose sessions reach `manager`.
    pub transport: Arc<dyn Transport>,
    /// Cancelling it stops the manager and whatever serves the transport.
    pub stop: CancellationToken,
}

impl std::fmt::Debug for TransportFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportFixture").field("manager", &self.manager).finish_non_exhaustive()
    }
}

/// Starts what a check needs: a manager (see [`spawn_manager`]) and a transport to it.
#[async_trait]
pub trait TransportHarness: Send + Sync {
    /// A fresh manager on an empty store, running, and a transport connected to it.
    async fn start(&self) -> TransportFixture;
}

/// A manager on an empty [`MemStore`] with the default config, running until
/// `stop` is cancelled.
pub fn spawn_manager(stop: &CancellationToken) -> Manager {
    let manager = Manager::builder(Arc::new(MemStore::new())).build();
    tokio::spawn({
        let (manager, stop) = (manager.clone(), stop.clone());
        async move { manager.run(stop).await }
    });
    manager
}

/// Runs every check, each against a fresh fixture.
pub async fn run_all(harness: &dyn TransportHarness) {
    hello_is_welcomed_and_the_worker_is_listed_as_connected(harness).await;
    a_submitted_job_is_assigned_with_its_spec(harness).await;
    reports_make_the_run_succeed_keeping_its_output_and_followers_see_it_live(harness).await;
    cancelling_a_running_run_sends_cancel_to_its_worker(harness).await;
    a_second_session_with_a_connected_name_is_refused(harness).await;
    dropping_the_session_disconnects_the_worker(harness).await;
    a_reconnect_announcing_a_live_attempt_keeps_it_running(harness).await;
    a_reconnect_announcing_a_finished_attempt_gets_it_back_as_stale(harness).await;
    leaving_requeues_the_running_run(harness).await;
}

/// The worker gets an id and a heartbeat interval, shows up as connected with what
/// it announced, and its heartbeats refresh its last-seen time.
pub async fn hello_is_welcomed_and_the_worker_is_listed_as_connected(harness: &dyn TransportHarness) {
    let check = Check::start("hello_is_welcomed_and_the_worker_is_listed_as_connected", harness).await;
    let session = check.connect(hello("w1", Vec::new())).await;
    assert!(session.welcome.stale.is_empty(), "{}: a new worker has no stale attempts", check.name);
    assert_eq!(
        session.welcome.heartbeat_interval,
        check.f.manager.config().heartbeat_interval,
        "{}: the welcome carries the manager's heartbeat interval",
        check.name
    );
    let info = check.worker(session.welcome.worker).await;
    assert!(info.connected, "{}: the worker is listed as connected", check.name);
    assert_eq!(info.worker.name, "w1", "{}: listed under its name", check.name);
    assert_eq!(info.worker.state, WorkerState::Ready, "{}: the worker is ready", check.name);
    assert_eq!(info.worker.capacity, capacity(), "{}: with the capacity it announced", check.name);
    assert_eq!(info.worker.labels, labels(), "{}: with the labels it announced", check.name);
    assert_eq!(info.worker.address, "suite-host:1", "{}: with the address it announced", check.name);

    let before = info.last_seen;
    // Not a wait for an event: last_seen is in milliseconds, so let the clock move on.
    tokio::time::sleep(Duration::from_millis(20)).await;
    check.send(&session, WorkerMessage::Heartbeat { running: 0, seq: 0 }).await;
    let worker = session.welcome.worker;
    check.until("a heartbeat refreshes last_seen", || async { check.worker(worker).await.last_seen > before }).await;
}

/// A job submitted while the worker is connected arrives as an assignment carrying
/// the job's stored spec, secret values included, while the API shows them as `***`.
pub async fn a_submitted_job_is_assigned_with_its_spec(harness: &dyn TransportHarness) {
    let check = Check::start("a_submitted_job_is_assigned_with_its_spec", harness).await;
    let mut session = check.connect(hello("w1", Vec::new())).await;
    let spec = JobSpec {
        env: [("GREETING".to_owned(), "hi".to_owned())].into(),
        secret_env: [("TOKEN".to_owned(), crate::model::Secret::new("s3cr3t-for-the-worker"))].into(),
        timeout: Some(Duration::from_secs(30)),
        priority: 3,
        ..JobSpec::new("assigned", Task::Shell { command: "echo assigned".into() })
    };
    let (job, run) = check.submit(spec.clone()).await;
    let shown = check.f.manager.get_job(job).await.unwrap_or_else(|e| panic!("{}: get_job: {e}", check.name)).job.spec;
    assert_eq!(shown.secret_env["TOKEN"].expose(), "***", "{}: get_job shows the secret as ***", check.name);
    assert_eq!(
        *shown,
        JobSpec { secret_env: [("TOKEN".to_owned(), crate::model::Secret::redacted())].into(), ..spec.clone() }
    );
    match check.next_message(&mut session).await {
        ManagerMessage::Assign(batch) => {
            assert_eq!(batch.len(), 1, "{}: one assignment for one job", check.name);
            let a = &batch[0];
            assert_eq!((a.job, a.run), (job, run), "{}: the assignment names the job and run", check.name);
            assert_eq!(*a.spec, spec, "{}: the assignment carries the spec intact, secret values too", check.name);
        }
        other => panic!("{}: expected an assignment, got {other:?}", check.name),
    }
}

/// Started, output and finished reports drive the run to success; the result's
/// output tail is kept and a follower sees the live output before the run ends.
pub async fn reports_make_the_run_succeed_keeping_its_output_and_followers_see_it_live(harness: &dyn TransportHarness) {
    let check =
        Check::start("reports_make_the_run_succeed_keeping_its_output_and_followers_see_it_live", harness).await;
    let mut session = check.connect(hello("w1", Vec::new())).await;
    let (_, run, attempt) = check.assigned_and_started(&mut session).await;
    let mut follow = check.f.manager.follow(run).await.unwrap_or_else(|e| panic!("{}: follow: {e}", check.name));

    let chunk = OutputChunk { run, attempt, stream: OutputStream::Stdout, data: Bytes::from_static(b"hello\n") };
    check.send(&session, WorkerMessage::Output(chunk.clone())).await;
    let seen = check.within("the follower sees the live output", follow.next()).await;
    match seen {
        Some(Ok(seen)) => assert_eq!(seen, chunk, "{}: the follower sees the chunk as sent", check.name),
        other => panic!("{}: expected the live chunk, got {other:?}", check.name),
    }

    let result = AttemptResult {
        status: ExitStatus::Exited { code: 0 },
        stdout: OutputTail { data: Bytes::from_static(b"hello\n"), truncated: 2 },
        stderr: OutputTail { data: Bytes::from_static(b"warning\n"), truncated: 0 },
        usage: Some(ResourceUsage { cpu_user_us: 520_000, cpu_system_us: 1, peak_memory_bytes: 1 << 40, wall_us: 7 }),
    };
    check.send(&session, WorkerMessage::Finished { run, attempt, result: result.clone() }).await;
    let detail = check.within("the run ends", check.f.manager.wait(run)).await;
    let detail = detail.unwrap_or_else(|e| panic!("{}: wait: {e}", check.name));
    assert_eq!(detail.run.state, RunState::Succeeded, "{}: the run succeeded", check.name);
    let kept = detail.attempts.last().and_then(|a| a.result.clone());
    assert_eq!(kept, Some(result), "{}: the attempt keeps the reported result, output tails and usage", check.name);
    let rest = check.within("the follower's stream ends with the run", follow.next()).await;
    assert!(rest.is_none(), "{}: the follower's stream ends with the run, got {rest:?}", check.name);
}

/// Cancelling a running run sends a cancel for its attempt to the worker; the
/// worker's cancelled result ends the run cancelled.
pub async fn cancelling_a_running_run_sends_cancel_to_its_worker(harness: &dyn TransportHarness) {
    let check = Check::start("cancelling_a_running_run_sends_cancel_to_its_worker", harness).await;
    let mut session = check.connect(hello("w1", Vec::new())).await;
    let (_, run, attempt) = check.assigned_and_started(&mut session).await;
    check.f.manager.cancel(CancelTarget::Run(run)).await.unwrap_or_else(|e| panic!("{}: cancel: {e}", check.name));
    match check.next_message(&mut session).await {
        ManagerMessage::Cancel { run: r, attempt: a } => {
            assert_eq!((r, a), (run, attempt), "{}: the cancel names the run's attempt", check.name);
        }
        other => panic!("{}: expected a cancel, got {other:?}", check.name),
    }
    let result = AttemptResult::status(ExitStatus::Cancelled);
    check.send(&session, WorkerMessage::Finished { run, attempt, result }).await;
    check.until_run(run, RunState::Cancelled).await;
}

/// While a worker's session is open, a second session under the same name is
/// refused with the manager's error, and the first stays connected.
pub async fn a_second_session_with_a_connected_name_is_refused(harness: &dyn TransportHarness) {
    let check = Check::start("a_second_session_with_a_connected_name_is_refused", harness).await;
    let first = check.connect(hello("w1", Vec::new())).await;
    let second = check.within("the second connect answers", check.f.transport.connect(hello("w1", Vec::new()))).await;
    match second {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains("w1"), "{}: the refusal names the worker: {message}", check.name);
        }
        Err(other) => panic!("{}: expected an invalid-argument refusal, got {other:?}", check.name),
        Ok(s) => panic!("{}: a second session named w1 was accepted as {}", check.name, s.welcome.worker),
    }
    assert!(check.worker(first.welcome.worker).await.connected, "{}: the first session stays connected", check.name);
}

/// Dropping both ends of a session is seen by the manager: the worker is listed as
/// disconnected within seconds.
pub async fn dropping_the_session_disconnects_the_worker(harness: &dyn TransportHarness) {
    let check = Check::start("dropping_the_session_disconnects_the_worker", harness).await;
    let session = check.connect(hello("w1", Vec::new())).await;
    let worker = session.welcome.worker;
    assert!(check.worker(worker).await.connected, "{}: connected before the drop", check.name);
    drop(session);
    check.until("the worker is listed as disconnected", || async { !check.worker(worker).await.connected }).await;
}

/// A worker that reconnects under the same name, announcing an attempt that is
/// still its own, keeps its id and the attempt: nothing is stale and the run runs on.
pub async fn a_reconnect_announcing_a_live_attempt_keeps_it_running(harness: &dyn TransportHarness) {
    let check = Check::start("a_reconnect_announcing_a_live_attempt_keeps_it_running", harness).await;
    let mut session = check.connect(hello("w1", Vec::new())).await;
    let worker = session.welcome.worker;
    let (_, run, attempt) = check.assigned_and_started(&mut session).await;
    drop(session);
    check.until("the worker is listed as disconnected", || async { !check.worker(worker).await.connected }).await;

    let again = check.connect(hello("w1", vec![attempt])).await;
    assert_eq!(again.welcome.worker, worker, "{}: the same name gets the same id", check.name);
    assert!(again.welcome.stale.is_empty(), "{}: a live attempt is not stale: {:?}", check.name, again.welcome.stale);
    let detail = check.f.manager.get_run(run).await.unwrap_or_else(|e| panic!("{}: get_run: {e}", check.name));
    assert_eq!(detail.run.state, RunState::Running, "{}: the run still runs", check.name);
    assert_eq!(detail.run.current_attempt, Some(attempt), "{}: on the same attempt", check.name);
}

/// A worker that reconnects announcing an attempt that has since ended gets it
/// back in the welcome as stale (to kill it).
pub async fn a_reconnect_announcing_a_finished_attempt_gets_it_back_as_stale(harness: &dyn TransportHarness) {
    let check = Check::start("a_reconnect_announcing_a_finished_attempt_gets_it_back_as_stale", harness).await;
    let mut session = check.connect(hello("w1", Vec::new())).await;
    let worker = session.welcome.worker;
    let (_, run, attempt) = check.assigned_and_started(&mut session).await;
    let result = AttemptResult::status(ExitStatus::Exited { code: 0 });
    check.send(&session, WorkerMessage::Finished { run, attempt, result }).await;
    check.until_run(run, RunState::Succeeded).await;
    drop(session);
    check.until("the worker is listed as disconnected", || async { !check.worker(worker).await.connected }).await;

    let again = check.connect(hello("w1", vec![attempt])).await;
    assert_eq!(again.welcome.worker, worker, "{}: the same name gets the same id", check.name);
    assert_eq!(again.welcome.stale, vec![attempt], "{}: the finished attempt is stale", check.name);
}

/// A worker saying it leaves gets its running run requeued, and is listed as left
/// — even when it drops the session right after saying so, as the worker runtime
/// does on shutdown: what was sent before the drop still arrives.
pub async fn leaving_requeues_the_running_run(harness: &dyn TransportHarness) {
    let check = Check::start("leaving_requeues_the_running_run", harness).await;
    let mut session = check.connect(hello("w1", Vec::new())).await;
    let worker = session.welcome.worker;
    let (_, run, _) = check.assigned_and_started(&mut session).await;
    check.send(&session, WorkerMessage::Leaving).await;
    drop(session);
    check.until_run(run, RunState::Pending).await;
    assert_eq!(check.worker(worker).await.worker.state, WorkerState::Left, "{}: the worker is left", check.name);
}

// ---------------------------------------------------------------- helpers

/// How long any one expected effect may take.
const PATIENCE: Duration = Duration::from_secs(10);

fn capacity() -> Resources {
    Resources { cpu_millis: 4_000, memory_bytes: 8 << 30, network_mbps: 100, devices: BTreeMap::new() }
}

fn labels() -> BTreeMap<String, String> {
    [("zone".to_owned(), "suite".to_owned())].into()
}

fn hello(name: &str, running: Vec<AttemptId>) -> Hello {
    Hello {
        protocol: crate::transport::PROTOCOL,
        name: name.to_owned(),
        address: "suite-host:1".to_owned(),
        labels: labels(),
        capacity: capacity(),
        capabilities: BTreeSet::from(["shell".to_owned()]),
        running,
        queue: 0,
    }
}

/// One check's fixture and name; stops the fixture when dropped, even on panic.
struct Check {
    name: &'static str,
    f: TransportFixture,
}

impl Drop for Check {
    fn drop(&mut self) {
        self.f.stop.cancel();
    }
}

impl Check {
    async fn start(name: &'static str, harness: &dyn TransportHarness) -> Check {
        Check { name, f: harness.start().await }
    }

    async fn within<T>(&self, what: &str, fut: impl Future<Output = T>) -> T {
        match tokio::time::timeout(PATIENCE, fut).await {
            Ok(value) => value,
            Err(_) => panic!("{}: {what}: not within {PATIENCE:?}", self.name),
        }
    }

    async fn until<F: Future<Output = bool>>(&self, what: &str, mut condition: impl FnMut() -> F) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !condition().await {
            assert!(tokio::time::Instant::now() < deadline, "{}: {what}: not within {PATIENCE:?}", self.name);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn connect(&self, hello: Hello) -> Session {
        let name = hello.name.clone();
        match self.within("connect", self.f.transport.connect(hello)).await {
            Ok(session) => session,
            Err(e) => panic!("{}: connecting {name} failed: {e}", self.name),
        }
    }

    async fn send(&self, session: &Session, message: WorkerMessage) {
        let what = format!("{message:?}");
        if self.within("sending a report", session.outbound.send(message)).await.is_err() {
            panic!("{}: the session closed before {what} was sent", self.name);
        }
    }

    async fn next_message(&self, session: &mut Session) -> ManagerMessage {
        match self.within("a message from the manager", session.inbound.recv()).await {
            Some(message) => message,
            None => panic!("{}: the session closed while a message was expected", self.name),
        }
    }

    async fn worker(&self, id: WorkerId) -> WorkerInfo {
        let workers =
            self.f.manager.list_workers().await.unwrap_or_else(|e| panic!("{}: list_workers: {e}", self.name));
        match workers.into_iter().find(|w| w.worker.id == id) {
            Some(info) => info,
            None => panic!("{}: worker {id} is not listed", self.name),
        }
    }

    async fn submit(&self, spec: JobSpec) -> (JobId, RunId) {
        let mut results =
            self.f.manager.submit(vec![spec]).await.unwrap_or_else(|e| panic!("{}: submit: {e}", self.name));
        match results.pop() {
            Some(Ok(submitted)) => match submitted.run {
                Some(run) => (submitted.job, run),
                None => panic!("{}: a one-off job got no run", self.name),
            },
            other => panic!("{}: the job was not accepted: {other:?}", self.name),
        }
    }

    async fn until_run(&self, run: RunId, state: RunState) {
        let manager = &self.f.manager;
        let what = format!("{run} becomes {state}");
        self.until(&what, || async { manager.get_run(run).await.is_ok_and(|d| d.run.state == state) }).await;
    }

    /// Submits a shell job, takes its assignment and reports it started; returns
    /// once the manager has the run running.
    async fn assigned_and_started(&self, session: &mut Session) -> (JobId, RunId, AttemptId) {
        let (job, run) = self.submit(JobSpec::new("suite job", Task::Shell { command: "echo suite".into() })).await;
        let attempt = match self.next_message(session).await {
            ManagerMessage::Assign(batch) => match batch.iter().find(|a| a.run == run) {
                Some(a) => a.attempt,
                None => panic!("{}: the assignment is for other runs: {batch:?}", self.name),
            },
            other => panic!("{}: expected an assignment, got {other:?}", self.name),
        };
        self.send(session, WorkerMessage::Started { run, attempt }).await;
        self.until_run(run, RunState::Running).await;
        (job, run, attempt)
    }
}
