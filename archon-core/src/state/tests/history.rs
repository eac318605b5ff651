//! Live state and history against a state that keeps everything (Archon 0.1's
//! format, still applied for old logs): over random command sequences with
//! removals, what the live state plus the history show is what the keeping state
//! shows, for everything not removed; and upgrading a keeping state gives the
//! live state and history of the same log.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;
use crate::history::{HistoryOp, MemHistory};
use crate::model::{Attempt, OutputStream, OutputTail};

/// A log applied to the live state (with its history) and to a keeping state.
struct Pair {
    live: ClusterState,
    history: MemHistory,
    keeping: ClusterState,
    /// What the keeping state's outbox held (chunks sent before a finish).
    keeping_history: MemHistory,
    /// Runs and jobs removed by pruning, with the states they ended in.
    pruned_runs: BTreeMap<RunId, RunState>,
    pruned_jobs: BTreeSet<JobId>,
}

impl Pair {
    fn new() -> Pair {
        Pair {
            live: ClusterState::new(),
            history: MemHistory::new(),
            keeping: ClusterState::keeping_everything(),
            keeping_history: MemHistory::new(),
            pruned_runs: BTreeMap::new(),
            pruned_jobs: BTreeSet::new(),
        }
    }

    /// Whether the command is one the two may answer differently for good
    /// reason, so the comparison skips it: a submit depending on a removed job (the
    /// keeping state still has it), a job cancelled after it ended (the keeping
    /// state marks it, the live one has let it go).
    fn skipped(&self, cmd: &Command) -> bool {
        match cmd {
            Command::SubmitJob { spec, .. } => spec.depends_on.iter().any(|d| self.pruned_jobs.contains(d)),
            Command::CancelJob { job, .. } => self.live.job(*job).is_none(),
            _ => false,
        }
    }

    fn apply(&mut self, cmd: &Command) -> Result<(), TestCaseError> {
        let live = self.live.apply(cmd);
        self.history.apply(&self.live.take_history());
        let keeping = self.keeping.apply(cmd);
        self.keeping_history.apply(&self.keeping.take_history());
        if let Command::Prune { runs, jobs, .. } = cmd {
            for (run, state) in runs {
                if self.live.issued_run(*run) && self.live.run(*run).is_none() {
                    self.pruned_runs.insert(*run, *state);
                }
            }
            self.pruned_jobs.extend(jobs.iter().filter(|j| self.live.job(**j).is_none()));
            // The keeping state removes nothing; both forget the same keys.
            let keys = |o: &Outcome| match o.events() {
                [Event::HistoryPruned { keys, .. }] => Some(*keys),
                _ => None,
            };
            prop_assert_eq!(keys(&live), keys(&keeping), "{:?}", cmd);
            return Ok(());
        }
        // A report about a run that has left the live state is refused there as
        // unknown, and as stale or finished by the keeping state.
        let left = match &live {
            Outcome::Rejected(Rejection::UnknownRun(run)) => self.live.issued_run(*run),
            _ => false,
        };
        if left {
            prop_assert!(keeping.rejection().is_some(), "{:?}: live {:?}, keeping {:?}", cmd, live, keeping);
        } else {
            prop_assert_eq!(&live, &keeping, "{:?}", cmd);
        }
        Ok(())
    }

    /// The output the keeping state has for an attempt: chunks, then its result's tail.
    fn keeping_output(&self, attempt: &Attempt) -> [Bytes; 2] {
        let chunks = self.keeping_history.output_of(attempt.id);
        let tail = |stream: OutputStream, chunk: &Bytes| {
            let mut all = chunk.to_vec();
            if let Some(r) = &attempt.result {
                all.extend_from_slice(&r.tail(stream).data);
            }
            Bytes::from(all)
        };
        [tail(OutputStream::Stdout, &chunks[0]), tail(OutputStream::Stderr, &chunks[1])]
    }

