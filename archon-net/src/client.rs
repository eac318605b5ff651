//! [`GrpcClient`]: the [`Api`] of a remote manager over gRPC, so callers hold an
//! `Arc<dyn Api>` whether the manager is in process or across the network. Errors
//! come back as the variant the server returned; a manager that cannot be reached
//! is an [`Error::Transport`] naming its address.

use std::sync::Arc;
use std::time::Duration;

use archon_core::Error;
use archon_core::api::{
    Api, CancelTarget, ClusterStatus, JobDetail, JobQuery, JobSummary, OutputFollow, Page, RunDetail, RunQuery,
    RunSummary, SubmitResult, WorkerInfo,
};
use archon_core::model::{JobId, JobSpec, OutputChunk, RunId, WorkerId};
use async_trait::async_trait;
use futures::StreamExt;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::convert::each;
use crate::proto::{self, archon_api_client::ArchonApiClient};
use crate::server::MAX_MESSAGE_BYTES;
use crate::status::{chain, describe, has_detail, status_to_error};

/// How long connecting may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings keep long waits alive through idle-closing middleboxes and detect dead peers.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection to a manager's gRPC API. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct GrpcClient {
    inner: ArchonApiClient<Channel>,
    endpoint: Arc<str>,
}

impl GrpcClient {
    /// Connects to the manager at `endpoint`: `http://HOST:PORT` or `HOST:PORT`.
    /// Fails with [`Error::InvalidArgument`] for a malformed address and with
    /// [`Error::Transport`] naming the address when nothing answers there.
    pub async fn connect(endpoint: &str) -> Result<GrpcClient, Error> {
        let uri = normalize(endpoint);
        let channel = Endpoint::from_shared(uri.clone())
            .map_err(|e| {
                Error::invalid(
                    "endpoint",
                    format!("{endpoint:?} is not an address (try http://127.0.0.1:50051 or 127.0.0.1:50051): {e}"),
                )
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(|e| Error::Transport(format!("cannot reach the manager at {uri}: {}", chain(&e))))?;
        let inner = ArchonApiClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(GrpcClient { inner, endpoint: uri.into() })
    }

    /// The address it talks to, as normalized (`http://127.0.0.1:50051`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn client(&self) -> ArchonApiClient<Channel> {
        self.inner.clone()
    }

    fn error(&self, status: Status) -> Error {
        status_error(&self.endpoint, &status)
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

#[async_trait]
impl Api for GrpcClient {
    async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<SubmitResult>, Error> {
        let expected = specs.len();
        let request = proto::SubmitRequest { specs: specs.into_iter().map(Into::into).collect() };
        let results = self.client().submit(request).await.map_err(|s| self.error(s))?.into_inner().results;
        if results.len() != expected {
            return Err(Error::Internal(format!("submitted {expected} specs, got {} results", results.len())));
        }
        each(results, "results")
    }

    async fn get_job(&self, id: JobId) -> Result<JobDetail, Error> {
        let detail = self.client().get_job(proto::GetJobRequest { id: id.get() }).await.map_err(|s| self.error(s))?;
        detail.into_inner().try_into()
    }

    async fn get_run(&self, id: RunId) -> Result<RunDetail, Error> {
        let detail = self.client().get_run(proto::GetRunRequest { id: id.get() }).await.map_err(|s| self.error(s))?;
        detail.into_inner().try_into()
    }

    async fn list_jobs(&self, query: JobQuery) -> Result<Page<JobSummary, JobId>, Error> {
        let page = self.client().list_jobs(proto::ListJobsRequest::from(query)).await.map_err(|s| self.error(s))?;
        page.into_inner().try_into()
    }

    async fn list_runs(&self, query: RunQuery) -> Result<Page<RunSummary, RunId>, Error> {
        let page = self.client().list_runs(proto::ListRunsRequest::from(query)).await.map_err(|s| self.error(s))?;
        page.into_inner().try_into()
    }

    async fn cancel(&self, target: CancelTarget) -> Result<(), Error> {
        self.client().cancel(proto::CancelRequest::from(target)).await.map_err(|s| self.error(s))?;
        Ok(())
    }

    async fn wait(&self, id: RunId) -> Result<RunDetail, Error> {
        let detail = self.client().wait_run(proto::WaitRunRequest { id: id.get() }).await.map_err(|s| self.error(s))?;
        detail.into_inner().try_into()
    }

    async fn follow(&self, id: RunId) -> Result<OutputFollow, Error> {
        let chunks = self
            .client()
            .follow_output(proto::FollowOutputRequest { id: id.get() })
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        let endpoint = self.endpoint.clone();
        Ok(chunks
            .map(move |item| match item {
                Ok(chunk) => OutputChunk::try_from(chunk),
                Err(status) => Err(status_error(&endpoint, &status)),
            })
            .boxed())
    }

    async fn status(&self) -> Result<ClusterStatus, Error> {
        let status = self.client().status(proto::StatusRequest {}).await.map_err(|s| self.error(s))?;
        Ok(status.into_inner().into())
    }

    async fn list_workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        let workers = self.client().list_workers(proto::ListWorkersRequest {}).await.map_err(|s| self.error(s))?;
        each(workers.into_inner().workers, "workers")
    }

    async fn set_draining(&self, worker: WorkerId, draining: bool) -> Result<(), Error> {
        let request = proto::SetDrainingRequest { worker: worker.get(), draining };
        self.client().set_draining(request).await.map_err(|s| self.error(s))?;
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
