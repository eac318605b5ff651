//! Property tests: any model value survives model → proto → bytes → proto → model,
//! and no byte string makes a conversion panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;
use std::time::Duration;

use archon_core::Error;
use archon_core::api::{RunDetail, WorkerInfo};
use archon_core::model::{
    Attempt, AttemptId, AttemptResult, AttemptState, Constraint, ConstraintOp, DockerTask, ExitStatus, JobId, JobSpec,
    OnDisconnect, OutputTail, OverlapPolicy, PlacementPolicy, PullPolicy, ResourceUsage, Resources, RetryPolicy, Run,
    RunId, RunState, Schedule, Task, Timestamp, Worker, WorkerId, WorkerState,
};
use archon_net::proto;
use bytes::Bytes;
use proptest::prelude::*;
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

fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn millis() -> impl Strategy<Value = Duration> {
    any::<u64>().prop_map(Duration::from_millis)
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<i64>().prop_map(Timestamp)
}

fn resources() -> impl Strategy<Value = Resources> {
    (any::<u64>(), any::<u64>(), any::<u64>(), prop::collection::btree_map(text(), any::<u32>(), 0..3)).prop_map(
        |(cpu_millis, memory_bytes, network_mbps, devices)| Resources {
            cpu_millis,
            memory_bytes,
            network_mbps,
            devices,
        },
    )
}

fn task() -> impl Strategy<Value = Task> {
    let strings = || prop::collection::vec(text(), 0..4);
    let pull = prop_oneof![Just(PullPolicy::IfNotPresent), Just(PullPolicy::Always), Just(PullPolicy::Never)];
    let docker = (text(), strings(), prop::option::of(strings()), text(), prop::option::of(text()), strings(), pull)
        .prop_map(|(image, command, entrypoint, network, user, mounts, pull)| {
            Task::Docker(Box::new(DockerTask { image, command, entrypoint, network, user, mounts, pull }))
        });
    prop_oneof![
        text().prop_map(|command| Task::Shell { command }),
        (text(), text()).prop_map(|(interpreter, body)| Task::Script { interpreter, body }),
        strings().prop_map(|argv| Task::Process { argv }),
        docker,
        (text(), text()).prop_map(|(name, input)| Task::Function { name, input }),
        (text(), text()).prop_map(|(executor, input)| Task::Custom { executor, input }),
    ]
}

fn constraint() -> impl Strategy<Value = Constraint> {
    let op = prop_oneof![Just(ConstraintOp::Equals), Just(ConstraintOp::NotEquals), Just(ConstraintOp::Exists)];
    (text(), op, text()).prop_map(|(label, op, value)| Constraint { label, op, value })
}

fn schedule() -> impl Strategy<Value = Schedule> {
    let overlap = prop_oneof![
        Just(OverlapPolicy::Skip),
        Just(OverlapPolicy::BufferOne),
        Just(OverlapPolicy::AllowAll),
        Just(OverlapPolicy::CancelOther),
        Just(OverlapPolicy::BufferAll),
    ];
    (text(), text(), overlap, prop::option::of(millis()), prop::option::of(millis()))
        .prop_map(|(cron, timezone, overlap, catch_up, jitter)| Schedule { cron, timezone, overlap, catch_up, jitter })
}

fn job_spec() -> impl Strategy<Value = JobSpec> {
    let retry = (any::<u32>(), millis(), millis(), any::<bool>()).prop_map(
        |(max_retries, backoff_base, backoff_max, jitter)| RetryPolicy {
            max_retries,
            backoff_base,
            backoff_max,
            jitter,
        },
    );
    let placement = prop::option::of(prop_oneof![Just(PlacementPolicy::Binpack), Just(PlacementPolicy::Spread)]);
    (
        (
            text(),
            task(),
            prop::collection::btree_map(text(), text(), 0..3),
            prop::collection::btree_map(text(), text().prop_map(archon_core::model::Secret::from), 0..3),
            prop::option::of(text()),
            resources(),
        ),
        (prop::collection::vec(constraint(), 0..3), any::<i32>(), prop::option::of(millis()), retry),
        (
            prop::option::of(schedule()),
            prop::collection::vec(any::<u64>().prop_map(JobId), 0..3),
            prop::sample::select(OnDisconnect::ALL.to_vec()),
        ),
        (
            prop::option::of(text()),
            placement,
            prop::option::of(millis()),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |(
                (name, task, env, secret_env, working_dir, resources),
                (constraints, priority, timeout, retry),
                (schedule, depends_on, on_disconnect),
                (idempotency_key, placement, retention, keep_last, output_limit),
            )| JobSpec {
                name,
                task,
                env,
                secret_env,
                working_dir,
                resources,
                constraints,
                priority,
                timeout,
                retry,
                schedule: schedule.map(Box::new),
                depends_on,
                idempotency_key,
                placement,
                retention,
                keep_last,
                output_limit,
                on_disconnect,
            },
        )
}

fn run_state() -> impl Strategy<Value = RunState> {
    prop::sample::select(RunState::ALL.to_vec())
}

fn run() -> impl Strategy<Value = Run> {
    let ids = || prop::collection::vec(any::<u64>().prop_map(AttemptId), 0..3);
    (
        (any::<u64>(), any::<u64>(), run_state(), timestamp(), prop::option::of(timestamp()), ids()),
        (prop::option::of(any::<u64>().prop_map(AttemptId)), any::<u32>(), prop::option::of(timestamp())),
        (any::<bool>(), prop::option::of(timestamp()), prop::option::of(text())),
    )
        .prop_map(
            |(
                (id, job, state, created_at, scheduled_for, attempts),
                (current_attempt, retries_used, not_before),
                (cancel_requested, finished_at, reason),
            )| Run {
                id: RunId(id),
                job: JobId(job),
                state,
                created_at,
                scheduled_for,
                attempts,
                current_attempt,
                retries_used,
                not_before,
                cancel_requested,
                finished_at,
                reason,
            },
        )
}

fn exit_status() -> impl Strategy<Value = ExitStatus> {
    prop_oneof![
        any::<i32>().prop_map(|code| ExitStatus::Exited { code }),
        any::<i32>().prop_map(|signal| ExitStatus::Signaled { signal }),
        Just(ExitStatus::TimedOut),
        Just(ExitStatus::Cancelled),
        text().prop_map(|reason| ExitStatus::Failed { reason }),
        Just(ExitStatus::OutOfMemory),
        Just(ExitStatus::Lost),
    ]
}

fn tail() -> impl Strategy<Value = OutputTail> {
    (prop::collection::vec(any::<u8>(), 0..64), any::<u64>())
        .prop_map(|(data, truncated)| OutputTail { data: Bytes::from(data), truncated })
}

fn usage() -> impl Strategy<Value = ResourceUsage> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(cpu_user_us, cpu_system_us, peak_memory_bytes, wall_us)| ResourceUsage {
            cpu_user_us,
            cpu_system_us,
            peak_memory_bytes,
            wall_us,
        },
    )
}

