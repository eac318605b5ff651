//! The history conformance suite: every [`Store`] runs [`run_all`] (with the
//! same harness as the store suite). It drives a store with a random command
//! sequence — finished runs, output inline and in chunks, retries, dependencies,
//! pruning — and checks that every read of [`Store::history`] answers exactly
//! what [`MemHistory`] fed by the state machine answers: records, output,
//! listings by state, by time and by page, retention candidates, counts. And that
//! a run leaving the state is never missing to a reader meanwhile.
//!
//! The sequence is seeded: the seed is printed, and `ARCHON_TEST_SEED=<seed>`
//! replays it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use super::commands::{step, to_command};
use super::store_suite::StoreHarness;
use crate::history::{Expired, History, JobFilter, MemHistory, RunFilter, WorkflowFilter};
use crate::model::{
    AttemptId, AttemptResult, ExitStatus, JobId, JobSpec, Resources, RunId, RunState, Task, TaskKind, Timestamp,
    WorkflowId, WorkflowState,
};
use crate::state::{ClusterState, Command};
use crate::store::{Store, StoreExt};

/// Runs every check, each on a fresh store.
pub async fn run_all(harness: &dyn StoreHarness) {
    the_history_answers_what_the_state_machine_handed_over(harness.open().await).await;
    a_run_leaving_the_state_is_never_missing_to_a_reader(harness.open().await).await;
    retired_jobs_are_listed_by_task_kind_and_last_state(harness.open().await).await;
}

fn seed() -> u64 {
    let seed = std::env::var("ARCHON_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(11, |d| d.as_nanos() as u64)
    });
    eprintln!("history suite seed: {seed} (replay with ARCHON_TEST_SEED={seed})");
    seed
}

/// Proposes a seeded random sequence to `store` while a reference state and
/// history take the same commands, then compares every read.
pub async fn the_history_answers_what_the_state_machine_handed_over(store: Arc<dyn Store>) {
    let seed = seed();
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let steps = proptest::collection::vec((step(), 0..400u16), 400..500)
        .new_tree(&mut runner)
        .map(|tree| tree.current())
        .unwrap_or_default();
    let mut reference = ClusterState::new();
    let history = MemHistory::new();
    let mut at = Timestamp(1_000_000);
    // A scripted start, so every kind of record is there whatever the seed; then
    // the random steps.
    for batch in prelude(at) {
        let want: Vec<_> = batch.iter().map(|c| reference.apply(c)).collect();
        history.apply(&reference.take_history());
        let got = store.propose(batch).await.expect("history suite: propose the prelude");
        assert_eq!(got, want, "history suite: prelude outcomes");
    }
    same_history(&*store.history(), &history, &reference, seed, true).await;
    at = at.plus(Duration::from_secs(1));
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for (i, (step, dt)) in steps.iter().enumerate() {
        at = at.plus(Duration::from_millis(u64::from(*dt)));
        let cmd = to_command(&reference, &history, step, at);
        expected.push(reference.apply(&cmd));
        history.apply(&reference.take_history());
        batch.push(cmd);
        if batch.len() > i % 9 {
            let got = store.propose(std::mem::take(&mut batch)).await.expect("history suite: propose");
            let want: Vec<_> = std::mem::take(&mut expected);
            assert_eq!(got, want, "history suite (seed {seed}): outcomes");
        }
    }
    if !batch.is_empty() {
        let got = store.propose(batch).await.expect("history suite: propose");
        assert_eq!(got, expected, "history suite (seed {seed}): outcomes");
    }
    assert_eq!(store.query(ClusterState::clone), reference, "history suite (seed {seed}): the live state");
    same_history(&*store.history(), &history, &reference, seed, false).await;
}

