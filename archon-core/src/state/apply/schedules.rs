//! Cron jobs: submitting one, its fires under the overlap policy, pausing and
//! resuming, and what the end of one of its runs releases (a buffered fire).
//!
//! A fire is identified by (job, instant). The schedule's cursor is the newest
//! cron instant handled; a cron fire at or before it is refused, so an instant
//! fires once whoever proposes it and however often — a new leader, a slow
//! ticker, or two managers that both think they lead.

use std::sync::Arc;

use crate::model::{
    FireSource, Job, JobId, JobSpec, MAX_BUFFERED, MissedFires, OverlapPolicy, Paused, Run, RunId, RunState,
    ScheduleState, SpecError, Timestamp, WorkflowSpec,
};
use crate::state::{ClusterState, Event, FireResult, KeyEntry, Outcome, ReadyKey, Rejection, transition};

/// How many of a cron job's newest run ids its job record lists (all its runs
/// are in the history, by job).
pub(in crate::state) const RECENT_RUNS: usize = 100;

impl ClusterState {
    pub(in crate::state) fn apply_schedule_job(&mut self, at: Timestamp, spec: &Arc<JobSpec>) -> Outcome {
        if let Err(e) = spec.validate() {
            return Outcome::Rejected(Rejection::InvalidSpec(e));
        }
        if spec.schedule.is_none() {
            return Outcome::Rejected(Rejection::InvalidSpec(SpecError::new("schedule", "a cron job needs one")));
        }
        if !spec.depends_on.is_empty() {
            return Outcome::Rejected(Rejection::InvalidSpec(SpecError::new(
                "depends_on",
                "a cron job cannot depend on other jobs (declare a workflow with a schedule instead)",
            )));
        }
        if let Some(key) = &spec.idempotency_key
            && let Some(entry) = self.idempotency.get(key)
        {
            return Outcome::Applied(vec![Event::JobAccepted { job: entry.job, run: entry.run, duplicate: true }]);
        }
        if let Err(reason) = self.check_schedulable(spec) {
            return Outcome::Rejected(Rejection::Unschedulable { reason });
        }
        self.next_job += 1;
        let job = JobId(self.next_job);
        if let Some(key) = &spec.idempotency_key {
            self.idempotency.insert(key.clone(), KeyEntry { job, run: None, at });
        }
        self.jobs.insert(job, Job { id: job, spec: spec.clone(), created_at: at, runs: Vec::new(), cancelled: false });
        self.schedules.insert(job, ScheduleState { cursor: at, ..ScheduleState::default() });
        Outcome::Applied(vec![Event::JobAccepted { job, run: None, duplicate: false }])
    }

    pub(in crate::state) fn apply_fire_schedule(
        &mut self,
        at: Timestamp,
        job: JobId,
        instants: &[Timestamp],
        source: FireSource,
        overlap: Option<OverlapPolicy>,
        missed: Option<&MissedFires>,
    ) -> Outcome {
        let Some(policy) = self.schedule_policy(job) else {
            return Outcome::Rejected(self.not_scheduled(job));
        };
        let policy = overlap.unwrap_or(policy);
        let mut fresh: Vec<Timestamp> = instants.to_vec();
        fresh.sort_unstable();
        fresh.dedup();
        if source == FireSource::Cron {
            let Some(schedule) = self.schedules.get_mut(&job) else {
                return Outcome::Rejected(Rejection::NotScheduled(job));
            };
            if schedule.paused.is_some() {
                return Outcome::Rejected(Rejection::SchedulePaused(job));
            }
            let cursor = schedule.cursor;
            fresh.retain(|t| *t > cursor);
            let missed = missed.filter(|m| m.through > cursor);
            let newest = fresh.last().copied().into_iter().chain(missed.map(|m| m.through)).max();
            let Some(newest) = newest else {
                let instant = instants.iter().copied().max().unwrap_or(cursor);
                return Outcome::Rejected(Rejection::AlreadyFired { job, instant });
            };
            if let Some(m) = missed {
                schedule.missed.record(m.count, m.instants.iter().copied().filter(|t| *t > cursor));
            }
            schedule.cursor = newest;
        }
        let mut events = Vec::new();
        for instant in fresh {
            self.fire(at, job, instant, policy, &mut events);
        }
        Outcome::Applied(events)
    }

    pub(in crate::state) fn apply_pause_schedule(
        &mut self,
        at: Timestamp,
        job: JobId,
        paused: bool,
        note: Option<&str>,
    ) -> Outcome {
        if self.schedule_policy(job).is_none() {
            return Outcome::Rejected(self.not_scheduled(job));
        }
        let Some(schedule) = self.schedules.get_mut(&job) else {
            return Outcome::Rejected(Rejection::NotScheduled(job));
        };
        if paused {
            schedule.paused = Some(Paused { at, note: note.map(str::to_owned) });
        } else if schedule.paused.take().is_some() {
            // Carry on from now: the fires that fell in the pause do not run.
            schedule.cursor = schedule.cursor.max(at);
        }
        Outcome::Applied(Vec::new())
    }

    /// The overlap policy of a live, uncancelled cron job.
    fn schedule_policy(&self, job: JobId) -> Option<OverlapPolicy> {
        let j = self.jobs.get(&job).filter(|j| !j.cancelled && self.schedules.contains_key(&job))?;
        j.spec.schedule.as_ref().map(|s| s.overlap)
    }

