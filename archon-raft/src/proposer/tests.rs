use std::time::Duration;

use archon_core::model::{Timestamp, WorkerId};
use archon_core::state::{Command, Outcome, Rejection};
use tokio::sync::{mpsc, oneshot};

use super::queue::{Queue, Slice};
use super::{Entries, Proposer};

/// A command told apart by `n`, all of one size.
fn cmd(n: u64) -> Command {
    Command::SetDraining { at: Timestamp(0), worker: WorkerId(n), draining: false }
}

/// The outcome the stand-in log gives `cmd(n)`.
fn outcome(n: u64) -> Outcome {
    Outcome::Rejected(Rejection::UnknownWorker(WorkerId(n)))
}

fn ns(commands: &[Command]) -> Vec<u64> {
    commands
        .iter()
        .map(|c| match c {
            Command::SetDraining { worker, .. } => worker.0,
            other => panic!("not a test command: {other:?}"),
        })
        .collect()
}

fn size() -> usize {
    cmd(0).size_hint()
}

fn proposal(from: u64, count: u64) -> Vec<Command> {
    (from..from + count).map(cmd).collect()
}

fn slice(id: u64, offset: usize, count: usize) -> Slice {
    Slice { id, offset, count }
}

type Answer = oneshot::Receiver<Result<Vec<Outcome>, archon_core::Error>>;

fn push(queue: &mut Queue, commands: Vec<Command>) -> Answer {
    let (reply, answer) = oneshot::channel();
    queue.push(commands, reply);
    answer
}

#[test]
fn proposals_that_fit_stay_whole_and_a_large_one_fills_the_entries() {
    // Entries of four commands.
    let mut queue = Queue::new(4 * size());
    let _a = push(&mut queue, proposal(0, 3));
    let _b = push(&mut queue, proposal(10, 2));
    let _c = push(&mut queue, proposal(20, 7));
    let _d = push(&mut queue, proposal(30, 1));

    // b does not fit after a and is not split: a goes alone.
    let (commands, slices) = queue.cut().unwrap();
    assert_eq!((ns(&commands), slices), (vec![0, 1, 2], vec![slice(0, 0, 3)]));
    // c is larger than an entry: it fills what b leaves, then whole entries.
    let (commands, slices) = queue.cut().unwrap();
    assert_eq!((ns(&commands), slices), (vec![10, 11, 20, 21], vec![slice(1, 0, 2), slice(2, 0, 2)]));
    let (commands, slices) = queue.cut().unwrap();
    assert_eq!((ns(&commands), slices), (vec![22, 23, 24, 25], vec![slice(2, 2, 4)]));
    let (commands, slices) = queue.cut().unwrap();
    assert_eq!((ns(&commands), slices), (vec![26, 30], vec![slice(2, 6, 1), slice(3, 0, 1)]));
    assert!(queue.cut().is_none() && queue.is_empty());
}

#[test]
fn each_caller_gets_its_outcomes_in_order_whatever_order_entries_answer_in() {
    let mut queue = Queue::new(4 * size());
    let mut a = push(&mut queue, proposal(0, 6));
    let mut b = push(&mut queue, proposal(10, 2));
    let (first, first_slices) = queue.cut().unwrap();
    let (second, second_slices) = queue.cut().unwrap();
    assert_eq!((ns(&first), ns(&second)), (vec![0, 1, 2, 3], vec![4, 5, 10, 11]));

    let answer = |commands: &[Command]| Ok(ns(commands).into_iter().map(outcome).collect());
    queue.answer(second_slices, answer(&second));
    assert_eq!(b.try_recv().unwrap().unwrap(), vec![outcome(10), outcome(11)]);
    assert!(a.try_recv().is_err(), "a still waits for its first entry");
    queue.answer(first_slices, answer(&first));
    assert_eq!(a.try_recv().unwrap().unwrap(), (0..6).map(outcome).collect::<Vec<_>>());
}

