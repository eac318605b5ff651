//! The queryable tables: which rows a batch of commands touched (from the events
//! its outcomes carry), and those rows as the applied state now has them.

use std::collections::BTreeSet;

use archon_core::model::{AttemptId, JobId, RunId, WorkerId};
use archon_core::state::{ClusterState, Event, Outcome};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::schema::{archon_attempts, archon_jobs, archon_runs, archon_workers};

/// The ids whose rows a batch changed.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    jobs: BTreeSet<JobId>,
    runs: BTreeSet<RunId>,
    attempts: BTreeSet<AttemptId>,
    workers: BTreeSet<WorkerId>,
}

impl Touched {
    /// Notes what `outcome` changed.
    pub(crate) fn note(&mut self, outcome: &Outcome) {
        for event in outcome.events() {
            match event {
                Event::JobAccepted { job, run, .. } => {
                    self.jobs.insert(*job);
                    self.runs.extend(*run);
                }
                Event::RunCreated { run, job, .. } | Event::RunFinished { run, job, .. } => {
                    self.runs.insert(*run);
                    self.jobs.insert(*job);
                }
                Event::RunQueued { run } | Event::RunRetrying { run, .. } => {
                    self.runs.insert(*run);
                }
                Event::AttemptAssigned { run, attempt, worker }
                | Event::AttemptEnded { run, attempt, worker, .. }
                | Event::CancelRequested { run, attempt, worker } => {
                    self.runs.insert(*run);
                    self.attempts.insert(*attempt);
                    self.workers.insert(*worker);
                }
                Event::AttemptStarted { run, attempt } => {
                    self.runs.insert(*run);
                    self.attempts.insert(*attempt);
                }
                Event::WorkerRegistered { worker, stale } => {
                    self.workers.insert(*worker);
                    self.attempts.extend(stale.iter().copied());
                }
                Event::WorkerStateChanged { worker, .. } => {
                    self.workers.insert(*worker);
                }
            }
        }
    }

    /// Writes the touched rows as `state` has them, one statement per table.
    pub(crate) async fn write(&self, state: &ClusterState, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        let jobs: Vec<JobRow> = self.jobs.iter().filter_map(|id| state.job(*id)).map(JobRow::from).collect();
        if !jobs.is_empty() {
            use archon_jobs::dsl as j;
            diesel::insert_into(j::archon_jobs)
                .values(&jobs)
                .on_conflict(j::id)
                .do_update()
                .set((j::cancelled.eq(excluded(j::cancelled)), j::runs.eq(excluded(j::runs))))
                .execute(conn)
                .await?;
        }
        let runs: Vec<RunRow> = self.runs.iter().filter_map(|id| state.run(*id)).map(RunRow::from).collect();
        if !runs.is_empty() {
            use archon_runs::dsl as r;
            diesel::insert_into(r::archon_runs)
                .values(&runs)
                .on_conflict(r::id)
                .do_update()
                .set((
                    r::state.eq(excluded(r::state)),
                    r::attempts.eq(excluded(r::attempts)),
                    r::retries_used.eq(excluded(r::retries_used)),
                    r::reason.eq(excluded(r::reason)),
                    r::finished_ms.eq(excluded(r::finished_ms)),
                ))
                .execute(conn)
                .await?;
        }
        let attempts: Vec<AttemptRow> =
            self.attempts.iter().filter_map(|id| state.attempt(*id)).map(AttemptRow::from).collect();
        if !attempts.is_empty() {
            use archon_attempts::dsl as a;
            diesel::insert_into(a::archon_attempts)
                .values(&attempts)
                .on_conflict(a::id)
                .do_update()
                .set((
                    a::state.eq(excluded(a::state)),
                    a::status.eq(excluded(a::status)),
                    a::exit_code.eq(excluded(a::exit_code)),
                    a::started_ms.eq(excluded(a::started_ms)),
                    a::finished_ms.eq(excluded(a::finished_ms)),
                ))
                .execute(conn)
                .await?;
        }
        let workers: Vec<WorkerRow> =
            self.workers.iter().filter_map(|id| state.worker(*id)).map(WorkerRow::from).collect();
        if !workers.is_empty() {
            use archon_workers::dsl as w;
            diesel::insert_into(w::archon_workers)
                .values(&workers)
                .on_conflict(w::id)
                .do_update()
                .set((
                    w::address.eq(excluded(w::address)),
                    w::state.eq(excluded(w::state)),
                    w::labels.eq(excluded(w::labels)),
                    w::capabilities.eq(excluded(w::capabilities)),
                    w::capacity.eq(excluded(w::capacity)),
                    w::allocated.eq(excluded(w::allocated)),
                    w::running.eq(excluded(w::running)),
                ))
                .execute(conn)
                .await?;
        }
        Ok(())
    }
}

