//! [`GrpcTransport`]: the worker's end of a session, over gRPC. Each
//! [`Transport::connect`] opens a fresh connection and one `OpenSession` stream,
//! sends the hello and waits for the welcome; a task then relays the manager's
//! work into the session's `inbound` channel and closes it when the stream ends,
//! which is what sends the worker runtime back to reconnecting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use archon_core::Error;
use archon_core::transport::{Hello, ManagerMessage, Session, Transport, Welcome};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

use crate::client::{normalize, status_error};
use crate::proto::{self, manager_to_worker, worker_sessions_client::WorkerSessionsClient};
use crate::server::MAX_MESSAGE_BYTES;
use crate::status::{chain, describe};
use crate::tls::Dialer;

/// Reports that may wait for the connection before `outbound` pushes back.
const OUTBOUND_BUFFER: usize = 4096;
/// How long a dropped session waits for its last reports to reach the manager.
const LINGER: Duration = Duration::from_secs(5);

/// Opens worker sessions to a manager over gRPC, trying each known manager address
/// in turn.
#[derive(Debug)]
pub struct GrpcTransport {
    targets: Vec<Target>,
    /// The target the next connect tries first: the one that last worked, or the
    /// one after the one that last failed.
    next: AtomicUsize,
    connect_timeout: Duration,
    welcome_timeout: Duration,
    keepalive_interval: Duration,
    keepalive_timeout: Duration,
    /// Plaintext, or TLS with the worker's certificate.
    dialer: Dialer,
}

/// One manager address, parsed once; a malformed one keeps its error and is
/// skipped (reported) on every connect.
#[derive(Debug)]
struct Target {
    address: String,
    endpoint: Result<Endpoint, Error>,
}

impl Target {
    fn new(given: &str, dialer: &Dialer) -> Target {
        let address = normalize(given);
        let endpoint = dialer.endpoint(&address);
        Target { address, endpoint }
    }
}

impl GrpcTransport {
    /// A transport to the managers at `endpoints` (`http://HOST:PORT` or
    /// `HOST:PORT`), tried in order. Connecting waits at most 5 s for TCP and 10 s
    /// for the welcome; HTTP/2 pings every 10 s notice a dead manager within 20 s.
    pub fn new(endpoints: Vec<String>) -> GrpcTransport {
        GrpcTransport::with_dialer(endpoints, Dialer::plain())
    }

    /// A transport like [`GrpcTransport::new`] that connects through `dialer`
    /// (over TLS with the worker's certificate, when it has one).
    pub fn with_dialer(endpoints: Vec<String>, dialer: Dialer) -> GrpcTransport {
        GrpcTransport {
            targets: endpoints.iter().map(|e| Target::new(e, &dialer)).collect(),
            dialer,
            next: AtomicUsize::new(0),
            connect_timeout: Duration::from_secs(5),
            welcome_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
        }
    }

    /// How long a TCP connect and then the wait for the welcome may each take.
    pub fn timeouts(mut self, connect: Duration, welcome: Duration) -> GrpcTransport {
        self.connect_timeout = connect;
        self.welcome_timeout = welcome;
        self
    }

    /// How often an HTTP/2 ping checks the manager is there, and how long its
    /// answer may take before the session counts as broken.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> GrpcTransport {
        self.keepalive_interval = interval;
        self.keepalive_timeout = timeout;
        self
    }

    /// The manager addresses, as normalized (`http://127.0.0.1:50051`).
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.address.as_str())
    }

    /// Opens a session to the manager of `targets[index]`.
    async fn connect_to(&self, index: usize, hello: Hello) -> Result<Session, Error> {
        let target = &self.targets[index];
        let endpoint = target.endpoint.clone()?;
        self.open(&target.address, endpoint, hello).await
    }

    /// Opens a session to the manager at `address`.
    async fn open(&self, address: &str, endpoint: Endpoint, hello: Hello) -> Result<Session, Error> {
        let endpoint = endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(self.keepalive_interval)
            .keep_alive_timeout(self.keepalive_timeout)
            .keep_alive_while_idle(true);
        let channel = self
            .dialer
            .connect(endpoint)
            .await
            .map_err(|e| Error::Transport(format!("cannot reach the manager at {address}: {}", chain(&e))))?;
        let mut client = WorkerSessionsClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (outbound, reports) = mpsc::channel(OUTBOUND_BUFFER);
        let upstream = futures::stream::once(std::future::ready(proto::WorkerToManager::from(hello)))
            .chain(ReceiverStream::new(reports).map(proto::WorkerToManager::from));
        let welcomed = async {
            let mut downstream =
                client.open_session(upstream).await.map_err(|s| status_error(address, &s))?.into_inner();
            let first = downstream.message().await.map_err(|s| status_error(address, &s))?;
            match first.and_then(|m| m.kind) {
                Some(manager_to_worker::Kind::Welcome(w)) => Ok((Welcome::from(w), downstream)),
                Some(_) => {
                    Err(Error::Transport(format!("the manager at {address} did not open the session with a welcome")))
                }
                None => Err(Error::Transport(format!(
                    "the manager at {address} closed the session before welcoming the worker"
                ))),
            }
        };
        let (welcome, downstream) = tokio::time::timeout(self.welcome_timeout, welcomed).await.map_err(|_| {
            Error::Transport(format!("the manager at {address} sent no welcome within {:?}", self.welcome_timeout))
        })??;
        let (work, inbound) = mpsc::unbounded_channel();
        tokio::spawn(relay_work(downstream, work, address.into(), channel));
        Ok(Session { welcome, outbound, inbound })
    }
}

