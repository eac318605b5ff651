//! Over real gRPC on a loopback socket, with worker sessions opened by hand: a
//! session's reports on another worker's attempt, and a `Lost` a worker claims,
//! cross the wire intact and are refused by the manager (counted in
//! `archon_worker_reports_refused_total`), while both sessions stay open and the
//! attempt's own worker finishes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use archon_core::api::Api;
use archon_core::manager::Manager;
use archon_core::model::{
    AttemptResult, ExitStatus, JobSpec, OutputChunk, OutputStream, OutputTail, Resources, RunId, RunState, Task,
    WorkerId,
};
use archon_core::store::MemStore;
use archon_core::testkit::eventually;
use archon_core::transport::{Assignment, Hello, ManagerMessage, WorkerMessage};
use archon_net::proto::{self, manager_to_worker, worker_sessions_client::WorkerSessionsClient};
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

/// A worker session opened by hand: what it sends and what it receives.
struct RawSession {
    worker: WorkerId,
    send: mpsc::Sender<proto::WorkerToManager>,
    receive: Streaming<proto::ManagerToWorker>,
}

impl RawSession {
    /// Says hello as `name`, able to run `capability`, and reads the welcome.
    async fn open(address: SocketAddr, name: &str, capability: &str) -> RawSession {
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
        let (send, rx) = mpsc::channel(16);
        send.send(proto::WorkerToManager::from(hello)).await.unwrap();
        let mut client = WorkerSessionsClient::connect(format!("http://{address}")).await.unwrap();
        let opened = tokio::time::timeout(Duration::from_secs(15), client.open_session(ReceiverStream::new(rx)))
            .await
            .expect("the manager answers the session in time");
        let mut receive = opened.expect("the session is accepted").into_inner();
        match receive.message().await.unwrap().and_then(|m| m.kind) {
            Some(manager_to_worker::Kind::Welcome(w)) => RawSession { worker: WorkerId(w.worker), send, receive },
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    async fn report(&self, message: WorkerMessage) {
        self.send.send(message.into()).await.expect("the session is open");
    }

    async fn next(&mut self) -> ManagerMessage {
        let message = tokio::time::timeout(Duration::from_secs(10), self.receive.message())
            .await
            .expect("a message within 10 s")
            .expect("the stream is healthy")
            .expect("the session is open");
        ManagerMessage::try_from(message).unwrap()
    }

    async fn assignment(&mut self) -> Assignment {
        match self.next().await {
            ManagerMessage::Assign(mut batch) if batch.len() == 1 => batch.remove(0),
            other => panic!("expected one assignment, got {other:?}"),
        }
    }
}

fn refused(manager: &Manager, reason: &str) -> f64 {
    let text = manager.metrics().encode();
    let series = format!("archon_worker_reports_refused_total{{reason=\"{reason}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)?.parse().ok()).unwrap_or(0.0)
}

async fn until_refused(manager: &Manager, reason: &str, count: f64) {
    eventually(&format!("{count} reports are refused as {reason}"), || async { refused(manager, reason) >= count })
        .await;
    assert_eq!(refused(manager, reason), count, "exactly {count} reports are refused as {reason}");
}

async fn connected(manager: &Manager, worker: WorkerId) -> bool {
    manager.list_workers().await.unwrap().iter().any(|w| w.worker.id == worker && w.connected)
}

fn exited(code: i32, stdout: &'static [u8]) -> AttemptResult {
    AttemptResult {
        stdout: OutputTail { data: Bytes::from_static(stdout), truncated: 0 },
        ..AttemptResult::status(ExitStatus::Exited { code })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_on_another_workers_attempt_and_a_claimed_lost_are_refused_across_the_wire() {
    let manager = Manager::builder(Arc::new(MemStore::new())).build();
    let stop = CancellationToken::new();
    tokio::spawn({
        let (manager, stop) = (manager.clone(), stop.clone());
        async move { manager.run(stop).await }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(archon_net::serve_manager(listener, manager.clone(), stop.clone()));

    let mut owner = RawSession::open(address, "owner", "function:ok").await;
    // Runs nothing the job needs, so nothing is ever placed on it.
    let mut other = RawSession::open(address, "other", "function:other").await;
    let spec = JobSpec::new("owned", Task::Function { name: "ok".into(), input: "null".into() });
    let run: RunId = manager.submit(vec![spec]).await.unwrap().pop().unwrap().unwrap().run.unwrap();
    let a = owner.assignment().await;
    assert_eq!(a.run, run);

    let forged =
        OutputChunk { run, attempt: a.attempt, stream: OutputStream::Stdout, data: Bytes::from_static(b"forged\n") };
    other.report(WorkerMessage::Started { run, attempt: a.attempt }).await;
    other.report(WorkerMessage::Output(forged)).await;
    other.report(WorkerMessage::Finished { run, attempt: a.attempt, result: exited(0, b"forged\n") }).await;
    until_refused(&manager, "not_assigned", 3.0).await;
    match other.next().await {
        ManagerMessage::Cancel { run: r, attempt } => assert_eq!((r, attempt), (run, a.attempt)),
        message => panic!("expected a cancel for the refused start, got {message:?}"),
    }
    let detail = manager.get_run(run).await.unwrap();
    assert_eq!(detail.run.state, RunState::Scheduled, "nothing the other worker said was applied");
    assert_eq!(detail.attempts[0].worker, owner.worker);

    owner.report(WorkerMessage::Started { run, attempt: a.attempt }).await;
    let lost = AttemptResult::status(ExitStatus::Lost);
    owner.report(WorkerMessage::Finished { run, attempt: a.attempt, result: lost }).await;
    until_refused(&manager, "lost_status", 1.0).await;
    let detail = manager.get_run(run).await.unwrap();
    assert_eq!(detail.run.state, RunState::Running, "the start was applied, the Lost was not: not requeued");
    assert_eq!((detail.attempts.len(), detail.run.retries_used), (1, 0));
    assert!(connected(&manager, owner.worker).await, "the owner's session stays open");
    assert!(connected(&manager, other.worker).await, "so does the other's");

    owner.report(WorkerMessage::Finished { run, attempt: a.attempt, result: exited(0, b"honest\n") }).await;
    let done = tokio::time::timeout(Duration::from_secs(10), manager.wait(run)).await.unwrap().unwrap();
    assert_eq!(done.run.state, RunState::Succeeded);
    assert_eq!(done.attempts.len(), 1);
    assert_eq!(done.attempts[0].result.as_ref().unwrap().stdout.text(), "honest\n");

    drop((owner, other));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server stops").unwrap().unwrap();
}
