//! What crosses the wire besides happy answers: every archon-core error comes back
//! from a real gRPC server as the same variant, and large messages (megabyte output
//! tails) fit. The server answers from a stub `Api`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use archon_core::Error;
use archon_core::api::{
    Api, CancelTarget, ClusterStatus, JobDetail, JobQuery, JobSummary, OutputFollow, Page, RunDetail, RunQuery,
    RunSummary, ScheduleAction, ScheduleFire, SubmitResult, SubmittedWorkflow, WorkerInfo, WorkflowDetail,
};
use archon_core::model::{
    Attempt, AttemptId, AttemptResult, AttemptState, ExitStatus, JobId, JobSpec, OutputTail, Run, RunId, RunState,
    SpecError, Task, Timestamp, WorkerId,
};
use archon_core::state::Rejection;
use archon_net::GrpcClient;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// An [`Api`] that fails every call with one error, or answers `get_run` with a
/// fixed detail.
struct StubApi {
    error: Error,
    run: Option<RunDetail>,
}

impl StubApi {
    fn fail<T>(&self) -> Result<T, Error> {
        Err(self.error.clone())
    }
}

#[async_trait]
impl Api for StubApi {
    async fn submit(&self, _: Vec<JobSpec>) -> Result<Vec<SubmitResult>, Error> {
        self.fail()
    }
    async fn get_job(&self, _: JobId) -> Result<JobDetail, Error> {
        self.fail()
    }
    async fn get_run(&self, _: RunId) -> Result<RunDetail, Error> {
        self.run.clone().map_or_else(|| self.fail(), Ok)
    }
    async fn list_jobs(&self, _: JobQuery) -> Result<Page<JobSummary, JobId>, Error> {
        self.fail()
    }
    async fn list_runs(&self, _: RunQuery) -> Result<Page<RunSummary, RunId>, Error> {
        self.fail()
    }
    async fn cancel(&self, _: CancelTarget) -> Result<(), Error> {
        self.fail()
    }
    async fn wait(&self, _: RunId) -> Result<RunDetail, Error> {
        self.fail()
    }
    async fn follow(&self, _: RunId) -> Result<OutputFollow, Error> {
        self.fail()
    }
    async fn status(&self) -> Result<ClusterStatus, Error> {
        self.fail()
    }
    async fn list_workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        self.fail()
    }
    async fn set_draining(&self, _: WorkerId, _: bool) -> Result<(), Error> {
        self.fail()
    }

    async fn schedule(&self, _: JobId, _: ScheduleAction) -> Result<Vec<ScheduleFire>, Error> {
        self.fail()
    }

    async fn submit_workflow(&self, _: archon_core::model::WorkflowSpec) -> Result<SubmittedWorkflow, Error> {
        self.fail()
    }

    async fn get_workflow(&self, _: archon_core::model::WorkflowId) -> Result<WorkflowDetail, Error> {
        self.fail()
    }

    async fn list_workflows(
        &self,
        _: archon_core::api::WorkflowQuery,
    ) -> Result<Page<archon_core::api::WorkflowSummary, archon_core::model::WorkflowId>, Error> {
        self.fail()
    }

    async fn create_token(&self, _: archon_core::auth::TokenSpec) -> Result<archon_core::auth::IssuedToken, Error> {
        self.fail()
    }

    async fn list_tokens(&self) -> Result<Vec<archon_core::auth::TokenInfo>, Error> {
        self.fail()
    }

    async fn revoke_token(&self, _: archon_core::auth::TokenId) -> Result<(), Error> {
        self.fail()
    }
}

async fn serve_stub(stub: StubApi) -> (GrpcClient, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(archon_net::serve(listener, Arc::new(stub), shutdown.clone()));
    (GrpcClient::connect(&address.to_string()).await.unwrap().find_leader_for(std::time::Duration::ZERO), shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_variant_crosses_the_wire_as_itself() {
    let errors = vec![
        Error::Rejected(Rejection::InvalidSpec(SpecError::new("timeout", "must be > 0"))),
        Error::Rejected(Rejection::UnknownDependency(JobId(4))),
        Error::Rejected(Rejection::DoesNotFit { run: RunId(1), worker: WorkerId(2), reason: "is too small".into() }),
        Error::invalid("limit", "must be at most 1000"),
        Error::NotFound("run run-7".into()),
        Error::NotLeader { leader: Some("http://10.0.0.2:50051".into()) },
        Error::NotLeader { leader: None },
        Error::Unavailable("storage is unreachable".into()),
        Error::ShuttingDown,
        Error::Transport("peer reset".into()),
        Error::Unauthenticated("no token".into()),
        Error::Internal("invariant broken".into()),
    ];
    for error in errors {
        let (client, shutdown) = serve_stub(StubApi { error: error.clone(), run: None }).await;
        let calls: Vec<Result<(), Error>> = vec![
            client.submit(vec![JobSpec::new("x", Task::Shell { command: "true".into() })]).await.map(drop),
            client.get_job(JobId(1)).await.map(drop),
            client.list_jobs(JobQuery::default()).await.map(drop),
            client.cancel(CancelTarget::Run(RunId(1))).await.map(drop),
            client.wait(RunId(1)).await.map(drop),
            client.follow(RunId(1)).await.map(drop),
            client.status().await.map(drop),
            client.list_workers().await.map(drop),
            client.set_draining(WorkerId(1), true).await,
        ];
        for got in calls {
            assert_eq!(format!("{:?}", got.unwrap_err()), format!("{error:?}"));
        }
        shutdown.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_details_with_megabyte_output_tails_fit_in_one_message() {
    let mib = |byte: u8| OutputTail { data: Bytes::from(vec![byte; 1 << 20]), truncated: 7 };
    let attempts: Vec<Attempt> = (1..=4)
        .map(|i| Attempt {
            id: AttemptId(i),
            run: RunId(1),
            worker: WorkerId(1),
            state: AttemptState::Finished,
            assigned_at: Timestamp(1),
            started_at: Some(Timestamp(2)),
            finished_at: Some(Timestamp(3)),
            result: Some(AttemptResult {
                status: ExitStatus::Exited { code: 1 },
                stdout: mib(b'o'),
                stderr: mib(b'e'),
                usage: None,
            }),
        })
        .collect();
    let detail = RunDetail {
        run: Run {
            id: RunId(1),
            job: JobId(1),
            state: RunState::Failed,
            created_at: Timestamp(0),
            scheduled_for: None,
            attempts: (1..=4).map(AttemptId).collect(),
            current_attempt: Some(AttemptId(4)),
            retries_used: 3,
            not_before: None,
            cancel_requested: false,
            finished_at: Some(Timestamp(4)),
            reason: None,
        },
        job_name: "big".into(),
        attempts,
        pending_reason: None,
    };
    let (client, shutdown) =
        serve_stub(StubApi { error: Error::Internal("unused".into()), run: Some(detail.clone()) }).await;
    assert_eq!(client.get_run(RunId(1)).await.unwrap(), detail, "8 MiB of tails arrive intact");
    shutdown.cancel();
}
