//! Job specs and jobs: resources, tasks, constraints, retries, schedules.

use std::sync::Arc;

use archon_core::Error;
use archon_core::model::{
    self as m, ConstraintOp, DockerTask, Job, JobId, JobSpec, OnDisconnect, OverlapPolicy, PlacementPolicy, PullPolicy,
    Resources, RetryPolicy, Schedule, Task, TaskKind,
};

use super::{
    At, ProtoEnum, duration, each, enum_optional, enum_or_default, instant, message, millis, optional, proto_enum,
    timestamp,
};
use crate::proto::{self, job_spec};

proto_enum!(PullPolicy => PullPolicy { IfNotPresent, Always, Never });
proto_enum!(ConstraintOp => ConstraintOp { Equals, NotEquals, Exists });
proto_enum!(OverlapPolicy => OverlapPolicy { Skip, BufferOne, AllowAll, CancelOther, BufferAll });
proto_enum!(PlacementPolicy => PlacementPolicy { Binpack, Spread });
proto_enum!(OnDisconnect => OnDisconnect { Kill, Keep });
proto_enum!(TaskKind => TaskKind { Shell, Script, Process, Docker, Function, Custom });

impl From<Resources> for proto::Resources {
    fn from(r: Resources) -> Self {
        proto::Resources {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            network_mbps: r.network_mbps,
            devices: r.devices,
        }
    }
}

impl From<proto::Resources> for Resources {
    fn from(r: proto::Resources) -> Self {
        Resources {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            network_mbps: r.network_mbps,
            devices: r.devices,
        }
    }
}

impl From<Task> for job_spec::Task {
    fn from(task: Task) -> Self {
        match task {
            Task::Shell { command } => job_spec::Task::Shell(proto::ShellTask { command }),
            Task::Script { interpreter, body } => job_spec::Task::Script(proto::ScriptTask { interpreter, body }),
            Task::Process { argv } => job_spec::Task::Process(proto::ProcessTask { argv }),
            Task::Docker(d) => job_spec::Task::Docker(proto::DockerTask {
                image: d.image,
                command: d.command,
                entrypoint: d.entrypoint.map(|args| proto::Argv { args }),
                network: d.network,
                user: d.user,
                mounts: d.mounts,
                pull: d.pull.to_wire(),
            }),
            Task::Function { name, input } => job_spec::Task::Function(proto::FunctionTask { name, input }),
            Task::Custom { executor, input } => job_spec::Task::Custom(proto::CustomTask { executor, input }),
        }
    }
}

impl TryFrom<job_spec::Task> for Task {
    type Error = Error;

    fn try_from(task: job_spec::Task) -> Result<Self, Error> {
        Ok(match task {
            job_spec::Task::Shell(t) => Task::Shell { command: t.command },
            job_spec::Task::Script(t) => Task::Script { interpreter: t.interpreter, body: t.body },
            job_spec::Task::Process(t) => Task::Process { argv: t.argv },
            job_spec::Task::Docker(d) => Task::Docker(Box::new(DockerTask {
                image: d.image,
                command: d.command,
                entrypoint: d.entrypoint.map(|e| e.args),
                network: d.network,
                user: d.user,
                mounts: d.mounts,
                pull: enum_or_default(d.pull, "pull")?,
            })),
            job_spec::Task::Function(t) => Task::Function { name: t.name, input: t.input },
            job_spec::Task::Custom(t) => Task::Custom { executor: t.executor, input: t.input },
        })
    }
}

impl From<m::Constraint> for proto::Constraint {
    fn from(c: m::Constraint) -> Self {
        proto::Constraint { label: c.label, op: c.op.to_wire(), value: c.value }
    }
}

impl TryFrom<proto::Constraint> for m::Constraint {
    type Error = Error;

    fn try_from(c: proto::Constraint) -> Result<Self, Error> {
        Ok(m::Constraint { label: c.label, op: enum_or_default(c.op, "op")?, value: c.value })
    }
}

impl From<RetryPolicy> for proto::RetryPolicy {
    fn from(r: RetryPolicy) -> Self {
        proto::RetryPolicy {
            max_retries: r.max_retries,
            backoff_base_ms: millis(r.backoff_base),
            backoff_max_ms: millis(r.backoff_max),
            jitter: r.jitter,
        }
    }
}