/// An id as a `bigint`.
fn id(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count as an `integer`.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A value as JSON; these model types always serialize.
fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// An enum's serialized name (`pending`, `ready`, ...).
fn name<T: serde::Serialize>(value: &T) -> String {
    match json(value) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[derive(Insertable)]
#[diesel(table_name = archon_jobs)]
struct JobRow {
    id: i64,
    name: String,
    kind: String,
    spec: Value,
    cancelled: bool,
    runs: i32,
    created_ms: i64,
}

impl From<&archon_core::model::Job> for JobRow {
    fn from(j: &archon_core::model::Job) -> JobRow {
        JobRow {
            id: id(j.id.0),
            name: j.spec.name.clone(),
            kind: j.spec.task.kind().as_str().to_owned(),
            spec: json(&*j.spec),
            cancelled: j.cancelled,
            runs: count(j.runs.len()),
            created_ms: j.created_at.0,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = archon_runs)]
struct RunRow {
    id: i64,
    job_id: i64,
    state: String,
    attempts: i32,
    retries_used: i32,
    reason: Option<String>,
    created_ms: i64,
    finished_ms: Option<i64>,
}

impl From<&archon_core::model::Run> for RunRow {
    fn from(r: &archon_core::model::Run) -> RunRow {
        RunRow {
            id: id(r.id.0),
            job_id: id(r.job.0),
            state: r.state.as_str().to_owned(),
            attempts: count(r.attempts.len()),
            retries_used: i32::try_from(r.retries_used).unwrap_or(i32::MAX),
            reason: r.reason.clone(),
            created_ms: r.created_at.0,
            finished_ms: r.finished_at.map(|t| t.0),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = archon_attempts)]
struct AttemptRow {
    id: i64,
    run_id: i64,
    worker_id: i64,
    state: String,
    status: Option<Value>,
    exit_code: Option<i32>,
    assigned_ms: i64,
    started_ms: Option<i64>,
    finished_ms: Option<i64>,
}

impl From<&archon_core::model::Attempt> for AttemptRow {
    fn from(a: &archon_core::model::Attempt) -> AttemptRow {
        AttemptRow {
            id: id(a.id.0),
            run_id: id(a.run.0),
            worker_id: id(a.worker.0),
            state: name(&a.state),
            status: a.result.as_ref().map(|r| json(&r.status)),
            exit_code: a.result.as_ref().and_then(|r| r.status.code()),
            assigned_ms: a.assigned_at.0,
            started_ms: a.started_at.map(|t| t.0),
            finished_ms: a.finished_at.map(|t| t.0),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = archon_workers)]
struct WorkerRow {
    id: i64,
    name: String,
    address: String,
    state: String,
    labels: Value,
    capabilities: Value,
    capacity: Value,
    allocated: Value,
    running: i32,
    registered_ms: i64,
}

impl From<&archon_core::model::Worker> for WorkerRow {
    fn from(w: &archon_core::model::Worker) -> WorkerRow {
        WorkerRow {
            id: id(w.id.0),
            name: w.name.clone(),
            address: w.address.clone(),
            state: w.state.as_str().to_owned(),
            labels: json(&w.labels),
            capabilities: json(&w.capabilities),
            capacity: json(&w.capacity),
            allocated: json(&w.allocated),
            running: count(w.running.len()),
            registered_ms: w.registered_at.0,
        }
    }
}
