//! [`RedbHistory`]: the [`History`] a Raft node serves — its redb history tables,
//! read in their own transactions (never under the state lock), overlaid with
//! what the state machine has handed over but not yet written: while an apply's
//! records are being written they are read from the state's outbox, so a run that
//! leaves the live state is never missing to a reader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use archon_core::Error as CoreError;
use archon_core::history::{
    Expired, History, HistoryOp, HistoryStats, JobFilter, RunFilter, WorkflowFilter, merge_newest_first,
};
use archon_core::model::{AttemptId, JobId, JobRecord, RunId, RunRecord, Timestamp, WorkflowId, WorkflowRecord};
use archon_core::state::ClusterState;
use async_trait::async_trait;
use bytes::Bytes;
use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;

use super::history::{
    Counts, JOBS, OUTPUT, RUNS, RUNS_BY_EXPIRY, RUNS_BY_STATE, WORKFLOWS, id_of, indexed, output_range, output_stream,
    pair, state_key, time_key,
};
use super::history_db::HistoryDb;
use super::history_writer::WriterProgress;
use super::{Failure, blocking};

/// A node's history: redb tables plus the state's outbox. Cheap to clone.
#[derive(Clone)]
pub struct RedbHistory {
    db: Arc<HistoryDb>,
    state: Arc<RwLock<ClusterState>>,
    /// The node's history writer, for what reads only written rows ([`History::stats`]).
    writer: Option<WriterProgress>,
}

impl std::fmt::Debug for RedbHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbHistory").finish_non_exhaustive()
    }
}

/// What the outbox says of the runs (or jobs) it mentions: the record, or `None`
/// when it removes them.
type Overlay<K, V> = BTreeMap<K, Option<Arc<V>>>;

/// The outbox's word on one attempt's output (see [`RedbHistory::overlay_output`]).
#[derive(Default)]
struct PendingOutput {
    /// Chunks not yet written: (run, stream, offset, bytes).
    chunks: Vec<(RunId, usize, u64, Bytes)>,
    /// The attempt's run, if the outbox names it.
    run: Option<RunId>,
    /// Runs the outbox removes: a written row of the attempt is gone if its run
    /// is one of them.
    removed: BTreeSet<RunId>,
}

impl RedbHistory {
    pub(super) fn new(db: Arc<HistoryDb>, state: Arc<RwLock<ClusterState>>) -> RedbHistory {
        RedbHistory { db, state, writer: None }
    }

    /// The same, with the node's writer to wait for where a read cannot
    /// overlay the outbox.
    pub(super) fn with_writer(self, writer: WriterProgress) -> RedbHistory {
        RedbHistory { writer: Some(writer), ..self }
    }

    /// The outbox's final word on runs and jobs, oldest op first, so later ones win.
    fn overlay(&self) -> (Overlay<RunId, RunRecord>, Overlay<JobId, JobRecord>) {
        let (runs, jobs, _) = self.overlay_all();
        (runs, jobs)
    }

