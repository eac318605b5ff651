//! Cron jobs in the state machine: fires identified by (job, instant), each
//! overlap policy, pause and resume, cancelling, and what a run's end releases.

use super::*;
use crate::model::{FireSource, OverlapPolicy, Schedule};

const MINUTE: i64 = 60_000;

fn cron_job(s: &mut ClusterState, overlap: OverlapPolicy) -> JobId {
    let mut spec = shell();
    spec.schedule = Some(Box::new(Schedule { overlap, ..Schedule::new("* * * * *") }));
    match s.apply(&Command::ScheduleJob { at: Timestamp(0), spec: Arc::new(spec) }) {
        Outcome::Applied(events) => match events[0] {
            Event::JobAccepted { job, run: None, .. } => job,
            ref e => panic!("unexpected {e:?}"),
        },
        Outcome::Rejected(r) => panic!("rejected: {r}"),
    }
}

fn fire_with(s: &mut ClusterState, job: JobId, minute: i64, source: FireSource) -> Outcome {
    let at = Timestamp(minute * MINUTE);
    s.apply(&Command::FireSchedule { at, job, instants: vec![at], source, overlap: None, missed: None })
}

fn fire(s: &mut ClusterState, job: JobId, minute: i64) -> Vec<FireResult> {
    fire_results(fire_with(s, job, minute, FireSource::Cron))
}

fn started(results: &[FireResult]) -> RunId {
    match results {
        [FireResult::Started(run)] => *run,
        other => panic!("expected one started run, got {other:?}"),
    }
}

/// Runs `run` to success on worker 1 and returns what its end started.
fn succeed(s: &mut ClusterState, run: RunId, at: i64) -> Vec<Event> {
    let assigned = s.apply(&Command::AssignAttempt { at: Timestamp(at), run, worker: WorkerId(1) });
    assert!(assigned.rejection().is_none(), "{assigned:?}");
    let attempt = s.run(run).unwrap().current_attempt.unwrap();
    let out = s.apply(&Command::FinishAttempt {
        at: Timestamp(at),
        run,
        attempt,
        result: AttemptResult::status(ExitStatus::Exited { code: 0 }),
    });
    assert!(out.rejection().is_none(), "{out:?}");
    out.events().to_vec()
}

fn with_worker() -> ClusterState {
    let mut s = ClusterState::new();
    s.apply(&worker_cmd("a", 64_000));
    s
}

#[test]
fn an_instant_fires_once_whoever_proposes_it_and_however_often() {
    let mut s = with_worker();
    let job = cron_job(&mut s, OverlapPolicy::AllowAll);
    let run = started(&fire(&mut s, job, 1));
    // A second leader, or a retried proposal, with the same instant.
    let again = fire_with(&mut s, job, 1, FireSource::Cron);
    assert!(matches!(again, Outcome::Rejected(Rejection::AlreadyFired { .. })), "{again:?}");
    // A slow ticker proposing an older instant.
    let older = fire_with(&mut s, job, 0, FireSource::Cron);
    assert!(older.rejection().is_some(), "{older:?}");
    assert_eq!(s.job(job).unwrap().runs, vec![run]);
    assert_eq!(s.run(run).unwrap().scheduled_for, Some(Timestamp(MINUTE)));
    assert_eq!(s.schedule(job).unwrap().cursor, Timestamp(MINUTE));
    assert_eq!(s.schedule(job).unwrap().fired.count, 1);
}

#[test]
fn skip_drops_a_fire_while_a_run_goes_and_records_it() {
    let mut s = with_worker();
    let job = cron_job(&mut s, OverlapPolicy::Skip);
    let run = started(&fire(&mut s, job, 1));
    assert_eq!(fire(&mut s, job, 2), vec![FireResult::Skipped]);
    let schedule = s.schedule(job).unwrap();
    assert_eq!((schedule.skipped.count, schedule.skipped.recent.back()), (1, Some(&Timestamp(2 * MINUTE))));
    // Its end starts nothing; the next fire runs.
    let events = succeed(&mut s, run, 2 * MINUTE + 1);
    assert!(!events.iter().any(|e| matches!(e, Event::RunCreated { .. })), "{events:?}");
    started(&fire(&mut s, job, 3));
}

