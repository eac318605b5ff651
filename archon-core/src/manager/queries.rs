//! Read-side answers: the live state first, then the history (a run that leaves
//! the state is in the history before the state stops showing it, so reading in
//! that order never misses one; one seen in both is shown once). Output bytes are
//! read from the history, by attempt. Every job definition answered here has
//! its secret values redacted (`***`, see [`crate::model::Secret`]).

use std::collections::BTreeMap;

use super::Shared;
use crate::api::{
    ClusterStatus, DEFAULT_PAGE, JobDetail, JobQuery, JobSummary, MAX_PAGE, Page, RunDetail, RunQuery, RunSummary,
    ScheduleInfo,
};
use crate::cron::CronSchedule;
use crate::error::Error;
use crate::history::{JobFilter, RunFilter, merge_newest_first};
use crate::model::units::format_duration;
use crate::model::{Attempt, Job, JobId, JobRecord, Run, RunId, RunRecord, RunState, Schedule, Timestamp};
use crate::state::ClusterState;
use crate::store::StoreExt;

/// The error for an id that is neither live nor in the history: removed by the
/// retention policy if it was ever handed out, unknown otherwise.
pub(crate) fn gone(shared: &Shared, what: String, issued: bool) -> Error {
    if issued {
        Error::Removed {
            what,
            why: format!(
                "by the retention policy (finished runs are kept {}; a job's own retention or keep_last may remove \
                 them sooner)",
                format_duration(shared.config.history_retention)
            ),
        }
    } else {
        Error::NotFound(what)
    }
}

/// Fills each finished attempt's output from the history. (A state written by
/// Archon 0.1 still holds it inline until it is upgraded; that is kept.)
async fn with_output(shared: &Shared, mut attempts: Vec<Attempt>) -> Result<Vec<Attempt>, Error> {
    for attempt in &mut attempts {
        if let Some(result) = &mut attempt.result {
            let [stdout, stderr] = shared.history.output(attempt.id).await?;
            for (tail, kept) in [(&mut result.stdout, stdout), (&mut result.stderr, stderr)] {
                if !kept.is_empty() {
                    tail.data = kept;
                }
            }
        }
    }
    Ok(attempts)
}

pub(crate) async fn run_detail(shared: &Shared, id: RunId) -> Result<RunDetail, Error> {
    let (live, issued) = shared.store.query(|s| {
        let live = s.run(id).map(|run| {
            let job_name = s.job(run.job).map(|j| j.spec.name.clone()).unwrap_or_default();
            let attempts: Vec<Attempt> = run.attempts.iter().filter_map(|a| s.attempt(*a).cloned()).collect();
            (run.clone(), job_name, attempts)
        });
        (live, s.issued_run(id))
    });
    let (run, job_name, attempts) = match live {
        Some(live) => live,
        None => match crate::history::run_record(&*shared.history, id).await? {
            Some(record) => (record.run, record.job_name, record.attempts),
            None => return Err(gone(shared, id.to_string(), issued)),
        },
    };
    let attempts = with_output(shared, attempts).await?;
    Ok(RunDetail { run, job_name, attempts, pending_reason: None })
}

pub(crate) async fn job_detail(shared: &Shared, id: JobId) -> Result<JobDetail, Error> {
    let (live, issued, schedule) = shared.store.query(|s| {
        let live = s.job(id).map(|job| {
            let runs: Vec<Option<Run>> = job.runs.iter().map(|r| s.run(*r).cloned()).collect();
            (job.clone(), runs)
        });
        (live, s.issued_job(id), s.schedule(id).cloned())
    });
    let (job, runs) = match live {
        Some(live) => live,
        None => match crate::history::job_record(&*shared.history, id).await? {
            Some(record) => {
                let runs = vec![None; record.job.runs.len()];
                (record.job, runs)
            }
            None => return Err(gone(shared, id.to_string(), issued)),
        },
    };
    let missing: Vec<RunId> = job.runs.iter().zip(&runs).filter(|(_, r)| r.is_none()).map(|(id, _)| *id).collect();
    let mut finished: BTreeMap<RunId, Run> =
        shared.history.runs(&missing).await?.into_iter().map(|r| (r.id(), r.run)).collect();
    let runs = job.runs.iter().zip(runs).filter_map(|(id, live)| live.or_else(|| finished.remove(id))).collect();
    let schedule = schedule.map(|state| {
        let next = match (&state.paused, job.cancelled, job.spec.schedule.as_deref()) {
            (None, false, Some(spec)) => upcoming(spec, state.cursor.max(shared.clock.now()), NEXT_FIRES),
            _ => Vec::new(),
        };
        ScheduleInfo { state, next }
    });
    // Secret values reach only the worker running an attempt; readers see `***`.
    let mut job = job;
    job.redact_secrets();
    Ok(JobDetail { job, runs, schedule })
}

