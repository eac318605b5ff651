#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The storage contract: openraft's conformance suite, then what Archon relies on
//! beyond it — the log, vote and committed id survive a restart (which then
//! re-applies the committed entries after the snapshot), a snapshot carries the whole
//! cluster state to another node, purging behind a snapshot keeps later entries
//! readable, and a snapshot's size and build time reach the metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use archon_core::state::ClusterState;
use archon_core::testkit::fixtures::{assign, register_worker, submit_job};
use archon_raft::storage::{self, LogStore, StateMachine};
use archon_raft::{Error, Proposal, TypeConfig};
use openraft::storage::{LogState, RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder,
    StorageError, StorageHelper, StoredMembership, Vote,
};
use tempfile::TempDir;

/// A fresh store in its own temp dir, removed when the guard drops.
struct FreshStore;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for FreshStore {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = TempDir::new().expect("temp dir");
        let (log, sm) =
            storage::open(&dir.path().join("raft.redb"), Arc::default()).expect("open storage").into_parts();
        Ok((dir, log, sm))
    }
}

#[test]
fn passes_the_openraft_storage_suite() {
    Suite::<TypeConfig, LogStore, StateMachine, FreshStore, TempDir>::test_all(FreshStore).unwrap();
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 0), index)
}

fn membership() -> Membership<u64, BasicNode> {
    Membership::new(vec![BTreeSet::from([0])], BTreeMap::from([(0, BasicNode::new("127.0.0.1:7100"))]))
}

/// Eight entries of cluster history from index 0 (where openraft puts the initial
/// membership): membership, workers, jobs, placements, a blank.
fn history() -> Vec<Entry<TypeConfig>> {
    let payloads = vec![
        EntryPayload::Membership(membership()),
        EntryPayload::Normal(Proposal::new(vec![register_worker("w1"), register_worker("w2")])),
        EntryPayload::Normal(Proposal::new(vec![submit_job("build", 2_000)])),
        EntryPayload::Normal(Proposal::new(vec![submit_job("test", 3_000), assign(1, 1, 3_001)])),
        EntryPayload::Blank,
        EntryPayload::Normal(Proposal::new(vec![assign(2, 2, 4_000)])),
        EntryPayload::Normal(Proposal::new(vec![submit_job("deploy", 5_000)])),
        EntryPayload::Normal(Proposal::new(Vec::new())),
    ];
    payloads.into_iter().zip(0..).map(|(payload, index)| Entry { log_id: log_id(index), payload }).collect()
}

/// Applies entries, checking one outcome per command and no rejections.
async fn apply_accepted(sm: &mut StateMachine, entries: &[Entry<TypeConfig>]) {
    let responses = sm.apply(entries.to_vec()).await.unwrap();
    assert_eq!(responses.len(), entries.len());
    for (entry, outcomes) in entries.iter().zip(&responses) {
        let commands = match &entry.payload {
            EntryPayload::Normal(proposal) => proposal.commands().unwrap().len(),
            _ => 0,
        };
        assert_eq!(outcomes.len(), commands, "one outcome per command of {}", entry.log_id);
        assert!(outcomes.iter().all(|o| o.rejection().is_none()), "rejected: {outcomes:?}");
    }
}

fn snapshot_of(state: &RwLock<ClusterState>) -> ClusterState {
    state.read().unwrap().clone()
}

