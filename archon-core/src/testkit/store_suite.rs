//! The store conformance suite: every [`Store`] runs [`run_all`] with a
//! [`StoreHarness`] that opens a fresh store able to propose (for a replicated
//! store: a leader, however many nodes it has). The suite checks what the
//! manager relies on: one outcome per command, in order; rejections change
//! nothing; concurrent proposals are applied whole and in one serial order; what
//! `propose` acknowledged is what `read` shows; and the store says it leads. The
//! reference is a [`ClusterState`] fed the same commands. A failed check panics
//! with the check's name, so the suite is called from a `#[tokio::test]`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{JobSpec, Resources, RunId, Task, Timestamp};
use crate::state::{ClusterState, Command, Outcome, Rejection};
use crate::store::{Store, StoreExt};

/// Opens fresh stores for the suite.
#[async_trait]
pub trait StoreHarness: Send + Sync {
    /// A new, empty store that may propose.
    async fn open(&self) -> Arc<dyn Store>;
}

/// Runs every check, each on a fresh store.
pub async fn run_all(harness: &dyn StoreHarness) {
    outcomes_come_one_per_command_in_order(harness.open().await).await;
    rejections_change_nothing(harness.open().await).await;
    an_empty_proposal_is_a_no_op(harness.open().await).await;
    concurrent_proposals_apply_whole_in_one_order(harness.open().await).await;
    the_state_read_is_the_reference_state(harness.open().await).await;
    the_store_says_it_leads(harness.open().await).await;
}

fn at(n: i64) -> Timestamp {
    Timestamp(1_700_000_000_000 + n)
}

fn submit(n: i64, name: &str) -> Command {
    Command::submit(at(n), Arc::new(JobSpec::new(name, Task::Shell { command: "true".into() })))
}

fn register(n: i64, name: &str) -> Command {
    Command::RegisterWorker {
        at: at(n),
        name: name.into(),
        address: String::new(),
        labels: BTreeMap::new(),
        capacity: Resources { cpu_millis: 4000, memory_bytes: 1 << 32, ..Resources::default() },
        capabilities: BTreeSet::from(["shell".to_owned()]),
        running: Vec::new(),
        queue: 0,
    }
}

/// Applies `commands` to `reference` and returns the outcomes, as a store must.
fn expected(reference: &mut ClusterState, commands: &[Command]) -> Vec<Outcome> {
    commands.iter().map(|c| reference.apply(c)).collect()
}

/// `propose` answers one outcome per command, in the order given, equal to the
/// state machine's own.
pub async fn outcomes_come_one_per_command_in_order(store: Arc<dyn Store>) {
    let mut reference = ClusterState::new();
    let batch = vec![register(1, "w1"), submit(2, "a"), submit(3, "b"), register(4, "w2")];
    let want = expected(&mut reference, &batch);
    let got = store.propose(batch).await.expect("outcomes_come_one_per_command_in_order: propose");
    assert_eq!(got, want, "outcomes_come_one_per_command_in_order");
}

/// A rejected command changes nothing but the applied counter, and the batch's
/// other commands still apply.
pub async fn rejections_change_nothing(store: Arc<dyn Store>) {
    let mut reference = ClusterState::new();
    let batch = vec![submit(1, "a"), Command::CancelRun { at: at(2), run: RunId(999) }, submit(3, "b")];
    let want = expected(&mut reference, &batch);
    let got = store.propose(batch).await.expect("rejections_change_nothing: propose");
    assert!(
        matches!(got.get(1), Some(Outcome::Rejected(Rejection::UnknownRun(_)))),
        "rejections_change_nothing: the cancel of an unknown run is rejected, got {got:?}"
    );
    assert_eq!(got, want, "rejections_change_nothing: outcomes");
    assert_eq!(store.query(|s| s.jobs().len()), 2, "rejections_change_nothing: both submits applied");
}

/// Proposing nothing answers nothing and changes nothing.
pub async fn an_empty_proposal_is_a_no_op(store: Arc<dyn Store>) {
    let before = store.query(ClusterState::clone);
    let got = store.propose(Vec::new()).await.expect("an_empty_proposal_is_a_no_op: propose");
    assert!(got.is_empty(), "an_empty_proposal_is_a_no_op: outcomes");
    assert_eq!(store.query(ClusterState::clone), before, "an_empty_proposal_is_a_no_op: state");
}

/// Batches proposed at once are each applied whole (their jobs get consecutive
/// ids) and every acknowledged command is in the state.
pub async fn concurrent_proposals_apply_whole_in_one_order(store: Arc<dyn Store>) {
    let proposals = (0..8i64).map(|p| {
        let store = store.clone();
        async move {
            let batch: Vec<Command> = (0..5i64).map(|i| submit(p * 10 + i, &format!("p{p}-{i}"))).collect();
            store.propose(batch).await
        }
    });
    let results = futures::future::join_all(proposals).await;
    let mut all = BTreeSet::new();
    for result in results {
        let outcomes = result.expect("concurrent_proposals_apply_whole_in_one_order: propose");
        let jobs: Vec<u64> = outcomes
            .iter()
            .flat_map(Outcome::events)
            .filter_map(|e| match e {
                crate::state::Event::JobAccepted { job, .. } => Some(job.get()),
                _ => None,
            })
            .collect();
        assert_eq!(jobs.len(), 5, "concurrent_proposals_apply_whole_in_one_order: every submit accepted");
        assert!(
            jobs.windows(2).all(|w| w[1] == w[0] + 1),
            "concurrent_proposals_apply_whole_in_one_order: a batch is applied whole, got ids {jobs:?}"
        );
        all.extend(jobs);
    }
    assert_eq!(all.len(), 40, "concurrent_proposals_apply_whole_in_one_order: distinct ids");
    assert_eq!(store.query(|s| s.jobs().len()), 40, "concurrent_proposals_apply_whole_in_one_order: all in state");
}

/// After a sequence of proposals, `read` shows exactly the reference state.
pub async fn the_state_read_is_the_reference_state(store: Arc<dyn Store>) {
    let mut reference = ClusterState::new();
    let batches = [
        vec![register(1, "w1")],
        vec![submit(2, "a"), submit(3, "b")],
        vec![Command::CancelRun { at: at(4), run: RunId(1) }],
    ];
    for batch in batches {
        expected(&mut reference, &batch);
        store.propose(batch).await.expect("the_state_read_is_the_reference_state: propose");
    }
    assert_eq!(store.query(ClusterState::clone), reference, "the_state_read_is_the_reference_state");
}

/// A store that accepts proposals says it leads.
pub async fn the_store_says_it_leads(store: Arc<dyn Store>) {
    store.propose(vec![submit(1, "a")]).await.expect("the_store_says_it_leads: propose");
    assert!(store.leadership().borrow().is_leader, "the_store_says_it_leads");
    // Worker leases are renewed only on a confirmation.
    store.confirm_leadership().await.expect("the_store_says_it_leads: a leader confirms its leadership");
}
