//! The API's own shapes: submit results and rejections, details, queries, pages,
//! summaries, cancel targets and cluster status.

use archon_core::Error;
use archon_core::api::{
    CancelTarget, ClusterStatus, JobDetail, JobQuery, JobSummary, ManagerInfo, Page, RunDetail, RunQuery, RunSummary,
    ScheduleAction, ScheduleFire, ScheduleInfo, SubmitResult, Submitted,
};
use archon_core::model::{
    AttemptId, FireLog, JobId, Paused, RunId, ScheduleState, SpecError, Timestamp, WorkerId, WorkflowId,
};
use archon_core::state::{FireResult, Rejection};

use super::{At, ProtoEnum, each, enum_optional, enum_required, instant, message, optional, required, timestamp};
use crate::proto::{self, cancel_request, rejection, schedule_request, submit_result};

impl From<Submitted> for proto::Submitted {
    fn from(s: Submitted) -> Self {
        proto::Submitted { job: s.job.get(), run: s.run.map(RunId::get), duplicate: s.duplicate }
    }
}

impl From<proto::Submitted> for Submitted {
    fn from(s: proto::Submitted) -> Self {
        Submitted { job: JobId(s.job), run: s.run.map(RunId), duplicate: s.duplicate }
    }
}

impl From<SubmitResult> for proto::SubmitResult {
    fn from(r: SubmitResult) -> Self {
        let result = match r {
            Ok(s) => submit_result::Result::Submitted(s.into()),
            Err(r) => submit_result::Result::Rejected(r.into()),
        };
        proto::SubmitResult { result: Some(result) }
    }
}

impl TryFrom<proto::SubmitResult> for SubmitResult {
    type Error = Error;

    fn try_from(r: proto::SubmitResult) -> Result<Self, Error> {
        Ok(match required(r.result, "result")? {
            submit_result::Result::Submitted(s) => Ok(s.into()),
            submit_result::Result::Rejected(r) => Err(Rejection::try_from(r).at("rejected")?),
        })
    }
}

impl From<SpecError> for proto::SpecError {
    fn from(e: SpecError) -> Self {
        proto::SpecError { field: e.field, message: e.message }
    }
}

impl From<proto::SpecError> for SpecError {
    fn from(e: proto::SpecError) -> Self {
        SpecError { field: e.field, message: e.message }
    }
}

impl From<Rejection> for proto::Rejection {
    fn from(r: Rejection) -> Self {
        let message = r.to_string();
        let reason = match r {
            Rejection::InvalidSpec(e) => rejection::Reason::InvalidSpec(e.into()),
            Rejection::UnknownJob(id) => rejection::Reason::UnknownJob(id.get()),
            Rejection::UnknownRun(id) => rejection::Reason::UnknownRun(id.get()),
            Rejection::UnknownWorker(id) => rejection::Reason::UnknownWorker(id.get()),
            Rejection::UnknownDependency(id) => rejection::Reason::UnknownDependency(id.get()),
            Rejection::Unschedulable { reason } => {
                rejection::Reason::Unschedulable(rejection::Unschedulable { reason })
            }
            Rejection::StaleAttempt { run, attempt } => {
                rejection::Reason::StaleAttempt(rejection::StaleAttempt { run: run.get(), attempt: attempt.get() })
            }
            Rejection::InvalidTransition { run, state, action } => {
                rejection::Reason::InvalidTransition(rejection::InvalidTransition {
                    run: run.get(),
                    state: state.to_wire(),
                    action,
                })
            }
            Rejection::WorkerUnavailable { worker, state } => {
                rejection::Reason::WorkerUnavailable(rejection::WorkerUnavailable {
                    worker: worker.get(),
                    state: state.to_wire(),
                })
            }
            Rejection::DoesNotFit { run, worker, reason } => {
                rejection::Reason::DoesNotFit(rejection::DoesNotFit { run: run.get(), worker: worker.get(), reason })
            }
            Rejection::InvalidWorker { field, message } => {
                rejection::Reason::InvalidWorker(rejection::InvalidWorker { field, message })
            }
            Rejection::DependencyNotLive(id) => rejection::Reason::DependencyNotLive(id.get()),
            Rejection::OutputGap { attempt, stream, offset, stored } => {
                rejection::Reason::OutputGap(rejection::OutputGap {
                    attempt: attempt.get(),
                    stream: stream.to_wire(),
                    offset,
                    stored,
                })
            }
            Rejection::NotScheduled(id) => rejection::Reason::NotScheduled(id.get()),
            Rejection::SchedulePaused(id) => rejection::Reason::SchedulePaused(id.get()),
            Rejection::UnknownWorkflow(id) => rejection::Reason::UnknownWorkflow(id.get()),
            Rejection::TokenExists(id) => rejection::Reason::TokenExists(id.to_string()),
            Rejection::UnknownToken(id) => rejection::Reason::UnknownToken(id.to_string()),
            Rejection::TooManyTokens(n) => rejection::Reason::TooManyTokens(n as u64),
            Rejection::AlreadyFired { job, instant } => {
                rejection::Reason::AlreadyFired(rejection::AlreadyFired { job: job.get(), instant_ms: instant.0 })
            }
        };
        proto::Rejection { message, reason: Some(reason) }
    }
}

