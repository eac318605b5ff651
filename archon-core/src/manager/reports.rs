//! Which reports a worker session may make about attempts: only about attempts
//! the state placed on its own worker, and never ending one as `Lost`, a status
//! only the manager assigns (when it declares a worker lost). The one thing to
//! know: an attempt's worker never changes after assignment (attempt ids are fresh
//! per assignment), so checking a report against the state as it stands before a
//! proposal is sound. A refused report is dropped before anything is proposed,
//! logged and counted (`archon_worker_reports_refused_total{reason}`); the session
//! stays open, so a refusal never costs an honest worker its running attempts.

use std::collections::HashMap;

use super::Shared;
use super::driver::Input;
use crate::model::{AttemptId, ExitStatus, RunId, WorkerId};
use crate::state::ClusterState;
use crate::store::StoreExt;

/// Attempts whose owner one session remembers; past this it forgets them all.
const OWNERS_KEPT: usize = 4096;

/// Why a report was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The attempt was placed on another worker.
    NotAssigned { owner: WorkerId },
    /// The state does not know the attempt: never issued, or its run was pruned.
    UnknownAttempt,
    /// A finish report saying `Lost`.
    LostStatus,
}

impl Refusal {
    /// The metric's `reason` label.
    fn reason(self) -> &'static str {
        match self {
            Refusal::NotAssigned { .. } => "not_assigned",
            Refusal::UnknownAttempt => "unknown_attempt",
            Refusal::LostStatus => "lost_status",
        }
    }
}

/// One report about an attempt, as the checks see it.
struct Report<'a> {
    /// What the worker sent (`started`, `output`, `finished`), for logs.
    kind: &'static str,
    worker: WorkerId,
    run: RunId,
    attempt: AttemptId,
    /// A finish report's status.
    status: Option<&'a ExitStatus>,
}

impl Report<'_> {
    fn of(input: &Input) -> Option<Report<'_>> {
        match input {
            Input::Started { worker, run, attempt } => {
                Some(Report { kind: "started", worker: *worker, run: *run, attempt: *attempt, status: None })
            }
            Input::Fenced { worker, run, attempt } => {
                Some(Report { kind: "fenced", worker: *worker, run: *run, attempt: *attempt, status: None })
            }
            Input::Finished { worker, run, attempt, result } => Some(Report {
                kind: "finished",
                worker: *worker,
                run: *run,
                attempt: *attempt,
                status: Some(&result.status),
            }),
            _ => None,
        }
    }

    /// Whether the report may be proposed, given the attempt's `owner` in the state.
    fn check(&self, owner: Option<WorkerId>) -> Result<(), Refusal> {
        match owner {
            None => Err(Refusal::UnknownAttempt),
            Some(owner) if owner != self.worker => Err(Refusal::NotAssigned { owner }),
            Some(_) if self.status == Some(&ExitStatus::Lost) => Err(Refusal::LostStatus),
            Some(_) => Ok(()),
        }
    }

    /// Counts the refusal; logs it unless `quiet` (a repeat), then at debug.
    fn refused(&self, shared: &Shared, refusal: Refusal, quiet: bool) {
        shared.metrics.manager().refused_report(refusal.reason());
        let Report { kind: report, worker, run, attempt, .. } = self;
        if quiet {
            tracing::debug!(%worker, %run, %attempt, report, reason = refusal.reason(), "worker report refused");
            return;
        }
        match refusal {
            Refusal::NotAssigned { owner } => tracing::warn!(
                %worker, %run, %attempt, %owner, report,
                "worker reported on an attempt placed on another worker; refused"
            ),
            Refusal::UnknownAttempt => tracing::info!(
                %worker, %run, %attempt, report,
                "worker reported on an attempt the cluster does not know (never issued, or its run was pruned); refused"
            ),
            Refusal::LostStatus => tracing::warn!(
                %worker, %run, %attempt, report,
                "worker reported its attempt as lost, which only the manager declares; refused (the attempt stays \
                 live until the worker reports a real end, re-registers without it or is itself lost)"
            ),
        }
    }
}

fn owner(state: &ClusterState, attempt: AttemptId) -> Option<WorkerId> {
    state.attempt(attempt).map(|a| a.worker)
}

/// Drops the start and finish reports among `inputs` that their sessions may not
/// make, in one read of the state. Returns the refused starts as (reporting
/// worker, run, attempt): like stale ones, they are killed on that worker.
pub(super) fn screen(shared: &Shared, inputs: &mut Vec<Input>) -> Vec<(WorkerId, RunId, AttemptId)> {
    if !inputs.iter().any(|i| Report::of(i).is_some()) {
        return Vec::new();
    }
    let verdicts: Vec<Result<(), Refusal>> = shared.store.query(|state| {
        inputs.iter().map(|i| Report::of(i).map_or(Ok(()), |r| r.check(owner(state, r.attempt)))).collect()
    });
    if verdicts.iter().all(Result::is_ok) {
        return Vec::new();
    }
    let mut starts = Vec::new();
    let mut unknown = 0usize;
    let mut verdicts = verdicts.into_iter();
    inputs.retain(|input| {
        let (Some(Err(refusal)), Some(report)) = (verdicts.next(), Report::of(input)) else { return true };
        // Most are a reconnected worker's recent results, sent again in case the
        // last manager never heard them: one line for the lot, each at debug.
        let quiet = refusal == Refusal::UnknownAttempt;
        unknown += usize::from(quiet);
        report.refused(shared, refusal, quiet);
        if let Input::Started { worker, run, attempt } = input {
            starts.push((*worker, *run, *attempt));
        }
        false
    });
    if unknown > 0 {
        tracing::info!(
            reports = unknown,
            "refused worker reports on attempts the cluster does not know (results sent again after a reconnect, \
             or of runs pruned)"
        );
    }
    starts
}

/// One session's check of its live output, which goes to followers without a
/// proposal: it remembers each attempt's owner, so the state is read once per
/// attempt rather than once per chunk, and logs a refusal once per attempt.
pub(super) struct OutputCheck {
    worker: WorkerId,
    /// The owner each attempt had when first seen; `None` while the state did not
    /// know it (read again next time).
    owners: HashMap<AttemptId, Option<WorkerId>>,
}

impl OutputCheck {
    pub(super) fn new(worker: WorkerId) -> OutputCheck {
        OutputCheck { worker, owners: HashMap::new() }
    }

    /// Whether a chunk of `attempt`'s output from this session may go to followers.
    pub(super) fn accepts(&mut self, shared: &Shared, run: RunId, attempt: AttemptId) -> bool {
        let known = self.owners.get(&attempt).copied();
        let owner = match known {
            Some(Some(owner)) => Some(owner),
            _ => shared.store.query(|s| owner(s, attempt)),
        };
        if known.is_none() && self.owners.len() >= OWNERS_KEPT {
            self.owners.clear();
        }
        self.owners.insert(attempt, owner);
        let report = Report { kind: "output", worker: self.worker, run, attempt, status: None };
        match report.check(owner) {
            Ok(()) => true,
            Err(refusal) => {
                report.refused(shared, refusal, known.is_some());
                false
            }
        }
    }
}