    /// The outbox's final word on runs, jobs and workflows.
    fn overlay_all(
        &self,
    ) -> (Overlay<RunId, RunRecord>, Overlay<JobId, JobRecord>, Overlay<WorkflowId, WorkflowRecord>) {
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut runs, mut jobs, mut workflows) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for op in state.pending_history() {
            match op {
                HistoryOp::Run(r) => {
                    runs.insert(r.id(), Some(r.clone()));
                }
                HistoryOp::Job(j) => {
                    jobs.insert(j.id(), Some(j.clone()));
                }
                HistoryOp::Workflow(w) => {
                    workflows.insert(w.id(), Some(w.clone()));
                }
                HistoryOp::Remove { runs: gone_runs, jobs: gone_jobs, workflows: gone_workflows } => {
                    runs.extend(gone_runs.iter().map(|r| (*r, None)));
                    jobs.extend(gone_jobs.iter().map(|j| (*j, None)));
                    workflows.extend(gone_workflows.iter().map(|w| (*w, None)));
                }
                HistoryOp::Output { .. } => {}
            }
        }
        (runs, jobs, workflows)
    }

    fn workflow_overlay(&self) -> Overlay<WorkflowId, WorkflowRecord> {
        self.overlay_all().2
    }

    /// What the outbox says of `attempt`'s output, oldest op first as the
    /// history writer will apply it: the chunks it still holds, unless a later
    /// removal of their run drops them, and the runs it removes.
    fn overlay_output(&self, attempt: AttemptId) -> PendingOutput {
        let state = self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut pending = PendingOutput::default();
        for op in state.pending_history() {
            match op {
                HistoryOp::Output { run, attempt: a, stream, offset, data } if *a == attempt => {
                    pending.run = Some(*run);
                    pending.chunks.push((*run, stream.index(), *offset, data.clone()));
                }
                HistoryOp::Run(record) if record.run.attempts.contains(&attempt) => {
                    pending.run = Some(record.id());
                }
                HistoryOp::Remove { runs, .. } if !runs.is_empty() => {
                    pending.chunks.retain(|(run, ..)| !runs.contains(run));
                    pending.removed.extend(runs.iter().copied());
                }
                _ => {}
            }
        }
        pending
    }

    /// The records of `ids` in `table`, in the order given, where the outbox's
    /// word (`overlay`) wins over what is stored.
    async fn by_id<K, V>(
        &self,
        table: TableDefinition<'static, u64, &'static [u8]>,
        ids: &[K],
        overlay: &Overlay<K, V>,
        key: fn(K) -> u64,
    ) -> Result<Vec<V>, CoreError>
    where
        K: Ord + Copy + Send + 'static,
        V: DeserializeOwned + Clone + Send + 'static,
    {
        let wanted: Vec<K> = ids.iter().filter(|id| !overlay.contains_key(id)).copied().collect();
        let stored: BTreeMap<K, V> = self
            .read(move |txn| {
                let table = txn.open_table(table)?;
                let mut out = BTreeMap::new();
                for id in wanted {
                    if let Some(v) = table.get(key(id))? {
                        out.insert(id, serde_json::from_slice(v.value())?);
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(ids
            .iter()
            .filter_map(|id| match overlay.get(id) {
                Some(over) => over.as_deref().cloned(),
                None => stored.get(id).cloned(),
            })
            .collect())
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&redb::ReadTransaction) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, CoreError> {
        let db = self.db.clone();
        blocking(self.db.blocking, move || work(&db.read()?))
            .await
            .map_err(|e| CoreError::Unavailable(format!("history: {e}")))
    }
}

fn run_from(value: &[u8]) -> Result<RunRecord, Failure> {
    Ok(serde_json::from_slice(value)?)
}

/// Whether `removed` holds the run of `attempt`: `run` when the outbox named it,
/// else the stored record of a removed run that lists the attempt.
fn removes(
    txn: &redb::ReadTransaction,
    attempt: AttemptId,
    run: Option<RunId>,
    removed: &BTreeSet<RunId>,
) -> Result<bool, Failure> {
    if let Some(run) = run {
        return Ok(removed.contains(&run));
    }
    let runs = txn.open_table(RUNS)?;
    for id in removed {
        if let Some(value) = runs.get(id.0)?
            && run_from(value.value())?.run.attempts.contains(&attempt)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[async_trait]
impl History for RedbHistory {
    async fn runs(&self, ids: &[RunId]) -> Result<Vec<RunRecord>, CoreError> {
        let overlay = self.overlay().0;
        self.by_id(RUNS, ids, &overlay, |id| id.0).await
    }

    async fn jobs(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, CoreError> {
        let overlay = self.overlay().1;
        self.by_id(JOBS, ids, &overlay, |id| id.0).await
    }

    async fn list_runs(&self, filter: &RunFilter, limit: usize) -> Result<Vec<RunRecord>, CoreError> {
        let (overlay, _) = self.overlay();
        let hidden: BTreeSet<RunId> = overlay.keys().copied().collect();
        let pending: Vec<RunRecord> = overlay
            .values()
            .rev()
            .filter_map(|r| r.as_deref())
            .filter(|r| filter.matches(r))
            .take(limit)
            .cloned()
            .collect();
        let f = filter.clone();
        let stored = self
            .read(move |txn| {
                let runs = txn.open_table(RUNS)?;
                let upper = f.before.map_or(u64::MAX, |b| b.0);
                let mut out = Vec::new();
                let mut take = |value: &[u8]| -> Result<bool, Failure> {
                    let record = run_from(value)?;
                    if f.since.is_some_and(|since| record.run.created_at < since) {
                        return Ok(false);
                    }
                    if !hidden.contains(&record.id()) && f.matches(&record) {
                        out.push(record);
                    }
                    Ok(out.len() < limit)
                };
                match f.state {
                    Some(state) if indexed(state) => {
                        let by_state = txn.open_table(RUNS_BY_STATE)?;
                        let range = pair(state_key(state), 0)..pair(state_key(state), upper);
                        for key in by_state.range(range)?.rev() {
                            let id = id_of(key?.0.value());
                            let Some(value) = runs.get(id)? else { continue };
                            if !take(value.value())? {
                                break;
                            }
                        }
                    }
                    _ => {
                        for row in runs.range(..upper)?.rev() {
                            if !take(row?.1.value())? {
                                break;
                            }
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(merge_newest_first(pending, stored, RunRecord::id, limit))
    }

    async fn list_jobs(&self, filter: &JobFilter, limit: usize) -> Result<Vec<JobRecord>, CoreError> {
        let (_, overlay) = self.overlay();
        let hidden: BTreeSet<JobId> = overlay.keys().copied().collect();
        let pending: Vec<JobRecord> = overlay
            .values()
            .rev()
            .filter_map(|j| j.as_deref())
            .filter(|j| filter.matches(j))
            .take(limit)
            .cloned()
            .collect();
        let f = filter.clone();
        let stored = self
            .read(move |txn| {
                let jobs = txn.open_table(JOBS)?;
                let upper = f.before.map_or(u64::MAX, |b| b.0);
                let mut out = Vec::new();
                for row in jobs.range(..upper)?.rev() {
                    let record: JobRecord = serde_json::from_slice(row?.1.value())?;
                    if !hidden.contains(&record.id()) && f.matches(&record) {
                        out.push(record);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(merge_newest_first(pending, stored, JobRecord::id, limit))
    }

    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>, CoreError> {
        let overlay = self.workflow_overlay();
        self.by_id(WORKFLOWS, ids, &overlay, |id| id.0).await
    }

    async fn list_workflows(&self, filter: &WorkflowFilter, limit: usize) -> Result<Vec<WorkflowRecord>, CoreError> {
        let overlay = self.workflow_overlay();
        let hidden: BTreeSet<WorkflowId> = overlay.keys().copied().collect();
        let pending: Vec<WorkflowRecord> = overlay
            .values()
            .rev()
            .filter_map(|w| w.as_deref())
            .filter(|w| filter.matches(&w.workflow, w.state()))
            .take(limit)
            .cloned()
            .collect();
        let f = filter.clone();
        let stored = self
            .read(move |txn| {
                let workflows = txn.open_table(WORKFLOWS)?;
                let upper = f.before.map_or(u64::MAX, |b| b.0);
                let mut out = Vec::new();
                for row in workflows.range(..upper)?.rev() {
                    let record: WorkflowRecord = serde_json::from_slice(row?.1.value())?;
                    if !hidden.contains(&record.id()) && f.matches(&record.workflow, record.state()) {
                        out.push(record);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(merge_newest_first(pending, stored, WorkflowRecord::id, limit))
    }

    async fn expired_workflows(&self, cutoff: Timestamp, limit: usize) -> Result<Vec<WorkflowId>, CoreError> {
        let overlay = self.workflow_overlay();
        self.read(move |txn| {
            let workflows = txn.open_table(WORKFLOWS)?;
            let mut out = Vec::new();
            // Oldest first: past the first one created after the cutoff, none
            // has ended before it.
            for row in workflows.iter()? {
                if out.len() >= limit {
                    break;
                }
                let record: WorkflowRecord = serde_json::from_slice(row?.1.value())?;
                if record.workflow.created_at >= cutoff {
                    break;
                }
                if record.finished_at < cutoff && !overlay.contains_key(&record.id()) {
                    out.push(record.id());
                }
            }
            // The outbox's workflows, not written yet (or newer than what is).
            for (id, record) in &overlay {
                if out.len() >= limit {
                    break;
                }
                if record.as_ref().is_some_and(|r| r.finished_at < cutoff) {
                    out.push(*id);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn output(&self, attempt: AttemptId) -> Result<[Bytes; 2], CoreError> {
        let PendingOutput { chunks: pending, run, removed } = self.overlay_output(attempt);
        let stored: Vec<(usize, u64, Bytes)> = self
            .read(move |txn| {
                let table = txn.open_table(OUTPUT)?;
                let mut out = Vec::new();
                for row in table.range(output_range(attempt))? {
                    let (k, v) = row?;
                    let key = k.value();
                    out.push((output_stream(key), (key as u64) & !(1 << 63), Bytes::copy_from_slice(v.value())));
                }
                // A removal not yet written hides the rows of its runs'
                // attempts: looked up only when there are rows to hide.
                if !out.is_empty() && !removed.is_empty() && removes(txn, attempt, run, &removed)? {
                    out.clear();
                }
                Ok(out)
            })
            .await?;
        let mut chunks: BTreeMap<(usize, u64), Bytes> = stored.into_iter().map(|(s, o, d)| ((s, o), d)).collect();
        chunks.extend(pending.into_iter().map(|(_, s, o, d)| ((s, o), d)));
        // Rows are stored in slices of a chunk (see `history::OUTPUT_ROW`) and a
        // chunk may be both pending and written: keep each byte once, by offset.
        let mut streams = [Vec::new(), Vec::new()];
        for ((stream, offset), data) in chunks {
            if let Some(buf) = streams.get_mut(stream) {
                let have = buf.len() as u64;
                let end = offset + data.len() as u64;
                if offset <= have && end > have {
                    buf.extend_from_slice(&data[(have - offset) as usize..]);
                }
            }
        }
        let [out, err] = streams;
        Ok([Bytes::from(out), Bytes::from(err)])
    }

    async fn expired(&self, now: Timestamp, retention: Duration, limit: usize) -> Result<Vec<Expired>, CoreError> {
        let (overlay, _) = self.overlay();
        let cutoff = Timestamp(now.0.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)));
        self.read(move |txn| {
            let runs = txn.open_table(RUNS)?;
            let by_expiry = txn.open_table(RUNS_BY_EXPIRY)?;
            let mut out = Vec::new();
            // Oldest first: past the first run created after the cutoff, none has
            // ended before it.
            for row in runs.iter()? {
                if out.len() >= limit {
                    break;
                }
                let record = run_from(row?.1.value())?;
                if record.run.created_at >= cutoff {
                    break;
                }
                if record.finished_at() < cutoff && !overlay.contains_key(&record.id()) {
                    out.push(Expired { run: record.id(), state: record.run.state, job: record.run.job });
                }
            }
            let mut seen: BTreeSet<RunId> = out.iter().map(|e| e.run).collect();
            for key in by_expiry.range(..=pair(time_key(now), u64::MAX))? {
                if out.len() >= limit {
                    break;
                }
                let id = RunId(id_of(key?.0.value()));
                if overlay.contains_key(&id) || !seen.insert(id) {
                    continue;
                }
                let Some(value) = runs.get(id.0)? else { continue };
                let record = run_from(value.value())?;
                out.push(Expired { run: id, state: record.run.state, job: record.run.job });
            }
            // The outbox's runs, not written yet (or newer than what is).
            for (id, record) in &overlay {
                if out.len() >= limit {
                    break;
                }
                let Some(record) = record else { continue };
                let due = record.finished_at() < cutoff || record.expires_at.is_some_and(|at| at <= now);
                if due && seen.insert(*id) {
                    out.push(Expired { run: *id, state: record.run.state, job: record.run.job });
                }
            }
            Ok(out)
        })
        .await
    }

    /// Counts what is written, once the writer has written what the outbox
    /// held at the call (it lingers up to 10 ms; waited for at most 5 s).
    async fn stats(&self) -> Result<HistoryStats, CoreError> {
        if let Some(writer) = &self.writer {
            writer.caught_up(Duration::from_secs(5)).await;
        }
        let counts = self.read(Counts::of).await?;
        let disk_bytes = self.db.size();
        Ok(HistoryStats {
            runs: counts.runs,
            jobs: counts.jobs,
            workflows: counts.workflows,
            output_bytes: counts.output_bytes,
            disk_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use archon_core::model::{AttemptResult, ExitStatus, OutputStream, OutputTail, RunState};
    use archon_core::state::Command;
    use archon_core::testkit::fixtures::{assign, register_worker, submit_job};

    use super::super::{BlockingWork, history};
    use super::*;

    const AT: Timestamp = Timestamp(2_000);

    /// A history over an empty file and `state`, whose outbox it overlays.
    fn open(dir: &tempfile::TempDir, state: ClusterState) -> (Arc<HistoryDb>, Arc<RwLock<ClusterState>>, RedbHistory) {
        let db = HistoryDb::open(dir.path().join("h.redb"), 1 << 20, BlockingWork::Threads).expect("open");
        db.create_tables().expect("tables");
        let (db, state) = (Arc::new(db), Arc::new(RwLock::new(state)));
        let history = RedbHistory::new(Arc::clone(&db), Arc::clone(&state));
        (db, state, history)
    }

    /// Run 1 (attempt 1) ran and succeeded with a streamed chunk and an inline
    /// tail on stdout: its output and record are in the outbox.
    fn finished_run() -> ClusterState {
        let mut state = ClusterState::new();
        let commands = [
            register_worker("w"),
            submit_job("j", AT.0),
            assign(1, 1, AT.0),
            Command::AttemptOutput {
                at: AT,
                run: RunId(1),
                attempt: AttemptId(1),
                stream: OutputStream::Stdout,
                offset: 0,
                data: Bytes::from_static(b"streamed "),
            },
            Command::FinishAttempt {
                at: AT,
                run: RunId(1),
                attempt: AttemptId(1),
                result: AttemptResult {
                    status: ExitStatus::Exited { code: 0 },
                    stdout: OutputTail { data: Bytes::from_static(b"tail\n"), truncated: 0 },
                    stderr: OutputTail::default(),
                    usage: None,
                },
            },
        ];
        for command in &commands {
            let outcome = state.apply(command);
            assert!(matches!(outcome, archon_core::state::Outcome::Applied(_)), "{command:?}: {outcome:?}");
        }
        state
    }

    fn remove_run(state: &RwLock<ClusterState>) {
        let prune = Command::Prune {
            at: AT,
            runs: vec![(RunId(1), RunState::Succeeded)],
            jobs: Vec::new(),
            workflows: Vec::new(),
            keys_before: None,
        };
        let outcome = state.write().expect("state").apply(&prune);
        assert!(matches!(outcome, archon_core::state::Outcome::Applied(_)), "prune: {outcome:?}");
    }

    #[tokio::test]
    async fn a_finished_run_not_yet_written_is_due_for_removal_once_past_retention() {
        let dir = tempfile::tempdir().expect("dir");
        let (_db, _state, history) = open(&dir, finished_run());
        let late = Timestamp(AT.0 + 3_600_000);
        let due = history.expired(late, Duration::from_secs(60), 10).await.expect("expired");
        assert_eq!(due.iter().map(|e| e.run).collect::<Vec<_>>(), vec![RunId(1)], "read from the outbox");
        assert!(history.expired(AT, Duration::from_secs(60), 10).await.expect("expired").is_empty(), "not yet due");
    }

    #[tokio::test]
    async fn output_whose_run_is_removed_before_either_is_written_reads_empty() {
        let dir = tempfile::tempdir().expect("dir");
        let (_db, state, history) = open(&dir, finished_run());
        let before = history.output(AttemptId(1)).await.expect("output");
        assert_eq!(before[0], Bytes::from_static(b"streamed tail\n"), "the outbox's chunks are read");
        remove_run(&state);
        assert!(history.runs(&[RunId(1)]).await.expect("runs").is_empty(), "the run reads as removed");
        assert_eq!(history.output(AttemptId(1)).await.expect("output"), [Bytes::new(), Bytes::new()]);
    }

    #[tokio::test]
    async fn written_output_of_a_run_whose_removal_is_not_yet_written_reads_empty() {
        let dir = tempfile::tempdir().expect("dir");
        let (db, state, history) = open(&dir, finished_run());
        let ops = state.write().expect("state").take_history();
        db.write(true, |txn| history::write(txn, &ops)).expect("written");
        let before = history.output(AttemptId(1)).await.expect("output");
        assert_eq!(before[0], Bytes::from_static(b"streamed tail\n"), "the written rows are read");
        remove_run(&state);
        assert_eq!(state.read().expect("state").pending_history().len(), 1, "only the removal is pending");
        assert!(history.runs(&[RunId(1)]).await.expect("runs").is_empty(), "the run reads as removed");
        assert_eq!(history.output(AttemptId(1)).await.expect("output"), [Bytes::new(), Bytes::new()]);
        // Once the removal is written too, the rows are gone from the file.
        let ops = state.write().expect("state").take_history();
        db.write(true, |txn| history::write(txn, &ops)).expect("written");
        assert_eq!(history.output(AttemptId(1)).await.expect("output"), [Bytes::new(), Bytes::new()]);
    }
}
