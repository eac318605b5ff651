//! Where the outcomes of a batch go once the store answered it: replies to
//! callers, registrations to the sessions waiting for them, assignments and
//! cancels to worker sessions, run endings to waiters and output followers;
//! and, if the proposal failed, the worker reports kept for the next turn.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::sessions::PendingAttach;
use super::{Driver, Input};
use crate::error::Error;
use crate::manager::{lifecycle, observe, parents};
use crate::model::{AttemptId, RunId, RunState, Timestamp, WorkerId, WorkerState};
use crate::state::{Event, Outcome, Rejection};
use crate::store::StoreExt;
use crate::transport::{Assignment, ManagerMessage};

/// Where the outcome of each proposed command goes.
pub(super) enum Route {
    None,
    /// Part of a caller's proposal: the caller's slot.
    Caller(usize),
    /// A worker's registration.
    Attach(usize),
    /// A worker's start report: a stale one gets its attempt killed.
    Start(WorkerId),
}

/// Where a caller's proposal is answered.
pub(super) type CallerReply = oneshot::Sender<Result<Vec<Outcome>, Error>>;

/// A batch proposed and not yet answered, with what routing its outcomes needs.
pub(super) struct Flight {
    pub(super) now: Timestamp,
    pub(super) routes: Vec<Route>,
    /// Each caller's reply and the outcomes of its commands, as they are routed.
    pub(super) callers: Vec<(CallerReply, Vec<Outcome>)>,
    pub(super) attaches: Vec<Option<PendingAttach>>,
    /// Copies of the worker reports in it, kept if the proposal fails.
    pub(super) reports: Vec<Input>,
    pub(super) observed: observe::Observations,
    /// It carries placements, the reaper's findings, retention or cron fires.
    pub(super) exclusive: bool,
    /// The attempts whose start reports it carries.
    pub(super) starts: Vec<AttemptId>,
}

/// A batch on its way, resolving to it and the store's answer.
pub(super) type Landing = BoxFuture<'static, (Flight, Result<Vec<Outcome>, Error>)>;

impl Driver {
    /// Routes the outcomes of a batch that was answered (batches land in the
    /// order they were proposed).
    pub(super) async fn land(&mut self, flight: Flight, result: Result<Vec<Outcome>, Error>) {
        let Flight { now, routes, mut callers, mut attaches, reports, observed, exclusive, starts } = flight;
        if exclusive {
            self.exclusive_in_flight = false;
        }
        for attempt in starts {
            if let Some(n) = self.starts_in_flight.get_mut(&attempt) {
                *n -= 1;
                if *n == 0 {
                    self.starts_in_flight.remove(&attempt);
                }
            }
        }
        let outcomes = match result {
            Ok(outcomes) => {
                self.failures = 0;
                outcomes
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                if self.failures == 1 || self.failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures = self.failures, "proposal failed; worker reports are kept");
                }
                self.carried.extend(reports);
                for (reply, _) in callers {
                    let _ = reply.send(Err(e.clone()));
                }
                for a in attaches.into_iter().flatten() {
                    let _ = a.reply.send(Err(e.clone()));
                }
                // Placements may have been lost with the batch; try again next turn,
                // after a pause that grows while the store stays down.
                self.dirty = true;
                let pause = std::time::Duration::from_millis(50 << self.failures.min(5));
                tokio::time::sleep(pause).await;
                return;
            }
        };

        observed.after(&self.shared, &outcomes);
        let mut reactions = Reactions::default();
        for (outcome, route) in outcomes.into_iter().zip(routes) {
            lifecycle::log(&outcome);
            reactions.observe(&outcome);
            match route {
                Route::None => {}
                Route::Caller(slot) => callers[slot].1.push(outcome),
                Route::Attach(slot) => {
                    if let Some(pending) = attaches[slot].take() {
                        self.finish_attach(pending, outcome, now);
                    }
                }
                Route::Start(worker) => {
                    if let Outcome::Rejected(Rejection::StaleAttempt { run, attempt }) = outcome {
                        self.send_to(worker, ManagerMessage::Cancel { run, attempt });
                    }
                }
            }
        }
        for (reply, outcomes) in callers {
            let _ = reply.send(Ok(outcomes));
        }
        self.react(reactions);
    }

    /// Does what outcomes asked (see [`Reactions`]).
    pub(super) fn react(&mut self, r: Reactions) {
        self.dirty |= r.dirty;
        if !r.assigned.is_empty() {
            self.shared.hub.open(r.assigned.iter().map(|(run, attempt, _)| (*run, *attempt)));
            // Ordered maps, so assignments go out in one order run after run (the
            // deterministic simulation replays a seed to the same trace).
            let mut by_worker: BTreeMap<WorkerId, Vec<Assignment>> = BTreeMap::new();
            let mut with_parents: Vec<(WorkerId, Assignment, parents::Parents)> = Vec::new();
            self.shared.store.query(|s| {
                for (run_id, attempt, worker) in &r.assigned {
                    let Some(run) = s.run(*run_id) else { continue };
                    // A later command of the same batch may have ended the attempt
                    // already (its worker re-registered without it): don't send it.
                    if run.current_attempt != Some(*attempt) {
                        continue;
                    }
                    let Some(job) = s.job(run.job) else { continue };
                    let assignment =
                        Assignment { job: job.id, run: *run_id, attempt: *attempt, spec: job.spec.clone() };
                    match parents::of(s, job.id) {
                        Some(parents) => with_parents.push((*worker, assignment, parents)),
                        None => by_worker.entry(*worker).or_default().push(assignment),
                    }
                }
            });
            // Workflow nodes with parents get their results, read from the
            // history off the driver's turn (one task per turn, the nodes'
            // documents read concurrently), then their assignments, batched
            // per worker as the others are.
            if !with_parents.is_empty() {
                let mut sessions: BTreeMap<WorkerId, mpsc::UnboundedSender<ManagerMessage>> = BTreeMap::new();
                for (worker, _, _) in &with_parents {
                    if let Some(s) = self.sessions.get(worker) {
                        sessions.insert(*worker, s.tx.clone());
                    }
                }
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    let attached =
                        futures::future::join_all(with_parents.into_iter().map(|(worker, mut assignment, parents)| {
                            let shared = shared.clone();
                            async move {
                                parents::attach(&shared, &mut assignment, &parents).await;
                                (worker, assignment)
                            }
                        }))
                        .await;
                    let mut batches: BTreeMap<WorkerId, Vec<Assignment>> = BTreeMap::new();
                    for (worker, assignment) in attached {
                        batches.entry(worker).or_default().push(assignment);
                    }
                    for (worker, batch) in batches {
                        if let Some(tx) = sessions.get(&worker) {
                            log_sent(worker, &batch);
                            let _ = tx.send(ManagerMessage::Assign(batch));
                        }
                    }
                });
            }
            for (worker, batch) in by_worker {
                log_sent(worker, &batch);
                self.send_to(worker, ManagerMessage::Assign(batch));
            }
        }
        for (run, attempt, worker) in r.cancels {
            self.send_to(worker, ManagerMessage::Cancel { run, attempt });
        }
        for worker in r.lost {
            if self.close_session(worker) {
                tracing::info!(%worker, "closing the lost worker's session");
            }
        }
        if !r.finished.is_empty() {
            self.shared.hub.close(&r.finished);
            let _ = self.shared.finished.send(r.finished.into());
        }
    }
}

