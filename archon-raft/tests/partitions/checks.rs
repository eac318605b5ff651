//! The properties a scenario must keep, checked once the cluster has healed and
//! gone quiet. Every message names the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

use archon_core::model::{AttemptState, RunId, RunState};
use archon_core::state::{ClusterState, Event};
use archon_raft::storage;
use openraft::EntryPayload;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use tokio::time::Instant;

use crate::client::Report;
use crate::cluster::{Executions, LeaderLog};

/// Raft's election safety: no term has two leaders, whether a node saw itself
/// lead, a follower's committed vote named it, or a store let its manager propose.
pub(crate) fn one_leader_per_term(seed: u64, leaders: &LeaderLog) {
    for (term, seen) in leaders {
        assert!(
            seen.len() <= 1,
            "seed {seed}: term {term} had {} leaders: {} (archon-raft relies on openraft's `single-term-leader` \
             feature for Raft's one leader per term; check it is still enabled in the root Cargo.toml)",
            seen.len(),
            seen.iter().map(|(leader, who)| format!("node {leader} (seen by {who:?})")).collect::<Vec<_>>().join("; ")
        );
    }
}

/// Every acknowledged submit is on every replica, as the job the client was told.
pub(crate) fn acknowledged_submits_survive(seed: u64, report: &Report, states: &[(u64, Option<u64>, ClusterState)]) {
    assert!(report.refused.is_empty(), "seed {seed}: valid submits were refused: {:?}", report.refused);
    for (node, _, state) in states {
        for acked in &report.acked {
            let job = state.job(acked.job);
            assert!(
                job.is_some_and(|j| j.spec.idempotency_key.as_deref() == Some(acked.key.as_str())),
                "seed {seed}: acknowledged submit {} ({}) is not on node {node}: found {:?}",
                acked.key,
                acked.job,
                job.map(|j| (&j.spec.name, &j.spec.idempotency_key))
            );
        }
    }
}

/// Replicas that applied the same log hold equal states.
pub(crate) fn replicas_are_equal(seed: u64, states: &[(u64, Option<u64>, ClusterState)]) {
    let Some((first, first_applied, reference)) = states.first() else { return };
    for (node, applied, state) in &states[1..] {
        assert_eq!(applied, first_applied, "seed {seed}: nodes {first} and {node} applied different logs");
        assert!(
            state == reference,
            "seed {seed}: nodes {first} and {node} applied log index {applied:?} but their states differ: {}",
            difference(reference, state)
        );
    }
}

/// What differs between two states, briefly.
fn difference(a: &ClusterState, b: &ClusterState) -> String {
    if a.applied() != b.applied() {
        return format!("commands applied {} vs {}", a.applied(), b.applied());
    }
    if let Some(run) = a.runs().keys().chain(b.runs().keys()).find(|id| a.run(**id) != b.run(**id)) {
        return format!("{run}: {:?} vs {:?}", a.run(*run), b.run(*run));
    }
    if let Some(att) = a.attempts().keys().chain(b.attempts().keys()).find(|id| a.attempt(**id) != b.attempt(**id)) {
        return format!("{att}: {:?} vs {:?}", a.attempt(*att), b.attempt(*att));
    }
    if let Some(job) = a.jobs().keys().chain(b.jobs().keys()).find(|id| a.job(**id) != b.job(**id)) {
        return format!("{job}: {:?} vs {:?}", a.job(*job), b.job(*job));
    }
    if let Some(w) = a.workers().keys().chain(b.workers().keys()).find(|id| a.worker(**id) != b.worker(**id)) {
        return format!("{w}: {:?} vs {:?}", a.worker(*w), b.worker(*w));
    }
    "the derived queues or counters differ".into()
}