#[tokio::test]
async fn log_vote_and_committed_survive_a_restart_which_reapplies_committed_entries() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("node-1").join("raft.redb");
    let history = history();

    let (at_snapshot, at_commit, snapshot_meta) = {
        let state = Arc::new(RwLock::new(ClusterState::new()));
        let (mut log, mut sm) = storage::open(&path, Arc::clone(&state)).unwrap().into_parts();
        log.blocking_append(history.clone()).await.unwrap();
        log.save_vote(&Vote::new_committed(1, 0)).await.unwrap();
        apply_accepted(&mut sm, &history[..5]).await;
        let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let at_snapshot = snapshot_of(&state);
        apply_accepted(&mut sm, &history[5..]).await;
        log.save_committed(Some(log_id(7))).await.unwrap();
        (at_snapshot, snapshot_of(&state), snapshot.meta)
    };
    assert_ne!(at_snapshot, at_commit, "the entries after the snapshot change the state");

    let state = Arc::new(RwLock::new(ClusterState::new()));
    let (mut log, mut sm) = storage::open(&path, Arc::clone(&state)).unwrap().into_parts();
    assert_eq!(log.get_log_state().await.unwrap(), LogState { last_purged_log_id: None, last_log_id: Some(log_id(7)) });
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new_committed(1, 0)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(7)));
    assert_eq!(log.try_get_log_entries(0..=7).await.unwrap(), history);

    assert_eq!(snapshot_of(&state), at_snapshot, "open loads the snapshot into the shared state");
    assert_eq!(
        sm.applied_state().await.unwrap(),
        (Some(log_id(4)), StoredMembership::new(Some(log_id(0)), membership()))
    );
    assert_eq!(sm.get_current_snapshot().await.unwrap().unwrap().meta, snapshot_meta);

    // What openraft does when a node starts: re-apply the committed log past the snapshot.
    let initial = StorageHelper::new(&mut log, &mut sm).get_initial_state().await.unwrap();
    assert_eq!(initial.committed, Some(log_id(7)));
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(7)));
    assert_eq!(snapshot_of(&state), at_commit);
}

#[tokio::test]
async fn an_installed_snapshot_reproduces_the_leaders_state() {
    let (leader_dir, follower_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let leader_state = Arc::new(RwLock::new(ClusterState::new()));
    let (_leader_log, mut leader) =
        storage::open(&leader_dir.path().join("raft.redb"), Arc::clone(&leader_state)).unwrap().into_parts();
    apply_accepted(&mut leader, &history()).await;
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let expected = snapshot_of(&leader_state);
    assert!(expected.jobs().len() == 3 && expected.workers().len() == 2, "a non-trivial state: {expected:?}");

    let follower_path = follower_dir.path().join("raft.redb");
    let follower_state = Arc::new(RwLock::new(ClusterState::new()));
    {
        let (_follower_log, mut follower) =
            storage::open(&follower_path, Arc::clone(&follower_state)).unwrap().into_parts();
        let mut received = follower.begin_receiving_snapshot().await.unwrap();
        *received = *snapshot.snapshot;
        follower.install_snapshot(&snapshot.meta, received).await.unwrap();

        assert_eq!(snapshot_of(&follower_state), expected);
        assert_eq!(follower.applied_state().await.unwrap(), leader.applied_state().await.unwrap());
        assert_eq!(follower.get_current_snapshot().await.unwrap().unwrap().meta, snapshot.meta);
    }

    // The installed snapshot is durable: a restarted follower starts from it.
    let restarted_state = Arc::new(RwLock::new(ClusterState::new()));
    let (_log, mut restarted) = storage::open(&follower_path, Arc::clone(&restarted_state)).unwrap().into_parts();
    assert_eq!(snapshot_of(&restarted_state), expected);
    assert_eq!(restarted.applied_state().await.unwrap().0, Some(log_id(7)));
}

#[tokio::test]
async fn purging_behind_a_snapshot_keeps_later_entries_readable() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("raft.redb");
    let history = history();
    {
        let (mut log, mut sm) = storage::open(&path, Arc::default()).unwrap().into_parts();
        log.blocking_append(history[..7].to_vec()).await.unwrap();
        apply_accepted(&mut sm, &history[..5]).await;
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        log.purge(log_id(4)).await.unwrap();

        let mut reader = log.get_log_reader().await;
        assert_eq!(reader.try_get_log_entries(5..).await.unwrap(), history[5..7]);
        assert!(reader.try_get_log_entries(..5).await.unwrap().is_empty());
        assert_eq!(
            log.get_log_state().await.unwrap(),
            LogState { last_purged_log_id: Some(log_id(4)), last_log_id: Some(log_id(6)) }
        );

        log.blocking_append(history[7..].to_vec()).await.unwrap();
        assert_eq!(reader.try_get_log_entries(5..=7).await.unwrap(), history[5..]);
    }

    let (mut log, _sm) = storage::open(&path, Arc::default()).unwrap().into_parts();
    assert_eq!(
        log.get_log_state().await.unwrap(),
        LogState { last_purged_log_id: Some(log_id(4)), last_log_id: Some(log_id(7)) }
    );
    assert_eq!(log.try_get_log_entries(0..100).await.unwrap(), history[5..]);
}

