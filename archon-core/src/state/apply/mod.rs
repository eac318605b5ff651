//! The `apply_<variant>` functions, grouped by what they act on, and the few
//! transitions they share (finishing a run, requeueing one, releasing dependents).

mod attempts;
mod jobs;
mod prune;
mod schedules;
mod tokens;
mod workers;
mod workflows;

use crate::model::{AttemptResult, AttemptState, ExitStatus, JobId, RunId, RunState, Timestamp};

use super::{ClusterState, Event, ReadyKey, transition};

impl ClusterState {
    /// Puts a run in the ready queue as Pending.
    fn enqueue(&mut self, run_id: RunId, events: &mut Vec<Event>) {
        let Some(run) = self.runs.get_mut(&run_id) else { return };
        let priority = self.jobs.get(&run.job).map_or(0, |j| j.spec.priority);
        transition(&mut self.run_states, run, RunState::Pending);
        run.not_before = None;
        self.ready.insert(ReadyKey::new(priority, run_id));
        events.push(Event::RunQueued { run: run_id });
    }

    /// Takes a run out of every queue.
    fn dequeue(&mut self, run_id: RunId) {
        let Some(run) = self.runs.get(&run_id) else { return };
        match run.state {
            RunState::Pending => {
                let priority = self.jobs.get(&run.job).map_or(0, |j| j.spec.priority);
                self.ready.remove(&ReadyKey::new(priority, run_id));
            }
            RunState::Retrying => {
                if let Some(t) = run.not_before {
                    self.delayed.remove(&(t, run_id));
                }
            }
            RunState::Waiting => self.stop_waiting(run_id),
            _ => {}
        }
    }

    /// Forgets what a waiting run waits on.
    fn stop_waiting(&mut self, run_id: RunId) {
        for dep in self.remaining_deps.remove(&run_id).unwrap_or_default() {
            if let Some(set) = self.waiting_on.get_mut(&dep) {
                set.remove(&run_id);
                if set.is_empty() {
                    self.waiting_on.remove(&dep);
                }
            }
        }
    }

    /// Moves a run to a terminal state, settles the runs that wait on its job, and
    /// hands it to the history.
    fn finish_run(
        &mut self,
        at: Timestamp,
        run_id: RunId,
        state: RunState,
        reason: Option<String>,
        events: &mut Vec<Event>,
    ) {
        debug_assert!(state.is_terminal());
        self.dequeue(run_id);
        let Some(run) = self.runs.get_mut(&run_id) else { return };
        transition(&mut self.run_states, run, state);
        run.finished_at = Some(at);
        self.finished_runs += 1;
        *self.ended.entry(state).or_insert(0) += 1;
        run.not_before = None;
        if reason.is_some() {
            run.reason = reason;
        }
        let job = run.job;
        events.push(Event::RunFinished { run: run_id, job, state });
        self.settle_dependents(at, job, state, events);
        // A cron job's run, or a run of a cron workflow's instance.
        let scheduled = self.fired_by(job).unwrap_or(job);
        self.release_schedule(at, scheduled, run_id, events);
        self.retire_run(run_id);
    }

    /// Settles the runs waiting on `job` after one of its runs ended in `state`:
    /// a workflow edge's condition admits the end (one dependency fewer) or
    /// not (the child is upstream-failed); for plain `depends_on`, a failure
    /// fails them and a success leaves them one dependency fewer.
    fn settle_dependents(&mut self, at: Timestamp, job: JobId, state: RunState, events: &mut Vec<Event>) {
        let Some(waiting) = self.waiting_on.remove(&job) else { return };
        for run_id in waiting {
            if self.runs.get(&run_id).is_none_or(|r| r.state != RunState::Waiting) {
                continue;
            }
            let child = self.runs.get(&run_id).map(|r| r.job);
            match child.and_then(|c| self.edge_condition(job, c)) {
                // A workflow edge: its condition decides.
                Some(condition) if !condition.admits(state) => {
                    self.stop_waiting(run_id);
                    let reason = format!("{job} ended {state}; this job runs after it on {}", condition.as_str());
                    self.finish_run(at, run_id, RunState::UpstreamFailed, Some(reason), events);
                    continue;
                }
                Some(_) => {}
                None if state != RunState::Succeeded => {
                    self.stop_waiting(run_id);
                    let reason = format!("dependency {job} did not succeed");
                    self.finish_run(at, run_id, RunState::Failed, Some(reason), events);
                    continue;
                }
                None => {}
            }
            let met = match self.remaining_deps.get_mut(&run_id) {
                Some(deps) => {
                    deps.remove(&job);
                    deps.is_empty()
                }
                None => true,
            };
            if met {
                self.remaining_deps.remove(&run_id);
                self.enqueue(run_id, events);
            }
        }
    }

    /// Ends a live attempt with `result`, releasing its resources on its worker.
    fn end_attempt(
        &mut self,
        at: Timestamp,
        attempt_id: crate::model::AttemptId,
        result: AttemptResult,
        state: AttemptState,
        events: &mut Vec<Event>,
    ) {
        let Some(attempt) = self.attempts.get(&attempt_id) else { return };
        if !attempt.state.is_live() {
            return;
        }
        let run_id = attempt.run;
        let result = if self.is_legacy() {
            self.output_written.remove(&attempt_id);
            result
        } else {
            self.store_output(run_id, attempt_id, &result)
        };
        let Some(attempt) = self.attempts.get_mut(&attempt_id) else { return };
        attempt.state = state;
        attempt.finished_at = Some(at);
        let status = result.status.clone();
        attempt.result = Some(result);
        let worker_id = attempt.worker;
        let request = self.request_of(run_id);
        if let Some(worker) = self.workers.get_mut(&worker_id) {
            // A queued attempt never held its request.
            if !worker.queued.remove(&attempt_id) {
                worker.allocated.sub(&request);
            }
            worker.running.remove(&attempt_id);
        }
        events.push(Event::AttemptEnded { run: run_id, attempt: attempt_id, worker: worker_id, status });
    }

    /// Ends a live attempt because its worker is gone, and puts its run back in the
    /// queue without spending a retry (or cancels it if a cancel was pending).
    fn lose_attempt(&mut self, at: Timestamp, attempt_id: crate::model::AttemptId, events: &mut Vec<Event>) {
        self.end_attempt(at, attempt_id, AttemptResult::status(ExitStatus::Lost), AttemptState::Lost, events);
        let Some(run_id) = self.attempts.get(&attempt_id).map(|a| a.run) else { return };
        let Some(run) = self.runs.get_mut(&run_id) else { return };
        if run.current_attempt != Some(attempt_id) || !run.state.is_active() {
            return;
        }
        run.current_attempt = None;
        if run.cancel_requested {
            self.finish_run(at, run_id, RunState::Cancelled, Some("cancelled; its worker was lost".into()), events);
        } else {
            self.enqueue(run_id, events);
        }
    }
}
