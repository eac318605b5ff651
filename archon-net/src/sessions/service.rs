//! The manager's end of worker sessions: reads the [`Hello`], turns the rest of the
//! worker's stream into [`WorkerMessage`]s for [`Manager::attach`], and streams the
//! [`archon_core::transport::Welcome`] and then the manager's work back. A
//! malformed message, a worker silent past the manager's worker timeout, or
//! shutdown ends that one session (with a logged warning); nothing a worker sends
//! can take the manager down.

use std::time::Duration;

use archon_core::Error as CoreError;
use archon_core::auth::Peer;
use archon_core::manager::Manager;
use archon_core::transport::{Hello, WorkerMessage};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::At;
use crate::proto::{self, worker_sessions_server::WorkerSessions, worker_sessions_server::WorkerSessionsServer};
use crate::server::MAX_MESSAGE_BYTES;
use crate::status::{describe, error_to_status};

/// How long a new session may take to send its [`Hello`].
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `archon.v1.WorkerSessions` for a [`Manager`].
#[derive(Clone)]
pub struct WorkerService {
    manager: Manager,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for WorkerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerService").field("shutdown", &self.shutdown.is_cancelled()).finish_non_exhaustive()
    }
}

impl WorkerService {
    /// A service attaching workers to `manager`; every session ends when `shutdown` fires.
    pub fn new(manager: Manager, shutdown: CancellationToken) -> WorkerService {
        WorkerService { manager, shutdown }
    }

    /// The service as a tonic server, with [`MAX_MESSAGE_BYTES`] limits.
    pub fn into_server(self) -> WorkerSessionsServer<WorkerService> {
        WorkerSessionsServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The first message of a session, which must be a valid hello.
    async fn read_hello(&self, upstream: &mut Streaming<proto::WorkerToManager>) -> Result<Hello, CoreError> {
        let first = tokio::select! {
            first = tokio::time::timeout(HELLO_TIMEOUT, upstream.message()) => first,
            _ = self.shutdown.cancelled() => return Err(CoreError::ShuttingDown),
        };
        let first = match first {
            Err(_) => {
                let message = format!("none within {HELLO_TIMEOUT:?}; a session starts with a hello");
                return Err(CoreError::invalid("hello", message));
            }
            Ok(Err(status)) => return Err(CoreError::Transport(describe(&status))),
            Ok(Ok(None)) => return Err(CoreError::invalid("hello", "the stream ended before the worker said hello")),
            Ok(Ok(Some(first))) => first,
        };
        match first.kind {
            Some(proto::worker_to_manager::Kind::Hello(hello)) => Hello::try_from(hello).at("hello"),
            Some(_) => Err(CoreError::invalid("hello", "is required as the first message of a session")),
            None => Err(CoreError::invalid("hello", "the first message is empty; a session starts with a hello")),
        }
    }
}

/// The WorkerSessions service for `manager`, ready for `Server::add_service` or a
/// router; sessions end when `shutdown` fires.
pub fn worker_service(manager: Manager, shutdown: CancellationToken) -> WorkerSessionsServer<WorkerService> {
    WorkerService::new(manager, shutdown).into_server()
}

#[tonic::async_trait]
impl WorkerSessions for WorkerService {
    type OpenSessionStream = BoxStream<'static, Result<proto::ManagerToWorker, Status>>;

    async fn open_session(
        &self,
        request: Request<Streaming<proto::WorkerToManager>>,
    ) -> Result<Response<Self::OpenSessionStream>, Status> {
        let connection = request.extensions().get::<Peer>().cloned().unwrap_or_default();
        let peer = connection.addr.map_or_else(|| "an unknown address".to_owned(), |a| a.to_string());
        let mut upstream = request.into_inner();
        let hello = self.read_hello(&mut upstream).await.map_err(|e| {
            tracing::warn!(%peer, error = %e, "refusing a worker session without a valid hello");
            error_to_status(e)
        })?;
        // Over TLS a worker is who its certificate says: it cannot take another's name.
        if let Some(identity) = &connection.identity
            && identity.name != hello.name
        {
            let e = CoreError::PermissionDenied(format!(
                "this worker's certificate names it {:?}; it cannot open a session as {:?} (a worker's name is the \
                 one its certificate was issued for)",
                identity.name, hello.name
            ));
            tracing::warn!(%peer, certificate = %identity.name, hello = %hello.name, "refusing a worker session");
            return Err(error_to_status(e));
        }
        let name = hello.name.clone();
        let idle_limit = self.manager.config().worker_timeout;
        let reports = reports(upstream, SessionLabel { name: name.clone(), peer: peer.clone() }, idle_limit)
            .take_until(self.shutdown.clone().cancelled_owned())
            .boxed();
        let (welcome, work) = self.manager.attach(hello, reports).await.map_err(|e| {
            tracing::warn!(%peer, %name, error = %e, "refusing a worker session");
            error_to_status(e)
        })?;
        tracing::info!(%peer, %name, worker = %welcome.worker, stale = welcome.stale.len(), "worker session opened");
        let downstream = futures::stream::once(std::future::ready(Ok(welcome.into())))
            .chain(UnboundedReceiverStream::new(work).map(|m| Ok(m.into())))
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(downstream.boxed()))
    }
}

/// Who is on the other end of a session, for logs.
struct SessionLabel {
    name: String,
    peer: String,
}

/// The worker's reports after its hello. Ends when the worker closes its stream,
/// the stream breaks, a message does not decode, or nothing arrives within
/// `idle_limit` (heartbeats come far more often).
fn reports(
    upstream: Streaming<proto::WorkerToManager>,
    label: SessionLabel,
    idle_limit: Duration,
) -> BoxStream<'static, WorkerMessage> {
    futures::stream::unfold((upstream, label), move |(mut upstream, label)| async move {
        let SessionLabel { name, peer } = &label;
        match tokio::time::timeout(idle_limit, upstream.message()).await {
            Ok(Ok(Some(message))) => match WorkerMessage::try_from(message) {
                Ok(message) => Some((message, (upstream, label))),
                Err(e) => {
                    tracing::warn!(%peer, %name, error = %e, "malformed message from a worker; ending its session");
                    None
                }
            },
            Ok(Ok(None)) => {
                tracing::debug!(%peer, %name, "worker closed its session");
                None
            }
            Ok(Err(status)) => {
                tracing::info!(%peer, %name, error = %describe(&status), "worker session broke");
                None
            }
            Err(_) => {
                tracing::warn!(%peer, %name, silent_for = ?idle_limit, "worker silent; ending its session");
                None
            }
        }
    })
    .boxed()
}
