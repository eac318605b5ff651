//! The gRPC server: [`ApiService`] answers `archon.v1.ArchonApi` calls from any
//! [`Api`] (usually a [`Manager`]); [`serve`] runs it on a listener until
//! shutdown, and [`serve_manager`] runs it together with the worker sessions
//! service ([`WorkerService`]) on one port. Long calls (WaitRun, FollowOutput) end with
//! `UNAVAILABLE` (shutting down) when the service's shutdown token fires, so a
//! graceful stop never waits on a run that does not end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use archon_core::Error as CoreError;
use archon_core::api::{Api, CancelTarget, ScheduleAction, SubmitResult};
use archon_core::auth::TokenSpec;
use archon_core::manager::Manager;
use archon_core::model::{JobId, JobSpec, RunId, SpecError, WorkerId, WorkflowId, WorkflowSpec};
use archon_core::state::Rejection;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::proto::{self, archon_api_server::ArchonApi, archon_api_server::ArchonApiServer};
use crate::sessions::WorkerService;
use crate::status::error_to_status;
use crate::tls::ServerTls;

/// The largest message either side sends or accepts: 64 MiB (a batch of 10,000
/// specs, a run with two 1 MiB output tails per attempt).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// HTTP/2 pings from the server notice clients and workers that vanished without
/// closing their connection (a dead host, a network partition).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping server waits for open connections to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `archon.v1.ArchonApi` from an [`Api`].
#[derive(Clone)]
pub struct ApiService {
    api: Arc<dyn Api>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for ApiService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiService").field("shutdown", &self.shutdown.is_cancelled()).finish_non_exhaustive()
    }
}

impl ApiService {
    /// A service answering from `api`; long calls end when `shutdown` fires.
    pub fn new(api: Arc<dyn Api>, shutdown: CancellationToken) -> ApiService {
        ApiService { api, shutdown }
    }

