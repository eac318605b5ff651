//! Placing, starting and finishing attempts. Every report is fenced: only the run's
//! current, live attempt may change it.

use bytes::Bytes;

use crate::history::HistoryOp;
use crate::model::{
    Attempt, AttemptId, AttemptResult, AttemptState, ExitStatus, Misfit, OutputStream, RunId, RunState, Timestamp,
    WorkerId,
};
use crate::state::{ClusterState, Event, Outcome, Rejection, mix, transition};

impl ClusterState {
    pub(in crate::state) fn apply_assign_attempt(
        &mut self,
        at: Timestamp,
        run_id: RunId,
        worker_id: WorkerId,
    ) -> Outcome {
        let Some(run) = self.runs.get(&run_id) else {
            return Outcome::Rejected(Rejection::UnknownRun(run_id));
        };
        let placeable = match run.state {
            RunState::Pending => true,
            RunState::Retrying => run.not_before.is_none_or(|t| t <= at),
            _ => false,
        };
        if !placeable {
            return Outcome::Rejected(Rejection::InvalidTransition {
                run: run_id,
                state: run.state,
                action: "assign".into(),
            });
        }
        let Some(job) = self.jobs.get(&run.job) else {
            return Outcome::Rejected(Rejection::UnknownJob(run.job));
        };
        let spec = job.spec.clone();
        let Some(worker) = self.workers.get(&worker_id) else {
            return Outcome::Rejected(Rejection::UnknownWorker(worker_id));
        };
        if !worker.accepts_work() {
            return Outcome::Rejected(Rejection::WorkerUnavailable { worker: worker_id, state: worker.state });
        }
        // It starts at once if nothing is queued ahead of it and it fits what is
        // free; else it may wait in the worker's queue if there is room there.
        let queued = match worker.fits_now(&spec, &worker.free()) {
            Ok(()) if worker.queued.is_empty() => false,
            Ok(()) | Err(Misfit::Busy) if worker.queue_room() > 0 => true,
            Ok(()) => {
                return Outcome::Rejected(Rejection::DoesNotFit {
                    run: run_id,
                    worker: worker_id,
                    reason: "has attempts queued ahead and no room left in its queue".into(),
                });
            }
            Err(misfit) => {
                let reason = match misfit {
                    Misfit::Busy if worker.queue > 0 => format!("{misfit}, and its queue is full"),
                    _ => misfit.to_string(),
                };
                return Outcome::Rejected(Rejection::DoesNotFit { run: run_id, worker: worker_id, reason });
            }
        };

        self.dequeue(run_id);
        self.next_attempt += 1;
        let attempt_id = AttemptId(self.next_attempt);
        self.attempts.insert(
            attempt_id,
            Attempt {
                id: attempt_id,
                run: run_id,
                worker: worker_id,
                state: AttemptState::Assigned,
                assigned_at: at,
                started_at: None,
                finished_at: None,
                result: None,
            },
        );
        if let Some(worker) = self.workers.get_mut(&worker_id) {
            if queued {
                worker.queued.insert(attempt_id);
            } else {
                worker.allocated.add(&spec.resources);
            }
            worker.running.insert(attempt_id);
        }
        if let Some(run) = self.runs.get_mut(&run_id) {
            transition(&mut self.run_states, run, RunState::Scheduled);
            run.not_before = None;
            run.current_attempt = Some(attempt_id);
            run.attempts.push(attempt_id);
        }
        Outcome::Applied(vec![Event::AttemptAssigned { run: run_id, attempt: attempt_id, worker: worker_id }])
    }

    /// Checks that `attempt` is the current, live attempt of `run`.
    fn fence(&self, run_id: RunId, attempt_id: AttemptId) -> Result<(), Rejection> {
        let Some(run) = self.runs.get(&run_id) else {
            return Err(Rejection::UnknownRun(run_id));
        };
        let live = self.attempts.get(&attempt_id).is_some_and(|a| a.run == run_id && a.state.is_live());
        if run.current_attempt != Some(attempt_id) || !live {
            return Err(Rejection::StaleAttempt { run: run_id, attempt: attempt_id });
        }
        Ok(())
    }

