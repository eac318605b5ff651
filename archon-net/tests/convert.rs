//! Model ↔ protobuf conversions are lossless (model → proto → bytes → proto → model
//! gives back the same value) and reject malformed messages naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use archon_core::Error;
use archon_core::api::{
    CancelTarget, ClusterStatus, JobDetail, JobQuery, JobSummary, ManagerInfo, Page, RunDetail, RunQuery, RunSummary,
    ScheduleFire, ScheduleInfo, SubmitResult, Submitted, WorkerInfo,
};
use archon_core::model::{
    Attempt, AttemptId, AttemptResult, AttemptState, Constraint, ConstraintOp, DockerTask, ExitStatus, Job, JobId,
    JobSpec, OnDisconnect, OutputChunk, OutputStream, OutputTail, OverlapPolicy, Paused, PlacementPolicy, PullPolicy,
    ResourceUsage, Resources, RetryPolicy, Run, RunId, RunState, Schedule, ScheduleState, SpecError, Task, TaskKind,
    Timestamp, Worker, WorkerId, WorkerState,
};
use archon_core::state::{FireResult, Rejection};
use archon_net::proto;
use archon_net::status::{error_to_status, status_to_error};
use bytes::Bytes;
use prost::Message;

/// model → proto → wire bytes → proto → model.
fn round_trip<M, P>(value: M) -> M
where
    M: TryFrom<P>,
    M::Error: Debug,
    P: From<M> + Message + Default,
{
    let bytes = P::from(value).encode_to_vec();
    let decoded = P::decode(bytes.as_slice()).expect("decodes");
    M::try_from(decoded).expect("converts back")
}

fn assert_round_trips<M, P>(value: M)
where
    M: Clone + PartialEq + Debug + TryFrom<P>,
    M::Error: Debug,
    P: From<M> + Message + Default,
{
    assert_eq!(round_trip::<M, P>(value.clone()), value);
}

