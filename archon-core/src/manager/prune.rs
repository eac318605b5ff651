//! The leader's housekeeping: which finished runs and retired jobs the retention
//! policy lets go now, and which idempotency keys are past their window, as one
//! `Command::Prune` that every replica applies alike. Runs go when they ended more
//! than `history_retention` ago, past their job's own `retention`, or beyond its
//! `keep_last` newest; a retired job goes with its last run; a finished
//! workflow's record when it ended more than `history_retention` ago.

use std::collections::BTreeSet;

use super::Shared;
use crate::error::Error;
use crate::history::Expired;
use crate::model::{JobId, RunId, Timestamp};
use crate::state::Command;
use crate::store::StoreExt;

/// The housekeeping due at `now`, if any, and whether more is due at once (a
/// full batch was found).
pub(crate) async fn due(shared: &Shared, now: Timestamp) -> Result<(Option<Command>, bool), Error> {
    let config = &shared.config;
    let limit = config.prune_batch.max(1);
    let mut expired = shared.history.expired(now, config.history_retention, limit).await?;
    let more = expired.len() >= limit;
    expired.extend(beyond_keep_last(shared, limit.saturating_sub(expired.len())).await?);
    let removing: BTreeSet<RunId> = expired.iter().map(|e| e.run).collect();
    let candidates: Vec<JobId> = {
        let jobs: BTreeSet<JobId> = expired.iter().map(|e| e.job).collect();
        shared.store.query(|s| jobs.into_iter().filter(|j| s.job(*j).is_none()).collect())
    };
    let mut jobs = Vec::new();
    for record in shared.history.jobs(&candidates).await? {
        let others: Vec<RunId> = record.job.runs.iter().filter(|r| !removing.contains(r)).copied().collect();
        if others.is_empty() || shared.history.runs(&others).await?.is_empty() {
            jobs.push(record.id());
        }
    }
    let workflows = shared
        .history
        .expired_workflows(Timestamp(now.0.saturating_sub(millis(config.history_retention))), limit)
        .await?;
    let more = more || workflows.len() >= limit;
    let cutoff = Timestamp(now.0.saturating_sub(millis(config.idempotency_window)));
    let keys_before = shared.store.query(|s| s.idempotency_keys().1).filter(|oldest| *oldest < cutoff).map(|_| cutoff);
    if expired.is_empty() && jobs.is_empty() && workflows.is_empty() && keys_before.is_none() {
        return Ok((None, false));
    }
    let runs = expired.into_iter().map(|e| (e.run, e.state)).collect();
    Ok((Some(Command::Prune { at: now, runs, jobs, workflows, keys_before }), more))
}

/// Finished runs of live jobs with `keep_last` beyond their newest that many.
async fn beyond_keep_last(shared: &Shared, limit: usize) -> Result<Vec<Expired>, Error> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let candidates: Vec<RunId> = shared.store.query(|s| {
        let mut out = Vec::new();
        for job in s.jobs().values() {
            let Some(keep) = job.spec.keep_last else { continue };
            let finished: Vec<RunId> = job.runs.iter().filter(|r| s.run(**r).is_none()).copied().collect();
            let excess = finished.len().saturating_sub(keep as usize);
            out.extend(finished.into_iter().take(excess));
        }
        out
    });
    let candidates: Vec<RunId> = candidates.into_iter().take(limit).collect();
    Ok(shared
        .history
        .runs(&candidates)
        .await?
        .into_iter()
        .map(|r| Expired { run: r.id(), state: r.run.state, job: r.run.job })
        .collect())
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