    pub(in crate::state) fn apply_start_attempt(
        &mut self,
        at: Timestamp,
        run_id: RunId,
        attempt_id: AttemptId,
    ) -> Outcome {
        if let Err(r) = self.fence(run_id, attempt_id) {
            return Outcome::Rejected(r);
        }
        let Some(attempt) = self.attempts.get_mut(&attempt_id) else {
            return Outcome::Rejected(Rejection::StaleAttempt { run: run_id, attempt: attempt_id });
        };
        if attempt.state != AttemptState::Assigned {
            let state = self.runs.get(&run_id).map_or(RunState::Running, |r| r.state);
            return Outcome::Rejected(Rejection::InvalidTransition {
                run: run_id,
                state,
                action: "start twice".into(),
            });
        }
        attempt.state = AttemptState::Running;
        attempt.started_at = Some(at);
        let worker_id = attempt.worker;
        self.dequeue_started(worker_id, run_id, attempt_id);
        if let Some(run) = self.runs.get_mut(&run_id) {
            transition(&mut self.run_states, run, RunState::Running);
        }
        Outcome::Applied(vec![Event::AttemptStarted { run: run_id, attempt: attempt_id }])
    }

    /// A queued attempt started (or is known to run): its request counts as
    /// allocated on its worker from now on.
    pub(in crate::state) fn dequeue_started(&mut self, worker_id: WorkerId, run_id: RunId, attempt_id: AttemptId) {
        let request = self.request_of(run_id);
        if let Some(worker) = self.workers.get_mut(&worker_id)
            && worker.queued.remove(&attempt_id)
        {
            worker.allocated.add(&request);
        }
    }

    /// What `run`'s job asks of a worker.
    pub(in crate::state) fn request_of(&self, run_id: RunId) -> crate::model::Resources {
        self.runs.get(&run_id).and_then(|r| self.jobs.get(&r.job)).map(|j| j.spec.resources.clone()).unwrap_or_default()
    }

    pub(in crate::state) fn apply_attempt_output(
        &mut self,
        _at: Timestamp,
        run_id: RunId,
        attempt_id: AttemptId,
        stream: OutputStream,
        offset: u64,
        data: &Bytes,
    ) -> Outcome {
        if let Err(r) = self.fence(run_id, attempt_id) {
            return Outcome::Rejected(r);
        }
        let written = self.output_written.entry(attempt_id).or_default();
        let stored = written[stream.index()];
        let end = offset.saturating_add(data.len() as u64);
        if end <= stored {
            // Sent again (a retried proposal): already stored.
            return Outcome::Applied(Vec::new());
        }
        if offset != stored {
            return Outcome::Rejected(Rejection::OutputGap { attempt: attempt_id, stream, offset, stored });
        }
        written[stream.index()] = end;
        self.outbox.0.push(HistoryOp::Output { run: run_id, attempt: attempt_id, stream, offset, data: data.clone() });
        Outcome::Applied(Vec::new())
    }

    pub(in crate::state) fn apply_finish_attempt(
        &mut self,
        at: Timestamp,
        run_id: RunId,
        attempt_id: AttemptId,
        result: &AttemptResult,
    ) -> Outcome {
        if let Err(r) = self.fence(run_id, attempt_id) {
            return Outcome::Rejected(r);
        }
        let mut events = Vec::with_capacity(2);
        if let Some(attempt) = self.attempts.get_mut(&attempt_id)
            && attempt.started_at.is_none()
        {
            attempt.started_at = Some(at);
        }
        let status = result.status.clone();
        self.end_attempt(at, attempt_id, result.clone(), AttemptState::Finished, &mut events);

        let Some(run) = self.runs.get_mut(&run_id) else {
            return Outcome::Applied(events);
        };
        run.current_attempt = None;
        let (job, retries_used, cancel_requested) = (run.job, run.retries_used, run.cancel_requested);
        let retry = self.jobs.get(&job).map(|j| j.spec.retry.clone()).unwrap_or_default();
        match status {
            s if s.is_success() => self.finish_run(at, run_id, RunState::Succeeded, None, &mut events),
            s if cancel_requested || s == ExitStatus::Cancelled => {
                self.finish_run(at, run_id, RunState::Cancelled, Some("cancelled".into()), &mut events);
            }
            ExitStatus::Lost => self.enqueue(run_id, &mut events),
            s if retries_used < retry.max_retries => {
                let not_before = at.plus(retry.delay(retries_used, mix(attempt_id.0)));
                if let Some(run) = self.runs.get_mut(&run_id) {
                    run.retries_used += 1;
                    transition(&mut self.run_states, run, RunState::Retrying);
                    run.not_before = Some(not_before);
                    run.reason = Some(format!("attempt {attempt_id} ended: {s}"));
                }
                self.delayed.insert((not_before, run_id));
                events.push(Event::RunRetrying { run: run_id, not_before });
            }
            ExitStatus::TimedOut => {
                let reason = Some(format!("attempt {attempt_id} timed out"));
                self.finish_run(at, run_id, RunState::TimedOut, reason, &mut events);
            }
            s => {
                let reason = Some(format!("attempt {attempt_id} ended: {s}"));
                self.finish_run(at, run_id, RunState::Failed, reason, &mut events);
            }
        }
        Outcome::Applied(events)
    }
}