impl From<proto::RetryPolicy> for RetryPolicy {
    fn from(r: proto::RetryPolicy) -> Self {
        RetryPolicy {
            max_retries: r.max_retries,
            backoff_base: duration(r.backoff_base_ms),
            backoff_max: duration(r.backoff_max_ms),
            jitter: r.jitter,
        }
    }
}

impl From<Schedule> for proto::Schedule {
    fn from(s: Schedule) -> Self {
        proto::Schedule {
            cron: s.cron,
            timezone: s.timezone,
            overlap: s.overlap.to_wire(),
            catch_up_ms: s.catch_up.map(millis),
            jitter_ms: s.jitter.map(millis),
        }
    }
}

impl TryFrom<proto::Schedule> for Schedule {
    type Error = Error;

    fn try_from(s: proto::Schedule) -> Result<Self, Error> {
        Ok(Schedule {
            cron: s.cron,
            timezone: s.timezone,
            overlap: enum_or_default(s.overlap, "overlap")?,
            catch_up: s.catch_up_ms.map(duration),
            jitter: s.jitter_ms.map(duration),
        })
    }
}

impl From<JobSpec> for proto::JobSpec {
    fn from(s: JobSpec) -> Self {
        proto::JobSpec {
            name: s.name,
            task: Some(s.task.into()),
            env: s.env,
            secret_env: s.secret_env.into_iter().map(|(k, v)| (k, v.expose().to_owned())).collect(),
            working_dir: s.working_dir,
            resources: Some(s.resources.into()),
            constraints: s.constraints.into_iter().map(Into::into).collect(),
            priority: s.priority,
            timeout_ms: s.timeout.map(millis),
            retry: Some(s.retry.into()),
            schedule: s.schedule.map(|b| (*b).into()),
            depends_on: s.depends_on.into_iter().map(JobId::get).collect(),
            idempotency_key: s.idempotency_key,
            placement: s.placement.map_or(proto::PlacementPolicy::Unspecified as i32, ProtoEnum::to_wire),
            retention_ms: s.retention.map(millis),
            keep_last: s.keep_last,
            output_limit: s.output_limit,
            on_disconnect: s.on_disconnect.to_wire(),
        }
    }
}

impl TryFrom<proto::JobSpec> for JobSpec {
    type Error = Error;

    fn try_from(s: proto::JobSpec) -> Result<Self, Error> {
        let task = s.task.ok_or_else(|| {
            Error::invalid("task", "is required (set one of shell, script, process, docker, function)")
        })?;
        Ok(JobSpec {
            name: s.name,
            task: Task::try_from(task).at("task")?,
            env: s.env,
            secret_env: s.secret_env.into_iter().map(|(k, v)| (k, m::Secret::from(v))).collect(),
            working_dir: s.working_dir,
            resources: s.resources.map_or_else(Resources::default_request, Into::into),
            constraints: each(s.constraints, "constraints")?,
            priority: s.priority,
            timeout: s.timeout_ms.map(duration),
            retry: s.retry.map(Into::into).unwrap_or_default(),
            schedule: optional::<_, m::Schedule>(s.schedule, "schedule")?.map(Box::new),
            depends_on: s.depends_on.into_iter().map(JobId).collect(),
            idempotency_key: s.idempotency_key,
            placement: enum_optional(s.placement, "placement")?,
            retention: s.retention_ms.map(duration),
            keep_last: s.keep_last,
            output_limit: s.output_limit,
            on_disconnect: enum_or_default(s.on_disconnect, "on_disconnect")?,
        })
    }
}

impl From<Job> for proto::Job {
    fn from(j: Job) -> Self {
        proto::Job {
            id: j.id.get(),
            spec: Some(Arc::unwrap_or_clone(j.spec).into()),
            created_at_ms: instant(j.created_at),
            runs: j.runs.into_iter().map(|r| r.get()).collect(),
            cancelled: j.cancelled,
        }
    }
}

impl TryFrom<proto::Job> for Job {
    type Error = Error;

    fn try_from(j: proto::Job) -> Result<Self, Error> {
        Ok(Job {
            id: JobId(j.id),
            spec: Arc::new(message(j.spec, "spec")?),
            created_at: timestamp(j.created_at_ms),
            runs: j.runs.into_iter().map(m::RunId).collect(),
            cancelled: j.cancelled,
        })
    }
}
