//! The client API over real gRPC on loopback sockets: a manager on a MemStore with
//! one in-process worker, served as `archon_net::serve` does (plus a signal when a
//! wait reaches it) and driven through `GrpcClient` as an `Arc<dyn Api>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use archon_core::Error;
use archon_core::api::{Api, CancelTarget, JobQuery, JobSummary, Page, RunDetail, RunQuery, SubmitResult, Submitted};
use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::manager::Manager;
use archon_core::model::{
    AttemptResult, AttemptState, ExitStatus, JobId, JobSpec, OutputStream, PlacementPolicy, Resources, RetryPolicy,
    RunId, RunState, Task, TaskKind, WorkerId, WorkerState,
};
use archon_core::state::Rejection;
use archon_core::store::MemStore;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use archon_net::GrpcClient;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------- a test executor

/// Registered functions for tests: `echo` prints its input, `fail` prints it to
/// stderr and exits 3, `sleep` runs until cancelled, `ticks` prints `tick N` lines
/// every 50 ms (N from its input).
struct TestFunctions;

#[async_trait]
impl Executor for TestFunctions {
    fn capabilities(&self) -> Vec<String> {
        ["echo", "fail", "sleep", "ticks"].iter().map(|f| format!("function:{f}")).collect()
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
            "fail" => {
                ctx.output.write(OutputStream::Stderr, Bytes::from(format!("{input}\n"))).await;
                ctx.output.finish(ExitStatus::Exited { code: 3 })
            }
            "sleep" => {
                ctx.output.write(OutputStream::Stdout, Bytes::from_static(b"sleeping\n")).await;
                tokio::select! {
                    _ = ctx.cancel.cancelled() => ctx.output.finish(ExitStatus::Cancelled),
                    _ = tokio::time::sleep(Duration::from_secs(60)) => ctx.output.finish(ExitStatus::Exited { code: 0 }),
                }
            }
            "ticks" => {
                let n: u32 = input.parse().unwrap_or(5);
                for i in 0..n {
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return ctx.output.finish(ExitStatus::Cancelled),
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                    ctx.output.write(OutputStream::Stdout, Bytes::from(format!("tick {i}\n"))).await;
                }
                ctx.output.finish(ExitStatus::Exited { code: 0 })
            }
            other => ctx.output.finish(ExitStatus::Failed { reason: format!("no function {other}") }),
        }
    }
}

fn function(name: &str, input: &str) -> JobSpec {
    JobSpec::new(format!("{name} job"), Task::Function { name: name.into(), input: input.into() })
}

// ---------------------------------------------------------------- a cluster behind gRPC

const WORKER_CPU: u64 = 64_000;

struct Cluster {
    api: Arc<dyn Api>,
    /// Told each time a `WaitRun` call reaches the server.
    wait_arrived: Arc<tokio::sync::Notify>,
    address: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), archon_net::Error>>,
}