/// Every run ended exactly once, and well: each run succeeded (the work never
/// fails), through exactly one attempt whose success counted, its last one; the
/// count of finished runs matches (a run finished twice would count twice); and
/// no attempt (a fencing token) was executed twice or by a worker it was not
/// assigned to.
pub(crate) fn runs_end_once(seed: u64, state: &ClusterState, executions: &Executions) {
    let terminal = state.runs().values().filter(|r| r.state.is_terminal()).count() as u64;
    assert_eq!(
        state.finished_runs(),
        terminal,
        "seed {seed}: {} runs reached a terminal state but {terminal} are terminal: a run finished twice",
        state.finished_runs()
    );
    for run in state.runs().values() {
        assert_eq!(run.state, RunState::Succeeded, "seed {seed}: {} ended {} ({:?})", run.id, run.state, run.reason);
        let succeeded: Vec<_> = run
            .attempts
            .iter()
            .filter_map(|a| state.attempt(*a))
            .filter(|a| a.state == AttemptState::Finished && a.result.as_ref().is_some_and(|r| r.status.is_success()))
            .map(|a| a.id)
            .collect();
        assert_eq!(
            succeeded.len(),
            1,
            "seed {seed}: {} has {} successful attempts {succeeded:?} (attempts {:?})",
            run.id,
            succeeded.len(),
            run.attempts
        );
        assert_eq!(succeeded.last(), run.attempts.last(), "seed {seed}: {}'s success is not its last attempt", run.id);
        assert!(
            executions.contains_key(&succeeded[0]),
            "seed {seed}: {}'s successful attempt {} was never executed by a worker",
            run.id,
            succeeded[0]
        );
    }
    for (attempt, workers) in executions {
        assert_eq!(
            workers.len(),
            1,
            "seed {seed}: attempt {attempt} was executed {} times: {workers:?}",
            workers.len()
        );
        let assigned = state.attempt(*attempt).and_then(|a| state.worker(a.worker)).map(|w| w.name.as_str());
        assert_eq!(
            assigned,
            Some(workers[0].as_str()),
            "seed {seed}: attempt {attempt} ran on {} but was assigned to {assigned:?}",
            workers[0]
        );
    }
}

/// Replays node `id`'s durable log (in `data_dir`, closed) from its first entry up
/// to `applied` through a fresh state machine. The replay must give the state the
/// node held, and every run must finish exactly once in the log, not just in the
/// end state. Returns false when the node's log was compacted (nothing to replay).
pub(crate) async fn log_replays_to_the_state(
    seed: u64,
    id: u64,
    data_dir: &Path,
    applied: Option<u64>,
    expected: &ClusterState,
) -> bool {
    let path = data_dir.join("raft").join("raft.redb");
    // The stopped node's last tasks may hold the file a moment longer.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    let (mut log, _state_machine) = loop {
        match storage::open(&path, Arc::new(RwLock::new(ClusterState::new()))) {
            Ok(opened) => break opened,
            Err(e) => {
                assert!(Instant::now() < deadline, "seed {seed}: cannot reopen node {id}'s log: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let log_state = log.get_log_state().await.unwrap();
    if log_state.last_purged_log_id.is_some() {
        return false;
    }
    let Some(applied) = applied else { return true };
    let entries = log.try_get_log_entries(0..=applied).await.unwrap();
    assert_eq!(
        entries.last().map(|e| e.log_id.index),
        Some(applied),
        "seed {seed}: node {id}'s log ends before its applied index {applied}"
    );
    let mut replayed = ClusterState::new();
    let mut finished: BTreeMap<RunId, Vec<u64>> = BTreeMap::new();
    for entry in entries {
        if let EntryPayload::Normal(commands) = &entry.payload {
            for command in commands {
                for event in replayed.apply(command).events() {
                    if let Event::RunFinished { run, .. } = event {
                        finished.entry(*run).or_default().push(entry.log_id.index);
                    }
                }
            }
        }
    }
    assert!(
        replayed == *expected,
        "seed {seed}: replaying node {id}'s log does not give the state it held: {}",
        difference(expected, &replayed)
    );
    let twice: BTreeSet<_> = finished.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(twice.is_empty(), "seed {seed}: runs finished more than once in node {id}'s log (at indexes): {twice:?}");
    let terminal = expected.runs().values().filter(|r| r.state.is_terminal()).count();
    assert_eq!(finished.len(), terminal, "seed {seed}: node {id}'s log finishes {} runs", finished.len());
    true
}