/// Whether another manager might accept the session after this failure: it was
/// unreachable or not in a position to serve, rather than refusing the worker.
fn worth_trying_elsewhere(err: &Error) -> bool {
    matches!(err, Error::Transport(_) | Error::Unavailable(_) | Error::NotLeader { .. } | Error::ShuttingDown)
}

#[async_trait]
impl Transport for GrpcTransport {
    /// Tries each endpoint once, starting where the last connect left off; a
    /// refusal (e.g. a duplicate name) is returned at once, since every manager
    /// would say the same. The worker runtime backs off between calls.
    async fn connect(&self, hello: Hello) -> Result<Session, Error> {
        let count = self.targets.len();
        if count == 0 {
            return Err(Error::invalid("endpoints", "no manager address given (try 127.0.0.1:50051)"));
        }
        let start = self.next.load(Ordering::Relaxed) % count;
        let mut failures = Vec::new();
        for index in (start..start + count).map(|i| i % count) {
            let target = &self.targets[index];
            let endpoint = match &target.endpoint {
                Ok(endpoint) => endpoint.clone(),
                Err(unusable) => {
                    failures.push(unusable.clone());
                    continue;
                }
            };
            match self.open(&target.address, endpoint, hello.clone()).await {
                Ok(session) => {
                    self.next.store(index, Ordering::Relaxed);
                    return Ok(session);
                }
                Err(Error::NotLeader { leader: Some(leader) })
                    if let Some(hinted) = self.targets.iter().position(|t| t.address == normalize(&leader))
                        && hinted != index =>
                {
                    // A follower named the leader: go there next.
                    self.next.store(hinted, Ordering::Relaxed);
                    return self.connect_to(hinted, hello).await;
                }
                Err(e) if worth_trying_elsewhere(&e) => {
                    self.next.store((index + 1) % count, Ordering::Relaxed);
                    failures.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        if failures.len() == 1
            && let Some(only) = failures.pop()
        {
            return Err(only);
        }
        let each: Vec<String> = failures.iter().map(ToString::to_string).collect();
        Err(Error::Transport(format!("no manager accepted the session: {}", each.join("; "))))
    }
}

/// Relays the manager's work into the session's `inbound` channel until the stream
/// ends or breaks, a message does not decode, or the worker drops the session.
/// Holds `_channel` so the connection lives as long as the session.
async fn relay_work(
    mut downstream: Streaming<proto::ManagerToWorker>,
    work: mpsc::UnboundedSender<ManagerMessage>,
    address: Arc<str>,
    _channel: Channel,
) {
    loop {
        let next = tokio::select! {
            next = downstream.message() => next,
            _ = work.closed() => break,
        };
        match next {
            Ok(Some(message)) => match ManagerMessage::try_from(message) {
                Ok(message) => {
                    if work.send(message).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(manager = %address, error = %e, "malformed message from the manager; session ended");
                    return;
                }
            },
            Ok(None) => {
                tracing::info!(manager = %address, "the manager closed the session");
                return;
            }
            Err(status) => {
                tracing::warn!(manager = %address, error = %describe(&status), "the session to the manager broke");
                return;
            }
        }
    }
    // The worker dropped the session. Dropping the response stream now could reset
    // the call before its last reports (a final `Leaving`) are flushed, so wait
    // (bounded) for the manager to close it once the worker's side has ended.
    let drained = async { while let Ok(Some(_)) = downstream.message().await {} };
    let _ = tokio::time::timeout(LINGER, drained).await;
}