/// Batches that finish runs every way there is: text, binary and chunked output,
/// a retry, a failure, a cancel, a dependency, a job with its own retention,
/// and a removal.
fn prelude(at: Timestamp) -> Vec<Vec<Command>> {
    use crate::model::{OutputStream, OutputTail};
    use bytes::Bytes;
    let worker = crate::model::WorkerId(1);
    let register = Command::RegisterWorker {
        at,
        name: "history-suite".into(),
        address: String::new(),
        labels: BTreeMap::new(),
        capacity: Resources { cpu_millis: 1_000_000, memory_bytes: 1 << 40, ..Resources::default() },
        capabilities: BTreeSet::from(["shell".to_owned()]),
        running: Vec::new(),
        queue: 0,
    };
    let spec = |i: u64| {
        let mut spec = JobSpec::new(format!("prelude-{i}"), Task::Shell { command: format!("echo {i}") });
        spec.retry.max_retries = u32::from(i % 4 == 1);
        spec.retry.backoff_base = Duration::from_millis(1);
        spec.retention = (i == 7).then_some(Duration::from_secs(5));
        spec.idempotency_key = (i == 3).then(|| "prelude-key".into());
        Arc::new(spec)
    };
    let mut submits: Vec<Command> = (1..=12).map(|i| Command::submit(at, spec(i))).collect();
    let mut dependent = JobSpec::clone(&spec(13));
    dependent.depends_on = vec![JobId(1)];
    submits.push(Command::submit(at, Arc::new(dependent)));
    // Runs are numbered as jobs here: one run each, attempts in assignment order.
    let assign = |runs: &[u64], at: Timestamp| -> Vec<Command> {
        runs.iter().map(|r| Command::AssignAttempt { at, run: RunId(*r), worker }).collect()
    };
    let finish = |run: u64, attempt: u64, code: i32, out: &'static [u8], at: Timestamp| Command::FinishAttempt {
        at,
        run: RunId(run),
        attempt: AttemptId(attempt),
        result: AttemptResult {
            status: ExitStatus::Exited { code },
            stdout: OutputTail { data: Bytes::from_static(out), truncated: u64::from(code == 0) * 9 },
            stderr: OutputTail { data: Bytes::from_static(b"warn\n"), truncated: 0 },
            usage: None,
        },
    };
    let later = at.plus(Duration::from_millis(50));
    let chunk = |offset: u64, data: &'static [u8]| Command::AttemptOutput {
        at,
        run: RunId(4),
        attempt: AttemptId(4),
        stream: OutputStream::Stdout,
        offset,
        data: Bytes::from_static(data),
    };
    vec![
        vec![register],
        submits,
        assign(&(1..=12).collect::<Vec<_>>(), at),
        vec![
            finish(1, 1, 0, b"one\n", at),
            finish(2, 2, 0, &[0xff, 0x00, 0x02], at),
            finish(3, 3, 3, b"three failed\n", at),
            chunk(0, b"chunked "),
            chunk(8, b"output "),
            chunk(0, b"chunked "),
            finish(4, 4, 0, b"and inline\n", at),
            finish(5, 5, 2, b"", at),
            Command::CancelRun { at, run: RunId(6) },
            finish(7, 7, 0, b"seven\n", at),
        ],
        vec![Command::StartAttempt { at, run: RunId(6), attempt: AttemptId(6) }],
        vec![finish(6, 6, 0, b"cancelled anyway\n", later)],
        assign(&[5, 13], later),
        vec![finish(5, 13, 0, b"retried\n", later), finish(13, 14, 0, b"child\n", later)],
        vec![Command::Prune {
            at: later,
            runs: vec![(RunId(2), RunState::Succeeded)],
            jobs: vec![JobId(2)],
            workflows: Vec::new(),
            keys_before: None,
        }],
        // A workflow of two (jobs and runs 14 and 15) that ends failed.
        vec![Command::SubmitWorkflow { at: later, spec: Arc::new(workflow()) }],
        assign(&[14], later),
        vec![finish(14, 15, 0, b"built\n", later)],
        assign(&[15], later),
        vec![finish(15, 16, 1, b"tests failed\n", later)],
    ]
}

fn workflow() -> crate::model::WorkflowSpec {
    use crate::model::{Edge, EdgeCondition, WorkflowNode, WorkflowSpec};
    let node = |name: &str, after: &[&str]| WorkflowNode {
        name: name.into(),
        job: JobSpec::new(name, Task::Shell { command: format!("echo {name}") }),
        after: after.iter().map(|p| Edge { parent: (*p).into(), when: EdgeCondition::Success }).collect(),
    };
    WorkflowSpec {
        name: "prelude-flow".into(),
        nodes: vec![node("build", &[]), node("test", &["build"])],
        schedule: None,
    }
}