fn field_of(err: Error) -> String {
    match err {
        Error::InvalidArgument { field, .. } => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

// ---------------------------------------------------------------- full examples

fn full_spec(task: Task) -> JobSpec {
    JobSpec {
        name: "nightly report".into(),
        task,
        env: [("A".to_owned(), "1".to_owned()), ("B".to_owned(), "two words".to_owned())].into(),
        secret_env: [("TOKEN".to_owned(), "s3cr3t value".into())].into(),
        working_dir: Some("/srv/reports".into()),
        resources: Resources {
            cpu_millis: 1500,
            memory_bytes: 3 << 30,
            network_mbps: 100,
            devices: [("gpu".to_owned(), 2)].into(),
        },
        constraints: vec![
            Constraint { label: "zone".into(), op: ConstraintOp::Equals, value: "a".into() },
            Constraint { label: "arch".into(), op: ConstraintOp::NotEquals, value: "arm".into() },
            Constraint { label: "ssd".into(), op: ConstraintOp::Exists, value: String::new() },
        ],
        priority: -7,
        timeout: Some(Duration::from_millis(90_500)),
        retry: RetryPolicy {
            max_retries: 4,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(60),
            jitter: false,
        },
        schedule: Some(Box::new(Schedule {
            cron: "0 3 * * *".into(),
            timezone: "Europe/Paris".into(),
            overlap: OverlapPolicy::BufferOne,
            catch_up: Some(Duration::from_secs(3600)),
            jitter: Some(Duration::from_secs(30)),
        })),
        depends_on: vec![JobId(3), JobId(u64::MAX)],
        idempotency_key: Some("report-2024-01-01".into()),
        placement: Some(PlacementPolicy::Spread),
        retention: Some(Duration::from_secs(3 * 86_400)),
        keep_last: Some(10),
        output_limit: Some(256 << 10),
        on_disconnect: OnDisconnect::Keep,
    }
}

fn every_task_kind() -> Vec<Task> {
    vec![
        Task::Shell { command: "echo hello | tr a-z A-Z".into() },
        Task::Script { interpreter: "python3".into(), body: "print('hi')\nprint('there')\n".into() },
        Task::Process { argv: vec!["/bin/echo".into(), "a b".into(), String::new()] },
        Task::Docker(Box::new(DockerTask {
            image: "archon-test/busybox:1".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            entrypoint: Some(vec!["/bin/busybox".into()]),
            network: "bridge".into(),
            user: Some("1000:1000".into()),
            mounts: vec!["/data:/data:ro".into()],
            pull: PullPolicy::Always,
        })),
        Task::Function { name: "resize".into(), input: r#"{"w": 640, "h": 480}"#.into() },
        Task::Custom { executor: "http".into(), input: r#"{"url": "http://127.0.0.1:8080/health"}"#.into() },
    ]
}

#[test]
fn job_specs_of_every_task_kind_with_every_field_set_round_trip() {
    for task in every_task_kind() {
        assert_round_trips::<_, proto::JobSpec>(full_spec(task));
    }
}

#[test]
fn minimal_job_specs_round_trip_with_their_options_unset() {
    for task in every_task_kind() {
        assert_round_trips::<_, proto::JobSpec>(JobSpec::new("x", task));
    }
    // An empty entrypoint override differs from none.
    let docker = |entrypoint| {
        Task::Docker(Box::new(DockerTask {
            image: "i".into(),
            command: vec![],
            entrypoint,
            network: String::new(),
            user: None,
            mounts: vec![],
            pull: PullPolicy::Never,
        }))
    };
    assert_round_trips::<_, proto::JobSpec>(JobSpec::new("x", docker(Some(vec![]))));
    assert_round_trips::<_, proto::JobSpec>(JobSpec::new("x", docker(None)));
    // Every enum value survives.
    for pull in [PullPolicy::IfNotPresent, PullPolicy::Always, PullPolicy::Never] {
        let mut spec = JobSpec::new("x", docker(None));
        if let Task::Docker(d) = &mut spec.task {
            d.pull = pull;
        }
        assert_round_trips::<_, proto::JobSpec>(spec);
    }
    for overlap in OverlapPolicy::ALL {
        let mut spec = JobSpec::new("x", Task::Shell { command: "true".into() });
        let schedule = Schedule { timezone: String::new(), overlap, ..Schedule::new("* * * * *") };
        spec.schedule = Some(Box::new(schedule));
        spec.placement = Some(PlacementPolicy::Binpack);
        assert_round_trips::<_, proto::JobSpec>(spec);
    }
    for on_disconnect in OnDisconnect::ALL {
        let spec = JobSpec { on_disconnect, ..JobSpec::new("x", Task::Shell { command: "true".into() }) };
        assert_round_trips::<_, proto::JobSpec>(spec);
    }
}

fn full_run(state: RunState) -> Run {
    Run {
        id: RunId(41),
        job: JobId(7),
        state,
        created_at: Timestamp(1_700_000_000_123),
        scheduled_for: Some(Timestamp(1_700_000_000_000)),
        attempts: vec![AttemptId(1), AttemptId(2)],
        current_attempt: Some(AttemptId(2)),
        retries_used: 1,
        not_before: Some(Timestamp(-5)),
        cancel_requested: true,
        finished_at: Some(Timestamp(1_700_000_009_999)),
        reason: Some("worker w-3 was lost".into()),
    }
}

fn every_exit_status() -> Vec<ExitStatus> {
    vec![
        ExitStatus::Exited { code: 0 },
        ExitStatus::Exited { code: -1 },
        ExitStatus::Signaled { signal: 9 },
        ExitStatus::TimedOut,
        ExitStatus::Cancelled,
        ExitStatus::Failed { reason: "no such program".into() },
        ExitStatus::OutOfMemory,
        ExitStatus::Lost,
    ]
}

fn full_attempt(status: ExitStatus) -> Attempt {
    Attempt {
        id: AttemptId(2),
        run: RunId(41),
        worker: WorkerId(3),
        state: AttemptState::Finished,
        assigned_at: Timestamp(10),
        started_at: Some(Timestamp(11)),
        finished_at: Some(Timestamp(12)),
        result: Some(AttemptResult {
            status,
            stdout: OutputTail { data: Bytes::from_static(b"out\n\xff\x00binary"), truncated: 1 << 40 },
            stderr: OutputTail { data: Bytes::from_static(b"err\n"), truncated: 0 },
            usage: Some(ResourceUsage {
                cpu_user_us: u64::MAX,
                cpu_system_us: 3,
                peak_memory_bytes: 1 << 40,
                wall_us: 0,
            }),
        }),
    }
}

#[test]
fn runs_in_every_state_round_trip() {
    for state in RunState::ALL {
        assert_round_trips::<_, proto::Run>(full_run(state));
    }
    let bare = Run {
        scheduled_for: None,
        attempts: vec![],
        current_attempt: None,
        not_before: None,
        finished_at: None,
        reason: None,
        ..full_run(RunState::Pending)
    };
    assert_round_trips::<_, proto::Run>(bare);
}

#[test]
fn attempts_with_every_exit_status_round_trip() {
    for status in every_exit_status() {
        assert_round_trips::<_, proto::Attempt>(full_attempt(status));
    }
    for state in [AttemptState::Assigned, AttemptState::Running, AttemptState::Finished, AttemptState::Lost] {
        let a = Attempt { state, started_at: None, finished_at: None, result: None, ..full_attempt(ExitStatus::Lost) };
        assert_round_trips::<_, proto::Attempt>(a);
    }
}

fn full_worker(state: WorkerState) -> Worker {
    Worker {
        id: WorkerId(3),
        name: "w1".into(),
        address: "10.0.0.3:7000".into(),
        labels: [("zone".to_owned(), "a".to_owned())].into(),
        capacity: Resources { cpu_millis: 4000, memory_bytes: 8 << 30, network_mbps: 1000, devices: BTreeMap::new() },
        allocated: Resources::default(),
        capabilities: ["shell".to_owned(), "function:resize".to_owned()].into(),
        state,
        registered_at: Timestamp(99),
        running: [AttemptId(5), AttemptId(6)].into(),
        queue: 4,
        queued: [AttemptId(6)].into(),
    }
}

#[test]
fn workers_and_worker_infos_round_trip() {
    for state in [WorkerState::Ready, WorkerState::Draining, WorkerState::Lost, WorkerState::Left] {
        assert_round_trips::<_, proto::Worker>(full_worker(state));
        let info = WorkerInfo { worker: full_worker(state), connected: true, last_seen: Some(Timestamp(100)) };
        assert_round_trips::<_, proto::WorkerInfo>(info);
    }
    let info = WorkerInfo { worker: full_worker(WorkerState::Lost), connected: false, last_seen: None };
    assert_round_trips::<_, proto::WorkerInfo>(info);
}

#[test]
fn details_summaries_pages_and_status_round_trip() {
    let job = Job {
        id: JobId(7),
        spec: Arc::new(full_spec(Task::Shell { command: "true".into() })),
        created_at: Timestamp(5),
        runs: vec![RunId(41)],
        cancelled: true,
    };
    assert_round_trips::<_, proto::Job>(job.clone());
    assert_round_trips::<_, proto::JobDetail>(JobDetail {
        job: job.clone(),
        runs: vec![full_run(RunState::Running)],
        schedule: None,
    });
    let mut state = ScheduleState { cursor: Timestamp(60_000), ..ScheduleState::default() };
    state.paused = Some(Paused { at: Timestamp(61_000), note: Some("db upgrade".into()) });
    state.buffered = [Timestamp(120_000), Timestamp(180_000)].into();
    state.active = vec![RunId(41)];
    state.fired.record(3, [Timestamp(1), Timestamp(2)]);
    state.skipped.record(1, [Timestamp(3)]);
    state.missed.record(100, [Timestamp(4)]);
    let schedule = Some(ScheduleInfo { state, next: vec![Timestamp(240_000)] });
    assert_round_trips::<_, proto::JobDetail>(JobDetail { job, runs: vec![], schedule });
    for result in [FireResult::Started(RunId(9)), FireResult::Buffered, FireResult::Skipped] {
        assert_round_trips::<_, proto::ScheduleFire>(ScheduleFire { instant: Timestamp(60_000), result });
    }
    assert_round_trips::<_, proto::RunDetail>(RunDetail {
        run: full_run(RunState::Succeeded),
        job_name: "nightly".into(),
        attempts: every_exit_status().into_iter().map(full_attempt).collect(),
        pending_reason: Some("waiting for capacity: needs cpu 2 mem 1GiB".into()),
    });
    let job_summary = |last_state| JobSummary {
        id: JobId(7),
        name: "n".into(),
        kind: "shell".into(),
        task: "true".into(),
        created_at: Timestamp(5),
        runs: 2,
        last_state,
        next_fire: last_state.is_some().then_some(Timestamp(60_000)),
        paused: last_state.is_none(),
    };
    assert_round_trips::<_, proto::ListJobsResponse>(Page {
        items: vec![job_summary(Some(RunState::Failed)), job_summary(None)],
        next: Some(JobId(6)),
    });
    assert_round_trips::<_, proto::ListJobsResponse>(Page::<JobSummary, JobId> { items: vec![], next: None });
    let run_summary = |exit, finished_at| RunSummary {
        id: RunId(41),
        job: JobId(7),
        job_name: "n".into(),
        state: RunState::TimedOut,
        created_at: Timestamp(5),
        finished_at,
        attempts: 3,
        exit,
    };
    assert_round_trips::<_, proto::ListRunsResponse>(Page {
        items: vec![run_summary(Some(ExitStatus::TimedOut), Some(Timestamp(9))), run_summary(None, None)],
        next: Some(RunId(40)),
    });
    assert_round_trips::<_, proto::ClusterStatus>(ClusterStatus {
        managers: vec![ManagerInfo {
            id: 1,
            address: "127.0.0.1:50051".into(),
            role: "leader".into(),
            term: 3,
            last_applied: 1000,
        }],
        workers: [("ready".to_owned(), 2), ("lost".to_owned(), 1)].into(),
        jobs: 10,
        runs: [("succeeded".to_owned(), 9)].into(),
        queued: 1,
    });
}

fn every_rejection() -> Vec<Rejection> {
    vec![
        Rejection::InvalidSpec(SpecError::new("task.command", "must not be empty")),
        Rejection::UnknownJob(JobId(1)),
        Rejection::UnknownRun(RunId(2)),
        Rejection::UnknownWorker(WorkerId(3)),
        Rejection::UnknownDependency(JobId(4)),
        Rejection::Unschedulable { reason: "no worker has 64 cores".into() },
        Rejection::StaleAttempt { run: RunId(5), attempt: AttemptId(6) },
        Rejection::InvalidTransition { run: RunId(7), state: RunState::Succeeded, action: "cancel".into() },
        Rejection::WorkerUnavailable { worker: WorkerId(8), state: WorkerState::Draining },
        Rejection::DoesNotFit { run: RunId(9), worker: WorkerId(10), reason: "is too small".into() },
        Rejection::InvalidWorker { field: "name".into(), message: "must not be empty".into() },
        Rejection::NotScheduled(JobId(11)),
        Rejection::AlreadyFired { job: JobId(12), instant: Timestamp(1_700_000_000_000) },
        Rejection::SchedulePaused(JobId(13)),
        Rejection::UnknownWorkflow(archon_core::model::WorkflowId(14)),
    ]
}

#[test]
fn submit_results_with_every_rejection_round_trip() {
    let ok: SubmitResult = Ok(Submitted { job: JobId(1), run: Some(RunId(2)), duplicate: true });
    assert_round_trips::<_, proto::SubmitResult>(ok);
    let cron: SubmitResult = Ok(Submitted { job: JobId(1), run: None, duplicate: false });
    assert_round_trips::<_, proto::SubmitResult>(cron);
    for rejection in every_rejection() {
        let wire = proto::Rejection::from(rejection.clone());
        assert_eq!(wire.message, rejection.to_string(), "the rejection's text travels for display");
        assert_round_trips::<_, proto::SubmitResult>(Err::<Submitted, _>(rejection));
    }
}

#[test]
fn queries_and_cancel_targets_round_trip() {
    for kind in TaskKind::ALL.map(Some).into_iter().chain([None]) {
        for state in RunState::ALL.map(Some).into_iter().chain([None]) {
            let q = JobQuery { name: Some("night".into()), before: Some(JobId(9)), limit: Some(10), kind, state };
            assert_eq!(JobQuery::try_from(proto::ListJobsRequest::from(q.clone())).unwrap(), q);
        }
    }
    assert_eq!(JobQuery::try_from(proto::ListJobsRequest::from(JobQuery::default())).unwrap(), JobQuery::default());
    let unknown = proto::ListJobsRequest { kind: 99, ..proto::ListJobsRequest::default() };
    assert!(JobQuery::try_from(unknown).unwrap_err().to_string().contains("kind"));
    let unknown = proto::ListJobsRequest { state: 99, ..proto::ListJobsRequest::default() };
    assert!(JobQuery::try_from(unknown).unwrap_err().to_string().contains("state"));
    for state in RunState::ALL.map(Some).into_iter().chain([None]) {
        let q = RunQuery {
            job: Some(JobId(1)),
            state,
            before: Some(RunId(5)),
            limit: Some(1000),
            since: Some(Timestamp(1_700_000_000_000)),
            until: Some(Timestamp(-5)),
        };
        assert_eq!(RunQuery::try_from(proto::ListRunsRequest::from(q.clone())).unwrap(), q);
    }
    for target in [CancelTarget::Job(JobId(3)), CancelTarget::Run(RunId(4))] {
        assert_eq!(CancelTarget::try_from(proto::CancelRequest::from(target)).unwrap(), target);
    }
    let chunk = OutputChunk {
        run: RunId(1),
        attempt: AttemptId(2),
        stream: OutputStream::Stderr,
        data: Bytes::from_static(b"x\x00y"),
    };
    assert_round_trips::<_, proto::OutputChunk>(chunk);
}

// ---------------------------------------------------------------- errors

fn every_error() -> Vec<Error> {
    let mut errors: Vec<Error> = every_rejection().into_iter().map(Error::Rejected).collect();
    errors.extend([
        Error::invalid("limit", "must be at most 1000"),
        Error::NotFound("run run-7".into()),
        Error::NotLeader { leader: Some("http://10.0.0.2:50051".into()) },
        Error::NotLeader { leader: None },
        Error::Unavailable("storage is unreachable".into()),
        Error::ShuttingDown,
        Error::Transport("peer reset".into()),
        Error::Unauthenticated("no token".into()),
        Error::Internal("invariant broken".into()),
    ]);
    errors
}

#[test]
fn every_error_survives_the_status_round_trip_as_the_same_variant() {
    for err in every_error() {
        let text = err.to_string();
        let status = error_to_status(err.clone());
        assert_eq!(status.message(), text);
        let back = status_to_error(&status);
        assert_eq!(format!("{back:?}"), format!("{err:?}"));
    }
}

#[test]
fn errors_map_to_the_grpc_codes_generic_clients_expect() {
    use tonic::Code;
    let code = |e: Error| error_to_status(e).code();
    assert_eq!(code(Error::NotFound("job job-1".into())), Code::NotFound);
    assert_eq!(code(Error::invalid("f", "m")), Code::InvalidArgument);
    assert_eq!(code(Error::Rejected(Rejection::InvalidSpec(SpecError::new("name", "empty")))), Code::InvalidArgument);
    let invalid_worker = Rejection::InvalidWorker { field: "capacity".into(), message: "announces no room".into() };
    assert_eq!(code(Error::Rejected(invalid_worker)), Code::InvalidArgument);
    assert_eq!(code(Error::Rejected(Rejection::UnknownDependency(JobId(1)))), Code::FailedPrecondition);
    assert_eq!(code(Error::NotLeader { leader: None }), Code::Unavailable);
    assert_eq!(code(Error::Unavailable("x".into())), Code::Unavailable);
    assert_eq!(code(Error::ShuttingDown), Code::Unavailable);
    assert_eq!(code(Error::Unauthenticated("x".into())), Code::Unauthenticated);
    assert_eq!(code(Error::Internal("x".into())), Code::Internal);
    let status = error_to_status(Error::NotLeader { leader: Some("http://10.0.0.2:50051".into()) });
    assert_eq!(status.metadata().get("archon-leader").unwrap(), "http://10.0.0.2:50051");
}

#[test]
fn statuses_from_other_servers_map_by_code() {
    use tonic::{Code, Status};
    assert!(matches!(status_to_error(&Status::not_found("job 9")), Error::NotFound(m) if m == "job 9"));
    assert!(matches!(status_to_error(&Status::unavailable("busy")), Error::Unavailable(_)));
    assert!(matches!(status_to_error(&Status::unauthenticated("who")), Error::Unauthenticated(_)));
    assert!(matches!(status_to_error(&Status::new(Code::DataLoss, "x")), Error::Internal(_)));
    let mut status = Status::unavailable("not leader");
    status.metadata_mut().insert("archon-leader", "http://10.0.0.2:50051".parse().unwrap());
    assert!(matches!(status_to_error(&status), Error::NotLeader { leader: Some(l) } if l == "http://10.0.0.2:50051"));
}

// ---------------------------------------------------------------- malformed messages

#[test]
fn missing_required_fields_are_invalid_arguments_naming_the_field() {
    let spec = proto::JobSpec::from(JobSpec::new("x", Task::Shell { command: "true".into() }));
    let no_task = proto::JobSpec { task: None, ..spec.clone() };
    assert_eq!(field_of(JobSpec::try_from(no_task.clone()).unwrap_err()), "task");

    let job = proto::Job { id: 1, spec: Some(no_task), created_at_ms: 0, runs: vec![], cancelled: false };
    assert_eq!(field_of(Job::try_from(job.clone()).unwrap_err()), "spec.task");
    assert_eq!(field_of(Job::try_from(proto::Job { spec: None, ..job }).unwrap_err()), "spec");

    let mut run = proto::Run::from(full_run(RunState::Running));
    run.state = 0;
    assert_eq!(field_of(Run::try_from(run.clone()).unwrap_err()), "state");
    run.state = 99;
    assert_eq!(field_of(Run::try_from(run).unwrap_err()), "state");

    let mut detail = proto::RunDetail::from(RunDetail {
        run: full_run(RunState::Failed),
        job_name: "n".into(),
        attempts: vec![full_attempt(ExitStatus::Lost), full_attempt(ExitStatus::Lost)],
        pending_reason: None,
    });
    detail.attempts[1].result.as_mut().unwrap().status = None;
    assert_eq!(field_of(RunDetail::try_from(detail.clone()).unwrap_err()), "attempts[1].result.status");
    detail.attempts[1].result.as_mut().unwrap().status = Some(proto::ExitStatus { kind: None });
    assert_eq!(field_of(RunDetail::try_from(detail).unwrap_err()), "attempts[1].result.status.kind");

    let mut info = proto::WorkerInfo::from(WorkerInfo {
        worker: full_worker(WorkerState::Ready),
        connected: true,
        last_seen: None,
    });
    info.worker.as_mut().unwrap().capacity = None;
    assert_eq!(field_of(WorkerInfo::try_from(info).unwrap_err()), "worker.capacity");
    assert_eq!(field_of(WorkerInfo::try_from(proto::WorkerInfo::default()).unwrap_err()), "worker");

    assert_eq!(field_of(SubmitResult::try_from(proto::SubmitResult::default()).unwrap_err()), "result");
    let no_reason =
        proto::SubmitResult { result: Some(proto::submit_result::Result::Rejected(proto::Rejection::default())) };
    assert_eq!(field_of(SubmitResult::try_from(no_reason).unwrap_err()), "rejected.reason");
    assert_eq!(field_of(CancelTarget::try_from(proto::CancelRequest::default()).unwrap_err()), "target");
    assert_eq!(field_of(OutputChunk::try_from(proto::OutputChunk::default()).unwrap_err()), "stream");
    let bad_constraint = proto::JobSpec {
        constraints: vec![proto::Constraint::default(), proto::Constraint { op: 42, ..Default::default() }],
        ..spec
    };
    assert_eq!(field_of(JobSpec::try_from(bad_constraint.clone()).unwrap_err()), "constraints[1].op");
    let unknown_choice = proto::JobSpec { constraints: vec![], on_disconnect: 7, ..bad_constraint };
    let err = JobSpec::try_from(unknown_choice).unwrap_err();
    assert!(err.to_string().contains("7 is not a known value"), "{err}");
    assert_eq!(field_of(err), "on_disconnect");
}

#[test]
fn absent_optional_messages_read_as_the_model_defaults() {
    let wire = proto::JobSpec {
        name: "x".into(),
        task: Some(proto::job_spec::Task::Shell(proto::ShellTask { command: "true".into() })),
        ..Default::default()
    };
    let spec = JobSpec::try_from(wire).unwrap();
    assert_eq!(spec, JobSpec::new("x", Task::Shell { command: "true".into() }));
    assert_eq!(spec.on_disconnect, OnDisconnect::Kill, "a client that never sets it asks for kill");
    let result = AttemptResult::try_from(proto::AttemptResult {
        status: Some(ExitStatus::Cancelled.into()),
        stdout: None,
        stderr: None,
        usage: None,
    })
    .unwrap();
    assert_eq!(result, AttemptResult::status(ExitStatus::Cancelled));
}