fn attempt() -> impl Strategy<Value = Attempt> {
    let state = prop_oneof![
        Just(AttemptState::Assigned),
        Just(AttemptState::Running),
        Just(AttemptState::Finished),
        Just(AttemptState::Lost),
    ];
    let result = prop::option::of(
        (exit_status(), tail(), tail(), prop::option::of(usage()))
            .prop_map(|(status, stdout, stderr, usage)| AttemptResult { status, stdout, stderr, usage }),
    );
    (
        (any::<u64>(), any::<u64>(), any::<u64>(), state),
        (timestamp(), prop::option::of(timestamp()), prop::option::of(timestamp()), result),
    )
        .prop_map(|((id, run, worker, state), (assigned_at, started_at, finished_at, result))| Attempt {
            id: AttemptId(id),
            run: RunId(run),
            worker: WorkerId(worker),
            state,
            assigned_at,
            started_at,
            finished_at,
            result,
        })
}

fn worker() -> impl Strategy<Value = Worker> {
    let state = prop_oneof![
        Just(WorkerState::Ready),
        Just(WorkerState::Draining),
        Just(WorkerState::Lost),
        Just(WorkerState::Left)
    ];
    (
        (any::<u64>(), text(), text(), prop::collection::btree_map(text(), text(), 0..3)),
        (resources(), resources(), prop::collection::btree_set(text(), 0..4), state, timestamp()),
        prop::collection::btree_set(any::<u64>().prop_map(AttemptId), 0..4),
        (any::<u32>(), prop::collection::btree_set(any::<u64>().prop_map(AttemptId), 0..3)),
    )
        .prop_map(
            |(
                (id, name, address, labels),
                (capacity, allocated, capabilities, state, registered_at),
                running,
                (queue, queued),
            )| {
                Worker {
                    id: WorkerId(id),
                    name,
                    address,
                    labels,
                    capacity,
                    allocated,
                    capabilities,
                    state,
                    registered_at,
                    running,
                    queue,
                    queued,
                }
            },
        )
}

proptest! {
    #[test]
    fn any_job_spec_round_trips(spec in job_spec()) {
        prop_assert_eq!(round_trip::<_, proto::JobSpec>(spec.clone()), spec);
    }

    #[test]
    fn any_run_detail_round_trips(run in run(), attempts in prop::collection::vec(attempt(), 0..4), name in text()) {
        let detail = RunDetail { run, job_name: name, attempts, pending_reason: None };
        prop_assert_eq!(round_trip::<_, proto::RunDetail>(detail.clone()), detail);
    }

    #[test]
    fn any_worker_info_round_trips(worker in worker(), connected in any::<bool>(), seen in prop::option::of(timestamp())) {
        let info = WorkerInfo { worker, connected, last_seen: seen };
        prop_assert_eq!(round_trip::<_, proto::WorkerInfo>(info.clone()), info);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_conversions(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(wire) = proto::JobSpec::decode(bytes.as_slice()) {
            let _ = JobSpec::try_from(wire);
        }
        if let Ok(wire) = proto::RunDetail::decode(bytes.as_slice()) {
            let _ = RunDetail::try_from(wire);
        }
        if let Ok(wire) = proto::ErrorDetail::decode(bytes.as_slice()) {
            let _ = Error::try_from(wire);
        }
    }
}