#[test]
fn buffer_one_keeps_one_fire_for_when_the_run_ends() {
    let mut s = with_worker();
    let job = cron_job(&mut s, OverlapPolicy::BufferOne);
    let run = started(&fire(&mut s, job, 1));
    assert_eq!(fire(&mut s, job, 2), vec![FireResult::Buffered]);
    assert_eq!(fire(&mut s, job, 3), vec![FireResult::Skipped]);
    let events = succeed(&mut s, run, 3 * MINUTE + 1);
    let next = events
        .iter()
        .find_map(|e| match e {
            Event::ScheduleFired { instant, result: FireResult::Started(run), .. } => Some((*instant, *run)),
            _ => None,
        })
        .expect("the buffered fire starts when the run ends");
    assert_eq!(next.0, Timestamp(2 * MINUTE));
    assert_eq!(s.run(next.1).unwrap().scheduled_for, Some(Timestamp(2 * MINUTE)));
    assert!(s.schedule(job).unwrap().buffered.is_empty());
}

#[test]
fn buffer_all_runs_every_fire_one_after_another_in_order() {
    let mut s = with_worker();
    let job = cron_job(&mut s, OverlapPolicy::BufferAll);
    let mut run = started(&fire(&mut s, job, 1));
    for minute in 2..=4 {
        assert_eq!(fire(&mut s, job, minute), vec![FireResult::Buffered]);
    }
    let mut ran = vec![s.run(run).unwrap().scheduled_for.unwrap()];
    for step in 0..3 {
        assert_eq!(s.schedule(job).unwrap().active, vec![run], "one at a time");
        let events = succeed(&mut s, run, 10 * MINUTE + step);
        run = events
            .iter()
            .find_map(|e| match e {
                Event::ScheduleFired { result: FireResult::Started(run), .. } => Some(*run),
                _ => None,
            })
            .expect("the next buffered fire starts");
        ran.push(s.run(run).unwrap().scheduled_for.unwrap());
    }
    assert_eq!(ran, (1..=4).map(|m| Timestamp(m * MINUTE)).collect::<Vec<_>>());
}

#[test]
fn cancel_other_cancels_the_running_one_and_starts_when_it_has_ended() {
    let mut s = with_worker();
    let job = cron_job(&mut s, OverlapPolicy::CancelOther);
    let first = started(&fire(&mut s, job, 1));
    let assigned = s.apply(&Command::AssignAttempt { at: Timestamp(MINUTE), run: first, worker: WorkerId(1) });
    assert!(assigned.rejection().is_none());
    let attempt = s.run(first).unwrap().current_attempt.unwrap();
    s.apply(&Command::StartAttempt { at: Timestamp(MINUTE), run: first, attempt });
    let out = fire_with(&mut s, job, 2, FireSource::Cron);
    assert!(
        out.events().iter().any(|e| matches!(e, Event::CancelRequested { run, .. } if *run == first)),
        "the worker is asked to stop the running one: {out:?}"
    );
    assert!(out.events().iter().any(|e| matches!(e, Event::ScheduleFired { result: FireResult::Buffered, .. })));
    // The worker reports it cancelled: the new fire starts.
    let out = s.apply(&Command::FinishAttempt {
        at: Timestamp(2 * MINUTE + 1),
        run: first,
        attempt,
        result: AttemptResult::status(ExitStatus::Cancelled),
    });
    assert_eq!(record(&s, first).run.state, RunState::Cancelled);
    let next = out
        .events()
        .iter()
        .find_map(|e| match e {
            Event::ScheduleFired { instant, result: FireResult::Started(run), .. } => Some((*instant, *run)),
            _ => None,
        })
        .expect("the fire starts once the cancelled run ended");
    assert_eq!(next.0, Timestamp(2 * MINUTE));
}

