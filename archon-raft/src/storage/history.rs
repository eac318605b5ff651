//! The history tables in a node's redb file, written by the state machine's
//! apply on every replica from what [`ClusterState`](archon_core::state::ClusterState)
//! hands over, so finished runs are replicated and survive a failover.
//!
//! | table | key | value |
//! |---|---|---|
//! | `h_runs` | run id | the run's record (JSON `RunRecord`) |
//! | `h_runs_by_state` | state · run id, for every state but `succeeded` | — |
//! | `h_runs_by_expiry` | its job's own expiry · run id | — |
//! | `h_jobs` | job id | the retired job's record (JSON `JobRecord`) |
//! | `h_workflows` | workflow id | the finished workflow's record (JSON `WorkflowRecord`) |
//! | `h_output` | attempt id · stream · offset | output bytes |
//! | `h_meta` | name | counts (`runs`, `jobs`, `workflows`, `output_bytes`) |
//!
//! Index keys are `u128`s, the high half first, so they sort as the pair does.
//! Two writes per finished job is what keeps the history cheap: succeeded runs,
//! the bulk, are not in the state index (listing them walks `h_runs`, where
//! nearly every row matches), and there is no index by finish time, since
//! retention walks `h_runs` oldest first (a run ends after it was created, and
//! ids follow creation).
//! Writes are idempotent (see [`archon_core::history`]): a replay after a restart
//! writes what the table already holds. They are committed without an fsync of
//! their own: a crash loses at most what the log replays, because the snapshot
//! that lets the log go is written durably after them.

use std::io::{Read, Write};
use std::sync::Arc;

use archon_core::history::HistoryOp;
use archon_core::model::{AttemptId, JobRecord, OutputStream, RunId, RunRecord, RunState, Timestamp, WorkflowRecord};
use bytes::Bytes;
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::Failure;

pub(super) const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("h_runs");
pub(super) const RUNS_BY_STATE: TableDefinition<u128, ()> = TableDefinition::new("h_runs_by_state");
pub(super) const RUNS_BY_EXPIRY: TableDefinition<u128, ()> = TableDefinition::new("h_runs_by_expiry");
pub(super) const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("h_jobs");
pub(super) const WORKFLOWS: TableDefinition<u64, &[u8]> = TableDefinition::new("h_workflows");
pub(super) const OUTPUT: TableDefinition<u128, &[u8]> = TableDefinition::new("h_output");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("h_meta");

const RUN_COUNT: &str = "runs";
const JOB_COUNT: &str = "jobs";
const WORKFLOW_COUNT: &str = "workflows";
const OUTPUT_BYTES: &str = "output_bytes";

/// Whether runs in `state` are in `h_runs_by_state`.
pub(super) fn indexed(state: RunState) -> bool {
    state != RunState::Succeeded
}

/// A run state's place in an index key.
pub(super) fn state_key(state: RunState) -> u128 {
    RunState::ALL.iter().position(|s| *s == state).unwrap_or(0) as u128
}

/// An instant's place in an index key: order-preserving over all of `i64`.
pub(super) fn time_key(t: Timestamp) -> u128 {
    u128::from((t.0 as u64) ^ (1 << 63))
}

/// The instant a [`time_key`] stands for.
#[cfg(test)]
pub(super) fn key_time(k: u128) -> Timestamp {
    Timestamp(((k as u64) ^ (1 << 63)) as i64)
}

/// An index key: `high` then the id.
pub(super) fn pair(high: u128, id: u64) -> u128 {
    (high << 64) | u128::from(id)
}

/// The id half of an index key.
pub(super) fn id_of(key: u128) -> u64 {
    key as u64
}

/// The most output bytes one `h_output` row holds: a chunk is stored in slices
/// this big. redb gives a page holding a large value a power-of-two run of 4 KiB
/// pages, so a 256 KiB chunk (plus its key) would take 512 KiB; slices just under
/// 64 KiB waste a few hundred bytes each instead.
pub(super) const OUTPUT_ROW: usize = (64 << 10) - 256;

/// An output chunk's key.
pub(super) fn output_key(attempt: AttemptId, stream: OutputStream, offset: u64) -> u128 {
    (u128::from(attempt.0) << 64) | ((stream.index() as u128) << 63) | u128::from(offset & !(1 << 63))
}

/// The keys of all of an attempt's output.
pub(super) fn output_range(attempt: AttemptId) -> std::ops::Range<u128> {
    (u128::from(attempt.0) << 64)..(u128::from(attempt.0.saturating_add(1)) << 64)
}

/// Which stream an output key belongs to.
pub(super) fn output_stream(key: u128) -> usize {
    ((key >> 63) & 1) as usize
}

