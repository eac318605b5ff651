//! The invariants, checked on a finished simulation's trace. Each check returns
//! the violations it found, one sentence each, naming what broke.
//!
//! The one thing to know: these read only the trace, so a check is as strong
//! as what the hosts record (see [`crate::trace`]).

use std::collections::{BTreeMap, BTreeSet};

use archon_core::model::{AttemptId, RunId};

use crate::trace::{Entry, Event};

/// Every violation of every invariant in `entries`.
pub fn violations(entries: &[Entry]) -> Vec<String> {
    let mut found = Vec::new();
    found.extend(one_leader_per_term(entries));
    found.extend(no_acknowledged_submit_lost(entries));
    found.extend(no_run_terminal_twice(entries));
    found.extend(one_live_attempt_per_run(entries));
    found.extend(replicas_converged(entries));
    found
}

/// No two managers lead in the same term.
pub fn one_leader_per_term(entries: &[Entry]) -> Vec<String> {
    let mut leaders: BTreeMap<u64, u64> = BTreeMap::new();
    let mut found = Vec::new();
    for entry in entries {
        if let Event::Leadership { node, term, leader: true } = &entry.event {
            match leaders.insert(*term, *node) {
                Some(other) if other != *node => found
                    .push(format!("term {term}: both manager {other} and manager {node} led (at {} ms)", entry.at_ms)),
                _ => {}
            }
        }
    }
    found
}

/// Every acknowledged submit's run is known to the cluster and reached a
/// terminal state once the faults were healed; a key acknowledged twice names
/// the same job and run.
pub fn no_acknowledged_submit_lost(entries: &[Entry]) -> Vec<String> {
    let mut acked: BTreeMap<&str, (u64, RunId)> = BTreeMap::new();
    let mut terminal: BTreeSet<&str> = BTreeSet::new();
    let mut found = Vec::new();
    for entry in entries {
        match &entry.event {
            Event::Acked { key, job, run, .. } => {
                if let Some((first_job, first_run)) = acked.insert(key, (job.0, *run))
                    && (first_job, first_run) != (job.0, *run)
                {
                    found.push(format!(
                        "key {key}: acknowledged as job {first_job} run {first_run:?}, then as job {} run {run:?}",
                        job.0
                    ));
                }
            }
            Event::Terminal { key, .. } => {
                terminal.insert(key);
            }
            Event::Lost { key, run } => found.push(format!("key {key}: acknowledged run {run:?} was lost")),
            _ => {}
        }
    }
    for (key, (_, run)) in &acked {
        if !terminal.contains(key) {
            found.push(format!("key {key}: acknowledged run {run:?} never reached a terminal state"));
        }
    }
    found
}

/// No run reaches a terminal state twice (across every leader's commits).
pub fn no_run_terminal_twice(entries: &[Entry]) -> Vec<String> {
    let mut finished: BTreeMap<RunId, (u64, u128)> = BTreeMap::new();
    let mut found = Vec::new();
    for entry in entries {
        if let Event::RunFinished { node, run, state } = &entry.event
            && let Some((first_node, first_at)) = finished.insert(*run, (*node, entry.at_ms))
        {
            found.push(format!(
                "run {run:?} finished twice: at {first_at} ms (manager {first_node}) and at {} ms (manager {node}, {state:?})",
                entry.at_ms
            ));
        }
    }
    found
}

/// Never two attempts of one run executing at once.
pub fn one_live_attempt_per_run(entries: &[Entry]) -> Vec<String> {
    let mut live: BTreeMap<RunId, BTreeSet<AttemptId>> = BTreeMap::new();
    let mut found = Vec::new();
    for entry in entries {
        match &entry.event {
            Event::AttemptStarted { worker, run, attempt } => {
                let attempts = live.entry(*run).or_default();
                if !attempts.is_empty() {
                    found.push(format!(
                        "run {run:?}: attempt {attempt:?} started on {worker} at {} ms while {attempts:?} still ran",
                        entry.at_ms
                    ));
                }
                attempts.insert(*attempt);
            }
            Event::AttemptStopped { run, attempt, .. } => {
                if let Some(attempts) = live.get_mut(run) {
                    attempts.remove(attempt);
                }
            }
            _ => {}
        }
    }
    found
}

/// The run ended with every replica on one state.
pub fn replicas_converged(entries: &[Entry]) -> Vec<String> {
    if entries.iter().any(|e| matches!(e.event, Event::Converged { .. })) {
        Vec::new()
    } else {
        vec!["the replicas never converged on one state".into()]
    }
}

#[cfg(test)]
mod tests {
    use archon_core::model::{JobId, RunState};

    use super::*;

    fn at(at_ms: u128, event: Event) -> Entry {
        Entry { at_ms, event }
    }

    #[test]
    fn two_leaders_of_one_term_are_reported() {
        let entries = [
            at(1, Event::Leadership { node: 1, term: 2, leader: true }),
            at(2, Event::Leadership { node: 2, term: 2, leader: true }),
        ];
        assert_eq!(one_leader_per_term(&entries).len(), 1);
        assert!(one_leader_per_term(&entries[..1]).is_empty());
    }

    #[test]
    fn an_acknowledged_run_never_terminal_is_reported() {
        let acked = at(1, Event::Acked { key: "k".into(), job: JobId(1), run: RunId(1), duplicate: false });
        let terminal = at(2, Event::Terminal { key: "k".into(), run: RunId(1), state: RunState::Succeeded });
        assert_eq!(no_acknowledged_submit_lost(std::slice::from_ref(&acked)).len(), 1);
        assert!(no_acknowledged_submit_lost(&[acked, terminal]).is_empty());
    }

    #[test]
    fn a_run_finished_twice_is_reported() {
        let done = |node| Event::RunFinished { node, run: RunId(3), state: RunState::Succeeded };
        assert_eq!(no_run_terminal_twice(&[at(1, done(1)), at(2, done(2))]).len(), 1);
    }

    #[test]
    fn overlapping_attempts_of_one_run_are_reported() {
        let start = |attempt| Event::AttemptStarted { worker: "w".into(), run: RunId(1), attempt: AttemptId(attempt) };
        let stop = |attempt| Event::AttemptStopped {
            worker: "w".into(),
            run: RunId(1),
            attempt: AttemptId(attempt),
            completed: false,
        };
        assert_eq!(one_live_attempt_per_run(&[at(1, start(1)), at(2, start(2))]).len(), 1);
        assert!(one_live_attempt_per_run(&[at(1, start(1)), at(2, stop(1)), at(3, start(2))]).is_empty());
    }
}