/// A metric's value in a Prometheus text scrape (the first sample of that name).
fn sample(scrape: &str, name: &str) -> f64 {
    let line = scrape.lines().find(|l| l.split(' ').next() == Some(name));
    line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name} in {scrape}"))
}

#[tokio::test]
async fn a_built_snapshot_shows_its_size_and_build_time_in_the_metrics_and_a_restart_its_size() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("raft.redb");
    let history = history();
    let options = storage::StorageOptions::default();
    let metrics = options.metrics.clone();
    let built = {
        let (mut log, mut sm) = storage::open_with(&path, Arc::default(), &options).unwrap().into_parts();
        log.blocking_append(history.clone()).await.unwrap();
        apply_accepted(&mut sm, &history).await;
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let scrape = metrics.encode();
        assert_eq!(sample(&scrape, "archon_raft_snapshots_built_total"), 1.0);
        assert_eq!(sample(&scrape, "archon_raft_snapshot_build_seconds_count"), 1.0);
        assert!(sample(&scrape, "archon_raft_snapshot_build_seconds_sum") > 0.0, "{scrape}");
        sample(&scrape, "archon_raft_snapshot_bytes")
    };
    assert!(built > 100.0, "a snapshot of two workers and three jobs is {built} bytes");

    let reopened = storage::StorageOptions::default();
    let _storage = storage::open_with(&path, Arc::default(), &reopened).unwrap();
    let scrape = reopened.metrics.encode();
    assert_eq!(sample(&scrape, "archon_raft_snapshot_bytes"), built, "the size of the snapshot found at start");
    assert_eq!(sample(&scrape, "archon_raft_snapshots_built_total"), 0.0);
}

#[test]
fn opening_a_file_that_is_already_open_is_a_data_dir_error() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("raft.redb");
    let _open = storage::open(&path, Arc::default()).unwrap().into_parts();
    let again = storage::open(&path, Arc::default());
    assert!(matches!(again, Err(Error::DataDir { .. })), "got {:?}", again.err());
}

