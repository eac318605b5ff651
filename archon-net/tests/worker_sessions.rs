//! Worker sessions over real gRPC on loopback sockets: a manager served by
//! `archon_net::serve_manager` (API and worker sessions on one port), real
//! `WorkerRuntime`s connected through `GrpcTransport`, and hand-made streams for
//! what a well-behaved worker never sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use archon_core::Error;
use archon_core::api::{Api, CancelTarget, WorkerInfo};
use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::model::{AttemptResult, ExitStatus, JobSpec, OutputStream, Resources, RunId, RunState, Task};
use archon_core::state::Rejection;
use archon_core::store::MemStore;
use archon_core::transport::{Hello, Transport};
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use archon_net::proto::{self, worker_sessions_client::WorkerSessionsClient, worker_to_manager};
use archon_net::status::status_to_error;
use archon_net::{GrpcClient, GrpcTransport};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming};

// ---------------------------------------------------------------- a test executor

/// `function:echo` prints its input; `function:sleep` runs until cancelled.
struct TestFunctions;

#[async_trait]
impl Executor for TestFunctions {
    fn capabilities(&self) -> Vec<String> {
        vec!["function:echo".into(), "function:sleep".into()]
    }

    async fn execute(&self, mut ctx: ExecContext) -> AttemptResult {
        let Task::Function { name, input } = ctx.spec.task.clone() else {
            return ctx.output.finish(ExitStatus::Failed { reason: "not a function task".into() });
        };
        match name.as_str() {
            "echo" => {
                ctx.output.write(OutputStream::Stdout, Bytes::from(format!("{input}\n"))).await;
                ctx.output.finish(ExitStatus::Exited { code: 0 })
            }
            "sleep" => {
                ctx.output.write(OutputStream::Stdout, Bytes::from_static(b"sleeping\n")).await;
                ctx.cancel.cancelled().await;
                ctx.output.finish(ExitStatus::Cancelled)
            }
            other => ctx.output.finish(ExitStatus::Failed { reason: format!("no function {other}") }),
        }
    }
}

fn function(name: &str, input: &str) -> JobSpec {
    JobSpec::new(format!("{name} job"), Task::Function { name: name.into(), input: input.into() })
}

fn capacity() -> Resources {
    Resources { cpu_millis: 8_000, memory_bytes: 8 << 30, network_mbps: 100, devices: Default::default() }
}

// ---------------------------------------------------------------- a manager behind gRPC

/// A manager on a MemStore, served on a loopback port; the server can be stopped
/// and started again on the same port without stopping the manager.
struct Served {
    manager: Manager,
    address: SocketAddr,
    stop_manager: CancellationToken,
    stop_server: CancellationToken,
    server: Option<JoinHandle<Result<(), archon_net::Error>>>,
}