impl Cluster {
    /// A manager and worker `w1` (64 cores, 64 GiB) in process, served on a loopback port.
    async fn start() -> Cluster {
        let manager = Manager::builder(Arc::new(MemStore::new())).build();
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let (manager, shutdown) = (manager.clone(), shutdown.clone());
            async move { manager.run(shutdown).await }
        });
        let capacity = Resources {
            cpu_millis: WORKER_CPU,
            memory_bytes: 64 << 30,
            network_mbps: 1000,
            devices: Default::default(),
        };
        let registry = ExecutorRegistry::new().with(Arc::new(TestFunctions));
        let worker = WorkerRuntime::new(
            WorkerConfig::new("w1", capacity),
            Arc::new(registry),
            Arc::new(InProcTransport::new(manager.clone())),
        );
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move { worker.run(shutdown).await }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // What `archon_net::serve` serves, with a layer that tells when a wait arrives.
        let wait_arrived = Arc::new(tokio::sync::Notify::new());
        let spy = tower::util::MapRequestLayer::new({
            let arrived = wait_arrived.clone();
            move |request: tonic::codegen::http::Request<_>| {
                if request.uri().path().ends_with("/WaitRun") {
                    arrived.notify_one();
                }
                request
            }
        });
        let service = archon_net::ApiService::new(Arc::new(manager), shutdown.clone()).into_server();
        let routes = tonic::service::Routes::new(service).into_axum_router().layer(spy);
        let server = tokio::spawn(archon_net::serve_routes(listener, routes.into(), shutdown.clone(), "the gRPC API"));
        let client = GrpcClient::connect(&format!("http://{address}")).await.unwrap();
        let cluster = Cluster { api: Arc::new(client), wait_arrived, address, shutdown, server };
        cluster.until(|| async { cluster.api.list_workers().await.unwrap().iter().any(|w| w.connected) }).await;
        cluster
    }

    async fn until<F: Future<Output = bool>>(&self, mut check: impl FnMut() -> F) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check().await {
            assert!(tokio::time::Instant::now() < deadline, "condition not met within 10s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn submit_one(&self, spec: JobSpec) -> Submitted {
        let mut results = self.api.submit(vec![spec]).await.unwrap();
        assert_eq!(results.len(), 1);
        results.pop().unwrap().unwrap()
    }

    async fn run_to_end(&self, spec: JobSpec) -> RunDetail {
        let run = self.submit_one(spec).await.run.unwrap();
        self.wait(run).await
    }

    async fn wait(&self, run: RunId) -> RunDetail {
        tokio::time::timeout(Duration::from_secs(20), self.api.wait(run)).await.expect("run ends in time").unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let served = tokio::time::timeout(Duration::from_secs(10), self.server).await.expect("server stops in time");
        served.unwrap().unwrap();
    }
}

