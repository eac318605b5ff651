//! Log events for runs as the leader applies what happens to them: one event per
//! state-machine event (or rejected report) about a run, with its ids as fields —
//! `run`, and `job`, `attempt`, `worker` where the event knows them. What an
//! operator acts on — a run that failed, timed out, was cancelled or will be
//! retried — is at info; the routine steps, a run that succeeded among them,
//! are at debug, so a busy cluster's log is not a line per job (a disabled
//! level costs a cached check per event, no formatting).

use crate::model::{AttemptId, ExitStatus, RunId, RunState};
use crate::state::{Event, FireResult, Outcome, Rejection};

/// Logs what one applied (or rejected) command did to runs.
pub(super) fn log(outcome: &Outcome) {
    let events = match outcome {
        Outcome::Applied(events) => events,
        Outcome::Rejected(rejection) => return log_rejection(rejection),
    };
    // The attempt that ended last in this outcome: the run's end says how it exited.
    let mut ended: Option<(RunId, AttemptId, &ExitStatus)> = None;
    for event in events {
        match event {
            Event::RunCreated { run, job, state } => {
                tracing::debug!(run = %run, job = %job, state = %state, "run created");
            }
            Event::RunQueued { run } => tracing::debug!(run = %run, "run queued for placement"),
            Event::AttemptAssigned { run, attempt, worker } => {
                tracing::debug!(run = %run, attempt = %attempt, worker = %worker, "attempt assigned");
            }
            Event::AttemptStarted { run, attempt } => {
                tracing::debug!(run = %run, attempt = %attempt, "attempt started on its worker");
            }
            Event::AttemptEnded { run, attempt, worker, status } => {
                ended = Some((*run, *attempt, status));
                tracing::debug!(
                    run = %run, attempt = %attempt, worker = %worker, status = %status, exit_code = status.code(),
                    "attempt ended"
                );
            }
            Event::RunRetrying { run, not_before } => match ended.filter(|(r, _, _)| r == run) {
                Some((_, attempt, status)) => tracing::info!(
                    run = %run, attempt = %attempt, status = %status, exit_code = status.code(),
                    not_before = %not_before, "attempt failed; the run will be retried"
                ),
                None => tracing::info!(run = %run, not_before = %not_before, "the run will be retried"),
            },
            // A run that succeeded is routine (debug); any other ending is news (info).
            Event::RunFinished { run, job, state } if *state == RunState::Succeeded => {
                match ended.filter(|(r, _, _)| r == run) {
                    Some((_, attempt, status)) => tracing::debug!(
                        run = %run, job = %job, attempt = %attempt, state = %state, status = %status,
                        exit_code = status.code(), "run succeeded"
                    ),
                    None => tracing::debug!(run = %run, job = %job, state = %state, "run succeeded"),
                }
            }
            Event::RunFinished { run, job, state } => match ended.filter(|(r, _, _)| r == run) {
                Some((_, attempt, status)) => tracing::info!(
                    run = %run, job = %job, attempt = %attempt, state = %state, status = %status,
                    exit_code = status.code(), "run finished"
                ),
                None => tracing::info!(run = %run, job = %job, state = %state, "run finished"),
            },
            Event::CancelRequested { run, attempt, worker } => {
                tracing::debug!(run = %run, attempt = %attempt, worker = %worker, "cancel sent to the worker");
            }
            Event::ScheduleFired { job, instant, result: FireResult::Started(run) } => {
                tracing::debug!(run = %run, job = %job, instant = %instant, "schedule fired");
            }
            _ => {}
        }
    }
}

/// Rejections of reports about a run (a stale attempt's start or end, a placement
/// that no longer fits) are normal after failovers and races: debug.
fn log_rejection(rejection: &Rejection) {
    match rejection {
        Rejection::StaleAttempt { run, attempt } => {
            tracing::debug!(run = %run, attempt = %attempt, "report of a stale attempt ignored");
        }
        Rejection::DoesNotFit { run, worker, reason } => {
            tracing::debug!(run = %run, worker = %worker, reason = %reason, "placement refused");
        }
        Rejection::InvalidTransition { run, state, action } => {
            tracing::debug!(run = %run, state = %state, action = %action, "refused: not in a state for it");
        }
        _ => {}
    }
}