impl TryFrom<proto::Rejection> for Rejection {
    type Error = Error;

    /// Rebuilds the rejection from its typed reason; the display `message` is derived, not read.
    fn try_from(r: proto::Rejection) -> Result<Self, Error> {
        Ok(match required(r.reason, "reason")? {
            rejection::Reason::InvalidSpec(e) => Rejection::InvalidSpec(e.into()),
            rejection::Reason::UnknownJob(id) => Rejection::UnknownJob(JobId(id)),
            rejection::Reason::UnknownRun(id) => Rejection::UnknownRun(RunId(id)),
            rejection::Reason::UnknownWorker(id) => Rejection::UnknownWorker(WorkerId(id)),
            rejection::Reason::UnknownDependency(id) => Rejection::UnknownDependency(JobId(id)),
            rejection::Reason::Unschedulable(u) => Rejection::Unschedulable { reason: u.reason },
            rejection::Reason::StaleAttempt(s) => {
                Rejection::StaleAttempt { run: RunId(s.run), attempt: AttemptId(s.attempt) }
            }
            rejection::Reason::InvalidTransition(t) => Rejection::InvalidTransition {
                run: RunId(t.run),
                state: enum_required(t.state, "invalid_transition.state")?,
                action: t.action,
            },
            rejection::Reason::WorkerUnavailable(w) => Rejection::WorkerUnavailable {
                worker: WorkerId(w.worker),
                state: enum_required(w.state, "worker_unavailable.state")?,
            },
            rejection::Reason::DoesNotFit(d) => {
                Rejection::DoesNotFit { run: RunId(d.run), worker: WorkerId(d.worker), reason: d.reason }
            }
            rejection::Reason::InvalidWorker(w) => Rejection::InvalidWorker { field: w.field, message: w.message },
            rejection::Reason::DependencyNotLive(id) => Rejection::DependencyNotLive(JobId(id)),
            rejection::Reason::OutputGap(g) => Rejection::OutputGap {
                attempt: AttemptId(g.attempt),
                stream: enum_required(g.stream, "output_gap.stream")?,
                offset: g.offset,
                stored: g.stored,
            },
            rejection::Reason::NotScheduled(id) => Rejection::NotScheduled(JobId(id)),
            rejection::Reason::SchedulePaused(id) => Rejection::SchedulePaused(JobId(id)),
            rejection::Reason::UnknownWorkflow(id) => Rejection::UnknownWorkflow(WorkflowId(id)),
            rejection::Reason::TokenExists(id) => Rejection::TokenExists(token_id(&id, "token_exists")?),
            rejection::Reason::UnknownToken(id) => Rejection::UnknownToken(token_id(&id, "unknown_token")?),
            rejection::Reason::TooManyTokens(n) => Rejection::TooManyTokens(usize::try_from(n).unwrap_or(usize::MAX)),
            rejection::Reason::AlreadyFired(f) => {
                Rejection::AlreadyFired { job: JobId(f.job), instant: timestamp(f.instant_ms) }
            }
        })
    }
}

impl From<JobDetail> for proto::JobDetail {
    fn from(d: JobDetail) -> Self {
        proto::JobDetail {
            job: Some(d.job.into()),
            runs: d.runs.into_iter().map(Into::into).collect(),
            schedule: d.schedule.map(Into::into),
        }
    }
}

