//! Workflows in the state machine: created all or none, children wait on their
//! parents, edge conditions decide whether a child runs or is upstream-failed,
//! cancelling a workflow cancels its unfinished jobs, and it leaves the live
//! state with its last job.

use super::*;
use crate::model::{Edge, EdgeCondition, WorkflowId, WorkflowNode, WorkflowRecord, WorkflowSpec, WorkflowState};

fn node(name: &str, after: &[(&str, EdgeCondition)]) -> WorkflowNode {
    WorkflowNode {
        name: name.into(),
        job: JobSpec::new(name, Task::Shell { command: "true".into() }),
        after: after.iter().map(|(p, when)| Edge { parent: (*p).into(), when: *when }).collect(),
    }
}

const OK: EdgeCondition = EdgeCondition::Success;

/// build → test → deploy, with `rollback` on test's failure and `notify` on
/// test's completion.
fn release() -> WorkflowSpec {
    WorkflowSpec {
        name: "release".into(),
        nodes: vec![
            node("build", &[]),
            node("test", &[("build", OK)]),
            node("deploy", &[("test", OK)]),
            node("rollback", &[("test", EdgeCondition::Failure)]),
            node("notify", &[("test", EdgeCondition::Completion)]),
        ],
        schedule: None,
    }
}

/// Submits `spec`; the workflow and its jobs by node name.
fn submit_workflow(s: &mut ClusterState, spec: WorkflowSpec) -> (WorkflowId, BTreeMap<String, JobId>) {
    let names: Vec<String> = spec.nodes.iter().map(|n| n.name.clone()).collect();
    match s.apply(&Command::SubmitWorkflow { at: Timestamp(1), spec: Arc::new(spec) }) {
        Outcome::Applied(events) => match &events[0] {
            Event::WorkflowAccepted { workflow, jobs } => {
                (*workflow, names.into_iter().zip(jobs.iter().copied()).collect())
            }
            e => panic!("unexpected {e:?}"),
        },
        Outcome::Rejected(r) => panic!("rejected: {r}"),
    }
}

fn run_of(s: &ClusterState, job: JobId) -> RunId {
    s.job(job).map(|j| j.runs[0]).unwrap_or_else(|| panic!("{job} is not live"))
}

fn state_of(s: &ClusterState, run: RunId) -> RunState {
    s.run(run).map_or_else(|| record(s, run).run.state, |r| r.state)
}

/// Runs `job`'s run on worker 1 to `code`.
fn finish(s: &mut ClusterState, job: JobId, code: i32) {
    let run = run_of(s, job);
    let out = s.apply(&Command::AssignAttempt { at: Timestamp(5), run, worker: WorkerId(1) });
    assert!(out.rejection().is_none(), "{out:?}");
    let attempt = s.run(run).unwrap().current_attempt.unwrap();
    let result = AttemptResult::status(ExitStatus::Exited { code });
    let out = s.apply(&Command::FinishAttempt { at: Timestamp(6), run, attempt, result });
    assert!(out.rejection().is_none(), "{out:?}");
}

fn with_worker() -> ClusterState {
    let mut s = ClusterState::new();
    s.apply(&worker_cmd("a", 64_000));
    s
}

#[test]
fn children_wait_for_their_parents_and_run_in_order_on_success() {
    let mut s = with_worker();
    let (wf, jobs) = submit_workflow(&mut s, release());
    assert_eq!(jobs.values().map(|j| j.0).collect::<BTreeSet<_>>(), (1..=5).collect(), "job ids in written order");
    let runs: BTreeMap<&str, RunId> = jobs.iter().map(|(n, j)| (n.as_str(), run_of(&s, *j))).collect();
    assert_eq!(s.run(runs["build"]).unwrap().state, RunState::Pending);
    for child in ["test", "deploy", "rollback", "notify"] {
        assert_eq!(s.run(runs[child]).unwrap().state, RunState::Waiting, "{child}");
    }
    assert_eq!(s.job(jobs["deploy"]).unwrap().spec.depends_on, vec![jobs["test"]]);
    finish(&mut s, jobs["build"], 0);
    assert_eq!(s.run(runs["test"]).unwrap().state, RunState::Pending);
    finish(&mut s, jobs["test"], 0);
    assert_eq!(s.run(runs["deploy"]).unwrap().state, RunState::Pending);
    assert_eq!(s.run(runs["notify"]).unwrap().state, RunState::Pending, "completion admits success");
    assert_eq!(state_of(&s, runs["rollback"]), RunState::UpstreamFailed, "the failure branch does not run");
    let reason = record(&s, runs["rollback"]).run.reason.clone().unwrap();
    assert!(reason.contains("ended succeeded") && reason.contains("on failure"), "{reason}");
    finish(&mut s, jobs["deploy"], 0);
    assert!(s.workflow(wf).is_some(), "notify is still live");
    s.take_history();
    finish(&mut s, jobs["notify"], 0);
    assert!(s.workflow(wf).is_none(), "a workflow leaves the live state with its last job");
    let record = ended(&mut s, wf);
    assert_eq!(record.state(), WorkflowState::Succeeded, "a branch not taken does not fail the workflow");
    assert_eq!(record.workflow.jobs.len(), 5);
    check_invariants(&s).unwrap();
}