/// How many next fires `get` shows for a cron job.
const NEXT_FIRES: usize = 5;

/// The next `n` fires of `schedule` after `after` (none if it no longer parses).
fn upcoming(schedule: &Schedule, after: Timestamp, n: usize) -> Vec<Timestamp> {
    CronSchedule::parse(&schedule.cron, &schedule.timezone).map(|c| c.upcoming(after, n)).unwrap_or_default()
}

pub(super) fn page_size(limit: Option<u32>) -> usize {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize
}

/// A page of `limit` from `items` (which may hold one more, telling there is a next page).
pub(super) fn page<T, C>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> C) -> Page<T, C> {
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&key)
    } else {
        None
    };
    Page { items, next }
}

/// A live job's latest run's state, while that run is live too.
fn live_last_state(state: &ClusterState, job: &Job) -> Option<RunState> {
    job.runs.last().and_then(|r| state.run(*r)).map(|r| r.state)
}

/// Whether a live job passes `q`'s filters (not its paging): the kind and the
/// last state as its listing shows them, so a cron workflow (listed as
/// `workflow`) is of no task kind.
fn live_job_matches(state: &ClusterState, q: &JobQuery, job: &Job) -> bool {
    q.name.as_deref().is_none_or(|n| job.spec.name.contains(n))
        && q.kind.is_none_or(|k| job.spec.task.kind() == k && state.scheduled_workflow(job.id).is_none())
        && q.state.is_none_or(|s| live_last_state(state, job) == Some(s))
}

fn live_job_summary(state: &ClusterState, job: &Job, now: Timestamp) -> JobSummary {
    let mut summary = summary_of(job, live_last_state(state, job));
    if let Some(workflow) = state.scheduled_workflow(job.id) {
        // A cron workflow's job: what each fire starts.
        let names: Vec<&str> = workflow.nodes.iter().take(5).map(|n| n.name.as_str()).collect();
        let more = if workflow.nodes.len() > 5 { ", …" } else { "" };
        summary.kind = "workflow".into();
        summary.task = format!("{} jobs: {}{more}", workflow.nodes.len(), names.join(", "));
    }
    if let (Some(schedule), Some(spec)) = (state.schedule(job.id), job.spec.schedule.as_deref()) {
        summary.paused = schedule.paused.is_some();
        if !summary.paused && !job.cancelled {
            summary.next_fire = upcoming(spec, schedule.cursor.max(now), 1).first().copied();
        }
    }
    summary
}

fn summary_of(job: &Job, last_state: Option<RunState>) -> JobSummary {
    JobSummary {
        id: job.id,
        name: job.spec.name.clone(),
        kind: job.spec.task.kind().to_string(),
        task: job.spec.task.summary(),
        created_at: job.created_at,
        runs: u32::try_from(job.runs.len()).unwrap_or(u32::MAX),
        last_state,
        next_fire: None,
        paused: false,
    }
}

pub(crate) async fn list_jobs(shared: &Shared, q: &JobQuery) -> Result<Page<JobSummary, JobId>, Error> {
    let limit = page_size(q.limit);
    let now = shared.clock.now();
    let live: Vec<JobSummary> = shared.store.query(|s| {
        let upper = q.before.unwrap_or(JobId(u64::MAX));
        s.jobs()
            .range(..upper)
            .rev()
            .map(|(_, j)| j)
            .filter(|j| live_job_matches(s, q, j))
            .take(limit + 1)
            .map(|j| live_job_summary(s, j, now))
            .collect()
    });
    // A retired job's last run has ended: no retired job is in a live state.
    let retired: Vec<JobSummary> = if q.state.is_some_and(|s| !s.is_terminal()) {
        Vec::new()
    } else {
        let filter = JobFilter { name: q.name.clone(), before: q.before, kind: q.kind, state: q.state };
        shared
            .history
            .list_jobs(&filter, limit + 1)
            .await?
            .iter()
            .map(|r: &JobRecord| summary_of(&r.job, r.last_state))
            .collect()
    };
    let items = merge_newest_first(live, retired, |j| j.id, limit + 1);
    Ok(page(items, limit, |j| j.id))
}

