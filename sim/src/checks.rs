//! The invariants, checked on a simulation's trace: the safety ones
//! ([`safety_violations`]) on the trace so far, again and again while it runs,
//! and all of them ([`violations`]) at its end. Each check returns the
//! violations it found, one sentence each, naming what broke.
//!
//! The one thing to know: these read only the trace, so a check is as strong
//! as what the hosts record (see [`crate::trace`]) — except
//! [`own_logs_replayed`], which reads each manager's disk at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use archon_core::model::{AttemptId, JobId, RunId};

use crate::manager::ManagerNode;
use crate::trace::{Entry, Event};
use crate::worker::SLOTS;

/// Every violation of an invariant that must hold at every instant, in the
/// trace so far: one leader per term, no run terminal twice, never two live
/// attempts of one run, no worker running more than it has room for.
pub fn safety_violations(entries: &[Entry]) -> Vec<String> {
    let mut found = Vec::new();
    found.extend(one_leader_per_term(entries));
    found.extend(no_run_terminal_twice(entries));
    found.extend(one_live_attempt_per_run(entries));
    found.extend(no_worker_over_committed(entries));
    found.extend(one_fire_per_instant(entries));
    found
}

/// Every violation of every invariant in a finished run's `entries`: the
/// safety ones, and every acknowledged submit terminal, the replicas converged.
pub fn violations(entries: &[Entry]) -> Vec<String> {
    let mut found = safety_violations(entries);
    found.extend(no_acknowledged_submit_lost(entries));
    found.extend(cron_and_workflows_ended(entries));
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

/// No worker ever ran more simulated jobs at once than it has room for
/// ([`SLOTS`]): the managers never placed past its capacity, counting what
/// it still ran, also across failovers.
pub fn no_worker_over_committed(entries: &[Entry]) -> Vec<String> {
    let mut live: BTreeMap<&str, BTreeSet<AttemptId>> = BTreeMap::new();
    let mut found = Vec::new();
    for entry in entries {
        match &entry.event {
            Event::AttemptStarted { worker, attempt, .. } => {
                let running = live.entry(worker).or_default();
                running.insert(*attempt);
                if running.len() as u64 > SLOTS {
                    found.push(format!(
                        "{worker} ran {} jobs at once at {} ms ({running:?}), with room for {SLOTS}",
                        running.len(),
                        entry.at_ms
                    ));
                }
            }
            Event::AttemptStopped { worker, attempt, .. } => {
                if let Some(running) = live.get_mut(worker.as_str()) {
                    running.remove(attempt);
                }
            }
            _ => {}
        }
    }
    found
}

/// No cron job started two runs for one instant, across every leader's commits.
pub fn one_fire_per_instant(entries: &[Entry]) -> Vec<String> {
    let mut fired: BTreeMap<(JobId, i64), (RunId, u64)> = BTreeMap::new();
    let mut found = Vec::new();
    for entry in entries {
        if let Event::Fired { node, job, instant, run } = &entry.event
            && let Some((first, first_node)) = fired.insert((*job, *instant), (*run, *node))
        {
            found.push(format!(
                "{job:?} fired twice for instant {instant}: run {first:?} (manager {first_node}) and run {run:?} \
                 (manager {node}, at {} ms)",
                entry.at_ms
            ));
        }
    }
    found
}

/// The acknowledged cron job fired and every run of it ended once it was
/// paused; every acknowledged workflow ended.
pub fn cron_and_workflows_ended(entries: &[Entry]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in entries {
        match &entry.event {
            Event::CronAcked { job } => {
                let settled = entries.iter().find_map(|e| match e.event {
                    Event::CronSettled { job: settled, runs } if settled == *job => Some(runs),
                    _ => None,
                });
                match settled {
                    None => found.push(format!("cron job {job:?}: its runs never all ended")),
                    Some(0) => found.push(format!("cron job {job:?} never fired")),
                    Some(_) => {}
                }
            }
            Event::WorkflowAcked { workflow } => {
                let ended = entries
                    .iter()
                    .any(|e| matches!(&e.event, Event::WorkflowEnded { workflow: w, .. } if w == workflow));
                if !ended {
                    found.push(format!("workflow {workflow:?} never ended"));
                }
            }
            _ => {}
        }
    }
    found
}

/// Each manager's own log, read from its disk and replayed (through the
/// state machine's own door, from its snapshot if it has one) up to the index
/// every replica applied, is sound and gives the state they converged on.
pub fn own_logs_replayed(nodes: &[Arc<ManagerNode>], entries: &[Entry]) -> Vec<String> {
    let converged = entries.iter().rev().find_map(|e| match &e.event {
        Event::Converged { index, digest } => Some((*index, digest.as_str())),
        _ => None,
    });
    // Without convergence there is nothing to compare with; replicas_converged says so.
    let Some((index, digest)) = converged else { return Vec::new() };
    let mut found = Vec::new();
    for node in nodes {
        let report = node
            .disk
            .log_copy()
            .and_then(|log| Ok((log, node.disk.snapshot_copy()?)))
            .map_err(|e| e.to_string())
            .and_then(|(log, snapshot)| {
                archon_raft::storage::verify_backend(log, snapshot, &node.name, index).map_err(|e| e.to_string())
            });
        match report {
            Err(e) => found.push(format!("{}'s log does not open: {e}", node.name)),
            Ok(report) => {
                found.extend(report.problems.iter().map(|p| format!("{}'s log: {p}", node.name)));
                match report.replayed {
                    Some(replayed) if replayed.digest == digest => {}
                    Some(replayed) => found.push(format!(
                        "{}'s own log replayed through {index:?} gives state {}, not {digest}, which every replica applied",
                        node.name, replayed.digest
                    )),
                    None => found.push(format!("{}'s own log could not be replayed", node.name)),
                }
            }
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
    use archon_core::model::RunState;

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
    fn a_worker_running_more_than_it_has_room_for_is_reported() {
        let start =
            |attempt| Event::AttemptStarted { worker: "w".into(), run: RunId(attempt), attempt: AttemptId(attempt) };
        let stop = |attempt| Event::AttemptStopped {
            worker: "w".into(),
            run: RunId(attempt),
            attempt: AttemptId(attempt),
            completed: true,
        };
        let full: Vec<Entry> = (1..=SLOTS).map(|a| at(u128::from(a), start(a))).collect();
        assert!(no_worker_over_committed(&full).is_empty());
        let mut over = full.clone();
        over.push(at(10, start(SLOTS + 1)));
        assert_eq!(no_worker_over_committed(&over).len(), 1);
        let mut freed = full;
        freed.push(at(9, stop(1)));
        freed.push(at(10, start(SLOTS + 1)));
        assert!(no_worker_over_committed(&freed).is_empty());
    }

    #[test]
    fn a_cron_instant_fired_twice_is_reported() {
        let fired = |run| Event::Fired { node: 1, job: JobId(4), instant: 2_000, run: RunId(run) };
        assert!(one_fire_per_instant(&[at(1, fired(1))]).is_empty());
        assert_eq!(one_fire_per_instant(&[at(1, fired(1)), at(2, fired(2))]).len(), 1);
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