impl TryFrom<proto::JobDetail> for JobDetail {
    type Error = Error;

    fn try_from(d: proto::JobDetail) -> Result<Self, Error> {
        Ok(JobDetail {
            job: message(d.job, "job")?,
            runs: each(d.runs, "runs")?,
            schedule: d.schedule.map(ScheduleInfo::from),
        })
    }
}

use super::token_id;

fn instants(ts: impl IntoIterator<Item = Timestamp>) -> Vec<i64> {
    ts.into_iter().map(instant).collect()
}

impl From<FireLog> for proto::FireLog {
    fn from(l: FireLog) -> Self {
        proto::FireLog { count: l.count, recent_ms: instants(l.recent) }
    }
}

impl From<proto::FireLog> for FireLog {
    fn from(l: proto::FireLog) -> Self {
        FireLog { count: l.count, recent: l.recent_ms.into_iter().map(timestamp).collect() }
    }
}

impl From<ScheduleInfo> for proto::ScheduleInfo {
    fn from(i: ScheduleInfo) -> Self {
        let s = i.state;
        proto::ScheduleInfo {
            cursor_ms: instant(s.cursor),
            paused_at_ms: s.paused.as_ref().map(|p| instant(p.at)),
            paused_note: s.paused.and_then(|p| p.note),
            buffered_ms: instants(s.buffered),
            active: s.active.into_iter().map(RunId::get).collect(),
            fired: Some(s.fired.into()),
            skipped: Some(s.skipped.into()),
            missed: Some(s.missed.into()),
            next_ms: instants(i.next),
        }
    }
}

impl From<proto::ScheduleInfo> for ScheduleInfo {
    fn from(i: proto::ScheduleInfo) -> Self {
        let log = |l: Option<proto::FireLog>| l.map(FireLog::from).unwrap_or_default();
        ScheduleInfo {
            state: ScheduleState {
                cursor: timestamp(i.cursor_ms),
                paused: i.paused_at_ms.map(|at| Paused { at: timestamp(at), note: i.paused_note }),
                buffered: i.buffered_ms.into_iter().map(timestamp).collect(),
                active: i.active.into_iter().map(RunId).collect(),
                fired: log(i.fired),
                skipped: log(i.skipped),
                missed: log(i.missed),
            },
            next: i.next_ms.into_iter().map(timestamp).collect(),
        }
    }
}

impl From<ScheduleFire> for proto::ScheduleFire {
    fn from(f: ScheduleFire) -> Self {
        let (result, run) = match f.result {
            FireResult::Started(run) => (proto::FireResult::Started, run.get()),
            FireResult::Buffered => (proto::FireResult::Buffered, 0),
            FireResult::Skipped => (proto::FireResult::Skipped, 0),
        };
        proto::ScheduleFire { instant_ms: instant(f.instant), result: result as i32, run }
    }
}

impl TryFrom<proto::ScheduleFire> for ScheduleFire {
    type Error = Error;

    fn try_from(f: proto::ScheduleFire) -> Result<Self, Error> {
        let result = match proto::FireResult::try_from(f.result) {
            Ok(proto::FireResult::Started) => FireResult::Started(RunId(f.run)),
            Ok(proto::FireResult::Buffered) => FireResult::Buffered,
            Ok(proto::FireResult::Skipped) => FireResult::Skipped,
            _ => return Err(Error::invalid("result", format!("{} is not a fire result", f.result))),
        };
        Ok(ScheduleFire { instant: timestamp(f.instant_ms), result })
    }
}

impl From<ScheduleAction> for schedule_request::Action {
    fn from(a: ScheduleAction) -> Self {
        match a {
            ScheduleAction::Pause { note } => schedule_request::Action::Pause(schedule_request::Pause { note }),
            ScheduleAction::Resume => schedule_request::Action::Resume(()),
            ScheduleAction::Trigger => schedule_request::Action::Trigger(()),
            ScheduleAction::Backfill { from, to, overlap } => {
                schedule_request::Action::Backfill(schedule_request::Backfill {
                    from_ms: instant(from),
                    to_ms: instant(to),
                    overlap: overlap.map_or(proto::OverlapPolicy::Unspecified as i32, ProtoEnum::to_wire),
                })
            }
        }
    }
}