#[test]
fn cancel_other_starts_at_once_when_the_other_had_not_started() {
    let mut s = with_worker();
    let job = cron_job(&mut s, OverlapPolicy::CancelOther);
    let first = started(&fire(&mut s, job, 1));
    let second = started(&fire(&mut s, job, 2));
    assert_eq!(record(&s, first).run.state, RunState::Cancelled);
    assert_eq!(s.schedule(job).unwrap().active, vec![second]);
    assert!(s.schedule(job).unwrap().buffered.is_empty());
}

#[test]
fn allow_all_overlaps() {
    let mut s = with_worker();
    let job = cron_job(&mut s, OverlapPolicy::AllowAll);
    let a = started(&fire(&mut s, job, 1));
    let b = started(&fire(&mut s, job, 2));
    assert_ne!(a, b);
    assert_eq!(s.schedule(job).unwrap().active, vec![a, b]);
}

#[test]
fn a_paused_schedule_takes_no_cron_fire_and_resumes_from_now() {
    let mut s = with_worker();
    let job = cron_job(&mut s, OverlapPolicy::AllowAll);
    let pause = Command::PauseSchedule { at: Timestamp(MINUTE), job, paused: true, note: Some("db upgrade".into()) };
    assert!(s.apply(&pause).rejection().is_none());
    assert_eq!(s.schedule(job).unwrap().paused.as_ref().unwrap().note.as_deref(), Some("db upgrade"));
    // A leader that had not seen the pause yet proposes a fire: refused.
    let late = fire_with(&mut s, job, 2, FireSource::Cron);
    assert!(matches!(late, Outcome::Rejected(Rejection::SchedulePaused(j)) if j == job), "{late:?}");
    // An operator's trigger still runs.
    started(&fire_results(fire_with(&mut s, job, 3, FireSource::Trigger)));
    let resume = Command::PauseSchedule { at: Timestamp(5 * MINUTE), job, paused: false, note: None };
    assert!(s.apply(&resume).rejection().is_none());
    // The fires that fell in the pause are neither run nor missed.
    assert_eq!(s.schedule(job).unwrap().cursor, Timestamp(5 * MINUTE));
    assert!(fire_with(&mut s, job, 4, FireSource::Cron).rejection().is_some());
    started(&fire(&mut s, job, 6));
    assert_eq!(s.schedule(job).unwrap().missed.count, 0);
}

fn fire_results(out: Outcome) -> Vec<FireResult> {
    assert!(out.rejection().is_none(), "{out:?}");
    out.events()
        .iter()
        .filter_map(|e| match e {
            Event::ScheduleFired { result, .. } => Some(*result),
            _ => None,
        })
        .collect()
}

#[test]
fn missed_fires_are_counted_and_the_cursor_moves_past_them() {
    let mut s = with_worker();
    let job = cron_job(&mut s, OverlapPolicy::BufferAll);
    let at = Timestamp(200 * MINUTE);
    let missed = crate::model::MissedFires {
        count: 120,
        instants: (111..=120).map(|m| Timestamp(m * MINUTE)).collect(),
        through: Timestamp(120 * MINUTE),
    };
    let instants: Vec<Timestamp> = (121..=123).map(|m| Timestamp(m * MINUTE)).collect();
    let out = s.apply(&Command::FireSchedule {
        at,
        job,
        instants,
        source: FireSource::Cron,
        overlap: None,
        missed: Some(missed),
    });
    let results = fire_results(out);
    assert_eq!(results.len(), 3);
    assert!(matches!(results[0], FireResult::Started(_)));
    assert_eq!(&results[1..], [FireResult::Buffered, FireResult::Buffered]);
    let schedule = s.schedule(job).unwrap();
    assert_eq!(schedule.missed.count, 120);
    assert_eq!(schedule.missed.recent.back(), Some(&Timestamp(120 * MINUTE)));
    assert_eq!(schedule.cursor, Timestamp(123 * MINUTE));
}