/// Creates the history tables a file lacks.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), Failure> {
    txn.open_table(RUNS)?;
    txn.open_table(RUNS_BY_STATE)?;
    txn.open_table(RUNS_BY_EXPIRY)?;
    txn.open_table(JOBS)?;
    txn.open_table(WORKFLOWS)?;
    txn.open_table(OUTPUT)?;
    txn.open_table(META)?;
    Ok(())
}

/// The counts kept in `h_meta`, changed by a transaction's writes.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub(super) runs: u64,
    pub(super) jobs: u64,
    pub(super) workflows: u64,
    pub(super) output_bytes: u64,
}

impl Counts {
    fn read(table: &impl ReadableTable<&'static str, u64>) -> Result<Counts, Failure> {
        let get = |key| -> Result<u64, Failure> { Ok(table.get(key)?.map_or(0, |v| v.value())) };
        Ok(Counts {
            runs: get(RUN_COUNT)?,
            jobs: get(JOB_COUNT)?,
            workflows: get(WORKFLOW_COUNT)?,
            output_bytes: get(OUTPUT_BYTES)?,
        })
    }

    /// The counts a read transaction sees.
    pub(super) fn of(txn: &ReadTransaction) -> Result<Counts, Failure> {
        Counts::read(&txn.open_table(META)?)
    }
}

/// Writes what the state machine handed over, in order, in `txn`.
pub(super) fn write(txn: &WriteTransaction, ops: &[HistoryOp]) -> Result<(), Failure> {
    let mut runs = txn.open_table(RUNS)?;
    let mut by_state = txn.open_table(RUNS_BY_STATE)?;
    let mut by_expiry = txn.open_table(RUNS_BY_EXPIRY)?;
    let mut jobs = txn.open_table(JOBS)?;
    let mut workflows = txn.open_table(WORKFLOWS)?;
    let mut output = txn.open_table(OUTPUT)?;
    let mut meta = txn.open_table(META)?;
    let mut counts = Counts::read(&meta)?;
    for op in ops {
        match op {
            HistoryOp::Output { attempt, stream, offset, data, .. } => {
                for (i, row) in data.chunks(OUTPUT_ROW).enumerate() {
                    let key = output_key(*attempt, *stream, offset + (i * OUTPUT_ROW) as u64);
                    let old = output.insert(key, row)?.map(|v| v.value().len());
                    counts.output_bytes =
                        counts.output_bytes.saturating_sub(old.unwrap_or(0) as u64) + row.len() as u64;
                }
            }
            HistoryOp::Run(record) => {
                let id = record.id().0;
                let json = serde_json::to_vec(&**record)?;
                if runs.insert(id, json.as_slice())?.is_none() {
                    counts.runs += 1;
                }
                if indexed(record.run.state) {
                    by_state.insert(pair(state_key(record.run.state), id), ())?;
                }
                if let Some(at) = record.expires_at {
                    by_expiry.insert(pair(time_key(at), id), ())?;
                }
            }
            HistoryOp::Job(record) => {
                let json = serde_json::to_vec(&**record)?;
                if jobs.insert(record.id().0, json.as_slice())?.is_none() {
                    counts.jobs += 1;
                }
            }
            HistoryOp::Workflow(record) => {
                let json = serde_json::to_vec(&**record)?;
                if workflows.insert(record.id().0, json.as_slice())?.is_none() {
                    counts.workflows += 1;
                }
            }
            HistoryOp::Remove { runs: removed, jobs: gone, workflows: ended } => {
                for run in removed {
                    let Some(value) = runs.remove(run.0)? else { continue };
                    let record: RunRecord = serde_json::from_slice(value.value())?;
                    drop(value);
                    counts.runs = counts.runs.saturating_sub(1);
                    if indexed(record.run.state) {
                        by_state.remove(pair(state_key(record.run.state), run.0))?;
                    }
                    if let Some(at) = record.expires_at {
                        by_expiry.remove(pair(time_key(at), run.0))?;
                    }
                    for attempt in &record.attempts {
                        let range = output_range(attempt.id);
                        let mut bytes = 0u64;
                        for row in output.range(range.clone())? {
                            bytes += row?.1.value().len() as u64;
                        }
                        if bytes > 0 {
                            output.retain_in(range, |_, _| false)?;
                            counts.output_bytes = counts.output_bytes.saturating_sub(bytes);
                        }
                    }
                }
                for job in gone {
                    if jobs.remove(job.0)?.is_some() {
                        counts.jobs = counts.jobs.saturating_sub(1);
                    }
                }
                for workflow in ended {
                    if workflows.remove(workflow.0)?.is_some() {
                        counts.workflows = counts.workflows.saturating_sub(1);
                    }
                }
            }
        }
    }
    meta.insert(RUN_COUNT, counts.runs)?;
    meta.insert(JOB_COUNT, counts.jobs)?;
    meta.insert(WORKFLOW_COUNT, counts.workflows)?;
    meta.insert(OUTPUT_BYTES, counts.output_bytes)?;
    Ok(())
}

