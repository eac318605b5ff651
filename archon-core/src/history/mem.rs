//! [`MemHistory`]: the history in memory, for `MemStore` (tests, embedders who need
//! no durability). It holds what the state machine hands it; `MemStore` keeps it
//! bounded by proposing removals of the oldest runs past its capacity.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Expired, History, HistoryOp, HistoryStats, JobFilter, RunFilter, WorkflowFilter};
use crate::error::Error;
use crate::model::{AttemptId, JobId, JobRecord, RunId, RunRecord, RunState, Timestamp, WorkflowId, WorkflowRecord};

#[derive(Debug, Default)]
struct Tables {
    runs: BTreeMap<RunId, Arc<RunRecord>>,
    by_state: BTreeSet<(RunState, RunId)>,
    by_finish: BTreeSet<(Timestamp, RunId)>,
    /// Runs whose job has a retention of its own, by when it removes them.
    by_expiry: BTreeSet<(Timestamp, RunId)>,
    jobs: BTreeMap<JobId, Arc<JobRecord>>,
    workflows: BTreeMap<WorkflowId, Arc<WorkflowRecord>>,
    workflows_by_finish: BTreeSet<(Timestamp, WorkflowId)>,
    /// Output chunks by (attempt, stream, offset).
    output: BTreeMap<(AttemptId, usize, u64), Bytes>,
    output_bytes: u64,
}

/// A history held in memory. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct MemHistory {
    tables: RwLock<Tables>,
}

impl MemHistory {
    /// An empty history.
    pub fn new() -> MemHistory {
        MemHistory::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies what the state machine handed over, in order. Idempotent.
    pub fn apply(&self, ops: &[HistoryOp]) {
        let mut t = self.write();
        for op in ops {
            match op {
                HistoryOp::Output { attempt, stream, offset, data, .. } => {
                    let key = (*attempt, stream.index(), *offset);
                    let len = data.len() as u64;
                    if let Some(old) = t.output.insert(key, data.clone()) {
                        t.output_bytes -= old.len() as u64;
                    }
                    t.output_bytes += len;
                }
                HistoryOp::Run(record) => {
                    t.remove_run(record.id());
                    let id = record.id();
                    t.by_state.insert((record.run.state, id));
                    t.by_finish.insert((record.finished_at(), id));
                    if let Some(at) = record.expires_at {
                        t.by_expiry.insert((at, id));
                    }
                    t.runs.insert(id, record.clone());
                }
                HistoryOp::Job(record) => {
                    t.jobs.insert(record.id(), record.clone());
                }
                HistoryOp::Workflow(record) => {
                    t.remove_workflow(record.id());
                    t.workflows_by_finish.insert((record.finished_at, record.id()));
                    t.workflows.insert(record.id(), record.clone());
                }
                HistoryOp::Remove { runs, jobs, workflows } => {
                    for run in runs {
                        if let Some(record) = t.remove_run(*run) {
                            for attempt in &record.attempts {
                                t.remove_output(attempt.id);
                            }
                        }
                    }
                    for job in jobs {
                        t.jobs.remove(job);
                    }
                    for workflow in workflows {
                        t.remove_workflow(*workflow);
                    }
                }
            }
        }
    }

    /// The `n` runs that ended first (what a bounded history lets go of first).
    pub fn oldest(&self, n: usize) -> Vec<Expired> {
        let t = self.read();
        t.by_finish.iter().take(n).filter_map(|(_, id)| t.runs.get(id)).map(|r| expired(r)).collect()
    }

    /// A finished run's record, if held (sync, for tests and `MemStore`).
    pub fn run_record(&self, id: RunId) -> Option<Arc<RunRecord>> {
        self.read().runs.get(&id).cloned()
    }

    /// A retired job's record, if held.
    pub fn job_record(&self, id: JobId) -> Option<Arc<JobRecord>> {
        self.read().jobs.get(&id).cloned()
    }

    /// Every finished run's id, oldest id first.
    pub fn run_ids(&self) -> Vec<RunId> {
        self.read().runs.keys().copied().collect()
    }

    /// A finished workflow's record, if held.
    pub fn workflow_record(&self, id: WorkflowId) -> Option<Arc<WorkflowRecord>> {
        self.read().workflows.get(&id).cloned()
    }

    /// Every finished workflow's id, oldest id first.
    pub fn workflow_ids(&self) -> Vec<WorkflowId> {
        self.read().workflows.keys().copied().collect()
    }

    /// Every retired job's id, oldest id first.
    pub fn job_ids(&self) -> Vec<JobId> {
        self.read().jobs.keys().copied().collect()
    }

    /// An attempt's kept output, stdout then stderr (sync).
    pub fn output_of(&self, attempt: AttemptId) -> [Bytes; 2] {
        let t = self.read();
        let mut streams = [Vec::new(), Vec::new()];
        for ((_, stream, _), data) in t.output.range((attempt, 0, 0)..=(attempt, usize::MAX, u64::MAX)) {
            if let Some(buf) = streams.get_mut(*stream) {
                buf.extend_from_slice(data);
            }
        }
        let [out, err] = streams;
        [Bytes::from(out), Bytes::from(err)]
    }

    /// The `n` workflows that ended first.
    pub fn oldest_workflows(&self, n: usize) -> Vec<WorkflowId> {
        self.read().workflows_by_finish.iter().take(n).map(|(_, id)| *id).collect()
    }

    /// How many finished workflows it holds.
    pub fn workflow_count(&self) -> usize {
        self.read().workflows.len()
    }

    /// How many finished runs it holds.
    pub fn len(&self) -> usize {
        self.read().runs.len()
    }

    /// Whether it holds no finished run.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Tables {
    fn remove_run(&mut self, id: RunId) -> Option<Arc<RunRecord>> {
        let old = self.runs.remove(&id)?;
        self.by_state.remove(&(old.run.state, id));
        self.by_finish.remove(&(old.finished_at(), id));
        if let Some(at) = old.expires_at {
            self.by_expiry.remove(&(at, id));
        }
        Some(old)
    }

    fn remove_workflow(&mut self, id: WorkflowId) {
        if let Some(old) = self.workflows.remove(&id) {
            self.workflows_by_finish.remove(&(old.finished_at, id));
        }
    }

    fn remove_output(&mut self, attempt: AttemptId) {
        let keys: Vec<_> =
            self.output.range((attempt, 0, 0)..=(attempt, usize::MAX, u64::MAX)).map(|(k, _)| *k).collect();
        for key in keys {
            if let Some(old) = self.output.remove(&key) {
                self.output_bytes -= old.len() as u64;
            }
        }
    }
}

fn expired(record: &RunRecord) -> Expired {
    Expired { run: record.id(), state: record.run.state, job: record.run.job }
}

#[async_trait]
impl History for MemHistory {
    async fn runs(&self, ids: &[RunId]) -> Result<Vec<RunRecord>, Error> {
        let t = self.read();
        Ok(ids.iter().filter_map(|id| t.runs.get(id)).map(|r| RunRecord::clone(r)).collect())
    }