/// What the outcomes of a turn, or of a caller's proposal, ask the driver to do.
#[derive(Default)]
pub(crate) struct Reactions {
    /// Placement may be possible now.
    dirty: bool,
    assigned: Vec<(RunId, AttemptId, WorkerId)>,
    cancels: Vec<(RunId, AttemptId, WorkerId)>,
    finished: Vec<RunId>,
    /// Workers just declared lost: their sessions close, so a worker that is in
    /// fact alive (it was cut off or frozen) registers again.
    lost: Vec<WorkerId>,
}

impl Reactions {
    /// What `outcomes` ask, each logged.
    pub(crate) fn of(outcomes: &[Outcome]) -> Reactions {
        let mut reactions = Reactions::default();
        for outcome in outcomes {
            lifecycle::log(outcome);
            reactions.observe(outcome);
        }
        reactions
    }

    /// Whether they ask nothing.
    pub(crate) fn is_empty(&self) -> bool {
        !self.dirty
            && self.assigned.is_empty()
            && self.cancels.is_empty()
            && self.finished.is_empty()
            && self.lost.is_empty()
    }

    fn observe(&mut self, outcome: &Outcome) {
        for event in outcome.events() {
            match event {
                Event::AttemptAssigned { run, attempt, worker } => self.assigned.push((*run, *attempt, *worker)),
                Event::CancelRequested { run, attempt, worker } => self.cancels.push((*run, *attempt, *worker)),
                Event::RunFinished { run, .. } => self.finished.push(*run),
                Event::WorkerStateChanged { worker, state: WorkerState::Lost } => {
                    self.lost.push(*worker);
                    self.dirty = true;
                }
                Event::RunCreated { state: RunState::Pending, .. }
                | Event::RunQueued { .. }
                | Event::AttemptEnded { .. }
                | Event::WorkerRegistered { .. }
                | Event::WorkerStateChanged { .. } => self.dirty = true,
                _ => {}
            }
        }
    }
}

/// One debug event per assignment handed to a worker's session.
fn log_sent(worker: WorkerId, batch: &[Assignment]) {
    for a in batch {
        tracing::debug!(
            run = %a.run, job = %a.job, attempt = %a.attempt, worker = %worker, "assignment sent to the worker"
        );
    }
}