    /// Everything the keeping state shows, the live state and history show too.
    fn check(&self) -> Result<(), TestCaseError> {
        let strip = |a: &Attempt| Attempt { result: a.result.as_ref().map(AttemptResult::without_output), ..a.clone() };
        for (id, run) in &self.keeping.runs {
            let attempts: Vec<Attempt> = run.attempts.iter().map(|a| self.keeping.attempts[a].clone()).collect();
            if run.state.is_terminal() {
                prop_assert!(self.live.run(*id).is_none(), "{} ended but is live", id);
                if self.pruned_runs.contains_key(id) {
                    prop_assert!(self.history.run_record(*id).is_none(), "{} was pruned but is kept", id);
                    continue;
                }
                let record = self.history.run_record(*id);
                prop_assert!(record.is_some(), "{} ended but is not in the history", id);
                let record = record.unwrap_or_else(|| unreachable!());
                prop_assert_eq!(&record.run, run);
                prop_assert_eq!(&record.job_name, &self.keeping.jobs[&run.job].spec.name);
                let stripped: Vec<Attempt> = attempts.iter().map(strip).collect();
                prop_assert_eq!(&record.attempts, &stripped);
            } else {
                prop_assert_eq!(self.live.run(*id), Some(run), "{} is live", id);
                for a in &attempts {
                    prop_assert_eq!(self.live.attempt(a.id).cloned(), Some(strip(a)));
                }
            }
            for a in attempts.iter().filter(|a| a.result.is_some()) {
                prop_assert_eq!(self.history.output_of(a.id), self.keeping_output(a), "output of {}", a.id);
            }
        }
        for (id, job) in &self.keeping.jobs {
            let ended = job.runs.iter().all(|r| self.keeping.runs[r].state.is_terminal());
            if !ended {
                prop_assert_eq!(self.live.job(*id), Some(job));
            } else if self.pruned_jobs.contains(id) {
                prop_assert!(self.history.job_record(*id).is_none(), "{} was pruned but is kept", id);
            } else {
                let record = self.history.job_record(*id);
                prop_assert!(record.is_some(), "{} ended but is not in the history", id);
                let record = record.unwrap_or_else(|| unreachable!());
                prop_assert_eq!(&record.job, job);
                let last = job.runs.last().map(|r| self.keeping.runs[r].state);
                prop_assert_eq!(record.last_state, last);
            }
        }
        prop_assert_eq!(&self.live.workers, &self.keeping.workers);
        let mut counts = self.live.run_counts();
        for state in self.pruned_runs.values() {
            *counts.entry(*state).or_insert(0) += 1;
        }
        prop_assert_eq!(counts, self.keeping.run_counts());
        prop_assert_eq!(self.live.job_count() + self.pruned_jobs.len() as u64, self.keeping.job_count());
        Ok(())
    }
}

fn is_cron(step: &Step) -> bool {
    matches!(
        step,
        Step::Schedule(_) | Step::Fire { .. } | Step::Pause(..) | Step::Workflow { .. } | Step::CancelWorkflow(_)
    )
}

#[test]
fn live_state_plus_history_shows_what_a_state_keeping_everything_shows() {
    // Guards the generator: across the cases, runs must be kept, pruned and
    // carry output, or the comparison shows little.
    let seen = std::cell::Cell::new((0usize, 0usize, 0usize));
    runner()
        .run(&prop::collection::vec((step(), 0..400u16), 1..250), |steps| {
            let mut pair = Pair::new();
            let mut over_committed = BTreeSet::new();
            let mut at = Timestamp(1_000_000);
            for (step, dt) in &steps {
                // A state keeping everything is Archon 0.1's, which had no cron
                // and no workflows.
                if is_cron(step) {
                    continue;
                }
                at = at.plus(Duration::from_millis(u64::from(*dt)));
                let cmd = to_command(&pair.live, &pair.history, step, at);
                if pair.skipped(&cmd) {
                    continue;
                }
                over_committed.extend(started_out_of_order(&pair.live, &cmd));
                pair.apply(&cmd)?;
                check_invariants_but(&pair.live, &over_committed).map_err(TestCaseError::fail)?;
            }
            let (kept, pruned, output) = seen.get();
            let with_output = pair
                .history
                .run_ids()
                .into_iter()
                .filter_map(|r| pair.history.run_record(r))
                .flat_map(|r| r.attempts.clone())
                .filter(|a| pair.history.output_of(a.id).iter().any(|b| !b.is_empty()))
                .count();
            seen.set((kept + pair.history.len(), pruned + pair.pruned_runs.len(), output + with_output));
            pair.check()
        })
        .unwrap();
    let (kept, pruned, output) = seen.get();
    assert!(kept > 100 && pruned > 50 && output > 20, "kept {kept}, pruned {pruned}, with output {output}");
}