    async fn jobs(&self, ids: &[JobId]) -> Result<Vec<JobRecord>, Error> {
        let t = self.read();
        Ok(ids.iter().filter_map(|id| t.jobs.get(id)).map(|j| JobRecord::clone(j)).collect())
    }

    async fn list_runs(&self, filter: &RunFilter, limit: usize) -> Result<Vec<RunRecord>, Error> {
        let t = self.read();
        let upper = filter.before.unwrap_or(RunId(u64::MAX));
        let candidates: Box<dyn Iterator<Item = &Arc<RunRecord>>> = match filter.state {
            Some(state) => {
                Box::new(t.by_state.range((state, RunId(0))..(state, upper)).rev().filter_map(|(_, id)| t.runs.get(id)))
            }
            None => Box::new(t.runs.range(..upper).rev().map(|(_, r)| r)),
        };
        let mut out = Vec::new();
        for record in candidates {
            if filter.since.is_some_and(|since| record.run.created_at < since) {
                break;
            }
            if filter.matches(record) {
                out.push(RunRecord::clone(record));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn list_jobs(&self, filter: &JobFilter, limit: usize) -> Result<Vec<JobRecord>, Error> {
        let t = self.read();
        let upper = filter.before.unwrap_or(JobId(u64::MAX));
        Ok(t.jobs
            .range(..upper)
            .rev()
            .map(|(_, j)| j)
            .filter(|j| filter.matches(j))
            .take(limit)
            .map(|j| JobRecord::clone(j))
            .collect())
    }

    async fn workflows(&self, ids: &[WorkflowId]) -> Result<Vec<WorkflowRecord>, Error> {
        let t = self.read();
        Ok(ids.iter().filter_map(|id| t.workflows.get(id)).map(|w| WorkflowRecord::clone(w)).collect())
    }

    async fn list_workflows(&self, filter: &WorkflowFilter, limit: usize) -> Result<Vec<WorkflowRecord>, Error> {
        let t = self.read();
        let upper = filter.before.unwrap_or(WorkflowId(u64::MAX));
        Ok(t.workflows
            .range(..upper)
            .rev()
            .map(|(_, w)| w)
            .filter(|w| filter.matches(&w.workflow, w.state()))
            .take(limit)
            .map(|w| WorkflowRecord::clone(w))
            .collect())
    }

    async fn expired_workflows(&self, cutoff: Timestamp, limit: usize) -> Result<Vec<WorkflowId>, Error> {
        let t = self.read();
        Ok(t.workflows_by_finish.range(..(cutoff, WorkflowId(0))).take(limit).map(|(_, id)| *id).collect())
    }

    async fn output(&self, attempt: AttemptId) -> Result<[Bytes; 2], Error> {
        Ok(self.output_of(attempt))
    }

    async fn expired(&self, now: Timestamp, retention: Duration, limit: usize) -> Result<Vec<Expired>, Error> {
        let t = self.read();
        let cutoff = Timestamp(now.0.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)));
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let due = t.by_finish.range(..(cutoff, RunId(0))).chain(t.by_expiry.range(..=(now, RunId(u64::MAX))));
        for (_, id) in due {
            if out.len() >= limit {
                break;
            }
            if let Some(record) = t.runs.get(id)
                && seen.insert(*id)
            {
                out.push(expired(record));
            }
        }
        Ok(out)
    }

    async fn stats(&self) -> Result<HistoryStats, Error> {
        let t = self.read();
        Ok(HistoryStats {
            runs: t.runs.len() as u64,
            jobs: t.jobs.len() as u64,
            workflows: t.workflows.len() as u64,
            output_bytes: t.output_bytes,
            disk_bytes: 0,
        })
    }
}