/// The history record `s` handed over for `wf` as it left the live state.
fn ended(s: &mut ClusterState, wf: WorkflowId) -> WorkflowRecord {
    let records: Vec<WorkflowRecord> = s
        .take_history()
        .into_iter()
        .filter_map(|op| match op {
            crate::history::HistoryOp::Workflow(r) if r.id() == wf => Some(WorkflowRecord::clone(&r)),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 1, "one record for {wf}");
    records.into_iter().next().unwrap()
}

#[test]
fn a_failure_runs_the_failure_branch_and_upstream_fails_the_rest() {
    let mut s = with_worker();
    let (_, jobs) = submit_workflow(&mut s, release());
    let runs: BTreeMap<&str, RunId> = jobs.iter().map(|(n, j)| (n.as_str(), run_of(&s, *j))).collect();
    finish(&mut s, jobs["build"], 0);
    finish(&mut s, jobs["test"], 1);
    assert_eq!(state_of(&s, runs["deploy"]), RunState::UpstreamFailed);
    assert_eq!(s.run(runs["rollback"]).unwrap().state, RunState::Pending);
    assert_eq!(s.run(runs["notify"]).unwrap().state, RunState::Pending);
    // Upstream-failed propagates down a success chain.
    let mut s = with_worker();
    let chain = WorkflowSpec {
        name: "chain".into(),
        nodes: vec![
            node("a", &[]),
            node("b", &[("a", OK)]),
            node("c", &[("b", OK)]),
            node("d", &[("b", EdgeCondition::Failure)]),
        ],
        schedule: None,
    };
    let (wf, jobs) = submit_workflow(&mut s, chain);
    let runs: BTreeMap<&str, RunId> = jobs.iter().map(|(n, j)| (n.as_str(), run_of(&s, *j))).collect();
    finish(&mut s, jobs["a"], 2);
    assert_eq!(state_of(&s, runs["b"]), RunState::UpstreamFailed);
    assert_eq!(state_of(&s, runs["c"]), RunState::UpstreamFailed);
    assert_eq!(s.run(runs["d"]).unwrap().state, RunState::Pending, "failure admits an upstream-failed parent");
    finish(&mut s, jobs["d"], 0);
    assert!(s.workflow(wf).is_none());
    assert_eq!(ended(&mut s, wf).state(), WorkflowState::Failed, "a failed node fails the workflow");
    check_invariants(&s).unwrap();
}

#[test]
fn cancelling_a_workflow_cancels_its_unfinished_jobs() {
    let mut s = with_worker();
    let (wf, jobs) = submit_workflow(&mut s, release());
    let runs: BTreeMap<&str, RunId> = jobs.iter().map(|(n, j)| (n.as_str(), run_of(&s, *j))).collect();
    finish(&mut s, jobs["build"], 0);
    let out = s.apply(&Command::CancelWorkflow { at: Timestamp(7), workflow: wf });
    assert!(out.rejection().is_none(), "{out:?}");
    assert_eq!(state_of(&s, runs["build"]), RunState::Succeeded, "what ended stays as it ended");
    for name in ["test", "deploy", "rollback", "notify"] {
        assert_eq!(state_of(&s, runs[name]), RunState::Cancelled, "{name}");
    }
    assert!(s.workflow(wf).is_none());
    let record = ended(&mut s, wf);
    assert_eq!((record.state(), record.finished_at), (WorkflowState::Cancelled, Timestamp(7)));
    let again = s.apply(&Command::CancelWorkflow { at: Timestamp(8), workflow: wf });
    assert!(matches!(again, Outcome::Rejected(Rejection::UnknownWorkflow(w)) if w == wf), "{again:?}");
    check_invariants(&s).unwrap();
}

#[test]
fn a_bad_workflow_is_refused_whole_and_stores_nothing() {
    let mut s = with_worker();
    let before = s.clone();
    let mut cyclic = release();
    cyclic.nodes[0].after.push(Edge { parent: "deploy".into(), when: OK });
    let out = s.apply(&Command::SubmitWorkflow { at: Timestamp(1), spec: Arc::new(cyclic) });
    match out {
        Outcome::Rejected(Rejection::InvalidSpec(e)) => assert!(e.message.contains("cycle"), "{e}"),
        other => panic!("{other:?}"),
    }
    let mut huge = release();
    huge.nodes[2].job.resources.cpu_millis = 1_000_000;
    let out = s.apply(&Command::SubmitWorkflow { at: Timestamp(1), spec: Arc::new(huge) });
    match out {
        Outcome::Rejected(Rejection::Unschedulable { reason }) => assert!(reason.starts_with("deploy: "), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.jobs, before.jobs);
    assert_eq!(s.runs, before.runs);
    assert_eq!((s.next_job, s.next_run, s.next_workflow), (0, 0, 0));
}

#[test]
fn a_state_with_a_workflow_survives_a_snapshot_and_needs_format_2() {
    let mut s = with_worker();
    let (wf, jobs) = submit_workflow(&mut s, release());
    assert_eq!(s.format_needed(), 2);
    let back: ClusterState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back.workflow(wf), s.workflow(wf));
    assert_eq!(back.workflow_of(jobs["test"]), Some(wf));
    assert_eq!(back.format_needed(), 2);
}