#[test]
fn upgrading_a_keeping_state_gives_the_live_state_and_history_of_the_same_log() {
    runner()
        .run(&prop::collection::vec((step(), 0..400u16), 1..250), |steps| {
            let mut pair = Pair::new();
            let mut at = Timestamp(1_000_000);
            for (step, dt) in &steps {
                // Archon 0.1's logs hold neither output chunks, removals nor cron.
                if matches!(step, Step::Output { .. } | Step::Prune(_)) || is_cron(step) {
                    continue;
                }
                at = at.plus(Duration::from_millis(u64::from(*dt)));
                let cmd = to_command(&pair.live, &pair.history, step, at);
                if pair.skipped(&cmd) {
                    continue;
                }
                pair.apply(&cmd)?;
            }
            let mut upgraded = pair.keeping.clone();
            upgraded.upgrade();
            prop_assert!(!upgraded.is_legacy());
            let history = MemHistory::new();
            history.apply(&upgraded.take_history());
            prop_assert_eq!(&upgraded, &pair.live);
            prop_assert_eq!(history.run_ids(), pair.history.run_ids());
            prop_assert_eq!(history.job_ids(), pair.history.job_ids());
            for run in history.run_ids() {
                prop_assert_eq!(history.run_record(run), pair.history.run_record(run));
                for a in history.run_record(run).map(|r| r.attempts.clone()).unwrap_or_default() {
                    prop_assert_eq!(history.output_of(a.id), pair.history.output_of(a.id));
                }
            }
            for job in history.job_ids() {
                prop_assert_eq!(history.job_record(job), pair.history.job_record(job));
            }
            Ok(())
        })
        .unwrap();
}

fn assigned(s: &mut ClusterState, run: RunId) -> AttemptId {
    let out = s.apply(&Command::AssignAttempt { at: Timestamp(2), run, worker: WorkerId(1) });
    assert!(out.rejection().is_none(), "{out:?}");
    s.run(run).unwrap().current_attempt.unwrap()
}

fn chunk(run: RunId, attempt: AttemptId, offset: u64, data: &'static [u8]) -> Command {
    Command::AttemptOutput {
        at: Timestamp(3),
        run,
        attempt,
        stream: OutputStream::Stdout,
        offset,
        data: Bytes::from_static(data),
    }
}

#[test]
fn output_goes_to_the_history_in_order_once_and_never_into_the_state() {
    let mut s = ClusterState::new();
    let history = MemHistory::new();
    s.apply(&worker_cmd("a", 1000));
    let (_, run) = submit(&mut s, shell());
    let attempt = assigned(&mut s, run);
    assert!(s.apply(&chunk(run, attempt, 0, b"hello ")).rejection().is_none());
    // The same chunk again (a proposal retried after a failover) changes nothing.
    assert_eq!(s.apply(&chunk(run, attempt, 0, b"hello ")), Outcome::Applied(vec![]));
    assert!(matches!(
        s.apply(&chunk(run, attempt, 10, b"gap")),
        Outcome::Rejected(Rejection::OutputGap { offset: 10, stored: 6, .. })
    ));
    assert_eq!(s.output_written(attempt), [6, 0]);
    let result = AttemptResult {
        status: ExitStatus::Exited { code: 0 },
        stdout: OutputTail { data: Bytes::from_static(b"world\n"), truncated: 7 },
        stderr: OutputTail { data: Bytes::from_static(&[0xff, 0]), truncated: 0 },
        usage: None,
    };
    s.apply(&Command::FinishAttempt { at: Timestamp(4), run, attempt, result });
    history.apply(&s.take_history());
    assert!(s.runs.is_empty() && s.attempts.is_empty() && s.jobs.is_empty() && s.output_written.is_empty());
    let [stdout, stderr] = history.output_of(attempt);
    assert_eq!((&stdout[..], &stderr[..]), (&b"hello world\n"[..], &[0xff, 0][..]));
    let record = history.run_record(run).unwrap();
    let kept = record.attempts[0].result.as_ref().unwrap();
    assert!(kept.stdout.data.is_empty() && kept.stdout.truncated == 7, "{kept:?}");
    // A chunk for an attempt that has ended is stale.
    assert!(s.apply(&chunk(run, attempt, 12, b"late")).rejection().is_some());
}

