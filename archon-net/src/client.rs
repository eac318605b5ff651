//! [`GrpcClient`]: the [`Api`] of a remote manager over gRPC, so callers hold an
//! `Arc<dyn Api>` whether the manager is in process or across the network. Errors
//! come back as the variant the server returned; a manager that cannot be reached
//! is an [`Error::Transport`] naming its address.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use archon_core::Error;
use archon_core::api::{
    Api, CancelTarget, ClusterStatus, JobDetail, JobQuery, JobSummary, OutputFollow, Page, RunDetail, RunQuery,
    RunSummary, ScheduleAction, ScheduleFire, SubmitResult, SubmittedWorkflow, WorkerInfo, WorkflowDetail,
    WorkflowQuery, WorkflowSummary,
};
use archon_core::auth::{IssuedToken, TokenId, TokenInfo, TokenSpec};
use archon_core::model::{JobId, JobSpec, OutputChunk, RunId, WorkerId, WorkflowId, WorkflowSpec};
use async_trait::async_trait;
use futures::StreamExt;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::convert::each;
use crate::proto::{self, archon_api_client::ArchonApiClient};
use crate::server::MAX_MESSAGE_BYTES;
use crate::status::{chain, describe, has_detail, status_to_error};
use crate::tls::{Bearer, Dialer};

/// A connection as the generated client uses it: the channel, with the bearer
/// token added to each call.
type Link = InterceptedService<Channel, Bearer>;

/// How long connecting may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings keep long waits alive through idle-closing middleboxes and detect dead peers.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a call keeps looking for the leader (during an election, or while a
/// manager restarts) before it gives up with the last error.
const FIND_LEADER_FOR: Duration = Duration::from_secs(15);
/// How long connecting to another manager may take while looking for the leader.
const SWITCH_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause between tries while no leader is known.
const FIND_LEADER_PAUSE: Duration = Duration::from_millis(100);

/// A connection to a manager group's gRPC API. Cheap to clone; clones share the
/// connection. Calls that reach a follower follow it to the leader; when the
/// manager in use cannot be reached, calls that are safe to repeat (reads, cancels,
/// and submits whose every spec carries an idempotency key) try the others.
#[derive(Debug, Clone)]
pub struct GrpcClient {
    /// How long a call keeps looking for the leader.
    find_leader_for: Duration,
    current: Arc<Mutex<Conn>>,
    /// Every manager address known: those given, plus leaders learned from redirects.
    known: Arc<Mutex<Vec<String>>>,
    /// How it connects (plaintext or TLS) and the token it sends.
    dialer: Dialer,
}

#[derive(Debug, Clone)]
struct Conn {
    client: ArchonApiClient<Link>,
    endpoint: Arc<str>,
}

impl GrpcClient {
    /// Connects to the manager at `endpoint`: `http://HOST:PORT` or `HOST:PORT`.
    /// Fails with [`Error::InvalidArgument`] for a malformed address and with
    /// [`Error::Transport`] naming the address when nothing answers there.
    pub async fn connect(endpoint: &str) -> Result<GrpcClient, Error> {
        GrpcClient::connect_any(&[endpoint.to_owned()]).await
    }

    /// Connects to the first of `endpoints` that answers; the others are kept to
    /// fall back on. Fails with the first address's error when none answers.
    pub async fn connect_any(endpoints: &[String]) -> Result<GrpcClient, Error> {
        GrpcClient::connect_with(endpoints, Dialer::plain()).await
    }

    /// Connects like [`GrpcClient::connect_any`], through `dialer`: over TLS
    /// with this member's certificate, sending its token, when it has them.
    pub async fn connect_with(endpoints: &[String], dialer: Dialer) -> Result<GrpcClient, Error> {
        let known: Vec<String> = endpoints.iter().map(|e| normalize(e)).collect();
        let mut first_error = None;
        for endpoint in &known {
            match dial(&dialer, endpoint, CONNECT_TIMEOUT).await {
                Ok(conn) => {
                    return Ok(GrpcClient {
                        find_leader_for: FIND_LEADER_FOR,
                        current: Arc::new(Mutex::new(conn)),
                        known: Arc::new(Mutex::new(known.clone())),
                        dialer,
                    });
                }
                Err(e @ Error::InvalidArgument { .. }) => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| Error::invalid("endpoint", "no manager address given (try 127.0.0.1:50051)")))
    }

    /// How long a call keeps looking for the leader (following redirects, trying
    /// other managers) before it returns the last error; zero returns every error
    /// as the manager sent it. Default 15 s.
    pub fn find_leader_for(mut self, patience: Duration) -> GrpcClient {
        self.find_leader_for = patience;
        self
    }

    /// The address it talks to now, as normalized (`http://127.0.0.1:50051`).
    pub fn endpoint(&self) -> String {
        self.conn().endpoint.to_string()
    }