/// Compares every read of `got` with `want` (`rich`: after the prelude, whose
/// records are known to be there).
async fn same_history(got: &dyn History, want: &MemHistory, state: &ClusterState, seed: u64, rich: bool) {
    let ctx = |what: &str| format!("history suite (seed {seed}): {what}");
    let runs: Vec<RunId> = (1..=state.runs().keys().last().map_or(0, |r| r.0).max(400)).map(RunId).collect();
    assert_eq!(got.runs(&runs).await.expect("runs"), want.runs(&runs).await.expect("runs"), "{}", ctx("runs by id"));
    let jobs: Vec<JobId> = (1..=400).map(JobId).collect();
    assert_eq!(got.jobs(&jobs).await.expect("jobs"), want.jobs(&jobs).await.expect("jobs"), "{}", ctx("jobs by id"));
    let mut held = 0;
    for attempt in (1..=600).map(AttemptId) {
        let (g, w) = (got.output(attempt).await.expect("output"), want.output(attempt).await.expect("output"));
        assert_eq!(g, w, "{}", ctx(&format!("output of {attempt}")));
        held += usize::from(!w[0].is_empty() || !w[1].is_empty());
    }
    assert!(!rich || held >= 6, "{}", ctx("attempts hold output"));
    let times: Vec<Timestamp> =
        want.run_ids().iter().filter_map(|r| want.run_record(*r)).map(|r| r.run.created_at).collect();
    let middle = times.get(times.len() / 2).copied();
    let mut filters = vec![RunFilter::default()];
    for state in [RunState::Succeeded, RunState::Failed, RunState::Cancelled, RunState::TimedOut] {
        filters.push(RunFilter { state: Some(state), ..RunFilter::default() });
    }
    filters.push(RunFilter { since: middle, ..RunFilter::default() });
    filters.push(RunFilter { until: middle, ..RunFilter::default() });
    filters.push(RunFilter { state: Some(RunState::Succeeded), since: middle, ..RunFilter::default() });
    for filter in filters {
        // Walk every page of 7, as a client pages with `before`.
        let mut filter = filter;
        loop {
            let (g, w) =
                (got.list_runs(&filter, 7).await.expect("list"), want.list_runs(&filter, 7).await.expect("list"));
            assert_eq!(g, w, "{}", ctx(&format!("list_runs {filter:?}")));
            match w.last() {
                Some(last) if w.len() == 7 => filter.before = Some(last.id()),
                _ => break,
            }
        }
    }
    let mut filters = vec![
        JobFilter::default(),
        JobFilter { name: Some("p".into()), before: Some(JobId(50)), ..JobFilter::default() },
    ];
    for kind in TaskKind::ALL {
        filters.push(JobFilter { kind: Some(kind), ..JobFilter::default() });
    }
    for state in [RunState::Succeeded, RunState::Failed, RunState::Cancelled, RunState::Pending] {
        filters.push(JobFilter { state: Some(state), ..JobFilter::default() });
        filters.push(JobFilter { kind: Some(TaskKind::Shell), state: Some(state), ..JobFilter::default() });
    }
    for filter in filters {
        let (g, w) =
            (got.list_jobs(&filter, 1000).await.expect("jobs"), want.list_jobs(&filter, 1000).await.expect("jobs"));
        assert_eq!(g, w, "{}", ctx(&format!("list_jobs {filter:?}")));
    }
    for (now, retention) in [(Timestamp(1_050_000), Duration::from_secs(20)), (Timestamp(9_000_000), Duration::ZERO)] {
        let sorted = |mut v: Vec<Expired>| {
            v.sort_by_key(|e| e.run);
            v
        };
        let (g, w) = (
            sorted(got.expired(now, retention, 50).await.expect("expired")),
            sorted(want.expired(now, retention, 50).await.expect("expired")),
        );
        assert_eq!(g, w, "{}", ctx("expired"));
        // Asked for fewer than are due: that many of them, in any order.
        let some = got.expired(now, retention, 3).await.expect("expired");
        assert_eq!(some.len(), w.len().min(3), "{}", ctx("expired, limited"));
        assert!(some.iter().all(|e| w.contains(e)), "{}", ctx("expired, limited"));
    }
    same_workflows(got, want, &ctx).await;
    assert!(!rich || !want.workflow_ids().is_empty(), "{}", ctx("a workflow is kept"));
    let (g, w) = (got.stats().await.expect("stats"), want.stats().await.expect("stats"));
    assert_eq!(
        (g.runs, g.jobs, g.workflows, g.output_bytes),
        (w.runs, w.jobs, w.workflows, w.output_bytes),
        "{}",
        ctx("stats")
    );
}