#[test]
fn a_dependency_that_left_the_state_is_resolved_from_what_the_leader_read() {
    let mut s = ClusterState::new();
    s.apply(&worker_cmd("a", 1000));
    let (parent, prun) = submit(&mut s, shell());
    let attempt = assigned(&mut s, prun);
    s.apply(&Command::FinishAttempt {
        at: Timestamp(3),
        run: prun,
        attempt,
        result: AttemptResult::status(ExitStatus::Exited { code: 0 }),
    });
    assert!(s.job(parent).is_none(), "a one-off job leaves with its run");
    let mut child = shell();
    child.depends_on = vec![parent];
    let child = Arc::new(child);
    let bare = s.apply(&Command::submit(Timestamp(4), child.clone()));
    assert_eq!(bare, Outcome::Rejected(Rejection::DependencyNotLive(parent)));
    let stamped = |state: RunState| Command::SubmitJob {
        at: Timestamp(5),
        spec: child.clone(),
        finished_deps: vec![(parent, state)],
    };
    let ok = s.apply(&stamped(RunState::Succeeded));
    assert!(ok.events().iter().any(|e| matches!(e, Event::RunCreated { state: RunState::Pending, .. })), "{ok:?}");
    let failed = s.apply(&stamped(RunState::Failed));
    assert!(failed.events().iter().any(|e| matches!(e, Event::RunFinished { state: RunState::Failed, .. })));
    // An id never handed out is unknown, stamped or not.
    let mut orphan = shell();
    orphan.depends_on = vec![JobId(99)];
    assert_eq!(
        s.apply(&Command::submit(Timestamp(6), Arc::new(orphan))),
        Outcome::Rejected(Rejection::UnknownDependency(JobId(99)))
    );
}

#[test]
fn idempotency_keys_hold_until_pruned_and_their_job_may_have_left() {
    let mut s = ClusterState::new();
    s.apply(&worker_cmd("a", 1000));
    let mut spec = shell();
    spec.idempotency_key = Some("once".into());
    let (job, run) = submit(&mut s, spec.clone());
    let attempt = assigned(&mut s, run);
    s.apply(&Command::FinishAttempt {
        at: Timestamp(3),
        run,
        attempt,
        result: AttemptResult::status(ExitStatus::Exited { code: 0 }),
    });
    let again = s.apply(&Command::submit(Timestamp(4), Arc::new(spec.clone())));
    assert_eq!(again.events(), &[Event::JobAccepted { job, run: Some(run), duplicate: true }]);
    assert_eq!(s.idempotency_keys(), (1, Some(Timestamp(1))));
    let pruned = s.apply(&Command::Prune {
        at: Timestamp(9),
        runs: vec![],
        jobs: vec![],
        workflows: vec![],
        keys_before: Some(Timestamp(2)),
    });
    assert_eq!(pruned.events(), &[Event::HistoryPruned { runs: 0, jobs: 0, keys: 1 }]);
    let fresh = s.apply(&Command::submit(Timestamp(10), Arc::new(spec)));
    assert!(matches!(fresh.events()[0], Event::JobAccepted { duplicate: false, .. }), "{fresh:?}");
}