    /// The service as a tonic server, with [`MAX_MESSAGE_BYTES`] limits.
    pub fn into_server(self) -> ArchonApiServer<ApiService> {
        ArchonApiServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Runs `call` unless shutdown fires first.
    async fn until_shutdown<T>(&self, call: impl Future<Output = Result<T, CoreError>>) -> Result<T, Status> {
        tokio::select! {
            result = call => result.map_err(error_to_status),
            _ = self.shutdown.cancelled() => Err(error_to_status(CoreError::ShuttingDown)),
        }
    }
}

/// The ArchonApi service for `api`, ready for `Server::add_service` or a router.
/// Long calls end only when `api` ends them; see [`ApiService::new`] to tie them to
/// a shutdown token.
pub fn api_service(api: Arc<dyn Api>) -> ArchonApiServer<ApiService> {
    ApiService::new(api, CancellationToken::new()).into_server()
}

/// Serves the ArchonApi service for `api` on `listener` until `shutdown` fires, then
/// stops gracefully: in-flight calls finish (waits and follows end as shutting
/// down; at most [`SHUTDOWN_GRACE`]) and the call returns.
pub async fn serve(listener: TcpListener, api: Arc<dyn Api>, shutdown: CancellationToken) -> Result<(), Error> {
    let routes = Routes::new(ApiService::new(api, shutdown.clone()).into_server());
    serve_routes(listener, routes, shutdown, "the gRPC API").await
}

/// Serves a manager on `listener` until `shutdown` fires: the ArchonApi service for
/// clients and the WorkerSessions service for workers, on one port. On shutdown,
/// waits and follows end as shutting down, every worker session ends (its worker
/// reconnects elsewhere or later), and the call returns once connections have
/// closed (at most [`SHUTDOWN_GRACE`]; the port closes at once).
/// The manager itself keeps running: serve it again, on a new listener, to resume.
/// Calls are recorded into the manager's [`Metrics`](archon_core::metrics::Metrics).
pub async fn serve_manager(listener: TcpListener, manager: Manager, shutdown: CancellationToken) -> Result<(), Error> {
    let metrics = manager.metrics().clone();
    let routes = crate::measure_routes(manager_routes(manager, &shutdown), &metrics);
    serve_routes(listener, routes, shutdown, "the gRPC API and worker sessions").await
}

/// The routes [`serve_manager`] serves, to add more services to (Raft's RPCs share
/// the port this way) before passing them to [`serve_routes`]; wrap them in
/// [`measure_routes`](crate::measure_routes) to record their calls.
pub fn manager_routes(manager: Manager, shutdown: &CancellationToken) -> Routes {
    let api: Arc<dyn Api> = Arc::new(manager.clone());
    Routes::new(ApiService::new(api, shutdown.clone()).into_server())
        .add_service(WorkerService::new(manager, shutdown.clone()).into_server())
}

/// Serves `routes` on `listener` until `shutdown` fires, then stops gracefully: the
/// port closes at once, open connections get [`SHUTDOWN_GRACE`] to finish. A peer
/// that vanished without closing its connection cannot hold the call up longer;
/// keepalive closes such a connection later. `what` names the services in logs.
pub async fn serve_routes(
    listener: TcpListener,
    routes: Routes,
    shutdown: CancellationToken,
    what: &'static str,
) -> Result<(), Error> {
    serve_routes_tls(listener, None, routes, shutdown, what).await
}

/// [`serve_routes`] over TLS when `tls` is given (see [`crate::tls`]): only
/// connections that complete a TLS 1.3 handshake with the cluster's
/// certificates reach `routes`, each request carrying the [`Peer`](crate::tls::Peer)
/// its certificate identifies. Guard the routes ([`crate::guard_routes`]) to
/// check who may call what.
pub async fn serve_routes_tls(
    listener: TcpListener,
    tls: Option<ServerTls>,
    routes: Routes,
    shutdown: CancellationToken,
    what: &'static str,
) -> Result<(), Error> {
    let address = listener.local_addr().map_err(Error::ListenerAddress)?;
    let scheme = if tls.is_some() { "TLS 1.3, client certificates of the cluster CA" } else { "plaintext" };
    tracing::info!(%address, transport = scheme, "serving {what}");
    let (incoming, closed) = crate::tls::incoming(listener, tls);
    let served = serve_routes_incoming(incoming, address, routes, shutdown, what).await;
    // The server dropped the stream: wait for the port to close, so that a
    // caller may bind it again as soon as this returns.
    let _ = closed.await;
    served
}

/// [`serve_routes`] over the connections `incoming` yields rather than a TCP
/// listener's: for a network of the embedder's own (a simulation serves on
/// turmoil's listener this way). `address` is where it listens, for logs and
/// errors. Stops the same way, gracefully, when `shutdown` fires.
pub async fn serve_routes_incoming<S, IO>(
    incoming: S,
    address: SocketAddr,
    routes: Routes,
    shutdown: CancellationToken,
    what: &'static str,
) -> Result<(), Error>
where
    S: Stream<Item = Result<IO, std::io::Error>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
{
    // HTTP/1.1 too: the REST API (archon-http) may share the port.
    let serving = tonic::transport::Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    let grace_over = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = serving => served.map_err(|source| Error::Serve { address, source })?,
        _ = grace_over => {
            tracing::warn!(%address, grace = ?SHUTDOWN_GRACE, "connections still open after the grace; leaving them");
        }
    }
    tracing::info!(%address, "stopped serving {what}");
    Ok(())
}

/// A spec that did not even convert is rejected like an invalid one, alone.
fn conversion_rejection(err: CoreError) -> Rejection {
    match err {
        CoreError::InvalidArgument { field, message } => Rejection::InvalidSpec(SpecError::new(field, message)),
        other => Rejection::InvalidSpec(SpecError::new("spec", other.to_string())),
    }
}