/// Compares the finished workflows `got` and `want` hold: by id, listed (every
/// page, by name and state), and due for removal.
async fn same_workflows(got: &dyn History, want: &MemHistory, ctx: &dyn Fn(&str) -> String) {
    let ids: Vec<WorkflowId> = (1..=100).map(WorkflowId).collect();
    let (g, w) = (got.workflows(&ids).await.expect("workflows"), want.workflows(&ids).await.expect("workflows"));
    assert_eq!(g, w, "{}", ctx("workflows by id"));
    let mut filters =
        vec![WorkflowFilter::default(), WorkflowFilter { name: Some("flow".into()), ..WorkflowFilter::default() }];
    for state in WorkflowState::ALL {
        filters.push(WorkflowFilter { state: Some(state), ..WorkflowFilter::default() });
    }
    for mut filter in filters {
        loop {
            let (g, w) = (
                got.list_workflows(&filter, 3).await.expect("list workflows"),
                want.list_workflows(&filter, 3).await.expect("list workflows"),
            );
            assert_eq!(g, w, "{}", ctx(&format!("list_workflows {filter:?}")));
            match w.last() {
                Some(last) if w.len() == 3 => filter.before = Some(last.id()),
                _ => break,
            }
        }
    }
    for cutoff in [Timestamp(1_000_100), Timestamp(1_100_000), Timestamp(i64::MAX)] {
        let (g, w) = (
            got.expired_workflows(cutoff, 1000).await.expect("expired workflows"),
            want.expired_workflows(cutoff, 1000).await.expect("expired workflows"),
        );
        let sorted = |mut v: Vec<WorkflowId>| {
            v.sort_unstable();
            v
        };
        assert_eq!(sorted(g), sorted(w), "{}", ctx(&format!("expired workflows before {cutoff:?}")));
    }
}

/// A reader polling a run while it finishes finds it every time: in the state
/// until it leaves, in the history from then on.
pub async fn a_run_leaving_the_state_is_never_missing_to_a_reader(store: Arc<dyn Store>) {
    let at = Timestamp(1_000_000);
    let register = Command::RegisterWorker {
        at,
        name: "reader-suite".into(),
        address: String::new(),
        labels: BTreeMap::new(),
        capacity: Resources { cpu_millis: 1_000_000, memory_bytes: 1 << 40, ..Resources::default() },
        capabilities: BTreeSet::from(["shell".to_owned()]),
        running: Vec::new(),
        queue: 0,
    };
    let jobs = 200u64;
    let mut batch = vec![register];
    batch.extend(
        (0..jobs).map(|i| {
            Command::submit(at, Arc::new(JobSpec::new(format!("r{i}"), Task::Shell { command: "true".into() })))
        }),
    );
    store.propose(batch).await.expect("reader suite: submit");
    let runs: Vec<RunId> = store.query(|s| s.runs().keys().copied().collect());
    let assign: Vec<Command> =
        runs.iter().map(|r| Command::AssignAttempt { at, run: *r, worker: crate::model::WorkerId(1) }).collect();
    store.propose(assign).await.expect("reader suite: assign");
    let attempts: Vec<(RunId, AttemptId)> = store.query(|s| {
        runs.iter().filter_map(|r| s.run(*r).and_then(|run| run.current_attempt).map(|a| (*r, a))).collect()
    });
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = tokio::spawn({
        let (store, done, runs) = (store.clone(), done.clone(), runs.clone());
        async move {
            let history = store.history();
            let mut reads = 0u64;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                for run in &runs {
                    let live = store.query(|s| s.run(*run).is_some());
                    if !live {
                        let kept = history.runs(&[*run]).await.expect("reader suite: history read");
                        assert_eq!(kept.len(), 1, "reader suite: {run} was in neither the state nor the history");
                    }
                    reads += 1;
                }
                tokio::task::yield_now().await;
            }
            reads
        }
    });
    for chunk in attempts.chunks(10) {
        let finish: Vec<Command> = chunk
            .iter()
            .map(|(run, attempt)| Command::FinishAttempt {
                at,
                run: *run,
                attempt: *attempt,
                result: AttemptResult::status(ExitStatus::Exited { code: 0 }),
            })
            .collect();
        store.propose(finish).await.expect("reader suite: finish");
        tokio::task::yield_now().await;
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let reads = reader.await.expect("reader suite: the reader");
    assert!(reads > 0, "reader suite: the reader read");
    assert_eq!(store.history().runs(&runs).await.expect("history").len(), runs.len(), "reader suite: all kept");
}