/// Record tags in a snapshot's history section.
const TAG_END: u8 = 0;
const TAG_RUN: u8 = 1;
const TAG_JOB: u8 = 2;
const TAG_OUTPUT: u8 = 3;
const TAG_WORKFLOW: u8 = 4;

/// Streams every history record `txn` sees into `out`: tagged, length-prefixed
/// rows (the indexes are rebuilt from the records on install). Returns how many.
pub(super) fn dump(txn: &ReadTransaction, out: &mut impl Write) -> Result<u64, Failure> {
    let mut rows = 0u64;
    let mut row = |out: &mut dyn Write, tag: u8, key: u128, value: &[u8]| -> std::io::Result<()> {
        out.write_all(&[tag])?;
        out.write_all(&key.to_le_bytes())?;
        out.write_all(&(value.len() as u64).to_le_bytes())?;
        out.write_all(value)?;
        rows += 1;
        Ok(())
    };
    for entry in txn.open_table(RUNS)?.iter()? {
        let (k, v) = entry?;
        row(out, TAG_RUN, u128::from(k.value()), v.value())?;
    }
    for entry in txn.open_table(JOBS)?.iter()? {
        let (k, v) = entry?;
        row(out, TAG_JOB, u128::from(k.value()), v.value())?;
    }
    for entry in txn.open_table(WORKFLOWS)?.iter()? {
        let (k, v) = entry?;
        row(out, TAG_WORKFLOW, u128::from(k.value()), v.value())?;
    }
    for entry in txn.open_table(OUTPUT)?.iter()? {
        let (k, v) = entry?;
        row(out, TAG_OUTPUT, k.value(), v.value())?;
    }
    out.write_all(&[TAG_END])?;
    Ok(rows)
}

/// Replaces the history in `txn` with the records read from `input` (a
/// snapshot's history section, as [`dump`] wrote it).
pub(super) fn load(txn: &WriteTransaction, input: &mut impl Read) -> Result<u64, Failure> {
    txn.delete_table(RUNS)?;
    txn.delete_table(RUNS_BY_STATE)?;
    txn.delete_table(RUNS_BY_EXPIRY)?;
    txn.delete_table(JOBS)?;
    txn.delete_table(WORKFLOWS)?;
    txn.delete_table(OUTPUT)?;
    txn.delete_table(META)?;
    create_tables(txn)?;
    let mut batch = Vec::new();
    let mut rows = 0u64;
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag)?;
        if tag[0] == TAG_END {
            break;
        }
        let mut key = [0u8; 16];
        input.read_exact(&mut key)?;
        let key = u128::from_le_bytes(key);
        let mut len = [0u8; 8];
        input.read_exact(&mut len)?;
        let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| Failure::Format("row too long".into()))?;
        let mut value = vec![0u8; len];
        input.read_exact(&mut value)?;
        rows += 1;
        let op = match tag[0] {
            TAG_RUN => HistoryOp::Run(Arc::new(serde_json::from_slice::<RunRecord>(&value)?)),
            TAG_JOB => HistoryOp::Job(Arc::new(serde_json::from_slice::<JobRecord>(&value)?)),
            TAG_WORKFLOW => HistoryOp::Workflow(Arc::new(serde_json::from_slice::<WorkflowRecord>(&value)?)),
            TAG_OUTPUT => HistoryOp::Output {
                run: RunId(0),
                attempt: AttemptId((key >> 64) as u64),
                stream: OutputStream::BOTH[output_stream(key)],
                offset: (key as u64) & !(1 << 63),
                data: Bytes::from(value),
            },
            other => return Err(Failure::Format(format!("unknown history row tag {other}"))),
        };
        batch.push(op);
        if batch.len() >= 4096 {
            write(txn, &std::mem::take(&mut batch))?;
        }
    }
    write(txn, &batch)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_as_their_pairs() {
        let times = [i64::MIN, -5, 0, 7, i64::MAX];
        for w in times.windows(2) {
            assert!(time_key(Timestamp(w[0])) < time_key(Timestamp(w[1])));
            assert_eq!(key_time(time_key(Timestamp(w[0]))), Timestamp(w[0]));
        }
        assert!(pair(1, u64::MAX) < pair(2, 0));
        assert_eq!(id_of(pair(9, 42)), 42);
        let (a, b) =
            (output_key(AttemptId(3), OutputStream::Stdout, 10), output_key(AttemptId(3), OutputStream::Stderr, 0));
        assert!(a < b && output_range(AttemptId(3)).contains(&a) && output_range(AttemptId(3)).contains(&b));
        assert_eq!((output_stream(a), output_stream(b)), (0, 1));
        assert!(!output_range(AttemptId(4)).contains(&b));
    }
}