// ---------------------------------------------------------------- behaviour

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_and_wait_return_the_exit_code_and_captured_output() {
    let c = Cluster::start().await;

    let ok = c.run_to_end(function("echo", "\"hello\"")).await;
    assert_eq!(ok.run.state, RunState::Succeeded);
    assert_eq!(ok.exit(), Some(&ExitStatus::Exited { code: 0 }));
    assert_eq!(ok.job_name, "echo job");
    let result = ok.attempts.last().unwrap().result.as_ref().unwrap();
    assert_eq!(result.stdout.text(), "\"hello\"\n");
    assert_eq!(result.stdout.truncated, 0);

    let failed = c.run_to_end(function("fail", "\"bad things\"")).await;
    assert_eq!(failed.run.state, RunState::Failed);
    assert_eq!(failed.exit(), Some(&ExitStatus::Exited { code: 3 }));
    assert_eq!(failed.attempts.last().unwrap().result.as_ref().unwrap().stderr.text(), "\"bad things\"\n");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_1000_specs_is_accepted_in_order_and_runs() {
    let c = Cluster::start().await;
    let specs: Vec<JobSpec> =
        (0..1000).map(|i| JobSpec { name: format!("batch-{i}"), ..function("echo", "1") }).collect();
    let results = c.api.submit(specs).await.unwrap();
    assert_eq!(results.len(), 1000);
    let submitted: Vec<Submitted> = results.into_iter().map(Result::unwrap).collect();
    assert!(submitted.windows(2).all(|w| w[0].job < w[1].job), "one job per spec, in order");
    assert!(submitted.iter().all(|s| !s.duplicate && s.run.is_some()));

    let page = c.api.list_jobs(JobQuery { name: Some("batch-".into()), limit: Some(1000), ..JobQuery::default() });
    let page = page.await.unwrap();
    assert_eq!(page.items.len(), 1000);
    assert_eq!(page.items[0].name, "batch-999", "newest first");
    assert_eq!(page.next, None);

    for s in &submitted {
        assert_eq!(c.wait(s.run.unwrap()).await.run.state, RunState::Succeeded);
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_10000_specs_larger_than_4_mib_fits_in_one_call() {
    let c = Cluster::start().await;
    let input = format!("\"{}\"", "x".repeat(500));
    let specs: Vec<JobSpec> =
        (0..10_000).map(|i| JobSpec { name: format!("big-{i}"), ..function("echo", &input) }).collect();
    let results = c.api.submit(specs).await.unwrap();
    assert_eq!(results.len(), 10_000);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(c.api.status().await.unwrap().jobs, 10_000);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_first_job_marked_duplicate() {
    let c = Cluster::start().await;
    let spec = JobSpec { idempotency_key: Some("nightly-2024-01-01".into()), ..function("echo", "1") };
    let first = c.submit_one(spec.clone()).await;
    assert!(!first.duplicate);
    let second = c.submit_one(spec).await;
    assert_eq!(second, Submitted { duplicate: true, ..first.clone() });

    let jobs = c.api.list_jobs(JobQuery::default()).await.unwrap();
    assert_eq!(jobs.items.iter().map(|j| j.id).collect::<Vec<_>>(), vec![first.job], "no second job exists");
    assert_eq!(c.api.get_job(first.job).await.unwrap().runs.len(), 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_job_and_get_run_return_the_stored_details() {
    let c = Cluster::start().await;
    let spec = JobSpec {
        env: [("GREETING".to_owned(), "hi".to_owned())].into(),
        working_dir: Some("/tmp".into()),
        resources: Resources { cpu_millis: 250, memory_bytes: 1 << 20, network_mbps: 5, devices: Default::default() },
        priority: 9,
        timeout: Some(Duration::from_secs(30)),
        retry: RetryPolicy {
            max_retries: 2,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            jitter: false,
        },
        idempotency_key: Some("details".into()),
        placement: Some(PlacementPolicy::Spread),
        ..function("echo", "{\"n\": 1}")
    };
    let submitted = c.submit_one(spec.clone()).await;
    let run_id = submitted.run.unwrap();
    c.wait(run_id).await;

    let job = c.api.get_job(submitted.job).await.unwrap();
    assert_eq!(job.job.id, submitted.job);
    assert_eq!(*job.job.spec, spec, "the spec survives the trip to the manager and back");
    assert_eq!(job.job.runs, vec![run_id]);
    assert_eq!(job.runs.len(), 1);
    assert_eq!(job.runs[0].state, RunState::Succeeded);

    let run = c.api.get_run(run_id).await.unwrap();
    assert_eq!(run.run.job, submitted.job);
    assert_eq!(run.job_name, "echo job");
    assert_eq!(run.attempts.len(), 1);
    let attempt = &run.attempts[0];
    assert_eq!(attempt.state, AttemptState::Finished);
    assert!(attempt.started_at.is_some() && attempt.finished_at.is_some());
    assert_eq!(attempt.result.as_ref().unwrap().stdout.text(), "{\"n\": 1}\n");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_jobs_and_runs_filter_and_page_newest_first() {
    let c = Cluster::start().await;
    let mut page_jobs = Vec::new();
    for i in 0..5 {
        let s = c.submit_one(JobSpec { name: format!("page-{i}"), ..function("echo", "1") }).await;
        c.wait(s.run.unwrap()).await;
        page_jobs.push(s);
    }
    let mut failed = Vec::new();
    for i in 0..2 {
        let s = c.submit_one(JobSpec { name: format!("other-{i}"), ..function("fail", "1") }).await;
        c.wait(s.run.unwrap()).await;
        failed.push(s);
    }

    // Jobs named page-*, two at a time, following the cursor.
    let mut seen: Vec<JobSummary> = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let query = JobQuery { name: Some("page-".into()), before, limit: Some(2), ..JobQuery::default() };
        let page = c.api.list_jobs(query).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        seen.extend(page.items);
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<JobId> = page_jobs.iter().rev().map(|s| s.job).collect();
    assert_eq!(seen.iter().map(|j| j.id).collect::<Vec<_>>(), expected);
    assert!(seen.iter().all(|j| j.kind == "function" && j.last_state == Some(RunState::Succeeded) && j.runs == 1));

    // Jobs by kind and by their latest run's state: the filters travel to the server.
    let jobs = |kind, state| c.api.list_jobs(JobQuery { kind, state, limit: Some(1000), ..JobQuery::default() });
    let ids = |page: Page<JobSummary, JobId>| page.items.iter().map(|j| j.id).collect::<Vec<_>>();
    let expected: Vec<JobId> = failed.iter().rev().map(|s| s.job).collect();
    assert_eq!(ids(jobs(None, Some(RunState::Failed)).await.unwrap()), expected);
    assert_eq!(ids(jobs(Some(TaskKind::Function), Some(RunState::Failed)).await.unwrap()), expected);
    assert_eq!(ids(jobs(Some(TaskKind::Shell), None).await.unwrap()), Vec::<JobId>::new());
    assert_eq!(ids(jobs(None, Some(RunState::Running)).await.unwrap()), Vec::<JobId>::new());
    let expected: Vec<JobId> = page_jobs.iter().rev().map(|s| s.job).collect();
    assert_eq!(ids(jobs(Some(TaskKind::Function), Some(RunState::Succeeded)).await.unwrap()), expected);

    // Runs by state.
    let failed_runs = c.api.list_runs(RunQuery { state: Some(RunState::Failed), ..RunQuery::default() }).await.unwrap();
    let expected: Vec<RunId> = failed.iter().rev().map(|s| s.run.unwrap()).collect();
    assert_eq!(failed_runs.items.iter().map(|r| r.id).collect::<Vec<_>>(), expected);
    assert!(failed_runs.items.iter().all(|r| r.exit == Some(ExitStatus::Exited { code: 3 }) && r.attempts == 1));
    assert_eq!(failed_runs.next, None);

    // Runs of one job.
    let of_job = c.api.list_runs(RunQuery { job: Some(page_jobs[2].job), ..RunQuery::default() }).await.unwrap();
    assert_eq!(of_job.items.len(), 1);
    assert_eq!(of_job.items[0].job_name, "page-2");

    // All runs, three at a time.
    let first = c.api.list_runs(RunQuery { limit: Some(3), ..RunQuery::default() }).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let cursor = first.next.expect("more runs follow");
    let rest = c.api.list_runs(RunQuery { before: Some(cursor), limit: Some(10), ..RunQuery::default() }).await;
    let rest = rest.unwrap();
    assert_eq!(rest.items.len(), 4);
    assert!(rest.items.iter().all(|r| r.id < cursor));
    assert_eq!(rest.next, None);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_run_ends_it_cancelled() {
    let c = Cluster::start().await;
    let run = c.submit_one(function("sleep", "null")).await.run.unwrap();
    c.until(|| async { c.api.get_run(run).await.unwrap().run.state == RunState::Running }).await;

    c.api.cancel(CancelTarget::Run(run)).await.unwrap();
    let ended = c.wait(run).await;
    assert_eq!(ended.run.state, RunState::Cancelled);
    assert_eq!(ended.exit(), Some(&ExitStatus::Cancelled));

    // Cancelling a whole job works the same way.
    let job = c.submit_one(function("sleep", "null")).await;
    let run = job.run.unwrap();
    c.until(|| async { c.api.get_run(run).await.unwrap().run.state == RunState::Running }).await;
    c.api.cancel(CancelTarget::Job(job.job)).await.unwrap();
    assert_eq!(c.wait(run).await.run.state, RunState::Cancelled);

    // A finished run cannot be cancelled: the rejection comes back as itself.
    let err = c.api.cancel(CancelTarget::Run(run)).await.unwrap_err();
    match err {
        Error::Rejected(Rejection::InvalidTransition { run: r, state, action }) => {
            assert_eq!((r, state, action.as_str()), (run, RunState::Cancelled, "cancel"));
        }
        other => panic!("expected an invalid transition, got {other:?}"),
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_output_while_the_run_runs_and_ends_when_it_ends() {
    let c = Cluster::start().await;
    let run = c.submit_one(function("ticks", "10")).await.run.unwrap();
    let mut chunks = c.api.follow(run).await.unwrap();

    let first = tokio::time::timeout(Duration::from_secs(10), chunks.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.run, run);
    assert_eq!(first.stream, OutputStream::Stdout);
    assert!(
        !c.api.get_run(run).await.unwrap().run.state.is_terminal(),
        "the first chunk arrives while the run is still running"
    );

    let mut text = String::from_utf8(first.data.to_vec()).unwrap();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), chunks.next()).await.unwrap() {
        text.push_str(std::str::from_utf8(&chunk.unwrap().data).unwrap());
    }
    let expected: String = (0..10).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(text, expected);
    assert_eq!(c.api.get_run(run).await.unwrap().run.state, RunState::Succeeded, "the stream ended with the run");

    // Following a finished run replays its kept output and ends.
    let replay: Vec<_> = c.api.follow(run).await.unwrap().collect().await;
    let replay: Vec<u8> = replay.into_iter().flat_map(|c| c.unwrap().data.to_vec()).collect();
    assert_eq!(String::from_utf8(replay).unwrap(), expected);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_list_workers_describe_the_cluster() {
    let c = Cluster::start().await;
    c.run_to_end(function("echo", "1")).await;
    c.run_to_end(function("fail", "1")).await;

    let status = c.api.status().await.unwrap();
    assert_eq!(status.jobs, 2);
    assert_eq!(status.runs.get("succeeded"), Some(&1));
    assert_eq!(status.runs.get("failed"), Some(&1));
    assert_eq!(status.workers.get("ready"), Some(&1));
    assert_eq!(status.queued, 0);
    assert_eq!(status.managers.len(), 1);
    assert_eq!(status.managers[0].role, "leader");

    let workers = c.api.list_workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    let w = &workers[0];
    assert!(w.connected);
    assert!(w.last_seen.is_some());
    assert_eq!(w.worker.name, "w1");
    assert_eq!(w.worker.capacity.cpu_millis, WORKER_CPU);
    assert!(w.worker.capabilities.contains("function:echo"));
    assert!(w.worker.running.is_empty());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_worker_shows_in_list_workers_and_undraining_makes_it_ready() {
    let c = Cluster::start().await;
    let state_of_w1 = || async {
        let workers = c.api.list_workers().await.unwrap();
        workers.into_iter().find(|w| w.worker.name == "w1").map(|w| w.worker.state).unwrap()
    };
    let w1 = c.api.list_workers().await.unwrap()[0].worker.id;

    c.api.set_draining(w1, true).await.unwrap();
    assert_eq!(state_of_w1().await, WorkerState::Draining);
    let parked = c.submit_one(function("echo", "1")).await.run.unwrap();
    // The scheduler has looked at it and says why it stays pending.
    let reason = || async { c.api.get_run(parked).await.unwrap().pending_reason.unwrap_or_default() };
    c.until(|| async { reason().await.contains("accepts work") }).await;
    assert_eq!(c.api.get_run(parked).await.unwrap().run.state, RunState::Pending, "a draining worker gets no work");

    c.api.set_draining(w1, false).await.unwrap();
    assert_eq!(state_of_w1().await, WorkerState::Ready);
    assert_eq!(c.wait(parked).await.run.state, RunState::Succeeded, "the undrained worker takes work again");

    match c.api.set_draining(WorkerId(999), true).await {
        Err(Error::NotFound(what)) => assert!(what.contains("w-999"), "{what:?} names the worker"),
        other => panic!("expected NotFound for an unknown worker, got {other:?}"),
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_not_found() {
    let c = Cluster::start().await;
    let not_found = |r: Result<(), Error>, what: &str| match r {
        Err(Error::NotFound(m)) => assert!(m.contains(what), "{m:?} names {what}"),
        other => panic!("expected NotFound naming {what}, got {other:?}"),
    };
    not_found(c.api.get_job(JobId(999)).await.map(drop), "job-999");
    not_found(c.api.get_run(RunId(999)).await.map(drop), "run-999");
    not_found(c.api.wait(RunId(999)).await.map(drop), "run-999");
    not_found(c.api.follow(RunId(999)).await.map(drop), "run-999");
    not_found(c.api.list_runs(RunQuery { job: Some(JobId(999)), ..RunQuery::default() }).await.map(drop), "job-999");
    not_found(c.api.cancel(CancelTarget::Run(RunId(999))).await, "run-999");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_rejected_naming_the_field_and_nothing_is_stored() {
    let c = Cluster::start().await;
    let empty = JobSpec::new("empty", Task::Shell { command: "   ".into() });
    let results = c.api.submit(vec![function("echo", "1"), empty]).await.unwrap();
    assert!(results[0].is_ok());
    match &results[1] {
        Err(Rejection::InvalidSpec(e)) => {
            assert_eq!(e.field, "task.command");
            assert!(e.message.contains("must not be empty"), "{}", e.message);
        }
        other => panic!("expected an invalid spec, got {other:?}"),
    }
    let jobs = c.api.list_jobs(JobQuery::default()).await.unwrap();
    assert_eq!(jobs.items.len(), 1, "only the valid spec was stored");
    assert_eq!(c.api.status().await.unwrap().jobs, 1);

    // A spec that is not even well-formed on the wire is rejected alone too.
    let mut raw =
        archon_net::proto::archon_api_client::ArchonApiClient::connect(format!("http://{}", c.address)).await.unwrap();
    let no_task = archon_net::proto::JobSpec { name: "no task".into(), ..Default::default() };
    let ok = archon_net::proto::JobSpec::from(function("echo", "1"));
    let response = raw.submit(archon_net::proto::SubmitRequest { specs: vec![no_task, ok] }).await.unwrap();
    let results: Vec<SubmitResult> =
        response.into_inner().results.into_iter().map(|r| SubmitResult::try_from(r).unwrap()).collect();
    assert!(matches!(&results[0], Err(Rejection::InvalidSpec(e)) if e.field == "task"), "{:?}", results[0]);
    assert!(results[1].is_ok());
    assert_eq!(c.api.status().await.unwrap().jobs, 2);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_worker_could_run_is_rejected_as_unschedulable() {
    let c = Cluster::start().await;
    let huge = JobSpec {
        resources: Resources { cpu_millis: WORKER_CPU * 2, ..Resources::default_request() },
        ..function("echo", "1")
    };
    let results = c.api.submit(vec![huge]).await.unwrap();
    match &results[0] {
        Err(Rejection::Unschedulable { reason }) => assert!(reason.contains("more than any worker has"), "{reason}"),
        other => panic!("expected unschedulable, got {other:?}"),
    }
    let no_executor = c.api.submit(vec![function("missing", "1")]).await.unwrap();
    assert!(matches!(&no_executor[0], Err(Rejection::Unschedulable { .. })), "{:?}", no_executor[0]);
    assert_eq!(c.api.status().await.unwrap().jobs, 0, "nothing was stored");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_closed_port_names_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);

    for given in [format!("http://{address}"), address.to_string()] {
        match GrpcClient::connect(&given).await {
            Err(Error::Transport(message)) => {
                assert!(message.contains(&format!("cannot reach the manager at http://{address}")), "{message}");
                assert!(message.to_lowercase().contains("refused"), "says why: {message}");
            }
            other => panic!("expected a transport error, got {:?}", other.map(|c| c.endpoint().to_owned())),
        }
    }
    match GrpcClient::connect("http://exa mple:1").await {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "endpoint"),
        other => panic!("expected an invalid endpoint, got {:?}", other.map(|c| c.endpoint().to_owned())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_waits_in_flight_and_stops_the_server() {
    let c = Cluster::start().await;
    let run = c.submit_one(function("sleep", "null")).await.run.unwrap();
    c.until(|| async { c.api.get_run(run).await.unwrap().run.state == RunState::Running }).await;
    let waiting = tokio::spawn({
        let api = c.api.clone();
        async move { api.wait(run).await }
    });
    let arrived = tokio::time::timeout(Duration::from_secs(10), c.wait_arrived.notified()).await;
    arrived.expect("the wait reaches the server");
    let api = c.api.clone();
    c.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
    assert!(matches!(ended, Err(Error::ShuttingDown)), "{ended:?}");
    let after = api.status().await.unwrap_err();
    assert!(matches!(after, Error::Transport(ref m) if m.contains("cannot reach the manager")), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_is_submitted_and_read_back_over_grpc_and_a_bad_one_names_its_cycle() {
    use archon_core::model::{Edge, EdgeCondition, WorkflowId, WorkflowNode, WorkflowSpec};
    let c = Cluster::start().await;
    let node = |name: &str, task: &str, after: &[(&str, EdgeCondition)]| WorkflowNode {
        name: name.into(),
        job: function(task, "\"x\""),
        after: after.iter().map(|(p, when)| Edge { parent: (*p).into(), when: *when }).collect(),
    };
    // `hold` runs until cancelled, so the workflow is live while it is read.
    let spec = WorkflowSpec {
        name: "release".into(),
        nodes: vec![
            node("hold", "sleep", &[]),
            node("test", "fail", &[("hold", EdgeCondition::Completion)]),
            node("deploy", "echo", &[("test", EdgeCondition::Success)]),
            node("rollback", "echo", &[("test", EdgeCondition::Failure)]),
        ],
        schedule: None,
    };
    let submitted = c.api.submit_workflow(spec.clone()).await.unwrap();
    assert_eq!(submitted.jobs.len(), 4);
    let detail = c.api.get_workflow(submitted.workflow.unwrap()).await.unwrap();
    assert_eq!(*detail.workflow.spec, spec, "the definition crosses the wire whole");
    assert_eq!(detail.workflow.jobs, submitted.jobs);
    let states: Vec<RunState> = detail.runs.iter().map(|r| r.as_ref().unwrap().state).collect();
    assert_eq!(&states[1..], [RunState::Waiting; 3]);
    // Cancelled, `hold` still lets `test` run (on completion); `test` fails, so
    // the failure branch runs and `deploy` never does.
    let hold = detail.runs[0].as_ref().unwrap().id;
    c.api.cancel(CancelTarget::Run(hold)).await.unwrap();
    let rollback = c.api.get_job(submitted.jobs[3]).await.unwrap().runs[0].id;
    let done = c.api.wait(rollback).await.unwrap();
    assert_eq!(done.run.state, RunState::Succeeded);
    let deploy = c.api.get_job(submitted.jobs[2]).await.unwrap().runs[0].id;
    assert_eq!(c.api.get_run(deploy).await.unwrap().run.state, RunState::UpstreamFailed);
    // A cycle is refused whole, named, nothing stored.
    let mut cyclic = spec;
    cyclic.nodes[0].after.push(Edge { parent: "deploy".into(), when: EdgeCondition::Completion });
    let jobs_before = c.api.list_jobs(Default::default()).await.unwrap().items.len();
    let err = c.api.submit_workflow(cyclic).await.unwrap_err().to_string();
    assert!(err.contains("depends_on: the jobs form a cycle: "), "{err}");
    assert_eq!(c.api.list_jobs(Default::default()).await.unwrap().items.len(), jobs_before);
    let unknown = c.api.get_workflow(WorkflowId(99)).await.unwrap_err();
    assert!(matches!(unknown, archon_core::Error::NotFound(_)), "{unknown:?}");
    c.stop().await;
}