#[test]
fn pruning_removes_only_what_has_left_the_state_and_keeps_counts() {
    let mut s = ClusterState::new();
    s.apply(&worker_cmd("a", 1000));
    let (done_job, done) = submit(&mut s, shell());
    let attempt = assigned(&mut s, done);
    s.apply(&Command::FinishAttempt {
        at: Timestamp(3),
        run: done,
        attempt,
        result: AttemptResult::status(ExitStatus::Exited { code: 1 }),
    });
    let (_, live) = submit(&mut s, shell());
    assert_eq!(s.run_counts().get(&RunState::Failed), Some(&1));
    let out = s.apply(&Command::Prune {
        at: Timestamp(9),
        runs: vec![(done, RunState::Failed), (live, RunState::Succeeded), (RunId(77), RunState::Failed)],
        jobs: vec![done_job],
        // Never issued: ignored, like run 77.
        workflows: vec![WorkflowId(1)],
        keys_before: None,
    });
    assert_eq!(out.events(), &[Event::HistoryPruned { runs: 1, jobs: 1, keys: 0 }]);
    assert!(
        s.pending_history()
            .iter()
            .any(|op| matches!(op, HistoryOp::Remove { runs, jobs, workflows } if runs == &[done] && jobs == &[done_job] && workflows.is_empty()))
    );
    assert_eq!(s.run_counts().get(&RunState::Failed), None);
    assert_eq!(s.job_count(), 1);
    assert!(s.run(live).is_some());
}

#[test]
fn a_snapshot_of_archon_0_1_reads_as_a_keeping_state_that_upgrades() {
    // The shape 0.1 wrote: no format, idempotency keys as bare job ids, waiting
    // runs registered under the jobs they wait on (including finished ones).
    let mut old = ClusterState::keeping_everything();
    old.apply(&worker_cmd("a", 1000));
    let mut keyed = shell();
    keyed.idempotency_key = Some("k".into());
    let (parent, prun) = submit(&mut old, keyed);
    let (blocker, _) = submit(&mut old, shell());
    let attempt = assigned(&mut old, prun);
    old.apply(&Command::FinishAttempt {
        at: Timestamp(3),
        run: prun,
        attempt,
        result: AttemptResult {
            status: ExitStatus::Exited { code: 0 },
            stdout: OutputTail { data: Bytes::from_static(b"out"), truncated: 0 },
            stderr: OutputTail::default(),
            usage: None,
        },
    });
    let mut child = shell();
    child.depends_on = vec![parent, blocker];
    let (_, crun) = submit(&mut old, child);
    let mut json: serde_json::Value = serde_json::to_value(&old).unwrap();
    let map = json.as_object_mut().unwrap();
    for added in ["format", "retained", "retained_jobs", "remaining_deps", "output_written"] {
        map.remove(added);
    }
    map.insert("idempotency".into(), serde_json::json!({ "k": parent.0 }));
    map.insert(
        "waiting_on".into(),
        serde_json::json!({ parent.0.to_string(): [crun.0], blocker.0.to_string(): [crun.0] }),
    );
    let mut read: ClusterState = serde_json::from_value(json).unwrap();
    assert!(read.is_legacy());
    assert_eq!(read.remaining_deps, BTreeMap::from([(crun, BTreeSet::from([blocker]))]));
    assert_eq!(read.idempotency["k"], KeyEntry { job: parent, run: Some(prun), at: Timestamp(1) });
    read.upgrade();
    let ops = read.take_history();
    assert!(read.run(prun).is_none() && read.job(parent).is_none());
    assert!(
        ops.iter()
            .any(|op| matches!(op, HistoryOp::Output { attempt: a, data, .. } if *a == attempt && &data[..] == b"out"))
    );
    assert!(ops.iter().any(|op| matches!(op, HistoryOp::Run(r) if r.id() == prun)));
    assert_eq!(read.run(crun).map(|r| r.state), Some(RunState::Waiting));
}