impl Served {
    async fn start(config: ManagerConfig) -> Served {
        let manager = Manager::builder(Arc::new(MemStore::new())).config(config).build();
        let stop_manager = CancellationToken::new();
        tokio::spawn({
            let (manager, stop) = (manager.clone(), stop_manager.clone());
            async move { manager.run(stop).await }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut served = Served { manager, address, stop_manager, stop_server: CancellationToken::new(), server: None };
        served.serve(listener);
        served
    }

    fn serve(&mut self, listener: TcpListener) {
        self.stop_server = CancellationToken::new();
        let server = archon_net::serve_manager(listener, self.manager.clone(), self.stop_server.clone());
        self.server = Some(tokio::spawn(server));
    }

    /// Stops serving (the manager keeps running) and waits for the port to close.
    async fn stop_serving(&mut self) {
        self.stop_server.cancel();
        let server = self.server.take().expect("the server runs");
        let stopped = tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server stops in time");
        stopped.unwrap().unwrap();
    }

    /// Serves the same manager on the same address again.
    async fn serve_again(&mut self) {
        let listener = TcpListener::bind(self.address).await.expect("the port is free again after a stop");
        self.serve(listener);
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A real worker named `name` connected through gRPC, until the token is cancelled.
    fn spawn_worker(&self, name: &str) -> (CancellationToken, JoinHandle<Result<(), Error>>) {
        let config = WorkerConfig {
            reconnect_base: Duration::from_millis(50),
            reconnect_cap: Duration::from_millis(400),
            ..WorkerConfig::new(name, capacity())
        };
        let registry = ExecutorRegistry::new().with(Arc::new(TestFunctions));
        let transport = Arc::new(GrpcTransport::new(vec![self.endpoint()]));
        let worker = WorkerRuntime::new(config, Arc::new(registry), transport);
        let stop = CancellationToken::new();
        let handle = tokio::spawn({
            let stop = stop.clone();
            async move { worker.run(stop).await }
        });
        (stop, handle)
    }

    async fn worker(&self, name: &str) -> Option<WorkerInfo> {
        self.manager.list_workers().await.unwrap().into_iter().find(|w| w.worker.name == name)
    }

    async fn until_connected(&self, name: &str, connected: bool) {
        until(&format!("{name} connected = {connected}"), || async {
            self.worker(name).await.is_some_and(|w| w.connected == connected)
        })
        .await;
    }

    async fn submit(&self, api: &dyn Api, spec: JobSpec) -> RunId {
        api.submit(vec![spec]).await.unwrap().pop().unwrap().unwrap().run.unwrap()
    }

    async fn until_run(&self, run: RunId, state: RunState) {
        until(&format!("{run} is {state}"), || async { self.manager.get_run(run).await.unwrap().run.state == state })
            .await;
    }

    async fn stop(mut self) {
        self.stop_serving().await;
        self.stop_manager.cancel();
    }
}

async fn until<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within 10s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait(api: &dyn Api, run: RunId) -> archon_core::api::RunDetail {
    tokio::time::timeout(Duration::from_secs(10), api.wait(run)).await.expect("the run ends in time").unwrap()
}

// ---------------------------------------------------------------- raw sessions

/// Opens a session by hand whose stream yields `upstream`.
async fn open_raw(
    address: SocketAddr,
    upstream: impl futures::Stream<Item = proto::WorkerToManager> + Send + 'static,
) -> Result<Streaming<proto::ManagerToWorker>, Status> {
    let mut client = WorkerSessionsClient::connect(format!("http://{address}")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(15), client.open_session(upstream))
        .await
        .expect("the manager answers the session in time")
        .map(tonic::Response::into_inner)
}

/// Opens a session by hand that starts with `first` and stays open; the sender
/// feeds the rest of the worker's side.
async fn open_raw_with(
    address: SocketAddr,
    first: proto::WorkerToManager,
) -> (mpsc::Sender<proto::WorkerToManager>, Result<Streaming<proto::ManagerToWorker>, Status>) {
    let (send, rx) = mpsc::channel(16);
    send.send(first).await.unwrap();
    (send, open_raw(address, ReceiverStream::new(rx)).await)
}

fn hello(name: &str, capacity: Option<Resources>) -> proto::WorkerToManager {
    let hello = Hello {
        protocol: archon_core::transport::PROTOCOL,
        name: name.into(),
        address: String::new(),
        labels: Default::default(),
        capacity: Resources::default(),
        capabilities: ["function:echo".to_owned()].into(),
        running: Vec::new(),
        queue: 0,
    };
    let mut message = proto::WorkerToManager::from(hello);
    if let Some(worker_to_manager::Kind::Hello(h)) = &mut message.kind {
        h.capacity = capacity.map(Into::into);
    }
    message
}

fn heartbeat() -> proto::WorkerToManager {
    proto::WorkerToManager { kind: Some(worker_to_manager::Kind::Heartbeat(proto::Heartbeat { running: 0, seq: 0 })) }
}

/// Reads the welcome of an accepted raw session, then expects the manager to end
/// the stream (cleanly or with a status) within 5 s.
async fn welcomed_then_ended(opened: Result<Streaming<proto::ManagerToWorker>, Status>) {
    let mut stream = opened.expect("the session is accepted");
    let welcome = stream.message().await.unwrap().and_then(|m| m.kind);
    assert!(matches!(welcome, Some(proto::manager_to_worker::Kind::Welcome(_))), "{welcome:?}");
    let ended =
        tokio::time::timeout(Duration::from_secs(5), async { while let Ok(Some(_)) = stream.message().await {} }).await;
    assert!(ended.is_ok(), "the manager ends the session");
}

/// A TCP proxy to `target` that, once `freeze` fires, stops passing bytes either
/// way but keeps every connection open (and accepts new ones, saying nothing): a
/// manager host that vanished without closing anything.
async fn freezable_proxy(target: SocketAddr, freeze: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((client, _)) = listener.accept().await {
            if freeze.is_cancelled() {
                held.push(client);
                continue;
            }
            let upstream = TcpStream::connect(target).await.unwrap();
            let freeze = freeze.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut upstream_read, mut upstream_write) = upstream.into_split();
                tokio::select! {
                    _ = tokio::io::copy(&mut client_read, &mut upstream_write) => {}
                    _ = tokio::io::copy(&mut upstream_read, &mut client_write) => {}
                    _ = freeze.cancelled() => std::future::pending::<()>().await,
                }
            });
        }
    });
    address
}

