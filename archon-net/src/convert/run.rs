//! Runs, attempts, exit statuses and output.

use archon_core::Error;
use archon_core::model::{
    Attempt, AttemptId, AttemptResult, AttemptState, ExitStatus, JobId, OutputChunk, OutputStream, OutputTail,
    ResourceUsage, Run, RunId, RunState, WorkerId,
};

use super::{ProtoEnum, enum_required, instant, optional, proto_enum, required, timestamp};
use crate::proto::{self, exit_status};

proto_enum!(RunState => RunState {
    Waiting, Pending, Scheduled, Running, Retrying, Succeeded, Failed, Cancelled, TimedOut, UpstreamFailed,
});
proto_enum!(AttemptState => AttemptState { Assigned, Running, Finished, Lost });
proto_enum!(OutputStream => OutputStream { Stdout, Stderr });

impl From<Run> for proto::Run {
    fn from(r: Run) -> Self {
        proto::Run {
            id: r.id.get(),
            job: r.job.get(),
            state: r.state.to_wire(),
            created_at_ms: instant(r.created_at),
            scheduled_for_ms: r.scheduled_for.map(instant),
            attempts: r.attempts.into_iter().map(AttemptId::get).collect(),
            current_attempt: r.current_attempt.map(AttemptId::get),
            retries_used: r.retries_used,
            not_before_ms: r.not_before.map(instant),
            cancel_requested: r.cancel_requested,
            finished_at_ms: r.finished_at.map(instant),
            reason: r.reason,
        }
    }
}

impl TryFrom<proto::Run> for Run {
    type Error = Error;

    fn try_from(r: proto::Run) -> Result<Self, Error> {
        Ok(Run {
            id: RunId(r.id),
            job: JobId(r.job),
            state: enum_required(r.state, "state")?,
            created_at: timestamp(r.created_at_ms),
            scheduled_for: r.scheduled_for_ms.map(timestamp),
            attempts: r.attempts.into_iter().map(AttemptId).collect(),
            current_attempt: r.current_attempt.map(AttemptId),
            retries_used: r.retries_used,
            not_before: r.not_before_ms.map(timestamp),
            cancel_requested: r.cancel_requested,
            finished_at: r.finished_at_ms.map(timestamp),
            reason: r.reason,
        })
    }
}

impl From<ExitStatus> for proto::ExitStatus {
    fn from(s: ExitStatus) -> Self {
        let kind = match s {
            ExitStatus::Exited { code } => exit_status::Kind::Exited(code),
            ExitStatus::Signaled { signal } => exit_status::Kind::Signaled(signal),
            ExitStatus::TimedOut => exit_status::Kind::TimedOut(()),
            ExitStatus::Cancelled => exit_status::Kind::Cancelled(()),
            ExitStatus::Failed { reason } => exit_status::Kind::Failed(reason),
            ExitStatus::OutOfMemory => exit_status::Kind::OutOfMemory(()),
            ExitStatus::Lost => exit_status::Kind::Lost(()),
        };
        proto::ExitStatus { kind: Some(kind) }
    }
}

impl TryFrom<proto::ExitStatus> for ExitStatus {
    type Error = Error;

    fn try_from(s: proto::ExitStatus) -> Result<Self, Error> {
        Ok(match required(s.kind, "kind")? {
            exit_status::Kind::Exited(code) => ExitStatus::Exited { code },
            exit_status::Kind::Signaled(signal) => ExitStatus::Signaled { signal },
            exit_status::Kind::TimedOut(()) => ExitStatus::TimedOut,
            exit_status::Kind::Cancelled(()) => ExitStatus::Cancelled,
            exit_status::Kind::Failed(reason) => ExitStatus::Failed { reason },
            exit_status::Kind::OutOfMemory(()) => ExitStatus::OutOfMemory,
            exit_status::Kind::Lost(()) => ExitStatus::Lost,
        })
    }
}

impl From<OutputTail> for proto::OutputTail {
    fn from(t: OutputTail) -> Self {
        proto::OutputTail { data: t.data, truncated: t.truncated }
    }
}

impl From<proto::OutputTail> for OutputTail {
    fn from(t: proto::OutputTail) -> Self {
        OutputTail { data: t.data, truncated: t.truncated }
    }
}

impl From<ResourceUsage> for proto::ResourceUsage {
    fn from(u: ResourceUsage) -> Self {
        proto::ResourceUsage {
            cpu_user_us: u.cpu_user_us,
            cpu_system_us: u.cpu_system_us,
            peak_memory_bytes: u.peak_memory_bytes,
            wall_us: u.wall_us,
        }
    }
}

impl From<proto::ResourceUsage> for ResourceUsage {
    fn from(u: proto::ResourceUsage) -> Self {
        ResourceUsage {
            cpu_user_us: u.cpu_user_us,
            cpu_system_us: u.cpu_system_us,
            peak_memory_bytes: u.peak_memory_bytes,
            wall_us: u.wall_us,
        }
    }
}

impl From<AttemptResult> for proto::AttemptResult {
    fn from(r: AttemptResult) -> Self {
        proto::AttemptResult {
            status: Some(r.status.into()),
            stdout: Some(r.stdout.into()),
            stderr: Some(r.stderr.into()),
            usage: r.usage.map(Into::into),
        }
    }
}

impl TryFrom<proto::AttemptResult> for AttemptResult {
    type Error = Error;

    fn try_from(r: proto::AttemptResult) -> Result<Self, Error> {
        Ok(AttemptResult {
            status: super::message(r.status, "status")?,
            stdout: r.stdout.map(Into::into).unwrap_or_default(),
            stderr: r.stderr.map(Into::into).unwrap_or_default(),
            usage: r.usage.map(Into::into),
        })
    }
}

impl From<Attempt> for proto::Attempt {
    fn from(a: Attempt) -> Self {
        proto::Attempt {
            id: a.id.get(),
            run: a.run.get(),
            worker: a.worker.get(),
            state: a.state.to_wire(),
            assigned_at_ms: instant(a.assigned_at),
            started_at_ms: a.started_at.map(instant),
            finished_at_ms: a.finished_at.map(instant),
            result: a.result.map(Into::into),
        }
    }
}

impl TryFrom<proto::Attempt> for Attempt {
    type Error = Error;

    fn try_from(a: proto::Attempt) -> Result<Self, Error> {
        Ok(Attempt {
            id: AttemptId(a.id),
            run: RunId(a.run),
            worker: WorkerId(a.worker),
            state: enum_required(a.state, "state")?,
            assigned_at: timestamp(a.assigned_at_ms),
            started_at: a.started_at_ms.map(timestamp),
            finished_at: a.finished_at_ms.map(timestamp),
            result: optional(a.result, "result")?,
        })
    }
}

impl From<OutputChunk> for proto::OutputChunk {
    fn from(c: OutputChunk) -> Self {
        proto::OutputChunk { run: c.run.get(), attempt: c.attempt.get(), stream: c.stream.to_wire(), data: c.data }
    }
}

impl TryFrom<proto::OutputChunk> for OutputChunk {
    type Error = Error;

    fn try_from(c: proto::OutputChunk) -> Result<Self, Error> {
        Ok(OutputChunk {
            run: RunId(c.run),
            attempt: AttemptId(c.attempt),
            stream: enum_required(c.stream, "stream")?,
            data: c.data,
        })
    }
}