#[test]
fn a_cancelled_cron_job_fires_no_more_and_leaves_the_state_when_its_runs_end() {
    let mut s = with_worker();
    let job = cron_job(&mut s, OverlapPolicy::BufferOne);
    let run = started(&fire(&mut s, job, 1));
    assert_eq!(fire(&mut s, job, 2), vec![FireResult::Buffered]);
    let out = s.apply(&Command::CancelJob { at: Timestamp(2 * MINUTE + 1), job });
    assert!(out.rejection().is_none(), "{out:?}");
    assert!(s.run(run).is_none(), "its pending run is cancelled");
    let late = fire_with(&mut s, job, 3, FireSource::Cron);
    assert!(late.rejection().is_some(), "{late:?}");
    assert!(s.job(job).is_none(), "a cancelled cron job with no live run retires");
    assert!(s.schedule(job).is_none());
    let trigger = fire_with(&mut s, job, 4, FireSource::Trigger);
    assert!(trigger.rejection().is_some(), "{trigger:?}");
}

#[test]
fn a_state_with_schedules_needs_format_2_and_survives_a_snapshot() {
    let mut s = with_worker();
    assert_eq!(s.format_needed(), 1);
    let job = cron_job(&mut s, OverlapPolicy::BufferAll);
    started(&fire(&mut s, job, 1));
    fire(&mut s, job, 2);
    assert_eq!(s.format_needed(), 2);
    let json = serde_json::to_string(&s).unwrap();
    let back: ClusterState = serde_json::from_str(&json).unwrap();
    assert_eq!(back.schedule(job), s.schedule(job));
    assert_eq!(back.format_needed(), 2);
}

/// A cron workflow of two jobs, `extract` then `load`, under `overlap`.
fn cron_workflow(s: &mut ClusterState, overlap: OverlapPolicy) -> JobId {
    use crate::model::{Edge, EdgeCondition, WorkflowNode, WorkflowSpec};
    let node = |name: &str, after: &[&str]| WorkflowNode {
        name: name.into(),
        job: JobSpec::new(name, Task::Shell { command: "true".into() }),
        after: after.iter().map(|p| Edge { parent: (*p).into(), when: EdgeCondition::Success }).collect(),
    };
    let spec = WorkflowSpec {
        name: "etl".into(),
        nodes: vec![node("extract", &[]), node("load", &["extract"])],
        schedule: Some(Box::new(Schedule { overlap, ..Schedule::new("* * * * *") })),
    };
    match s.apply(&Command::SubmitWorkflow { at: Timestamp(0), spec: Arc::new(spec) }) {
        Outcome::Applied(events) => match events[..] {
            [Event::JobAccepted { job, run: None, .. }] => job,
            ref e => panic!("unexpected {e:?}"),
        },
        Outcome::Rejected(r) => panic!("rejected: {r}"),
    }
}

/// The workflow (and its runs, in node order) that started `first`.
fn instance_of(s: &ClusterState, first: RunId) -> (crate::model::WorkflowId, Vec<RunId>) {
    let job = s.run(first).unwrap().job;
    let wf = s.workflow_of(job).unwrap();
    let runs = s.workflow(wf).unwrap().jobs.iter().map(|j| s.job(*j).unwrap().runs[0]).collect();
    (wf, runs)
}