impl TryFrom<schedule_request::Action> for ScheduleAction {
    type Error = Error;

    fn try_from(a: schedule_request::Action) -> Result<Self, Error> {
        Ok(match a {
            schedule_request::Action::Pause(p) => ScheduleAction::Pause { note: p.note },
            schedule_request::Action::Resume(()) => ScheduleAction::Resume,
            schedule_request::Action::Trigger(()) => ScheduleAction::Trigger,
            schedule_request::Action::Backfill(b) => ScheduleAction::Backfill {
                from: timestamp(b.from_ms),
                to: timestamp(b.to_ms),
                overlap: enum_optional(b.overlap, "backfill.overlap")?,
            },
        })
    }
}

impl From<RunDetail> for proto::RunDetail {
    fn from(d: RunDetail) -> Self {
        proto::RunDetail {
            run: Some(d.run.into()),
            job_name: d.job_name,
            attempts: d.attempts.into_iter().map(Into::into).collect(),
            pending_reason: d.pending_reason,
        }
    }
}

impl TryFrom<proto::RunDetail> for RunDetail {
    type Error = Error;

    fn try_from(d: proto::RunDetail) -> Result<Self, Error> {
        Ok(RunDetail {
            run: message(d.run, "run")?,
            job_name: d.job_name,
            attempts: each(d.attempts, "attempts")?,
            pending_reason: d.pending_reason,
        })
    }
}

impl From<JobQuery> for proto::ListJobsRequest {
    fn from(q: JobQuery) -> Self {
        proto::ListJobsRequest {
            name: q.name,
            before: q.before.map(JobId::get),
            limit: q.limit,
            kind: q.kind.map_or(proto::TaskKind::Unspecified as i32, ProtoEnum::to_wire),
            state: q.state.map_or(proto::RunState::Unspecified as i32, ProtoEnum::to_wire),
        }
    }
}

impl TryFrom<proto::ListJobsRequest> for JobQuery {
    type Error = Error;

    fn try_from(q: proto::ListJobsRequest) -> Result<Self, Error> {
        Ok(JobQuery {
            name: q.name,
            before: q.before.map(JobId),
            limit: q.limit,
            kind: enum_optional(q.kind, "kind")?,
            state: enum_optional(q.state, "state")?,
        })
    }
}

impl From<RunQuery> for proto::ListRunsRequest {
    fn from(q: RunQuery) -> Self {
        proto::ListRunsRequest {
            job: q.job.map(JobId::get),
            state: q.state.map_or(proto::RunState::Unspecified as i32, ProtoEnum::to_wire),
            before: q.before.map(RunId::get),
            limit: q.limit,
            since_ms: q.since.map(instant),
            until_ms: q.until.map(instant),
        }
    }
}

impl TryFrom<proto::ListRunsRequest> for RunQuery {
    type Error = Error;

    fn try_from(q: proto::ListRunsRequest) -> Result<Self, Error> {
        Ok(RunQuery {
            job: q.job.map(JobId),
            state: enum_optional(q.state, "state")?,
            before: q.before.map(RunId),
            limit: q.limit,
            since: q.since_ms.map(timestamp),
            until: q.until_ms.map(timestamp),
        })
    }
}

impl From<JobSummary> for proto::JobSummary {
    fn from(s: JobSummary) -> Self {
        proto::JobSummary {
            id: s.id.get(),
            name: s.name,
            kind: s.kind,
            task: s.task,
            created_at_ms: instant(s.created_at),
            runs: s.runs,
            last_state: s.last_state.map_or(proto::RunState::Unspecified as i32, ProtoEnum::to_wire),
            next_fire_ms: s.next_fire.map(instant),
            paused: s.paused,
        }
    }
}

impl TryFrom<proto::JobSummary> for JobSummary {
    type Error = Error;

    fn try_from(s: proto::JobSummary) -> Result<Self, Error> {
        Ok(JobSummary {
            id: JobId(s.id),
            name: s.name,
            kind: s.kind,
            task: s.task,
            created_at: timestamp(s.created_at_ms),
            runs: s.runs,
            last_state: enum_optional(s.last_state, "last_state")?,
            next_fire: s.next_fire_ms.map(timestamp),
            paused: s.paused,
        })
    }
}

