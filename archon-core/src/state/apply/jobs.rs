//! Submitting and cancelling jobs and runs.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::model::{Job, JobId, JobSpec, Misfit, Run, RunId, RunState, Timestamp, WorkerState};
use crate::state::{ClusterState, Event, KeyEntry, Outcome, ReadyKey, Rejection, transition};

/// Where one dependency of a submitted job stands.
enum Dependency {
    Succeeded,
    Failed,
    Unfinished,
}

impl ClusterState {
    pub(in crate::state) fn apply_submit_job(
        &mut self,
        at: Timestamp,
        spec: &Arc<JobSpec>,
        finished_deps: &[(JobId, RunState)],
    ) -> Outcome {
        if let Err(e) = spec.validate() {
            return Outcome::Rejected(Rejection::InvalidSpec(e));
        }
        if let Some(key) = &spec.idempotency_key
            && let Some(entry) = self.idempotency.get(key)
        {
            return Outcome::Applied(vec![Event::JobAccepted { job: entry.job, run: entry.run, duplicate: true }]);
        }
        if spec.schedule.is_some() {
            return Outcome::Rejected(Rejection::InvalidSpec(crate::model::SpecError::new(
                "schedule",
                "cron schedules are not supported by this version yet",
            )));
        }
        let mut unfinished = BTreeSet::new();
        let mut failed = None;
        for dep in &spec.depends_on {
            match self.dependency(*dep, finished_deps) {
                Ok(Dependency::Succeeded) => {}
                Ok(Dependency::Failed) => {
                    failed.get_or_insert(*dep);
                }
                Ok(Dependency::Unfinished) => {
                    unfinished.insert(*dep);
                }
                Err(rejection) => return Outcome::Rejected(rejection),
            }
        }
        if let Err(reason) = self.check_schedulable(spec) {
            return Outcome::Rejected(Rejection::Unschedulable { reason });
        }

        self.next_job += 1;
        let job_id = JobId(self.next_job);
        self.next_run += 1;
        let run_id = RunId(self.next_run);
        if let Some(key) = &spec.idempotency_key {
            self.idempotency.insert(key.clone(), KeyEntry { job: job_id, run: Some(run_id), at });
        }
        self.jobs.insert(
            job_id,
            Job { id: job_id, spec: spec.clone(), created_at: at, runs: vec![run_id], cancelled: false },
        );
        self.runs.insert(run_id, Run::waiting(run_id, job_id, at));
        *self.run_states.entry(RunState::Waiting).or_insert(0) += 1;
        let mut events = vec![Event::JobAccepted { job: job_id, run: Some(run_id), duplicate: false }];
        if let Some(dep) = failed {
            events.push(Event::RunCreated { run: run_id, job: job_id, state: RunState::Waiting });
            let reason = format!("dependency {dep} did not succeed");
            self.finish_run(at, run_id, RunState::Failed, Some(reason), &mut events);
        } else if unfinished.is_empty() {
            let priority = spec.priority;
            if let Some(run) = self.runs.get_mut(&run_id) {
                transition(&mut self.run_states, run, RunState::Pending);
            }
            self.ready.insert(ReadyKey::new(priority, run_id));
            events.push(Event::RunCreated { run: run_id, job: job_id, state: RunState::Pending });
        } else {
            for dep in &unfinished {
                self.waiting_on.entry(*dep).or_default().insert(run_id);
            }
            self.remaining_deps.insert(run_id, unfinished);
            events.push(Event::RunCreated { run: run_id, job: job_id, state: RunState::Waiting });
        }
        Outcome::Applied(events)
    }