#[tonic::async_trait]
impl ArchonApi for ApiService {
    async fn submit(&self, request: Request<proto::SubmitRequest>) -> Result<Response<proto::SubmitResponse>, Status> {
        let specs = request.into_inner().specs;
        let mut results: Vec<Option<SubmitResult>> = Vec::with_capacity(specs.len());
        let mut accepted = Vec::with_capacity(specs.len());
        for spec in specs {
            match JobSpec::try_from(spec) {
                Ok(spec) => {
                    accepted.push(spec);
                    results.push(None);
                }
                Err(err) => results.push(Some(Err(conversion_rejection(err)))),
            }
        }
        let expected = accepted.len();
        let submitted =
            if accepted.is_empty() { Vec::new() } else { self.api.submit(accepted).await.map_err(error_to_status)? };
        if submitted.len() != expected {
            return Err(error_to_status(CoreError::Internal(format!(
                "submit of {expected} specs gave {} results",
                submitted.len()
            ))));
        }
        let mut submitted = submitted.into_iter();
        let results = results
            .into_iter()
            .map(|slot| slot.or_else(|| submitted.next()).map(proto::SubmitResult::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| error_to_status(CoreError::Internal("submit results out of step".into())))?;
        Ok(Response::new(proto::SubmitResponse { results }))
    }

    async fn create_token(
        &self,
        request: Request<proto::CreateTokenRequest>,
    ) -> Result<Response<proto::CreateTokenResponse>, Status> {
        let spec = TokenSpec::try_from(request.into_inner()).map_err(error_to_status)?;
        let issued = self.api.create_token(spec).await.map_err(error_to_status)?;
        Ok(Response::new(issued.into()))
    }

    async fn list_tokens(
        &self,
        _request: Request<proto::ListTokensRequest>,
    ) -> Result<Response<proto::ListTokensResponse>, Status> {
        let tokens = self.api.list_tokens().await.map_err(error_to_status)?;
        Ok(Response::new(proto::ListTokensResponse { tokens: tokens.into_iter().map(Into::into).collect() }))
    }

    async fn revoke_token(
        &self,
        request: Request<proto::RevokeTokenRequest>,
    ) -> Result<Response<proto::RevokeTokenResponse>, Status> {
        let id = crate::convert::token_id(&request.into_inner().id, "id").map_err(error_to_status)?;
        self.api.revoke_token(id).await.map_err(error_to_status)?;
        Ok(Response::new(proto::RevokeTokenResponse {}))
    }

    async fn get_job(&self, request: Request<proto::GetJobRequest>) -> Result<Response<proto::JobDetail>, Status> {
        let detail = self.api.get_job(JobId(request.into_inner().id)).await.map_err(error_to_status)?;
        Ok(Response::new(detail.into()))
    }

    async fn get_run(&self, request: Request<proto::GetRunRequest>) -> Result<Response<proto::RunDetail>, Status> {
        let detail = self.api.get_run(RunId(request.into_inner().id)).await.map_err(error_to_status)?;
        Ok(Response::new(detail.into()))
    }

    async fn list_jobs(
        &self,
        request: Request<proto::ListJobsRequest>,
    ) -> Result<Response<proto::ListJobsResponse>, Status> {
        let query = request.into_inner().try_into().map_err(error_to_status)?;
        let page = self.api.list_jobs(query).await.map_err(error_to_status)?;
        Ok(Response::new(page.into()))
    }

    async fn list_runs(
        &self,
        request: Request<proto::ListRunsRequest>,
    ) -> Result<Response<proto::ListRunsResponse>, Status> {
        let query = request.into_inner().try_into().map_err(error_to_status)?;
        let page = self.api.list_runs(query).await.map_err(error_to_status)?;
        Ok(Response::new(page.into()))
    }

    async fn cancel(&self, request: Request<proto::CancelRequest>) -> Result<Response<proto::CancelResponse>, Status> {
        let target = CancelTarget::try_from(request.into_inner()).map_err(error_to_status)?;
        self.api.cancel(target).await.map_err(error_to_status)?;
        Ok(Response::new(proto::CancelResponse {}))
    }

    async fn wait_run(&self, request: Request<proto::WaitRunRequest>) -> Result<Response<proto::RunDetail>, Status> {
        let detail = self.until_shutdown(self.api.wait(RunId(request.into_inner().id))).await?;
        Ok(Response::new(detail.into()))
    }

    type FollowOutputStream = BoxStream<'static, Result<proto::OutputChunk, Status>>;

    async fn follow_output(
        &self,
        request: Request<proto::FollowOutputRequest>,
    ) -> Result<Response<Self::FollowOutputStream>, Status> {
        let chunks = self.until_shutdown(self.api.follow(RunId(request.into_inner().id))).await?;
        let stream = futures::stream::unfold(Some((chunks, self.shutdown.clone())), |state| async move {
            let (mut chunks, shutdown) = state?;
            tokio::select! {
                biased;
                item = chunks.next() => {
                    let item = item?.map(proto::OutputChunk::from).map_err(error_to_status);
                    Some((item, Some((chunks, shutdown))))
                }
                _ = shutdown.cancelled() => Some((Err(error_to_status(CoreError::ShuttingDown)), None)),
            }
        });
        Ok(Response::new(stream.boxed()))
    }

    async fn status(&self, _request: Request<proto::StatusRequest>) -> Result<Response<proto::ClusterStatus>, Status> {
        let status = self.api.status().await.map_err(error_to_status)?;
        Ok(Response::new(status.into()))
    }

    async fn list_workers(
        &self,
        _request: Request<proto::ListWorkersRequest>,
    ) -> Result<Response<proto::ListWorkersResponse>, Status> {
        let workers = self.api.list_workers().await.map_err(error_to_status)?;
        Ok(Response::new(proto::ListWorkersResponse { workers: workers.into_iter().map(Into::into).collect() }))
    }

    async fn set_draining(
        &self,
        request: Request<proto::SetDrainingRequest>,
    ) -> Result<Response<proto::SetDrainingResponse>, Status> {
        let request = request.into_inner();
        self.api.set_draining(WorkerId(request.worker), request.draining).await.map_err(error_to_status)?;
        Ok(Response::new(proto::SetDrainingResponse {}))
    }

    async fn schedule(
        &self,
        request: Request<proto::ScheduleRequest>,
    ) -> Result<Response<proto::ScheduleResponse>, Status> {
        let request = request.into_inner();
        let action = request
            .action
            .ok_or_else(|| CoreError::invalid("action", "is required (pause, resume, trigger or backfill)"))
            .and_then(ScheduleAction::try_from)
            .map_err(error_to_status)?;
        let fires = self.api.schedule(JobId(request.job), action).await.map_err(error_to_status)?;
        Ok(Response::new(proto::ScheduleResponse { fires: fires.into_iter().map(Into::into).collect() }))
    }

    async fn submit_workflow(
        &self,
        request: Request<proto::SubmitWorkflowRequest>,
    ) -> Result<Response<proto::SubmitWorkflowResponse>, Status> {
        let spec = request
            .into_inner()
            .spec
            .ok_or_else(|| CoreError::invalid("spec", "is required"))
            .and_then(WorkflowSpec::try_from)
            .map_err(error_to_status)?;
        let submitted = self.api.submit_workflow(spec).await.map_err(error_to_status)?;
        Ok(Response::new(submitted.into()))
    }

    async fn get_workflow(
        &self,
        request: Request<proto::GetWorkflowRequest>,
    ) -> Result<Response<proto::WorkflowDetail>, Status> {
        let detail = self.api.get_workflow(WorkflowId(request.into_inner().id)).await.map_err(error_to_status)?;
        Ok(Response::new(detail.into()))
    }

    async fn list_workflows(
        &self,
        request: Request<proto::ListWorkflowsRequest>,
    ) -> Result<Response<proto::ListWorkflowsResponse>, Status> {
        let query = request.into_inner().try_into().map_err(error_to_status)?;
        let page = self.api.list_workflows(query).await.map_err(error_to_status)?;
        Ok(Response::new(page.into()))
    }
}
