//! The history in PostgreSQL: finished runs and retired jobs are the rows of
//! `archon_runs` and `archon_jobs` whose `record` is set (the JSON record, read
//! back as it was written), output is in `archon_output`, finished workflows
//! are the rows of `archon_workflows`, and the retention
//! policy deletes them. Written in the same transaction as the commands that
//! retire or remove them, so a reader that no longer finds a run in the live state
//! finds it here. [`PgHistory`] reads them through the indexes the migration
//! makes: by id, by state and id, by finish time, by the job's own expiry.

use std::time::Duration;

use archon_core::Error as CoreError;
use archon_core::history::{Expired, History, HistoryOp, HistoryStats, JobFilter, RunFilter, WorkflowFilter};
use archon_core::model::{
    Attempt, AttemptId, JobId, JobRecord, RunId, RunRecord, RunState, Timestamp, WorkflowId, WorkflowRecord,
    WorkflowState,
};
use async_trait::async_trait;
use bytes::Bytes;
use diesel::QueryResult;
use diesel::sql_types::{Array, BigInt, Binary, Nullable, SmallInt, Text};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::redact;
use crate::rows::{JobRow, RunRow, json_text, upsert_attempts, upsert_jobs, upsert_runs};

/// Writes what the state machine handed over in a batch, in `conn`'s transaction:
/// output, then records (and their attempts' rows), then removals — the order the
/// operations of one batch can depend on each other in.
pub(crate) async fn write(ops: &[HistoryOp], conn: &mut AsyncPgConnection) -> QueryResult<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut output = Vec::new();
    let mut runs = Vec::new();
    let mut jobs = Vec::new();
    let mut removed_runs = Vec::new();
    let mut removed_jobs = Vec::new();
    let mut workflows = Vec::new();
    let mut removed_workflows = Vec::new();
    for op in ops {
        match op {
            HistoryOp::Output { run, attempt, stream, offset, data } => {
                output.push((attempt.0, stream.index(), *offset, run.0, data.clone()));
            }
            HistoryOp::Run(record) => runs.push(record.clone()),
            HistoryOp::Job(record) => jobs.push(record.clone()),
            HistoryOp::Workflow(record) => workflows.push(record.clone()),
            HistoryOp::Remove { runs, jobs, workflows } => {
                removed_runs.extend(runs.iter().map(|r| big(r.0)));
                removed_jobs.extend(jobs.iter().map(|j| big(j.0)));
                removed_workflows.extend(workflows.iter().map(|w| big(w.0)));
            }
        }
    }
    if !output.is_empty() {
        diesel::sql_query(
            "INSERT INTO archon_output (attempt_id, stream, byte_offset, run_id, data) \
             SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::bigint[], $5::bytea[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind::<Array<BigInt>, _>(output.iter().map(|o| big(o.0)).collect::<Vec<_>>())
        .bind::<Array<SmallInt>, _>(output.iter().map(|o| o.1 as i16).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(output.iter().map(|o| big(o.2)).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(output.iter().map(|o| big(o.3)).collect::<Vec<_>>())
        .bind::<Array<Binary>, _>(output.iter().map(|o| o.4.to_vec()).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    }
    let rows: Vec<RunRow<'_>> = runs
        .iter()
        .map(|r| RunRow { run: &r.run, record: Some(json_text(&**r)), expires_ms: r.expires_at.map(|t| t.0) })
        .collect();
    upsert_runs(&rows, conn).await?;
    let attempts: Vec<&Attempt> = runs.iter().flat_map(|r| r.attempts.iter()).collect();
    upsert_attempts(&attempts, conn).await?;
    let rows: Vec<JobRow<'_>> = jobs
        .iter()
        .map(|j| JobRow { job: &j.job, record: Some(json_text(&**j)), last_state: j.last_state.map(RunState::as_str) })
        .collect();
    upsert_jobs(&rows, conn).await?;
    if !workflows.is_empty() {
        diesel::sql_query(
            "INSERT INTO archon_workflows (id, name, state, created_ms, finished_ms, record) \
             SELECT id, name, state, created_ms, finished_ms, record::jsonb \
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[]) \
             AS t(id, name, state, created_ms, finished_ms, record) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, state = excluded.state, \
             created_ms = excluded.created_ms, finished_ms = excluded.finished_ms, record = excluded.record",
        )
        .bind::<Array<BigInt>, _>(workflows.iter().map(|w| big(w.id().0)).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(workflows.iter().map(|w| w.workflow.spec.name.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(workflows.iter().map(|w| w.state().as_str()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(workflows.iter().map(|w| w.workflow.created_at.0).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(workflows.iter().map(|w| w.finished_at.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(workflows.iter().map(|w| json_text(&**w)).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    }
    if !removed_workflows.is_empty() {
        diesel::sql_query("DELETE FROM archon_workflows WHERE id = ANY($1)")
            .bind::<Array<BigInt>, _>(&removed_workflows)
            .execute(conn)
            .await?;
    }
    if !removed_runs.is_empty() {
        for table in ["archon_output", "archon_attempts"] {
            diesel::sql_query(format!("DELETE FROM {table} WHERE run_id = ANY($1)"))
                .bind::<Array<BigInt>, _>(&removed_runs)
                .execute(conn)
                .await?;
        }
        diesel::sql_query("DELETE FROM archon_runs WHERE id = ANY($1)")
            .bind::<Array<BigInt>, _>(&removed_runs)
            .execute(conn)
            .await?;
    }
    if !removed_jobs.is_empty() {
        diesel::sql_query("DELETE FROM archon_jobs WHERE id = ANY($1)")
            .bind::<Array<BigInt>, _>(&removed_jobs)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The history a PostgreSQL store serves, read on pooled connections. Cheap to clone.
#[derive(Clone)]
pub struct PgHistory {
    pool: Pool<AsyncPgConnection>,
    url: String,
}

impl std::fmt::Debug for PgHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHistory").field("url", &redact(&self.url)).finish_non_exhaustive()
    }
}

#[derive(diesel::QueryableByName)]
struct Record {
    #[diesel(sql_type = Text)]
    record: String,
}

#[derive(diesel::QueryableByName)]
struct Chunk {
    #[diesel(sql_type = SmallInt)]
    stream: i16,
    #[diesel(sql_type = Binary)]
    data: Vec<u8>,
}

#[derive(diesel::QueryableByName)]
struct Due {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    job_id: i64,
    #[diesel(sql_type = Text)]
    state: String,
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(diesel::QueryableByName)]
struct Stats {
    #[diesel(sql_type = BigInt)]
    runs: i64,
    #[diesel(sql_type = BigInt)]
    jobs: i64,
    #[diesel(sql_type = BigInt)]
    workflows: i64,
    #[diesel(sql_type = BigInt)]
    output_bytes: i64,
    #[diesel(sql_type = BigInt)]
    disk_bytes: i64,
}

fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgHistory {
    pub(crate) fn new(pool: Pool<AsyncPgConnection>, url: String) -> PgHistory {
        PgHistory { pool, url }
    }

    async fn conn(&self) -> Result<diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>, CoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| CoreError::Unavailable(format!("the history at {} is unreachable: {e}", redact(&self.url))))
    }
}

fn unavailable(e: diesel::result::Error) -> CoreError {
    CoreError::Unavailable(format!("the history query failed: {e}"))
}

fn parse<T: serde::de::DeserializeOwned>(rows: Vec<Record>) -> Result<Vec<T>, CoreError> {
    rows.into_iter()
        .map(|r| serde_json::from_str(&r.record).map_err(|e| CoreError::Internal(format!("a stored record: {e}"))))
        .collect()
}

#[async_trait]
impl History for PgHistory {
    async fn runs(&self, ids: &[RunId]) -> Result<Vec<RunRecord>, CoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let wanted: Vec<i64> = ids.iter().map(|r| big(r.0)).collect();
        let rows: Vec<Record> = diesel::sql_query(
            "SELECT record::text AS record FROM archon_runs WHERE id = ANY($1) AND record IS NOT NULL",
        )
        .bind::<Array<BigInt>, _>(&wanted)
        .load(&mut conn)
        .await
        .map_err(unavailable)?;
        let mut found: std::collections::BTreeMap<RunId, RunRecord> =
            parse::<RunRecord>(rows)?.into_iter().map(|r| (r.id(), r)).collect();
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn jobs(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, CoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let wanted: Vec<i64> = ids.iter().map(|j| big(j.0)).collect();
        let rows: Vec<Record> = diesel::sql_query(
            "SELECT record::text AS record FROM archon_jobs WHERE id = ANY($1) AND record IS NOT NULL",
        )
        .bind::<Array<BigInt>, _>(&wanted)
        .load(&mut conn)
        .await
        .map_err(unavailable)?;
        let mut found: std::collections::BTreeMap<JobId, JobRecord> =
            parse::<JobRecord>(rows)?.into_iter().map(|j| (j.id(), j)).collect();
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn list_runs(&self, filter: &RunFilter, limit: usize) -> Result<Vec<RunRecord>, CoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Record> = diesel::sql_query(
            "SELECT record::text AS record FROM archon_runs WHERE record IS NOT NULL \
             AND ($1::text IS NULL OR state = $1) AND id < $2 \
             AND ($3::bigint IS NULL OR created_ms >= $3) AND ($4::bigint IS NULL OR created_ms < $4) \
             ORDER BY id DESC LIMIT $5",
        )
        .bind::<Nullable<Text>, _>(filter.state.map(|s| s.as_str()))
        .bind::<BigInt, _>(filter.before.map_or(i64::MAX, |b| big(b.0)))
        .bind::<Nullable<BigInt>, _>(filter.since.map(|t| t.0))
        .bind::<Nullable<BigInt>, _>(filter.until.map(|t| t.0))
        .bind::<BigInt, _>(big(limit as u64))
        .load(&mut conn)
        .await
        .map_err(unavailable)?;
        parse(rows)
    }

    async fn list_jobs(&self, filter: &JobFilter, limit: usize) -> Result<Vec<JobRecord>, CoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Record> = diesel::sql_query(
            "SELECT record::text AS record FROM archon_jobs WHERE record IS NOT NULL AND id < $1 \
             AND ($2::text IS NULL OR strpos(name, $2) > 0) AND ($3::text IS NULL OR kind = $3) \
             AND ($4::text IS NULL OR record->>'last_state' = $4) ORDER BY id DESC LIMIT $5",
        )
        .bind::<BigInt, _>(filter.before.map_or(i64::MAX, |b| big(b.0)))
        .bind::<Nullable<Text>, _>(filter.name.as_deref())
        .bind::<Nullable<Text>, _>(filter.kind.map(|k| k.as_str()))
        .bind::<Nullable<Text>, _>(filter.state.map(|s| s.as_str()))
        .bind::<BigInt, _>(big(limit as u64))
        .load(&mut conn)
        .await
        .map_err(unavailable)?;
        parse(rows)
    }

    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>, CoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let wanted: Vec<i64> = ids.iter().map(|w| big(w.0)).collect();
        let rows: Vec<Record> =
            diesel::sql_query("SELECT record::text AS record FROM archon_workflows WHERE id = ANY($1)")
                .bind::<Array<BigInt>, _>(&wanted)
                .load(&mut conn)
                .await
                .map_err(unavailable)?;
        let mut found: std::collections::BTreeMap<WorkflowId, WorkflowRecord> =
            parse::<WorkflowRecord>(rows)?.into_iter().map(|w| (w.id(), w)).collect();
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn list_workflows(&self, filter: &WorkflowFilter, limit: usize) -> Result<Vec<WorkflowRecord>, CoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Record> = diesel::sql_query(
            "SELECT record::text AS record FROM archon_workflows WHERE id < $1 \
             AND ($2::text IS NULL OR strpos(name, $2) > 0) AND ($3::text IS NULL OR state = $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind::<BigInt, _>(filter.before.map_or(i64::MAX, |b| big(b.0)))
        .bind::<Nullable<Text>, _>(filter.name.as_deref())
        .bind::<Nullable<Text>, _>(filter.state.map(WorkflowState::as_str))
        .bind::<BigInt, _>(big(limit as u64))
        .load(&mut conn)
        .await
        .map_err(unavailable)?;
        parse(rows)
    }

    async fn expired_workflows(&self, cutoff: Timestamp, limit: usize) -> Result<Vec<WorkflowId>, CoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Id> = diesel::sql_query(
            "SELECT id FROM archon_workflows WHERE finished_ms < $1 ORDER BY finished_ms, id LIMIT $2",
        )
        .bind::<BigInt, _>(cutoff.0)
        .bind::<BigInt, _>(big(limit as u64))
        .load(&mut conn)
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(|r| WorkflowId(u64::try_from(r.id).unwrap_or(0))).collect())
    }

    async fn output(&self, attempt: AttemptId) -> Result<[Bytes; 2], CoreError> {
        let mut conn = self.conn().await?;
        let chunks: Vec<Chunk> = diesel::sql_query(
            "SELECT stream, data FROM archon_output WHERE attempt_id = $1 ORDER BY stream, byte_offset",
        )
        .bind::<BigInt, _>(big(attempt.0))
        .load(&mut conn)
        .await
        .map_err(unavailable)?;
        let mut streams = [Vec::new(), Vec::new()];
        for chunk in chunks {
            if let Some(buf) = streams.get_mut(usize::try_from(chunk.stream).unwrap_or(usize::MAX)) {
                buf.extend_from_slice(&chunk.data);
            }
        }
        let [out, err] = streams;
        Ok([Bytes::from(out), Bytes::from(err)])
    }

    async fn expired(&self, now: Timestamp, retention: Duration, limit: usize) -> Result<Vec<Expired>, CoreError> {
        let mut conn = self.conn().await?;
        let cutoff = now.0.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let limit = big(limit as u64);
        let finished: Vec<Due> = diesel::sql_query(
            "SELECT id, job_id, state FROM archon_runs WHERE record IS NOT NULL AND finished_ms < $1 \
             ORDER BY finished_ms, id LIMIT $2",
        )
        .bind::<BigInt, _>(cutoff)
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await
        .map_err(unavailable)?;
        let own: Vec<Due> = diesel::sql_query(
            "SELECT id, job_id, state FROM archon_runs WHERE record IS NOT NULL AND expires_ms <= $1 \
             ORDER BY expires_ms, id LIMIT $2",
        )
        .bind::<BigInt, _>(now.0)
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await
        .map_err(unavailable)?;
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for due in finished.into_iter().chain(own) {
            if out.len() as i64 >= limit {
                break;
            }
            if !seen.insert(due.id) {
                continue;
            }
            let state: RunState = due.state.parse().map_err(CoreError::Internal)?;
            out.push(Expired { run: RunId(due.id as u64), state, job: JobId(due.job_id as u64) });
        }
        Ok(out)
    }

    async fn stats(&self) -> Result<HistoryStats, CoreError> {
        let mut conn = self.conn().await?;
        let stats: Stats = diesel::sql_query(
            "SELECT (SELECT count(*) FROM archon_runs WHERE record IS NOT NULL) AS runs, \
             (SELECT count(*) FROM archon_jobs WHERE record IS NOT NULL) AS jobs, \
             (SELECT count(*) FROM archon_workflows) AS workflows, \
             (SELECT coalesce(sum(length(data)), 0)::bigint FROM archon_output) AS output_bytes, \
             (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
              WHERE c.relkind = 'r' AND c.relname LIKE 'archon\\_%') AS disk_bytes",
        )
        .get_result(&mut conn)
        .await
        .map_err(unavailable)?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(HistoryStats {
            runs: n(stats.runs),
            jobs: n(stats.jobs),
            workflows: n(stats.workflows),
            output_bytes: n(stats.output_bytes),
            disk_bytes: n(stats.disk_bytes),
        })
    }
}
