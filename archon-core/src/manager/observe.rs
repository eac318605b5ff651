//! What the manager records into its node's [`Metrics`](crate::metrics::Metrics).
//! The driver reads, before proposing a batch, what its reports and fires will
//! tell (the task kind, when the run was created, when the attempt started),
//! and records it once the outcomes say each command applied: a rejected
//! report or a failed proposal records nothing. Gauges of the state itself are
//! sampled at scrape time instead ([`sample`]).

use std::time::Duration;

use crate::metrics::{ClusterSample, WorkerSample};
use crate::model::{AttemptId, AttemptState, ResourceUsage, TaskKind};
use crate::state::{ClusterState, Command, Event, Outcome};
use crate::store::StoreExt;

use super::Shared;

/// What one command will record if it applies.
enum Observation {
    /// A run's first attempt started after waiting this long.
    Started(TaskKind, Duration),
    /// An attempt ended after running this long (and, when its start was not
    /// reported apart, its run's first attempt started after waiting this long),
    /// having used what its executor measured.
    Ended(TaskKind, Duration, Option<Duration>, Option<ResourceUsage>),
    /// Cron fires this late, and fires missed.
    Fired(Vec<Duration>, u64),
}

/// Whether `command` may record something once it applies: what it records is
/// read from the state before it is proposed.
pub(super) fn recorded(command: &Command) -> bool {
    match command {
        Command::StartAttempt { .. } | Command::FinishAttempt { .. } => true,
        Command::FireSchedule { source, .. } => *source == crate::model::FireSource::Cron,
        _ => false,
    }
}

/// The observations of one batch, by the index of their command.
pub(super) struct Observations(Vec<(usize, Observation)>);

impl Observations {
    /// Reads what `commands` will record, before they are proposed.
    /// `start_on_its_way` tells the attempts whose start report is in a batch
    /// proposed earlier and not yet applied: their finish records no wait, as
    /// the start does (nor does a finish whose start is in `commands`).
    pub(super) fn before(
        shared: &Shared,
        commands: &[Command],
        start_on_its_way: impl Fn(AttemptId) -> bool,
    ) -> Observations {
        if !commands.iter().any(recorded) {
            return Observations(Vec::new());
        }
        let starting: std::collections::HashSet<AttemptId> = commands
            .iter()
            .filter_map(|c| match c {
                Command::StartAttempt { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .collect();
        let started_apart = |a: AttemptId| starting.contains(&a) || start_on_its_way(a);
        shared.store.query(|state| {
            Observations(
                commands
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| recorded(c))
                    .filter_map(|(i, c)| observe(state, c, &started_apart).map(|o| (i, o)))
                    .collect(),
            )
        })
    }

    /// Records what applied: the observations of applied commands, dispatches
    /// and run completions from the events.
    pub(super) fn after(self, shared: &Shared, outcomes: &[Outcome]) {
        let metrics = shared.metrics.manager();
        for (i, observation) in self.0 {
            if outcomes.get(i).is_none_or(|o| o.rejection().is_some()) {
                continue;
            }
            match observation {
                Observation::Started(kind, waited) => metrics.started(kind, waited),
                Observation::Ended(kind, ran, waited, usage) => {
                    if let Some(waited) = waited {
                        metrics.started(kind, waited);
                    }
                    metrics.ran(kind, ran);
                    if let Some(usage) = usage {
                        metrics.used(kind, &usage);
                    }
                }
                Observation::Fired(late, missed) => {
                    late.into_iter().for_each(|l| metrics.fired(l));
                    if missed > 0 {
                        metrics.missed(missed);
                    }
                }
            }
        }
        let mut assigned = Vec::new();
        for event in outcomes.iter().flat_map(Outcome::events) {
            match event {
                Event::AttemptAssigned { run, .. } => assigned.push(*run),
                Event::RunFinished { state, .. } => metrics.completed(*state),
                _ => {}
            }
        }
        if !assigned.is_empty() {
            let kinds: Vec<TaskKind> = shared.store.query(|s| {
                assigned
                    .iter()
                    .filter_map(|r| s.run(*r).and_then(|r| s.job(r.job)))
                    .map(|j| j.spec.task.kind())
                    .collect()
            });
            kinds.into_iter().for_each(|k| metrics.dispatched(k));
        }
    }
}

/// What `command` will record if it applies, as the state stands before it.
fn observe(state: &ClusterState, command: &Command, started_apart: &dyn Fn(AttemptId) -> bool) -> Option<Observation> {
    match command {
        Command::StartAttempt { at, run, attempt } => {
            let run = state.run(*run)?;
            let a = state.attempt(*attempt)?;
            let first = run.attempts.first() == Some(attempt);
            if run.current_attempt != Some(*attempt) || a.state != AttemptState::Assigned || !first {
                return None;
            }
            Some(Observation::Started(state.job(run.job)?.spec.task.kind(), at.since(run.created_at)))
        }
        Command::FinishAttempt { at, run, attempt, result } => {
            let run = state.run(*run)?;
            let a = state.attempt(*attempt)?;
            if run.current_attempt != Some(*attempt) || !a.state.is_live() {
                return None;
            }
            let kind = state.job(run.job)?.spec.task.kind();
            // Without a start report the attempt starts as it finishes.
            let waited = (a.started_at.is_none() && run.attempts.first() == Some(attempt) && !started_apart(*attempt))
                .then(|| at.since(run.created_at));
            let ran = a.started_at.map_or(Duration::ZERO, |s| at.since(s));
            Some(Observation::Ended(kind, ran, waited, result.usage))
        }
        Command::FireSchedule { at, job, instants, missed, .. } => Some(Observation::Fired(
            super::cron::lateness(state, *job, instants, *at),
            missed.as_ref().map_or(0, |m| m.count),
        )),
        _ => None,
    }
}

/// The cluster's gauges as a scrape sees them now.
pub(super) fn sample(shared: &Shared) -> ClusterSample {
    let leading = shared.store.leadership().borrow().is_leader;
    let now = shared.clock.now();
    let live = shared.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    shared.store.query(|s| ClusterSample {
        leading,
        runs: s.run_counts(),
        workers: s
            .workers()
            .values()
            .map(|w| WorkerSample {
                name: w.name.clone(),
                state: w.state,
                cpu_capacity_millis: w.capacity.cpu_millis,
                cpu_allocated_millis: w.allocated.cpu_millis,
                memory_capacity_bytes: w.capacity.memory_bytes,
                memory_allocated_bytes: w.allocated.memory_bytes,
                queued: w.queued.len() as u64,
                heartbeat_age: live.get(&w.id).map(|l| now.since(l.last_seen)),
            })
            .collect(),
    })
}
