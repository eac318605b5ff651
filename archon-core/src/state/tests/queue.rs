//! Workers' queues: placements beyond what is free wait on the worker, hold no
//! resources until they start, and are requeued once with the worker.

use super::*;

fn queued_worker(cpu: u64, queue: u32) -> Command {
    worker_back("a", cpu, Vec::new(), queue)
}

fn assign(s: &mut ClusterState, run: RunId) -> Outcome {
    s.apply(&Command::AssignAttempt { at: Timestamp(2), run, worker: WorkerId(1) })
}

fn attempt_of(s: &ClusterState, run: RunId) -> AttemptId {
    s.run(run).unwrap().current_attempt.unwrap()
}

#[test]
fn placements_beyond_what_is_free_wait_in_the_queue_and_hold_nothing_until_they_start() {
    let mut s = ClusterState::new();
    s.apply(&queued_worker(1000, 2));
    assert_eq!(s.format_needed(), 4, "a queue needs format 4");
    let mut spec = shell();
    spec.resources.cpu_millis = 1000;
    let runs: Vec<RunId> = (0..5).map(|_| submit(&mut s, spec.clone()).1).collect();

    // The first fits and holds its request; the next two queue; the queue is then full.
    assert!(assign(&mut s, runs[0]).rejection().is_none());
    assert!(assign(&mut s, runs[1]).rejection().is_none());
    assert!(assign(&mut s, runs[2]).rejection().is_none());
    let full = assign(&mut s, runs[3]);
    assert!(
        matches!(full.rejection(), Some(Rejection::DoesNotFit { reason, .. }) if reason.contains("queue is full")),
        "{full:?}"
    );
    let w = s.worker(WorkerId(1)).unwrap();
    assert_eq!(w.allocated.cpu_millis, 1000);
    assert_eq!(w.queued, BTreeSet::from([attempt_of(&s, runs[1]), attempt_of(&s, runs[2])]));
    assert_eq!(w.running.len(), 3);
    assert_eq!(s.run(runs[1]).unwrap().state, RunState::Scheduled);

    // The first ends: its request is released, but a smaller run that now fits
    // what is free still does not jump the queue.
    let first = attempt_of(&s, runs[0]);
    let ok = AttemptResult::status(ExitStatus::Exited { code: 0 });
    s.apply(&Command::FinishAttempt { at: Timestamp(3), run: runs[0], attempt: first, result: ok.clone() });
    assert!(s.worker(WorkerId(1)).unwrap().allocated.is_zero());
    let mut small = shell();
    small.resources.cpu_millis = 10;
    let (_, small_run) = submit(&mut s, small);
    let jump = assign(&mut s, small_run);
    assert!(
        matches!(jump.rejection(), Some(Rejection::DoesNotFit { reason, .. }) if reason.contains("queued ahead")),
        "{jump:?}"
    );

    // The head of the queue starts: it holds its request from now on, and frees a place.
    let second = attempt_of(&s, runs[1]);
    s.apply(&Command::StartAttempt { at: Timestamp(4), run: runs[1], attempt: second });
    let w = s.worker(WorkerId(1)).unwrap();
    assert_eq!(w.allocated.cpu_millis, 1000);
    assert_eq!(w.queued, BTreeSet::from([attempt_of(&s, runs[2])]));
    assert_eq!(w.queue_room(), 1);
    assert!(assign(&mut s, runs[3]).rejection().is_none(), "a place freed in the queue");

    // A queued attempt may also end without a start report (its start and end
    // came together): it releases nothing it did not hold.
    let third = attempt_of(&s, runs[2]);
    s.apply(&Command::FinishAttempt { at: Timestamp(5), run: runs[2], attempt: third, result: ok });
    let w = s.worker(WorkerId(1)).unwrap();
    assert_eq!(w.allocated.cpu_millis, 1000, "the running second still holds its request");
    assert_eq!(w.queued, BTreeSet::from([attempt_of(&s, runs[3])]));
    check_invariants(&s).unwrap();
}

#[test]
fn a_lost_worker_requeues_its_queued_attempts_once_without_spending_a_retry() {
    let mut s = ClusterState::new();
    s.apply(&queued_worker(1000, 3));
    let mut spec = shell();
    spec.resources.cpu_millis = 1000;
    spec.retry.max_retries = 0;
    let runs: Vec<RunId> = (0..4).map(|_| submit(&mut s, spec.clone()).1).collect();
    for run in &runs {
        assert!(assign(&mut s, *run).rejection().is_none());
    }
    let attempts: Vec<AttemptId> = runs.iter().map(|r| attempt_of(&s, *r)).collect();
    s.apply(&Command::StartAttempt { at: Timestamp(3), run: runs[0], attempt: attempts[0] });
    assert_eq!(s.worker(WorkerId(1)).unwrap().queued.len(), 3);

    let lost = s.apply(&Command::WorkerLost { at: Timestamp(4), worker: WorkerId(1) });
    let requeued: BTreeSet<RunId> = lost
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::RunQueued { run } => Some(*run),
            _ => None,
        })
        .collect();
    assert_eq!(requeued, runs.iter().copied().collect(), "every run, running or queued, requeued once");
    for (run, attempt) in runs.iter().zip(&attempts) {
        let r = s.run(*run).unwrap();
        assert_eq!((r.state, r.retries_used, r.current_attempt), (RunState::Pending, 0, None), "{run}");
        assert_eq!(s.attempt(*attempt).unwrap().state, AttemptState::Lost);
    }
    let w = s.worker(WorkerId(1)).unwrap();
    assert!(w.queued.is_empty() && w.running.is_empty() && w.allocated.is_zero());
    check_invariants(&s).unwrap();
}

#[test]
fn a_returning_worker_announcing_a_queued_attempt_has_it_running_and_the_rest_requeued() {
    let mut s = ClusterState::new();
    s.apply(&queued_worker(1000, 2));
    let mut spec = shell();
    spec.resources.cpu_millis = 1000;
    let runs: Vec<RunId> = (0..3).map(|_| submit(&mut s, spec.clone()).1).collect();
    for run in &runs {
        assert!(assign(&mut s, *run).rejection().is_none());
    }
    let attempts: Vec<AttemptId> = runs.iter().map(|r| attempt_of(&s, *r)).collect();
    // The first ended and the second started while the session was down; the
    // third never started there, so the worker forgot it.
    let ok = AttemptResult::status(ExitStatus::Exited { code: 0 });
    s.apply(&Command::FinishAttempt { at: Timestamp(3), run: runs[0], attempt: attempts[0], result: ok });
    s.apply(&worker_back("a", 1000, vec![attempts[1]], 2));
    let w = s.worker(WorkerId(1)).unwrap();
    assert!(w.queued.is_empty());
    assert_eq!(w.allocated.cpu_millis, 1000, "the announced attempt holds its request");
    assert_eq!(s.run(runs[2]).unwrap().state, RunState::Pending, "the forgotten one is requeued");
    assert_eq!(s.run(runs[2]).unwrap().retries_used, 0);
    check_invariants(&s).unwrap();
}