#[test]
fn a_failed_entry_fails_its_callers_and_drops_what_of_theirs_waits() {
    let mut queue = Queue::new(4 * size());
    let mut a = push(&mut queue, proposal(0, 6));
    let (_, slices) = queue.cut().unwrap();
    let mut b = push(&mut queue, proposal(10, 1));
    queue.answer(slices, Err(archon_core::Error::Unavailable("deposed".into())));
    assert!(matches!(a.try_recv().unwrap(), Err(archon_core::Error::Unavailable(_))));
    // a's last two commands are never written; b's go on.
    let (commands, slices) = queue.cut().unwrap();
    assert_eq!(ns(&commands), vec![10]);
    queue.answer(slices, Ok(vec![outcome(10)]));
    assert_eq!(b.try_recv().unwrap().unwrap(), vec![outcome(10)]);
    assert!(queue.cut().is_none());
}

#[test]
fn an_entry_answered_with_the_wrong_number_of_outcomes_fails_its_callers_rather_than_leaving_them_waiting() {
    let mut queue = Queue::new(4 * size());
    let mut a = push(&mut queue, proposal(0, 2));
    let mut b = push(&mut queue, proposal(10, 2));
    let (_, slices) = queue.cut().unwrap();
    queue.answer(slices, Ok(vec![outcome(0), outcome(1), outcome(10)]));
    for answer in [&mut a, &mut b] {
        let err = answer.try_recv().unwrap().unwrap_err();
        assert!(err.to_string().contains("3 outcomes for an entry of 4 commands"), "{err}");
    }
}

#[test]
fn a_command_larger_than_an_entry_is_refused_naming_the_limit() {
    let mut queue = Queue::new(size() - 1);
    let mut a = push(&mut queue, proposal(0, 1));
    let err = a.try_recv().unwrap().unwrap_err();
    assert!(err.to_string().contains("larger than a log entry may be (max_entry_bytes"), "{err}");
    assert!(queue.is_empty());
}

/// A stand-in log: hands each entry to the test, which answers it when it likes.
struct HeldEntries {
    handed: mpsc::UnboundedSender<(Vec<u64>, oneshot::Sender<()>)>,
}

impl Entries for HeldEntries {
    fn write(
        &self,
        commands: Vec<Command>,
    ) -> impl std::future::Future<Output = Result<Vec<Outcome>, archon_core::Error>> + Send {
        let handed = self.handed.clone();
        async move {
            let (answer, answered) = oneshot::channel();
            let numbers = ns(&commands);
            handed.send((numbers.clone(), answer)).map_err(|_| archon_core::Error::Internal("test gone".into()))?;
            answered.await.map_err(|_| archon_core::Error::Internal("test gone".into()))?;
            Ok(numbers.into_iter().map(outcome).collect())
        }
    }
}

/// Runs until every task is idle (the clock is paused, so this sleep ends only
/// then): whatever the proposer would do next, it has done.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn one_entry_at_a_time_and_the_next_carries_all_that_waited() {
    let (handed, mut entries) = mpsc::unbounded_channel();
    let proposer = Proposer::start_with(HeldEntries { handed }, 100 * size());
    let propose = |from: u64| {
        let proposer = proposer.clone();
        tokio::spawn(async move { proposer.propose(proposal(from, 2)).await })
    };

    let a = propose(0);
    let (first, answer_first) = entries.recv().await.unwrap();
    assert_eq!(first, vec![0, 1]);
    let b = propose(10);
    settle().await;
    let c = propose(20);
    settle().await;
    assert!(entries.try_recv().is_err(), "nothing more goes while the first entry is unanswered");

    answer_first.send(()).unwrap();
    assert_eq!(a.await.unwrap().unwrap(), vec![outcome(0), outcome(1)]);
    let (second, answer_second) = entries.recv().await.unwrap();
    assert_eq!(second, vec![10, 11, 20, 21], "the next entry carries both proposals that waited");
    answer_second.send(()).unwrap();
    assert_eq!(b.await.unwrap().unwrap(), vec![outcome(10), outcome(11)]);
    assert_eq!(c.await.unwrap().unwrap(), vec![outcome(20), outcome(21)]);
}
