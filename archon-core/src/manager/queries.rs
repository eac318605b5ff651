//! Read-side answers built from the applied state: details, pages, status.

use std::collections::BTreeMap;

use crate::api::{
    ClusterStatus, DEFAULT_PAGE, JobDetail, JobQuery, JobSummary, MAX_PAGE, Page, RunDetail, RunQuery, RunSummary,
};
use crate::error::Error;
use crate::model::{JobId, Run, RunId};
use crate::state::ClusterState;

pub(crate) fn job_detail(state: &ClusterState, id: JobId) -> Result<JobDetail, Error> {
    let job = state.job(id).ok_or_else(|| Error::NotFound(id.to_string()))?;
    let runs = job.runs.iter().filter_map(|r| state.run(*r).cloned()).collect();
    Ok(JobDetail { job: job.clone(), runs })
}

pub(crate) fn run_detail(state: &ClusterState, id: RunId) -> Result<RunDetail, Error> {
    let run = state.run(id).ok_or_else(|| Error::NotFound(id.to_string()))?;
    let job_name = state.job(run.job).map(|j| j.spec.name.clone()).unwrap_or_default();
    let attempts = run.attempts.iter().filter_map(|a| state.attempt(*a).cloned()).collect();
    Ok(RunDetail { run: run.clone(), job_name, attempts, pending_reason: None })
}

fn page_size(limit: Option<u32>) -> usize {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize
}

pub(crate) fn list_jobs(state: &ClusterState, q: &JobQuery) -> Page<JobSummary, JobId> {
    let limit = page_size(q.limit);
    let upper = q.before.unwrap_or(JobId(u64::MAX));
    let mut items = Vec::with_capacity(limit.min(256));
    let mut next = None;
    for job in state.jobs().range(..upper).rev().map(|(_, j)| j) {
        if let Some(name) = &q.name
            && !job.spec.name.contains(name.as_str())
        {
            continue;
        }
        if items.len() == limit {
            next = items.last().map(|j: &JobSummary| j.id);
            break;
        }
        items.push(JobSummary {
            id: job.id,
            name: job.spec.name.clone(),
            kind: job.spec.task.kind().to_string(),
            task: job.spec.task.summary(),
            created_at: job.created_at,
            runs: u32::try_from(job.runs.len()).unwrap_or(u32::MAX),
            last_state: job.runs.last().and_then(|r| state.run(*r)).map(|r| r.state),
        });
    }
    Page { items, next }
}

pub(crate) fn run_summary(state: &ClusterState, run: &Run) -> RunSummary {
    RunSummary {
        id: run.id,
        job: run.job,
        job_name: state.job(run.job).map(|j| j.spec.name.clone()).unwrap_or_default(),
        state: run.state,
        created_at: run.created_at,
        finished_at: run.finished_at,
        attempts: u32::try_from(run.attempts.len()).unwrap_or(u32::MAX),
        exit: run
            .attempts
            .last()
            .and_then(|a| state.attempt(*a))
            .and_then(|a| a.result.as_ref())
            .map(|r| r.status.clone()),
    }
}

pub(crate) fn list_runs(state: &ClusterState, q: &RunQuery) -> Result<Page<RunSummary, RunId>, Error> {
    let limit = page_size(q.limit);
    let upper = q.before.unwrap_or(RunId(u64::MAX));
    let candidates: Box<dyn Iterator<Item = &Run>> = match q.job {
        Some(job) => {
            let job = state.job(job).ok_or_else(|| Error::NotFound(job.to_string()))?;
            Box::new(job.runs.iter().rev().filter(move |r| **r < upper).filter_map(|r| state.run(*r)))
        }
        None => Box::new(state.runs().range(..upper).rev().map(|(_, r)| r)),
    };
    let mut items = Vec::with_capacity(limit.min(256));
    let mut next = None;
    for run in candidates {
        if q.state.is_some_and(|s| s != run.state) {
            continue;
        }
        if items.len() == limit {
            next = items.last().map(|r: &RunSummary| r.id);
            break;
        }
        items.push(run_summary(state, run));
    }
    Ok(Page { items, next })
}

pub(crate) fn status(state: &ClusterState) -> ClusterStatus {
    let mut workers = BTreeMap::new();
    for w in state.workers().values() {
        *workers.entry(w.state.to_string()).or_insert(0) += 1;
    }
    let runs = state.run_counts().iter().map(|(s, n)| (s.to_string(), *n)).collect();
    ClusterStatus {
        managers: Vec::new(),
        workers,
        jobs: state.jobs().len() as u64,
        runs,
        queued: state.queued_len() as u64,
    }
}
