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
use crate::cluster::{Executions, LeaderLog, View};

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

/// Every acknowledged submit is on every replica, as the job the client was told:
/// live, or in its history.
pub(crate) fn acknowledged_submits_survive(seed: u64, report: &Report, views: &[View]) {
    assert!(report.refused.is_empty(), "seed {seed}: valid submits were refused: {:?}", report.refused);
    for view in views {
        for acked in &report.acked {
            let spec =
                view.state.job(acked.job).map(|j| &j.spec).or_else(|| view.jobs.get(&acked.job).map(|r| &r.job.spec));
            assert!(
                spec.is_some_and(|s| s.idempotency_key.as_deref() == Some(acked.key.as_str())),
                "seed {seed}: acknowledged submit {} ({}) is not on node {}: found {:?}",
                acked.key,
                acked.job,
                view.id,
                spec.map(|s| (&s.name, &s.idempotency_key))
            );
        }
    }
}

/// Replicas that applied the same log hold equal states and equal histories.
pub(crate) fn replicas_are_equal(seed: u64, views: &[View]) {
    let Some(reference) = views.first() else { return };
    for view in &views[1..] {
        let (first, node) = (reference.id, view.id);
        assert_eq!(view.applied, reference.applied, "seed {seed}: nodes {first} and {node} applied different logs");
        assert!(
            view.state == reference.state,
            "seed {seed}: nodes {first} and {node} applied log index {:?} but their states differ: {}",
            view.applied,
            difference(&reference.state, &view.state)
        );
        let differing =
            reference.runs.keys().chain(view.runs.keys()).find(|r| reference.runs.get(r) != view.runs.get(r));
        assert!(differing.is_none(), "seed {seed}: nodes {first} and {node} keep {differing:?} differently");
        let differing =
            reference.jobs.keys().chain(view.jobs.keys()).find(|j| reference.jobs.get(j) != view.jobs.get(j));
        assert!(differing.is_none(), "seed {seed}: nodes {first} and {node} keep {differing:?} differently");
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
pub(crate) fn runs_end_once(seed: u64, view: &View, executions: &Executions) {
    let state = &view.state;
    assert!(state.runs().is_empty(), "seed {seed}: runs still live: {:?}", state.runs().keys().collect::<Vec<_>>());
    assert_eq!(
        state.finished_runs(),
        view.runs.len() as u64,
        "seed {seed}: {} runs reached a terminal state but {} are in the history: a run finished twice",
        state.finished_runs(),
        view.runs.len()
    );
    let mut attempts = BTreeMap::new();
    for record in view.runs.values() {
        let run = &record.run;
        assert_eq!(run.state, RunState::Succeeded, "seed {seed}: {} ended {} ({:?})", run.id, run.state, run.reason);
        let succeeded: Vec<_> = record
            .attempts
            .iter()
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
        attempts.extend(record.attempts.iter().map(|a| (a.id, a.clone())));
    }
    for (attempt, workers) in executions {
        assert_eq!(
            workers.len(),
            1,
            "seed {seed}: attempt {attempt} was executed {} times: {workers:?}",
            workers.len()
        );
        let assigned = attempts.get(attempt).and_then(|a| state.worker(a.worker)).map(|w| w.name.as_str());
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
pub(crate) async fn log_replays_to_the_state(seed: u64, data_dir: &Path, view: &View) -> bool {
    let (id, applied, expected) = (view.id, view.applied, &view.state);
    let path = data_dir.join("raft").join("raft.redb");
    // The stopped node's last tasks may hold the file a moment longer.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    let (mut log, _state_machine) = loop {
        match storage::open(&path, Arc::new(RwLock::new(ClusterState::new()))).map(storage::Storage::into_parts) {
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
        if let EntryPayload::Normal(proposal) = &entry.payload {
            if proposal.format > 0 {
                replayed.upgrade();
            }
            for command in proposal.commands().unwrap() {
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
    assert_eq!(finished.len(), view.runs.len(), "seed {seed}: node {id}'s log finishes {} runs", finished.len());
    true
}