fn live_run_summary(state: &ClusterState, run: &Run) -> RunSummary {
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

fn record_summary(record: &RunRecord) -> RunSummary {
    let run = &record.run;
    RunSummary {
        id: run.id,
        job: run.job,
        job_name: record.job_name.clone(),
        state: run.state,
        created_at: run.created_at,
        finished_at: run.finished_at,
        attempts: u32::try_from(run.attempts.len()).unwrap_or(u32::MAX),
        exit: record.attempts.last().and_then(|a| a.result.as_ref()).map(|r| r.status.clone()),
    }
}

fn live_matches(q: &RunQuery, run: &Run) -> bool {
    q.state.is_none_or(|s| s == run.state)
        && q.since.is_none_or(|t| run.created_at >= t)
        && q.until.is_none_or(|t| run.created_at < t)
}

pub(crate) async fn list_runs(shared: &Shared, q: &RunQuery) -> Result<Page<RunSummary, RunId>, Error> {
    let limit = page_size(q.limit);
    if let Some(job) = q.job {
        return job_runs(shared, job, q, limit).await;
    }
    let upper = q.before.unwrap_or(RunId(u64::MAX));
    let live: Vec<RunSummary> = shared.store.query(|s| {
        s.runs()
            .range(..upper)
            .rev()
            .map(|(_, r)| r)
            .take_while(|r| q.since.is_none_or(|t| r.created_at >= t))
            .filter(|r| live_matches(q, r))
            .take(limit + 1)
            .map(|r| live_run_summary(s, r))
            .collect()
    });
    let finished = if q.state.is_some_and(|s| !s.is_terminal()) {
        Vec::new()
    } else {
        let filter = RunFilter { state: q.state, before: q.before, since: q.since, until: q.until };
        shared.history.list_runs(&filter, limit + 1).await?.iter().map(record_summary).collect()
    };
    let items = merge_newest_first(live, finished, |r| r.id, limit + 1);
    Ok(page(items, limit, |r| r.id))
}

/// The runs of one job, newest first: its run list, each from the state or the history.
async fn job_runs(shared: &Shared, job: JobId, q: &RunQuery, limit: usize) -> Result<Page<RunSummary, RunId>, Error> {
    let upper = q.before.unwrap_or(RunId(u64::MAX));
    let (live, issued) = shared.store.query(|s| (s.job(job).map(|j| j.runs.clone()), s.issued_job(job)));
    let ids = match live {
        Some(ids) => ids,
        None => match crate::history::job_record(&*shared.history, job).await? {
            Some(record) => record.job.runs,
            None => return Err(gone(shared, job.to_string(), issued)),
        },
    };
    let mut items = Vec::new();
    let mut candidates = ids.into_iter().rev().filter(|r| *r < upper).peekable();
    while items.len() <= limit && candidates.peek().is_some() {
        let chunk: Vec<RunId> = candidates.by_ref().take(limit + 1).collect();
        let (mut found, missing): (BTreeMap<RunId, RunSummary>, Vec<RunId>) = shared.store.query(|s| {
            let mut found = BTreeMap::new();
            let mut missing = Vec::new();
            for id in &chunk {
                match s.run(*id) {
                    Some(run) => {
                        found.insert(*id, live_run_summary(s, run));
                    }
                    None => missing.push(*id),
                }
            }
            (found, missing)
        });
        for record in shared.history.runs(&missing).await? {
            found.entry(record.id()).or_insert_with(|| record_summary(&record));
        }
        for id in chunk {
            if let Some(summary) = found.remove(&id)
                && q.state.is_none_or(|s| s == summary.state)
                && q.since.is_none_or(|t| summary.created_at >= t)
                && q.until.is_none_or(|t| summary.created_at < t)
            {
                items.push(summary);
            }
        }
    }
    items.truncate(limit + 1);
    Ok(page(items, limit, |r| r.id))
}

pub(crate) fn status(state: &ClusterState) -> ClusterStatus {
    let mut workers = BTreeMap::new();
    for w in state.workers().values() {
        *workers.entry(w.state.to_string()).or_insert(0) += 1;
    }
    let runs = state.run_counts().iter().map(|(s, n)| (s.to_string(), *n)).collect();
    ClusterStatus { managers: Vec::new(), workers, jobs: state.job_count(), runs, queued: state.queued_len() as u64 }
}