/// Retired jobs are listed by their task's kind and their last run's state,
/// alone, together and with the name and page filters; a job still live is
/// not the history's to list.
pub async fn retired_jobs_are_listed_by_task_kind_and_last_state(store: Arc<dyn Store>) {
    let at = Timestamp(1_000_000);
    let worker = crate::model::WorkerId(1);
    let register = Command::RegisterWorker {
        at,
        name: "kind-suite".into(),
        address: String::new(),
        labels: BTreeMap::new(),
        capacity: Resources { cpu_millis: 1_000_000, memory_bytes: 1 << 40, ..Resources::default() },
        capabilities: BTreeSet::from(["shell".to_owned(), "process".to_owned()]),
        running: Vec::new(),
        queue: 0,
    };
    let shell = |name: &str| Command::submit(at, Arc::new(JobSpec::new(name, Task::Shell { command: "true".into() })));
    let process =
        |name: &str| Command::submit(at, Arc::new(JobSpec::new(name, Task::Process { argv: vec!["true".into()] })));
    // Jobs and runs 1 to 5: shell that succeeds, process that succeeds, shell
    // that fails, process cancelled before it is placed, shell left pending.
    let submit = vec![register, shell("a"), process("b"), shell("c"), process("d"), shell("e")];
    store.propose(submit).await.expect("kind suite: submit");
    let assign = (1..=3).map(|r| Command::AssignAttempt { at, run: RunId(r), worker }).collect();
    store.propose(assign).await.expect("kind suite: assign");
    let finish = |run: u64, code: i32| Command::FinishAttempt {
        at,
        run: RunId(run),
        attempt: AttemptId(run),
        result: AttemptResult::status(ExitStatus::Exited { code }),
    };
    let end = vec![finish(1, 0), finish(2, 0), finish(3, 1), Command::CancelRun { at, run: RunId(4) }];
    store.propose(end).await.expect("kind suite: finish");
    assert!(store.query(|s| s.job(JobId(5)).is_some()), "kind suite: job 5 is still live");

    let history = store.history();
    let cases: [(JobFilter, usize, &[u64]); 12] = [
        (JobFilter::default(), 1000, &[4, 3, 2, 1]),
        (JobFilter { kind: Some(TaskKind::Shell), ..JobFilter::default() }, 1000, &[3, 1]),
        (JobFilter { kind: Some(TaskKind::Process), ..JobFilter::default() }, 1000, &[4, 2]),
        (JobFilter { kind: Some(TaskKind::Docker), ..JobFilter::default() }, 1000, &[]),
        (JobFilter { state: Some(RunState::Succeeded), ..JobFilter::default() }, 1000, &[2, 1]),
        (JobFilter { state: Some(RunState::Failed), ..JobFilter::default() }, 1000, &[3]),
        (JobFilter { state: Some(RunState::Cancelled), ..JobFilter::default() }, 1000, &[4]),
        (JobFilter { state: Some(RunState::Pending), ..JobFilter::default() }, 1000, &[]),
        (
            JobFilter { kind: Some(TaskKind::Shell), state: Some(RunState::Succeeded), ..JobFilter::default() },
            1000,
            &[1],
        ),
        (JobFilter { kind: Some(TaskKind::Process), state: Some(RunState::Failed), ..JobFilter::default() }, 1000, &[]),
        (
            JobFilter {
                name: Some("b".into()),
                kind: Some(TaskKind::Process),
                state: Some(RunState::Succeeded),
                ..JobFilter::default()
            },
            1000,
            &[2],
        ),
        (JobFilter { before: Some(JobId(4)), kind: Some(TaskKind::Process), ..JobFilter::default() }, 1, &[2]),
    ];
    for (filter, limit, want) in cases {
        let got: Vec<u64> =
            history.list_jobs(&filter, limit).await.expect("kind suite: list").iter().map(|j| j.id().0).collect();
        assert_eq!(got, want, "kind suite: list_jobs {filter:?}, at most {limit}");
    }
}
