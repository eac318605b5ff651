//! The queryable tables: which rows a batch of commands touched (from the events
//! its outcomes carry), and those rows as the applied state now has them. Rows of
//! runs and jobs that left the state in the batch are written from their records
//! instead (see `history.rs`).

use std::collections::BTreeSet;

use archon_core::model::{Attempt, AttemptId, Job, JobId, Run, RunId, Worker, WorkerId};
use archon_core::state::{ClusterState, Command, Event, Outcome};
use diesel::QueryResult;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

/// The ids whose rows a batch changed.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    jobs: BTreeSet<JobId>,
    /// Jobs the batch created (their spec is written once).
    new_jobs: BTreeSet<JobId>,
    runs: BTreeSet<RunId>,
    attempts: BTreeSet<AttemptId>,
    workers: BTreeSet<WorkerId>,
}

impl Touched {
    /// Notes what `command`, with `outcome`, changed.
    pub(crate) fn note(&mut self, command: &Command, outcome: &Outcome) {
        // Cancelling a job whose runs all ended changes only the job (no event).
        if let (Command::CancelJob { job, .. }, Outcome::Applied(_)) = (command, outcome) {
            self.jobs.insert(*job);
        }
        for event in outcome.events() {
            match event {
                Event::JobAccepted { job, run, duplicate } => {
                    self.jobs.insert(*job);
                    if !duplicate {
                        self.new_jobs.insert(*job);
                    }
                    self.runs.extend(*run);
                }
                // A job's row changes with its run count, not with a run's end.
                Event::RunCreated { run, job, .. } => {
                    self.runs.insert(*run);
                    self.jobs.insert(*job);
                }
                Event::RunFinished { run, .. } => {
                    self.runs.insert(*run);
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
                // What it removes is in the batch's history, not in these ids.
                Event::HistoryPruned { .. } => {}
                // The run a fire started has its own event; the schedule's
                // state lives in the snapshot, not in a table.
                Event::ScheduleFired { job, .. } => {
                    self.jobs.insert(*job);
                }
                // Its jobs are new (their runs have their own `RunCreated`).
                Event::WorkflowAccepted { jobs, .. } => {
                    self.jobs.extend(jobs.iter().copied());
                    self.new_jobs.extend(jobs.iter().copied());
                }
                // Each job's row now says cancelled, whether or not a run changed.
                Event::WorkflowCancelled { jobs, .. } => {
                    self.jobs.extend(jobs.iter().copied());
                }
            }
        }
    }

    /// Writes the touched rows as `state` has them: one statement per table, each
    /// with the rows as column arrays (`unnest`), so the statement is the same
    /// whatever the batch size and PostgreSQL plans it once per connection.
    pub(crate) async fn write(&self, state: &ClusterState, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        self.write_jobs(state, conn).await?;
        self.write_runs(state, conn).await?;
        self.write_attempts(state, conn).await?;
        self.write_workers(state, conn).await
    }

    async fn write_jobs(&self, state: &ClusterState, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        let jobs: Vec<&Job> = self.jobs.iter().filter_map(|id| state.job(*id)).collect();
        if jobs.is_empty() {
            return Ok(());
        }
        // The spec (the big part) goes only with a job's first row.
        let new: Vec<JobRow<'_>> = jobs
            .iter()
            .copied()
            .filter(|j| self.new_jobs.contains(&j.id))
            .map(|job| JobRow { job, record: None, last_state: None })
            .collect();
        upsert_jobs(&new, conn).await?;
        // Jobs from earlier batches: only what changes.
        let old: Vec<&Job> = jobs.iter().copied().filter(|j| !self.new_jobs.contains(&j.id)).collect();
        if old.is_empty() {
            return Ok(());
        }
        diesel::sql_query(
            "UPDATE archon_jobs AS j SET cancelled = t.cancelled, runs = t.runs \
             FROM unnest($1::bigint[], $2::bool[], $3::int[]) AS t(id, cancelled, runs) WHERE j.id = t.id",
        )
        .bind::<Array<BigInt>, _>(old.iter().map(|j| id(j.id.0)).collect::<Vec<_>>())
        .bind::<Array<Bool>, _>(old.iter().map(|j| j.cancelled).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(old.iter().map(|j| count(j.runs.len())).collect::<Vec<_>>())
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn write_runs(&self, state: &ClusterState, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        let runs: Vec<RunRow<'_>> = self
            .runs
            .iter()
            .filter_map(|id| state.run(*id))
            .map(|run| RunRow { run, record: None, expires_ms: None })
            .collect();
        upsert_runs(&runs, conn).await
    }

    async fn write_attempts(&self, state: &ClusterState, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        let attempts: Vec<&Attempt> = self.attempts.iter().filter_map(|id| state.attempt(*id)).collect();
        upsert_attempts(&attempts, conn).await
    }

    async fn write_workers(&self, state: &ClusterState, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        let workers: Vec<&Worker> = self.workers.iter().filter_map(|id| state.worker(*id)).collect();
        if workers.is_empty() {
            return Ok(());
        }
        diesel::sql_query(
            "INSERT INTO archon_workers (id, name, address, state, labels, capabilities, capacity, allocated, running, \
             registered_ms) \
             SELECT id, name, address, state, labels::jsonb, capabilities::jsonb, capacity::jsonb, allocated::jsonb, \
             running, registered_ms \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::int[], $10::bigint[]) \
             AS t(id, name, address, state, labels, capabilities, capacity, allocated, running, registered_ms) \
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, state = excluded.state, \
             labels = excluded.labels, capabilities = excluded.capabilities, capacity = excluded.capacity, \
             allocated = excluded.allocated, running = excluded.running",
        )
        .bind::<Array<BigInt>, _>(workers.iter().map(|w| id(w.id.0)).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(workers.iter().map(|w| w.name.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(workers.iter().map(|w| w.address.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(workers.iter().map(|w| w.state.as_str().to_owned()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(workers.iter().map(|w| json_text(&w.labels)).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(workers.iter().map(|w| json_text(&w.capabilities)).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(workers.iter().map(|w| json_text(&w.capacity)).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(workers.iter().map(|w| json_text(&w.allocated)).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(workers.iter().map(|w| count(w.running.len())).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(workers.iter().map(|w| w.registered_at.0).collect::<Vec<_>>())
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// A run's row: as the state has it, or as it ended with its record.
pub(crate) struct RunRow<'a> {
    pub(crate) run: &'a Run,
    /// The JSON `RunRecord`, once the run has left the live state.
    pub(crate) record: Option<String>,
    pub(crate) expires_ms: Option<i64>,
}

/// Writes runs' rows (one statement, column arrays).
pub(crate) async fn upsert_runs(runs: &[RunRow<'_>], conn: &mut AsyncPgConnection) -> QueryResult<()> {
    if runs.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO archon_runs (id, job_id, state, attempts, retries_used, reason, created_ms, finished_ms, record, \
         expires_ms) \
         SELECT id, job_id, state, attempts, retries_used, reason, created_ms, finished_ms, record::jsonb, expires_ms \
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[], $5::int[], $6::text[], $7::bigint[], \
         $8::bigint[], $9::text[], $10::bigint[]) \
         AS t(id, job_id, state, attempts, retries_used, reason, created_ms, finished_ms, record, expires_ms) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, attempts = excluded.attempts, \
         retries_used = excluded.retries_used, reason = excluded.reason, finished_ms = excluded.finished_ms, \
         record = excluded.record, expires_ms = excluded.expires_ms",
    )
    .bind::<Array<BigInt>, _>(runs.iter().map(|r| id(r.run.id.0)).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(runs.iter().map(|r| id(r.run.job.0)).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(runs.iter().map(|r| r.run.state.as_str().to_owned()).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(runs.iter().map(|r| count(r.run.attempts.len())).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(
        runs.iter().map(|r| i32::try_from(r.run.retries_used).unwrap_or(i32::MAX)).collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Text>>, _>(runs.iter().map(|r| r.run.reason.clone()).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(runs.iter().map(|r| r.run.created_at.0).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(runs.iter().map(|r| r.run.finished_at.map(|t| t.0)).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(runs.iter().map(|r| r.record.clone()).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(runs.iter().map(|r| r.expires_ms).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes attempts' rows.
pub(crate) async fn upsert_attempts(attempts: &[&Attempt], conn: &mut AsyncPgConnection) -> QueryResult<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO archon_attempts (id, run_id, worker_id, state, status, exit_code, assigned_ms, started_ms, \
         finished_ms) \
         SELECT id, run_id, worker_id, state, status::jsonb, exit_code, assigned_ms, started_ms, finished_ms \
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::bigint[], \
         $8::bigint[], $9::bigint[]) \
         AS t(id, run_id, worker_id, state, status, exit_code, assigned_ms, started_ms, finished_ms) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, status = excluded.status, \
         exit_code = excluded.exit_code, started_ms = excluded.started_ms, finished_ms = excluded.finished_ms",
    )
    .bind::<Array<BigInt>, _>(attempts.iter().map(|a| id(a.id.0)).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(attempts.iter().map(|a| id(a.run.0)).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(attempts.iter().map(|a| id(a.worker.0)).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(attempts.iter().map(|a| name(&a.state)).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(
        attempts.iter().map(|a| a.result.as_ref().map(|r| json_text(&r.status))).collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Integer>>, _>(
        attempts.iter().map(|a| a.result.as_ref().and_then(|r| r.status.code())).collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(attempts.iter().map(|a| a.assigned_at.0).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(attempts.iter().map(|a| a.started_at.map(|t| t.0)).collect::<Vec<_>>())
    .bind::<Array<Nullable<BigInt>>, _>(attempts.iter().map(|a| a.finished_at.map(|t| t.0)).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// A job's full row: as the state has it, or retired with its record.
pub(crate) struct JobRow<'a> {
    pub(crate) job: &'a Job,
    /// The JSON `JobRecord`, once the job has left the live state.
    pub(crate) record: Option<String>,
    pub(crate) last_state: Option<&'static str>,
}

/// Writes jobs' whole rows (a job created and retired in one batch has none yet).
pub(crate) async fn upsert_jobs(jobs: &[JobRow<'_>], conn: &mut AsyncPgConnection) -> QueryResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO archon_jobs (id, name, kind, spec, cancelled, runs, created_ms, record, last_state) \
         SELECT id, name, kind, spec::jsonb, cancelled, runs, created_ms, record::jsonb, last_state \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::int[], $7::bigint[], \
         $8::text[], $9::text[]) \
         AS t(id, name, kind, spec, cancelled, runs, created_ms, record, last_state) \
         ON CONFLICT (id) DO UPDATE SET cancelled = excluded.cancelled, runs = excluded.runs, \
         record = excluded.record, last_state = excluded.last_state",
    )
    .bind::<Array<BigInt>, _>(jobs.iter().map(|j| id(j.job.id.0)).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(jobs.iter().map(|j| j.job.spec.name.clone()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(jobs.iter().map(|j| j.job.spec.task.kind().as_str().to_owned()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(jobs.iter().map(|j| json_text(&*j.job.spec)).collect::<Vec<_>>())
    .bind::<Array<Bool>, _>(jobs.iter().map(|j| j.job.cancelled).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(jobs.iter().map(|j| count(j.job.runs.len())).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(jobs.iter().map(|j| j.job.created_at.0).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(jobs.iter().map(|j| j.record.clone()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(jobs.iter().map(|j| j.last_state.map(str::to_owned)).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// An id as a `bigint`.
fn id(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count as an `integer`.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A value as JSON text; these model types always serialize.
pub(crate) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// An enum's serialized name (`pending`, `ready`, ...).
fn name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}