#[tokio::test]
async fn a_snapshot_of_an_unknown_format_is_refused_and_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("raft.redb");
    let state = Arc::new(RwLock::new(ClusterState::new()));
    let (log, mut sm) = storage::open(&path, Arc::clone(&state)).unwrap().into_parts();
    apply_accepted(&mut sm, &history()).await;
    let before = snapshot_of(&state);
    let meta = sm.get_snapshot_builder().await.build_snapshot().await.unwrap().meta;

    // Sent by a node of a future version.
    let mut received = sm.begin_receiving_snapshot().await.unwrap();
    let mut data = b"ARCHON-SNAPSHOT\n".to_vec();
    data.extend_from_slice(&99u32.to_le_bytes());
    tokio::io::AsyncWriteExt::write_all(&mut *received, &data).await.unwrap();
    let refused = sm.install_snapshot(&meta, received).await.unwrap_err().to_string();
    assert!(refused.contains("format 99 is newer than this node reads (1)"), "{refused}");
    assert_eq!(snapshot_of(&state), before, "the refused snapshot changed nothing");

    // Stored by one: refused when the data dir is opened.
    drop((log, sm));
    {
        let db = redb::Database::create(path.with_extension("snapshot.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("snapshot")).unwrap();
            let stored: serde_json::Value =
                serde_json::from_slice(redb::ReadableTable::get(&table, "data").unwrap().unwrap().value()).unwrap();
            let mut future = stored.clone();
            future["v"] = serde_json::json!(99);
            table.insert("data", serde_json::to_vec(&future).unwrap().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let refused = storage::open(&path, Arc::default()).unwrap_err().to_string();
    let reads = storage::SNAPSHOT_FORMAT;
    assert!(refused.contains(&format!("snapshot format 99 is newer than this node reads ({reads})")), "{refused}");
}

#[tokio::test]
async fn a_snapshot_kept_in_the_log_file_by_an_older_version_moves_to_its_own_file_on_open() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("raft.redb");
    let snapshot_path = path.with_extension("snapshot.redb");
    let table = redb::TableDefinition::<&str, &[u8]>::new("snapshot");
    let (at_snapshot, meta) = {
        let state = Arc::new(RwLock::new(ClusterState::new()));
        let (log, mut sm) = storage::open(&path, Arc::clone(&state)).unwrap().into_parts();
        apply_accepted(&mut sm, &history()[..5]).await;
        let meta = sm.get_snapshot_builder().await.build_snapshot().await.unwrap().meta;
        drop((log, sm));
        (snapshot_of(&state), meta)
    };
    assert!(snapshot_path.is_file(), "the snapshot has a file of its own");

    // As the data dir of a version that kept the snapshot in the log's file.
    let stored: Vec<(String, Vec<u8>)> = {
        let db = redb::Database::create(&snapshot_path).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let t = txn.open_table(table).unwrap();
        ["meta", "data"]
            .iter()
            .map(|k| (k.to_string(), redb::ReadableTable::get(&t, *k).unwrap().unwrap().value().to_vec()))
            .collect()
    };
    std::fs::remove_file(&snapshot_path).unwrap();
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            for (k, v) in &stored {
                t.insert(k.as_str(), v.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    let state = Arc::new(RwLock::new(ClusterState::new()));
    let (log, mut sm) = storage::open(&path, Arc::clone(&state)).unwrap().into_parts();
    assert_eq!(snapshot_of(&state), at_snapshot, "the moved snapshot loads");
    assert_eq!(sm.get_current_snapshot().await.unwrap().unwrap().meta, meta);
    drop((log, sm));
    assert!(!path.exists(), "the old log file is gone once what it held moved");
    let moved = redb::Database::create(&snapshot_path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&moved).unwrap();
    let t = txn.open_table(table).unwrap();
    assert_eq!(redb::ReadableTable::get(&t, "data").unwrap().unwrap().value(), stored[1].1.as_slice());
}

#[tokio::test]
async fn a_log_kept_in_redb_by_an_older_version_moves_to_the_log_files_on_open() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("raft.redb");
    let entries = history();
    let vote = Vote::new_committed(3, 1);
    let (purged, committed) = (entries[1].log_id, entries[4].log_id);
    {
        // As the data dir of a version that kept the log in raft.redb.
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(redb::TableDefinition::<u64, &[u8]>::new("log")).unwrap();
            for entry in &entries[2..] {
                log.insert(entry.log_id.index, serde_json::to_vec(entry).unwrap().as_slice()).unwrap();
            }
            let mut meta = txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("meta")).unwrap();
            meta.insert("vote", serde_json::to_vec(&vote).unwrap().as_slice()).unwrap();
            meta.insert("committed", serde_json::to_vec(&committed).unwrap().as_slice()).unwrap();
            meta.insert("last_purged", serde_json::to_vec(&purged).unwrap().as_slice()).unwrap();
            txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("snapshot")).unwrap();
        }
        txn.commit().unwrap();
    }
    let check = |(mut log, sm): (LogStore, StateMachine)| {
        let entries = entries.clone();
        async move {
            assert_eq!(
                log.get_log_state().await.unwrap(),
                LogState { last_purged_log_id: Some(purged), last_log_id: entries.last().map(|e| e.log_id) }
            );
            assert_eq!(log.read_vote().await.unwrap(), Some(vote));
            assert_eq!(log.read_committed().await.unwrap(), Some(committed));
            let read = log.try_get_log_entries(..).await.unwrap();
            let ids = |es: &[Entry<TypeConfig>]| es.iter().map(|e| e.log_id).collect::<Vec<_>>();
            assert_eq!(ids(&read), ids(&entries[2..]));
            drop((log, sm));
        }
    };
    let state = Arc::new(RwLock::new(ClusterState::new()));
    check(storage::open(&path, Arc::clone(&state)).unwrap().into_parts()).await;
    assert!(!path.exists(), "raft.redb is gone once its log moved");
    assert!(dir.path().join("raft.wal").is_dir());
    // And it reopens from the log files alone.
    check(storage::open(&path, state).unwrap().into_parts()).await;
}