/// An address nothing listens on.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

// ---------------------------------------------------------------- behaviour

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_over_grpc_runs_jobs_end_to_end_and_leaves_cleanly() {
    let served = Served::start(ManagerConfig::default()).await;
    let (stop_worker, worker) = served.spawn_worker("w1");
    served.until_connected("w1", true).await;
    let api = GrpcClient::connect(&served.endpoint()).await.expect("the API is served on the same port");

    let run = served.submit(&api, function("echo", "\"over grpc\"")).await;
    let done = wait(&api, run).await;
    assert_eq!(done.run.state, RunState::Succeeded);
    assert_eq!(done.attempts.last().unwrap().result.as_ref().unwrap().stdout.text(), "\"over grpc\"\n");

    let run = served.submit(&api, function("sleep", "null")).await;
    let mut follow = api.follow(run).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(&first.data[..], b"sleeping\n", "live output crosses both streams");
    served.until_run(run, RunState::Running).await;
    api.cancel(CancelTarget::Run(run)).await.unwrap();
    assert_eq!(wait(&api, run).await.run.state, RunState::Cancelled, "the cancel reached the worker over gRPC");

    stop_worker.cancel();
    tokio::time::timeout(Duration::from_secs(10), worker).await.unwrap().unwrap().unwrap();
    until("w1 is listed as left", || async {
        served.worker("w1").await.is_some_and(|w| w.worker.state == archon_core::model::WorkerState::Left)
    })
    .await;
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reconnects_when_the_server_restarts_on_the_same_port() {
    let mut served = Served::start(ManagerConfig::default()).await;
    let (stop_worker, _worker) = served.spawn_worker("w1");
    served.until_connected("w1", true).await;
    let id = served.worker("w1").await.unwrap().worker.id;
    let running = served.submit(&served.manager, function("sleep", "null")).await;
    served.until_run(running, RunState::Running).await;

    served.stop_serving().await;
    served.until_connected("w1", false).await;
    served.serve_again().await;
    served.until_connected("w1", true).await;

    let back = served.worker("w1").await.unwrap();
    assert_eq!(back.worker.id, id, "the worker comes back under the same id");
    let detail = served.manager.get_run(running).await.unwrap();
    assert_eq!(detail.run.state, RunState::Running, "the attempt it announced on reconnect runs on");
    assert_eq!(detail.attempts.len(), 1, "and was not requeued");

    let api = GrpcClient::connect(&served.endpoint()).await.unwrap();
    let run = served.submit(&api, function("echo", "\"after the restart\"")).await;
    assert_eq!(wait(&api, run).await.run.state, RunState::Succeeded, "a new job runs after the restart");
    api.cancel(CancelTarget::Run(running)).await.unwrap();
    assert_eq!(wait(&api, running).await.run.state, RunState::Cancelled, "and the old one can still be cancelled");
    stop_worker.cancel();
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_does_not_start_with_a_hello_is_refused_and_the_next_worker_is_served() {
    let served = Served::start(ManagerConfig::default()).await;

    let reported_first = open_raw(served.address, futures::stream::iter([heartbeat()])).await;
    let status = reported_first.expect_err("a session starting with a heartbeat is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    match status_to_error(&status) {
        Error::InvalidArgument { field, message } => {
            assert_eq!(field, "hello");
            assert!(message.contains("first message"), "{message}");
        }
        other => panic!("expected an invalid hello, got {other:?}"),
    }

    let silent = open_raw(served.address, futures::stream::empty()).await;
    let status = silent.expect_err("a session that ends before its hello is refused");
    assert!(
        matches!(status_to_error(&status), Error::InvalidArgument { ref field, .. } if field == "hello"),
        "{status:?}"
    );

    let (stop_worker, _worker) = served.spawn_worker("w1");
    served.until_connected("w1", true).await;
    let run = served.submit(&served.manager, function("echo", "1")).await;
    assert_eq!(wait(&served.manager, run).await.run.state, RunState::Succeeded);
    stop_worker.cancel();
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_hello_is_refused_naming_the_field_and_registers_nothing() {
    let served = Served::start(ManagerConfig::default()).await;
    let transport = GrpcTransport::new(vec![served.endpoint()]);
    let good = Hello {
        protocol: archon_core::transport::PROTOCOL,
        name: "w1".into(),
        address: String::new(),
        labels: Default::default(),
        capacity: capacity(),
        capabilities: ["function:echo".to_owned()].into(),
        running: Vec::new(),
        queue: 0,
    };

    let cases = [
        ("name", Hello { name: "  ".into(), ..good.clone() }),
        ("capacity", Hello { capacity: Resources::default(), ..good.clone() }),
    ];
    for (field, hello) in cases {
        match transport.connect(hello).await {
            Err(Error::Rejected(Rejection::InvalidWorker { field: f, message })) => {
                assert_eq!(f, field, "{message}");
            }
            other => panic!("expected the {field} to be refused, got {:?}", other.map(|s| s.welcome)),
        }
    }
    let (_send, raw) = open_raw_with(served.address, hello("w1", Some(Resources::default()))).await;
    let status = raw.expect_err("a hello with no room is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "an invalid announcement is an invalid argument: {status:?}");

    let (_send, raw) = open_raw_with(served.address, hello("w1", None)).await;
    match status_to_error(&raw.expect_err("a hello without capacity is refused")) {
        Error::InvalidArgument { field, .. } => assert_eq!(field, "hello.capacity"),
        other => panic!("expected the missing capacity to be named, got {other:?}"),
    }

    // A worker of a future version, and one announcing more than the limits allow:
    // refused naming the setting, nothing registered.
    let future = Hello { protocol: archon_core::transport::PROTOCOL + 98, ..good.clone() };
    match transport.connect(future).await {
        Err(Error::InvalidArgument { field, message }) => {
            assert_eq!(field, "protocol");
            let (theirs, ours) = (archon_core::transport::PROTOCOL + 98, archon_core::transport::PROTOCOL);
            assert!(message.contains(&format!("speaks session protocol {theirs}, this manager {ours}")), "{message}");
        }
        other => panic!("expected the protocol to be refused, got {:?}", other.map(|s| s.welcome)),
    }
    let labels = (0..300).map(|i| (format!("l{i}"), "v".to_owned())).collect();
    match transport.connect(Hello { labels, ..good.clone() }).await {
        Err(Error::InvalidArgument { field, message }) => {
            assert_eq!(field, "labels");
            assert!(message.contains("300 labels is more than max_worker_labels (256)"), "{message}");
        }
        other => panic!("expected the labels to be refused, got {:?}", other.map(|s| s.welcome)),
    }
    let running = (1..=70_000).map(archon_core::model::AttemptId).collect();
    match transport.connect(Hello { running, ..good.clone() }).await {
        Err(Error::InvalidArgument { field, message }) => {
            assert_eq!(field, "running");
            assert!(message.contains("more than max_announced_attempts (65536)"), "{message}");
        }
        other => panic!("expected the running attempts to be refused, got {:?}", other.map(|s| s.welcome)),
    }
    assert!(served.worker("w1").await.is_none(), "no refused hello registered a worker");

    let session = transport.connect(good).await.expect("a good hello is welcomed after the bad ones");
    assert!(served.worker("w1").await.unwrap().connected);
    assert_eq!(session.welcome.protocol, archon_core::transport::PROTOCOL);
    assert_eq!(session.welcome.output_limit, 1 << 20);
    drop(session);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_mid_session_ends_only_that_session() {
    let served = Served::start(ManagerConfig::default()).await;
    let unknown_stream = proto::OutputChunk { run: 1, attempt: 1, stream: 99, data: Bytes::new() };
    let garbage = [
        proto::WorkerToManager { kind: None },
        proto::WorkerToManager { kind: Some(worker_to_manager::Kind::Output(unknown_stream)) },
        hello("w1", Some(capacity())),
    ];
    for (i, bad) in garbage.into_iter().enumerate() {
        let (send, opened) = open_raw_with(served.address, hello("w1", Some(capacity()))).await;
        send.send(bad.clone()).await.unwrap();
        welcomed_then_ended(opened).await;
        served.until_connected("w1", false).await;
        drop(send);
        assert!(served.manager.status().await.is_ok(), "garbage #{i} ({bad:?}) left the manager up");
    }

    let (stop_worker, _worker) = served.spawn_worker("w1");
    served.until_connected("w1", true).await;
    let run = served.submit(&served.manager, function("echo", "1")).await;
    assert_eq!(wait(&served.manager, run).await.run.state, RunState::Succeeded, "the next session is served");
    stop_worker.cancel();
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_silent_past_the_timeout_has_its_session_ended() {
    let config = ManagerConfig { worker_timeout: Duration::from_millis(300), ..ManagerConfig::default() };
    let served = Served::start(config).await;
    let (send, opened) = open_raw_with(served.address, hello("quiet", Some(capacity()))).await;
    welcomed_then_ended(opened).await;
    served.until_connected("quiet", false).await;
    drop(send);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_moves_on_to_the_next_manager_when_one_is_unreachable() {
    let (dead1, dead2) = (closed_port().await, closed_port().await);
    let served = Served::start(ManagerConfig::default()).await;
    let hello = Hello {
        protocol: archon_core::transport::PROTOCOL,
        name: "w1".into(),
        address: String::new(),
        labels: Default::default(),
        capacity: capacity(),
        capabilities: ["function:echo".to_owned()].into(),
        running: Vec::new(),
        queue: 0,
    };

    let transport = GrpcTransport::new(vec![dead1.clone(), served.address.to_string()]);
    let session = transport.connect(hello.clone()).await.expect("the second address answers");
    assert!(served.worker("w1").await.unwrap().connected);
    drop(session);
    served.until_connected("w1", false).await;

    let skipping_garbage = GrpcTransport::new(vec!["http://exa mple:1".into(), served.address.to_string()]);
    let session = skipping_garbage.connect(hello.clone()).await.expect("a malformed address is skipped");
    drop(session);
    served.until_connected("w1", false).await;
    match GrpcTransport::new(vec!["http://exa mple:1".into()]).connect(hello.clone()).await {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "endpoint"),
        other => panic!("expected the malformed address to be named, got {:?}", other.map(|s| s.welcome)),
    }

    let nowhere = GrpcTransport::new(vec![dead1.clone(), dead2.clone()]);
    match nowhere.connect(hello).await {
        Err(Error::Transport(message)) => {
            assert!(message.contains(&dead1) && message.contains(&dead2), "names every address: {message}");
        }
        other => panic!("expected a transport error, got {:?}", other.map(|s| s.welcome)),
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_a_connection_gone_silent_is_ended_by_keepalive() {
    let served = Served::start(ManagerConfig::default()).await;
    let freeze = CancellationToken::new();
    let proxy = freezable_proxy(served.address, freeze.clone()).await;
    let transport = GrpcTransport::new(vec![proxy.to_string()])
        .timeouts(Duration::from_millis(500), Duration::from_millis(500))
        .keepalive(Duration::from_millis(200), Duration::from_millis(300));
    let hello = Hello {
        protocol: archon_core::transport::PROTOCOL,
        name: "w1".into(),
        address: String::new(),
        labels: Default::default(),
        capacity: capacity(),
        capabilities: ["function:echo".to_owned()].into(),
        running: Vec::new(),
        queue: 0,
    };
    let mut session = transport.connect(hello.clone()).await.expect("connects through the proxy");

    // Without keepalive (or the connect timeout, below) these would wait forever: a
    // generous bound tells the two apart.
    freeze.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(30), session.inbound.recv()).await;
    assert!(matches!(ended, Ok(None)), "the session ends once pings go unanswered: {ended:?}");

    let again = tokio::time::timeout(Duration::from_secs(30), transport.connect(hello)).await;
    let again = again.expect("a manager that never answers fails the connect, not hangs it");
    assert!(matches!(again, Err(Error::Transport(_))), "{:?}", again.map(|s| s.welcome));
    // The frozen connection would hold a graceful stop for the whole shutdown grace.
    served.stop_server.cancel();
    served.stop_manager.cancel();
}