    /// Where a dependency stands: a live job by its latest run; one that has left
    /// the live state by what the leader read from the history for the command.
    fn dependency(&self, dep: JobId, finished: &[(JobId, RunState)]) -> Result<Dependency, Rejection> {
        let ended =
            |state: RunState| if state == RunState::Succeeded { Dependency::Succeeded } else { Dependency::Failed };
        if let Some(job) = self.jobs.get(&dep) {
            let latest = job.runs.last().and_then(|r| self.runs.get(r)).map(|r| r.state);
            return Ok(match latest {
                Some(state) if state.is_terminal() => ended(state),
                Some(_) => Dependency::Unfinished,
                // Its runs all left the state: a job that will run again (cron).
                None => Dependency::Unfinished,
            });
        }
        match finished.iter().find(|(id, _)| *id == dep) {
            Some((_, state)) => Ok(ended(*state)),
            None if self.issued_job(dep) => Err(Rejection::DependencyNotLive(dep)),
            None => Err(Rejection::UnknownDependency(dep)),
        }
    }

    /// A job is unschedulable when workers are registered and none could ever run
    /// it. With no workers at all it is accepted and waits for one.
    pub(in crate::state) fn check_schedulable(&self, spec: &JobSpec) -> Result<(), String> {
        let mut candidates = self.workers.values().filter(|w| w.state != WorkerState::Left).peekable();
        if candidates.peek().is_none() {
            return Ok(());
        }
        let mut closest: Option<(u8, String)> = None;
        for worker in candidates {
            let rank = match worker.could_run(spec) {
                Ok(()) => return Ok(()),
                Err(Misfit::Capacity) => (
                    3,
                    format!(
                        "it requests {}, more than any worker has (largest: {} offers {})",
                        spec.resources, worker.name, worker.capacity
                    ),
                ),
                Err(m @ Misfit::Constraint(_)) => (2, format!("no worker matches: {} {m}", worker.name)),
                Err(m) => (1, format!("no worker can run it: {} {m}", worker.name)),
            };
            let better = match &closest {
                None => true,
                Some((r, _)) => rank.0 > *r,
            };
            if better {
                closest = Some(rank);
            }
        }
        Err(closest.map(|(_, reason)| reason).unwrap_or_default())
    }

    pub(in crate::state) fn apply_cancel_run(&mut self, at: Timestamp, run_id: RunId) -> Outcome {
        let Some(run) = self.runs.get(&run_id) else {
            return Outcome::Rejected(Rejection::UnknownRun(run_id));
        };
        if run.state.is_terminal() {
            return Outcome::Rejected(Rejection::InvalidTransition {
                run: run_id,
                state: run.state,
                action: "cancel".into(),
            });
        }
        let mut events = Vec::new();
        self.cancel_run(at, run_id, &mut events);
        Outcome::Applied(events)
    }

    pub(in crate::state) fn apply_cancel_job(&mut self, at: Timestamp, job_id: JobId) -> Outcome {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return Outcome::Rejected(Rejection::UnknownJob(job_id));
        };
        job.cancelled = true;
        let runs = job.runs.clone();
        self.end_schedule(job_id);
        let mut events = Vec::new();
        for run_id in runs {
            if self.runs.get(&run_id).is_some_and(|r| !r.state.is_terminal()) {
                self.cancel_run(at, run_id, &mut events);
            }
        }
        // A cron job with nothing running leaves now; one-off jobs as before.
        if self.schedules.contains_key(&job_id) {
            self.retire_job_if_done(job_id, None);
        }
        Outcome::Applied(events)
    }

    /// Cancels a non-terminal run: at once if nothing runs it, else by asking its worker.
    pub(in crate::state) fn cancel_run(&mut self, at: Timestamp, run_id: RunId, events: &mut Vec<Event>) {
        let Some(run) = self.runs.get_mut(&run_id) else { return };
        if run.state.is_active() {
            run.cancel_requested = true;
            if let Some(attempt) = run.current_attempt
                && let Some(worker) = self.attempts.get(&attempt).map(|a| a.worker)
            {
                events.push(Event::CancelRequested { run: run_id, attempt, worker });
            }
        } else {
            self.finish_run(at, run_id, RunState::Cancelled, Some("cancelled before it ran".into()), events);
        }
    }
}
