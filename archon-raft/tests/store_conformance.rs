//! Archon's store conformance suite against the Raft store: a single-node group
//! on a fresh data dir, proposing through openraft to the redb log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use archon_core::store::Store;
use archon_core::testkit::store_suite::{StoreHarness, run_all};
use archon_raft::{RaftConfig, RaftStore};
use async_trait::async_trait;

#[derive(Default)]
struct SingleNode {
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

#[async_trait]
impl StoreHarness for SingleNode {
    async fn open(&self) -> Arc<dyn Store> {
        let dir = tempfile::tempdir().unwrap();
        let store = RaftStore::open(RaftConfig::new(1, "127.0.0.1:1", dir.path())).await.unwrap();
        store.bootstrap(BTreeMap::new()).await.unwrap();
        store.wait_for_leadership(Duration::from_secs(10)).await.unwrap();
        self.dirs.lock().unwrap().push(dir);
        Arc::new(store)
    }
}

#[tokio::test]
async fn the_raft_store_conforms() {
    run_all(&SingleNode::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raft_store_history_conforms() {
    archon_core::testkit::history_suite::run_all(&SingleNode::default()).await;
}

#[tokio::test]
async fn a_reopened_store_has_every_acknowledged_command() {
    let dir = tempfile::tempdir().unwrap();
    let config = RaftConfig { snapshot_every: 7, ..RaftConfig::new(1, "127.0.0.1:1", dir.path()) };
    let before = {
        let store = RaftStore::open(config.clone()).await.unwrap();
        store.bootstrap(BTreeMap::new()).await.unwrap();
        store.wait_for_leadership(Duration::from_secs(10)).await.unwrap();
        // Enough entries to build snapshots and compact the log on the way.
        for i in 0..25i64 {
            let spec = archon_core::model::JobSpec::new(
                format!("j{i}"),
                archon_core::model::Task::Shell { command: "true".into() },
            );
            let cmd = archon_core::state::Command::submit(archon_core::model::Timestamp(i), Arc::new(spec));
            store.propose(vec![cmd]).await.unwrap();
        }
        let state = archon_core::store::StoreExt::query(&store, Clone::clone);
        let files = store.files();
        store.shutdown().await.unwrap();
        drop(store);
        // The node's tasks let go of its files on their own threads: reopen
        // once they have (a loaded machine can take a while).
        assert!(files.wait_closed(Duration::from_secs(30)).await, "the store's files still open 30 s after shutdown");
        state
    };
    assert_eq!(before.jobs().len(), 25);
    let store = RaftStore::open(config).await.unwrap();
    store.wait_for_leadership(Duration::from_secs(10)).await.unwrap();
    let after = archon_core::store::StoreExt::query(&store, Clone::clone);
    assert_eq!(after, before, "snapshot + log replay rebuilds the same state");
    assert!(store.raft().metrics().borrow().snapshot.is_some(), "a snapshot was built");
}

/// Proposals made at once from many tasks share entries (the proposer gathers
/// them): each caller still gets exactly the outcomes of its own commands, in
/// its order — every accepted job is the one that caller submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_made_at_once_get_back_their_own_outcomes_in_order() {
    use archon_core::model::{JobSpec, Task, Timestamp};
    use archon_core::state::{Command, Event};
    use archon_core::store::StoreExt;

    let harness = SingleNode::default();
    let store = harness.open().await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0..40 {
                let names = [format!("t{t}-{i}-a"), format!("t{t}-{i}-b")];
                let commands = names
                    .iter()
                    .map(|n| {
                        Command::submit(Timestamp(1), Arc::new(JobSpec::new(n, Task::Shell { command: "true".into() })))
                    })
                    .collect();
                let outcomes = store.propose(commands).await.unwrap();
                assert_eq!(outcomes.len(), 2, "one outcome per command");
                for (name, outcome) in names.into_iter().zip(outcomes) {
                    let job = outcome
                        .events()
                        .iter()
                        .find_map(|e| match e {
                            Event::JobAccepted { job, .. } => Some(*job),
                            _ => None,
                        })
                        .unwrap_or_else(|| panic!("{name} was not accepted: {outcome:?}"));
                    accepted.push((name, job));
                }
            }
            accepted
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), 8 * 40 * 2);
    store.query(|s| {
        for (name, job) in &all {
            assert_eq!(&s.job(*job).unwrap().spec.name, name, "the outcome handed back is another caller's");
        }
    });
    assert_eq!(store.query(|s| s.jobs().len()), all.len(), "every job stored once");
}