    fn not_scheduled(&self, job: JobId) -> Rejection {
        if self.jobs.contains_key(&job) || self.issued_job(job) {
            Rejection::NotScheduled(job)
        } else {
            Rejection::UnknownJob(job)
        }
    }

    /// One fire at `instant`, under `policy` when a run of the schedule still goes.
    fn fire(&mut self, at: Timestamp, job: JobId, instant: Timestamp, policy: OverlapPolicy, events: &mut Vec<Event>) {
        let Some(schedule) = self.schedules.get_mut(&job) else { return };
        let result = if schedule.active.is_empty() || policy == OverlapPolicy::AllowAll {
            match self.start_scheduled_run(at, job, instant, events) {
                Some(run) => FireResult::Started(run),
                None => FireResult::Skipped,
            }
        } else {
            match policy {
                OverlapPolicy::BufferOne if schedule.buffered.is_empty() => {
                    schedule.buffered.push_back(instant);
                    FireResult::Buffered
                }
                OverlapPolicy::BufferAll if schedule.buffered.len() < MAX_BUFFERED => {
                    schedule.buffered.push_back(instant);
                    FireResult::Buffered
                }
                OverlapPolicy::CancelOther => {
                    schedule.buffered.clear();
                    let active = schedule.active.clone();
                    for run in active {
                        self.cancel_run(at, run, events);
                    }
                    // Runs that had not started ended at once: start now. Else
                    // this fire starts once the running ones have stopped.
                    match self.schedules.get_mut(&job) {
                        Some(s) if !s.active.is_empty() => {
                            s.buffered.push_back(instant);
                            FireResult::Buffered
                        }
                        _ => match self.start_scheduled_run(at, job, instant, events) {
                            Some(run) => FireResult::Started(run),
                            None => FireResult::Skipped,
                        },
                    }
                }
                _ => {
                    schedule.skipped.record(1, [instant]);
                    FireResult::Skipped
                }
            }
        };
        events.push(Event::ScheduleFired { job, instant, result });
    }

    /// Creates the run of a fire and queues it.
    fn start_scheduled_run(
        &mut self,
        at: Timestamp,
        job_id: JobId,
        instant: Timestamp,
        events: &mut Vec<Event>,
    ) -> Option<RunId> {
        if let Some(spec) = self.scheduled_workflows.get(&job_id).cloned() {
            return self.start_scheduled_instance(at, job_id, &spec, instant, events);
        }
        let job = self.jobs.get_mut(&job_id).filter(|j| !j.cancelled)?;
        self.next_run += 1;
        let run_id = RunId(self.next_run);
        job.runs.push(run_id);
        let priority = job.spec.priority;
        if job.runs.len() > RECENT_RUNS {
            let live = &self.runs;
            let excess = job.runs.len() - RECENT_RUNS;
            let mut dropped = 0;
            job.runs.retain(|r| {
                let drop = dropped < excess && !live.contains_key(r);
                dropped += usize::from(drop);
                !drop
            });
        }
        let mut run = Run { scheduled_for: Some(instant), ..Run::waiting(run_id, job_id, at) };
        *self.run_states.entry(RunState::Waiting).or_insert(0) += 1;
        transition(&mut self.run_states, &mut run, RunState::Pending);
        self.runs.insert(run_id, run);
        self.ready.insert(ReadyKey::new(priority, run_id));
        if let Some(schedule) = self.schedules.get_mut(&job_id) {
            schedule.active.push(run_id);
            schedule.fired.record(1, [instant]);
        }
        events.push(Event::RunCreated { run: run_id, job: job_id, state: RunState::Pending });
        Some(run_id)
    }

    /// A cron workflow's fire: a new instance, whose unfinished runs are the
    /// schedule's running ones. Returns the instance's first run.
    fn start_scheduled_instance(
        &mut self,
        at: Timestamp,
        job: JobId,
        spec: &Arc<WorkflowSpec>,
        instant: Timestamp,
        events: &mut Vec<Event>,
    ) -> Option<RunId> {
        if self.jobs.get(&job).is_none_or(|j| j.cancelled) {
            return None;
        }
        let runs = self.start_instance(at, spec, Some((job, instant)), events);
        let live: Vec<RunId> = runs.iter().copied().filter(|r| self.runs.contains_key(r)).collect();
        if let Some(schedule) = self.schedules.get_mut(&job) {
            schedule.active.extend(live);
            schedule.fired.record(1, [instant]);
        }
        runs.first().copied()
    }

    /// A run of a cron job ended: it is no longer active, and a buffered fire
    /// starts once none is.
    pub(in crate::state) fn release_schedule(
        &mut self,
        at: Timestamp,
        job: JobId,
        run: RunId,
        events: &mut Vec<Event>,
    ) {
        let Some(schedule) = self.schedules.get_mut(&job) else { return };
        schedule.active.retain(|r| *r != run);
        if !schedule.active.is_empty() {
            return;
        }
        if let Some(instant) = schedule.buffered.pop_front()
            && let Some(started) = self.start_scheduled_run(at, job, instant, events)
        {
            events.push(Event::ScheduleFired { job, instant, result: FireResult::Started(started) });
        }
    }

    /// A cancelled cron job fires no more: what it had buffered is dropped.
    pub(in crate::state) fn end_schedule(&mut self, job: JobId) {
        if let Some(schedule) = self.schedules.get_mut(&job) {
            schedule.buffered.clear();
        }
    }
}