#[test]
fn a_cron_workflow_starts_one_instance_per_fire_under_its_overlap_policy() {
    let mut s = with_worker();
    let cron = cron_workflow(&mut s, OverlapPolicy::Skip);
    assert!(s.job(cron).unwrap().runs.is_empty(), "the cron job itself never runs");
    let first = started(&fire(&mut s, cron, 1));
    let (wf1, runs) = instance_of(&s, first);
    assert_eq!(s.workflow(wf1).unwrap().fired_by, Some(cron));
    assert_eq!(s.run(runs[1]).unwrap().state, RunState::Waiting);
    assert!(runs.iter().all(|r| s.run(*r).unwrap().scheduled_for == Some(Timestamp(MINUTE))));
    // While any run of the instance is unfinished, skip skips.
    succeed(&mut s, runs[0], MINUTE + 5);
    assert_eq!(fire(&mut s, cron, 2), [FireResult::Skipped]);
    succeed(&mut s, runs[1], 2 * MINUTE + 5);
    check_invariants(&s).unwrap();
    assert!(s.workflow(wf1).is_none(), "the instance ended");
    let second = started(&fire(&mut s, cron, 3));
    let (wf2, _) = instance_of(&s, second);
    assert!(wf2 > wf1, "each fire is a new workflow");
    // An instant fires once.
    assert!(matches!(fire_with(&mut s, cron, 3, FireSource::Cron), Outcome::Rejected(Rejection::AlreadyFired { .. })));
    check_invariants(&s).unwrap();
}

#[test]
fn a_buffered_fire_starts_when_the_instance_ends_and_cancel_other_replaces_it() {
    let mut s = with_worker();
    let cron = cron_workflow(&mut s, OverlapPolicy::BufferOne);
    let first = started(&fire(&mut s, cron, 1));
    let (_, runs) = instance_of(&s, first);
    assert_eq!(fire(&mut s, cron, 2), [FireResult::Buffered]);
    succeed(&mut s, runs[0], MINUTE + 5);
    let events = succeed(&mut s, runs[1], MINUTE + 6);
    let next = events.iter().find_map(|e| match e {
        Event::ScheduleFired { instant, result: FireResult::Started(run), .. } => Some((*instant, *run)),
        _ => None,
    });
    let (instant, run) = next.expect("the buffered fire started as the instance ended");
    assert_eq!(instant, Timestamp(2 * MINUTE));
    assert_eq!(s.run(run).unwrap().scheduled_for, Some(instant));
    check_invariants(&s).unwrap();

    // cancel_other: the running instance is cancelled (its waiting job at
    // once, its running one by its worker), and the new one starts after.
    let mut s = with_worker();
    let cron = cron_workflow(&mut s, OverlapPolicy::CancelOther);
    let first = started(&fire(&mut s, cron, 1));
    let (wf1, runs) = instance_of(&s, first);
    s.apply(&Command::AssignAttempt { at: Timestamp(MINUTE + 1), run: runs[0], worker: WorkerId(1) });
    assert_eq!(fire(&mut s, cron, 2), [FireResult::Buffered]);
    assert_eq!(s.run(runs[1]).map_or_else(|| record(&s, runs[1]).run.state, |r| r.state), RunState::Cancelled);
    assert!(s.run(runs[0]).unwrap().cancel_requested);
    let attempt = s.run(runs[0]).unwrap().current_attempt.unwrap();
    let out = s.apply(&Command::FinishAttempt {
        at: Timestamp(2 * MINUTE + 1),
        run: runs[0],
        attempt,
        result: AttemptResult::status(ExitStatus::Cancelled),
    });
    let restarted = out.events().iter().any(|e| {
        matches!(e, Event::ScheduleFired { instant, result: FireResult::Started(_), .. } if *instant == Timestamp(2 * MINUTE))
    });
    assert!(restarted, "{out:?}");
    assert!(s.workflow(wf1).is_none());
    check_invariants(&s).unwrap();
    // Cancelling the cron job stops the fires; it leaves with nothing running.
    let live = s.workflows().keys().copied().collect::<Vec<_>>();
    s.apply(&Command::CancelJob { at: Timestamp(3 * MINUTE), job: cron });
    assert!(s.job(cron).is_none() && s.scheduled_workflow(cron).is_none());
    assert_eq!(s.workflows().keys().copied().collect::<Vec<_>>(), live, "a running instance goes on");
    check_invariants(&s).unwrap();
}