    fn conn(&self) -> Conn {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Runs `call` against the current manager, following leader redirects and,
    /// when `repeatable`, falling back to other managers on transport failures.
    async fn call<T, F, Fut>(&self, repeatable: bool, call: F) -> Result<T, Error>
    where
        F: Fn(ArchonApiClient<Link>, Arc<str>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.find_leader_for;
        loop {
            let conn = self.conn();
            let error = match call(conn.client, conn.endpoint.clone()).await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(error);
            }
            let more_than_one = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len() > 1;
            let moved = match &error {
                Error::NotLeader { leader: Some(leader) } if normalize(leader) != *conn.endpoint => {
                    self.switch_to(&normalize(leader)).await
                }
                Error::NotLeader { .. } | Error::Unavailable(_) => false,
                Error::Transport(_) if repeatable && more_than_one => false,
                _ => return Err(error),
            };
            if !moved {
                // No leader known yet (an election), or the one named is gone: pause,
                // then ask the next manager.
                tokio::time::sleep(FIND_LEADER_PAUSE).await;
                if more_than_one {
                    self.rotate(&conn.endpoint).await;
                }
            }
        }
    }

    /// Uses `endpoint` from now on, remembering it. False when it cannot be reached.
    async fn switch_to(&self, endpoint: &str) -> bool {
        match dial(&self.dialer, endpoint, SWITCH_CONNECT_TIMEOUT).await {
            Ok(conn) => {
                {
                    let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if !known.iter().any(|k| k == endpoint) {
                        known.push(endpoint.to_owned());
                    }
                }
                *self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
                true
            }
            Err(_) => false,
        }
    }

    /// Moves to the next known manager after `from` that answers, if any.
    async fn rotate(&self, from: &str) {
        let known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let start = known.iter().position(|k| k == from).map_or(0, |i| i + 1);
        for i in 0..known.len() {
            let candidate = &known[(start + i) % known.len()];
            if candidate != from && self.switch_to(candidate).await {
                return;
            }
        }
    }
}

/// Adds `http://` to an address given without a scheme.
pub(crate) fn normalize(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    if endpoint.contains("://") { endpoint.to_owned() } else { format!("http://{endpoint}") }
}

/// The error for a failed call: the server's own error when it sent one, else a
/// transport failure naming the manager's address.
pub(crate) fn status_error(endpoint: &str, status: &Status) -> Error {
    let from_transport = std::error::Error::source(status).is_some();
    if !has_detail(status) && from_transport {
        return Error::Transport(format!("cannot reach the manager at {endpoint}: {}", describe(status)));
    }
    status_to_error(status)
}

/// Opens a connection to one manager.
async fn dial(dialer: &Dialer, endpoint: &str, connect_timeout: Duration) -> Result<Conn, Error> {
    let uri = normalize(endpoint);
    let endpoint = dialer
        .endpoint(&uri)?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let channel = dialer
        .connect(endpoint)
        .await
        .map_err(|e| Error::Transport(format!("cannot reach the manager at {uri}: {}", chain(&e))))?;
    let client = ArchonApiClient::with_interceptor(channel, dialer.bearer())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    Ok(Conn { client, endpoint: uri.into() })
}

#[async_trait]
impl Api for GrpcClient {
    async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<SubmitResult>, Error> {
        let expected = specs.len();
        // A submit that may have reached the manager is repeated only when the
        // manager can tell it is a repeat.
        let repeatable = specs.iter().all(|s| s.idempotency_key.is_some());
        let request = proto::SubmitRequest { specs: specs.into_iter().map(Into::into).collect() };
        let results = self
            .call(repeatable, |mut c, e| {
                let request = request.clone();
                async move { c.submit(request).await.map_err(|s| status_error(&e, &s)) }
            })
            .await?
            .into_inner()
            .results;
        if results.len() != expected {
            return Err(Error::Internal(format!("submitted {expected} specs, got {} results", results.len())));
        }
        each(results, "results")
    }

    async fn get_job(&self, id: JobId) -> Result<JobDetail, Error> {
        let request = proto::GetJobRequest { id: id.get() };
        let detail = self
            .call(true, |mut c, e| async move { c.get_job(request).await.map_err(|s| status_error(&e, &s)) })
            .await?;
        detail.into_inner().try_into()
    }

    async fn get_run(&self, id: RunId) -> Result<RunDetail, Error> {
        let request = proto::GetRunRequest { id: id.get() };
        let detail = self
            .call(true, |mut c, e| async move { c.get_run(request).await.map_err(|s| status_error(&e, &s)) })
            .await?;
        detail.into_inner().try_into()
    }

    async fn list_jobs(&self, query: JobQuery) -> Result<Page<JobSummary, JobId>, Error> {
        let request = proto::ListJobsRequest::from(query);
        let page = self
            .call(true, |mut c, e| {
                let request = request.clone();
                async move { c.list_jobs(request).await.map_err(|s| status_error(&e, &s)) }
            })
            .await?;
        page.into_inner().try_into()
    }

    async fn list_runs(&self, query: RunQuery) -> Result<Page<RunSummary, RunId>, Error> {
        let request = proto::ListRunsRequest::from(query);
        let page = self
            .call(true, |mut c, e| async move { c.list_runs(request).await.map_err(|s| status_error(&e, &s)) })
            .await?;
        page.into_inner().try_into()
    }