impl From<RunSummary> for proto::RunSummary {
    fn from(s: RunSummary) -> Self {
        proto::RunSummary {
            id: s.id.get(),
            job: s.job.get(),
            job_name: s.job_name,
            state: s.state.to_wire(),
            created_at_ms: instant(s.created_at),
            finished_at_ms: s.finished_at.map(instant),
            attempts: s.attempts,
            exit: s.exit.map(Into::into),
        }
    }
}

impl TryFrom<proto::RunSummary> for RunSummary {
    type Error = Error;

    fn try_from(s: proto::RunSummary) -> Result<Self, Error> {
        Ok(RunSummary {
            id: RunId(s.id),
            job: JobId(s.job),
            job_name: s.job_name,
            state: enum_required(s.state, "state")?,
            created_at: timestamp(s.created_at_ms),
            finished_at: s.finished_at_ms.map(timestamp),
            attempts: s.attempts,
            exit: optional(s.exit, "exit")?,
        })
    }
}

impl From<Page<JobSummary, JobId>> for proto::ListJobsResponse {
    fn from(p: Page<JobSummary, JobId>) -> Self {
        proto::ListJobsResponse { items: p.items.into_iter().map(Into::into).collect(), next: p.next.map(JobId::get) }
    }
}

impl TryFrom<proto::ListJobsResponse> for Page<JobSummary, JobId> {
    type Error = Error;

    fn try_from(p: proto::ListJobsResponse) -> Result<Self, Error> {
        Ok(Page { items: each(p.items, "items")?, next: p.next.map(JobId) })
    }
}

impl From<Page<RunSummary, RunId>> for proto::ListRunsResponse {
    fn from(p: Page<RunSummary, RunId>) -> Self {
        proto::ListRunsResponse { items: p.items.into_iter().map(Into::into).collect(), next: p.next.map(RunId::get) }
    }
}

impl TryFrom<proto::ListRunsResponse> for Page<RunSummary, RunId> {
    type Error = Error;

    fn try_from(p: proto::ListRunsResponse) -> Result<Self, Error> {
        Ok(Page { items: each(p.items, "items")?, next: p.next.map(RunId) })
    }
}

impl From<CancelTarget> for proto::CancelRequest {
    fn from(t: CancelTarget) -> Self {
        let target = match t {
            CancelTarget::Job(id) => cancel_request::Target::Job(id.get()),
            CancelTarget::Run(id) => cancel_request::Target::Run(id.get()),
            CancelTarget::Workflow(id) => cancel_request::Target::Workflow(id.get()),
        };
        proto::CancelRequest { target: Some(target) }
    }
}

impl TryFrom<proto::CancelRequest> for CancelTarget {
    type Error = Error;

    fn try_from(r: proto::CancelRequest) -> Result<Self, Error> {
        Ok(match required(r.target, "target")? {
            cancel_request::Target::Job(id) => CancelTarget::Job(JobId(id)),
            cancel_request::Target::Run(id) => CancelTarget::Run(RunId(id)),
            cancel_request::Target::Workflow(id) => CancelTarget::Workflow(WorkflowId(id)),
        })
    }
}

impl From<ManagerInfo> for proto::ManagerInfo {
    fn from(m: ManagerInfo) -> Self {
        proto::ManagerInfo { id: m.id, address: m.address, role: m.role, term: m.term, last_applied: m.last_applied }
    }
}

impl From<proto::ManagerInfo> for ManagerInfo {
    fn from(m: proto::ManagerInfo) -> Self {
        ManagerInfo { id: m.id, address: m.address, role: m.role, term: m.term, last_applied: m.last_applied }
    }
}

impl From<ClusterStatus> for proto::ClusterStatus {
    fn from(s: ClusterStatus) -> Self {
        proto::ClusterStatus {
            managers: s.managers.into_iter().map(Into::into).collect(),
            workers: s.workers,
            jobs: s.jobs,
            runs: s.runs,
            queued: s.queued,
        }
    }
}

impl From<proto::ClusterStatus> for ClusterStatus {
    fn from(s: proto::ClusterStatus) -> Self {
        ClusterStatus {
            managers: s.managers.into_iter().map(Into::into).collect(),
            workers: s.workers,
            jobs: s.jobs,
            runs: s.runs,
            queued: s.queued,
        }
    }
}