    async fn cancel(&self, target: CancelTarget) -> Result<(), Error> {
        let request = proto::CancelRequest::from(target);
        self.call(true, |mut c, e| async move { c.cancel(request).await.map_err(|s| status_error(&e, &s)) }).await?;
        Ok(())
    }

    async fn wait(&self, id: RunId) -> Result<RunDetail, Error> {
        let request = proto::WaitRunRequest { id: id.get() };
        let detail = self
            .call(true, |mut c, e| async move { c.wait_run(request).await.map_err(|s| status_error(&e, &s)) })
            .await?;
        detail.into_inner().try_into()
    }

    async fn follow(&self, id: RunId) -> Result<OutputFollow, Error> {
        let request = proto::FollowOutputRequest { id: id.get() };
        let (chunks, endpoint) = self
            .call(true, |mut c, e| async move {
                let chunks = c.follow_output(request).await.map_err(|s| status_error(&e, &s))?;
                Ok((chunks.into_inner(), e))
            })
            .await?;
        Ok(chunks
            .map(move |item| match item {
                Ok(chunk) => OutputChunk::try_from(chunk),
                Err(status) => Err(status_error(&endpoint, &status)),
            })
            .boxed())
    }

    async fn status(&self) -> Result<ClusterStatus, Error> {
        let status =
            self.call(true, |mut c, e| async move {
                c.status(proto::StatusRequest {}).await.map_err(|s| status_error(&e, &s))
            })
            .await?;
        Ok(status.into_inner().into())
    }

    async fn list_workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        let workers = self
            .call(true, |mut c, e| async move {
                c.list_workers(proto::ListWorkersRequest {}).await.map_err(|s| status_error(&e, &s))
            })
            .await?;
        each(workers.into_inner().workers, "workers")
    }

    async fn set_draining(&self, worker: WorkerId, draining: bool) -> Result<(), Error> {
        let request = proto::SetDrainingRequest { worker: worker.get(), draining };
        self.call(true, |mut c, e| async move { c.set_draining(request).await.map_err(|s| status_error(&e, &s)) })
            .await?;
        Ok(())
    }

    async fn schedule(&self, job: JobId, action: ScheduleAction) -> Result<Vec<ScheduleFire>, Error> {
        // Not retried on a lost reply: a trigger or backfill would fire twice.
        let request = proto::ScheduleRequest { job: job.get(), action: Some(action.into()) };
        let reply = self
            .call(false, |mut c, e| {
                let request = request.clone();
                async move { c.schedule(request).await.map_err(|s| status_error(&e, &s)) }
            })
            .await?;
        reply.into_inner().fires.into_iter().map(ScheduleFire::try_from).collect()
    }

    async fn submit_workflow(&self, spec: WorkflowSpec) -> Result<SubmittedWorkflow, Error> {
        // Not repeated when the reply is lost: a workflow has no idempotency key yet.
        let request = proto::SubmitWorkflowRequest { spec: Some(spec.into()) };
        let reply = self
            .call(false, |mut c, e| {
                let request = request.clone();
                async move { c.submit_workflow(request).await.map_err(|s| status_error(&e, &s)) }
            })
            .await?;
        Ok(reply.into_inner().into())
    }

    async fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowDetail, Error> {
        let request = proto::GetWorkflowRequest { id: id.get() };
        let reply = self
            .call(true, |mut c, e| async move { c.get_workflow(request).await.map_err(|s| status_error(&e, &s)) })
            .await?;
        reply.into_inner().try_into()
    }

    async fn list_workflows(&self, query: WorkflowQuery) -> Result<Page<WorkflowSummary, WorkflowId>, Error> {
        let request = proto::ListWorkflowsRequest::from(query);
        let page = self
            .call(true, |mut c, e| {
                let request = request.clone();
                async move { c.list_workflows(request).await.map_err(|s| status_error(&e, &s)) }
            })
            .await?;
        page.into_inner().try_into()
    }

    async fn create_token(&self, spec: TokenSpec) -> Result<IssuedToken, Error> {
        // Not repeated on another manager: a lost reply would leave a token nobody holds.
        let request = proto::CreateTokenRequest::from(spec);
        let issued = self
            .call(false, |mut c, e| {
                let request = request.clone();
                async move { c.create_token(request).await.map_err(|s| status_error(&e, &s)) }
            })
            .await?;
        issued.into_inner().try_into()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let listed = self
            .call(true, |mut c, e| async move {
                c.list_tokens(proto::ListTokensRequest {}).await.map_err(|s| status_error(&e, &s))
            })
            .await?;
        each(listed.into_inner().tokens, "tokens")
    }

    async fn revoke_token(&self, id: TokenId) -> Result<(), Error> {
        let request = proto::RevokeTokenRequest { id: id.to_string() };
        self.call(true, |mut c, e| {
            let request = request.clone();
            async move { c.revoke_token(request).await.map_err(|s| status_error(&e, &s)) }
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_a_scheme_get_http() {
        assert_eq!(normalize("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(normalize(" http://127.0.0.1:50051 "), "http://127.0.0.1:50051");
        assert_eq!(normalize("https://manager:443"), "https://manager:443");
    }
}
