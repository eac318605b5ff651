//! The verifier on real files: written by the storage itself, then tampered with
//! the way a torn or buggy write would, one fault at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use archon_core::state::Command;
use archon_core::testkit::fixtures::{assign, register_worker, submit_job};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{BasicNode, CommittedLeaderId, Membership, RaftSnapshotBuilder};
use tempfile::TempDir;

use super::*;
use crate::storage::wal::Record;

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

fn normal(commands: Vec<Command>) -> EntryPayload<TypeConfig> {
    EntryPayload::Normal(crate::Proposal::new(commands))
}

/// Ten entries over two terms: the first membership, workers, jobs and
/// placements by the leader of term 1, then a blank and more by that of term 2.
fn history() -> Vec<Entry<TypeConfig>> {
    let membership = Membership::new(vec![BTreeSet::from([0])], BTreeMap::from([(0, BasicNode::new("n0:7100"))]));
    let payloads = vec![
        (0, EntryPayload::Membership(membership)),
        (1, normal(vec![register_worker("w1"), register_worker("w2")])),
        (1, normal(vec![submit_job("build", 2_000)])),
        (1, normal(vec![submit_job("test", 3_000), assign(1, 1, 3_001)])),
        (1, normal(vec![assign(2, 2, 4_000)])),
        (1, normal(vec![submit_job("deploy", 5_000)])),
        (2, EntryPayload::Blank),
        (2, normal(vec![submit_job("lint", 6_000)])),
        (2, normal(vec![assign(3, 1, 7_000)])),
        (2, normal(vec![submit_job("release", 8_000)])),
    ];
    payloads
        .into_iter()
        .zip(0..)
        .map(|((term, payload), index)| Entry { log_id: log_id(term, index), payload })
        .collect()
}

/// A stopped node's files after [`history`]: a snapshot at 4, the log purged
/// through 2, committed through 9. Returns the digest of the state the node
/// applied after each entry.
async fn write_node(path: &Path) -> BTreeMap<u64, String> {
    let state = Arc::new(std::sync::RwLock::new(ClusterState::new()));
    let (mut log, mut sm) = crate::storage::open(path, Arc::clone(&state)).unwrap().into_parts();
    log.save_vote(&Vote::new_committed(2, 0)).await.unwrap();
    log.blocking_append(history()).await.unwrap();
    let mut digests = BTreeMap::new();
    for entry in history() {
        let index = entry.log_id.index;
        sm.apply(vec![entry]).await.unwrap();
        digests.insert(index, state_digest(&state.read().unwrap()).unwrap());
        if index == 4 {
            sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        }
    }
    log.purge(log_id(1, 2)).await.unwrap();
    log.save_committed(Some(log_id(2, 9))).await.unwrap();
    // The committed id is not fsync'd on its own: the next vote write carries it.
    log.save_vote(&Vote::new_committed(2, 0)).await.unwrap();
    digests
}

/// What a stopped node's log holds, as stored.
struct Stored {
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<Vec<u8>>,
    entries: BTreeMap<u64, Vec<u8>>,
}

/// Rewrites a stopped node's log as `change` makes it — in ways a torn or
/// buggy write could leave it, whatever the log's own rules of replay.
fn tamper_log(path: &Path, change: impl FnOnce(&mut Stored)) {
    let files = SegmentDir::new(crate::storage::wal_path_for(path)).unwrap();
    let wal = Wal::open(Box::new(files.clone())).unwrap();
    let mut stored = Stored {
        vote: wal.vote().map(<[u8]>::to_vec),
        committed: wal.committed().map(<[u8]>::to_vec),
        purged: wal.purged().map(<[u8]>::to_vec),
        entries: wal.read(.., usize::MAX).unwrap().into_iter().collect(),
    };
    drop(wal);
    change(&mut stored);
    for number in files.list().unwrap() {
        files.remove(number).unwrap();
    }
    let mut wal = Wal::open(Box::new(files)).unwrap();
    let mut records = Vec::new();
    records.extend(stored.vote.map(Record::Vote));
    records.extend(stored.committed.map(Record::Committed));
    if let Some(bytes) = stored.purged {
        let index = serde_json::from_slice::<LogId<NodeId>>(&bytes).unwrap().index;
        records.push(Record::Purged { index, bytes });
    }
    records.extend(stored.entries.into_iter().map(|(index, bytes)| Record::Entry { index, bytes }));
    wal.append(records, true).unwrap();
}

/// Rewrites a stopped node's snapshot file in one transaction.
fn tamper_snapshot(path: &Path, change: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::open(crate::storage::snapshot_path_for(path)).unwrap();
    let txn = db.begin_write().unwrap();
    change(&txn);
    txn.commit().unwrap();
}

fn entry_json(term: u64, index: u64, like: u64) -> Vec<u8> {
    let mut entry = history().remove(like as usize);
    entry.log_id = log_id(term, index);
    serde_json::to_vec(&entry).unwrap()
}

#[tokio::test]
async fn a_sound_log_rebuilds_the_state_the_node_applied_at_every_index_after_its_snapshot() {
    let dir = TempDir::new().unwrap();
    let digests = write_node(&dir.path().join(LOG_FILE)).await;

    let report = verify(dir.path(), None).unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert!(!report.recovered, "closed cleanly");
    assert_eq!((report.first_index, report.last_index, report.last_term), (Some(3), Some(9), Some(2)));
    assert_eq!((report.entries, report.commands, report.blanks, report.memberships), (7, 7, 1, 0));
    assert_eq!(report.vote, Some(VoteSummary { term: 2, node: Some(0), committed: true }));
    assert_eq!(report.committed, Some(Position { index: 9, term: 2 }));
    assert_eq!(report.last_purged, Some(Position { index: 2, term: 1 }));
    assert_eq!(report.snapshot.as_ref().and_then(|s| s.last), Some(Position { index: 4, term: 1 }));
    let replayed = report.replayed.as_ref().unwrap();
    assert_eq!(replayed.through, Some(Position { index: 9, term: 2 }));
    assert_eq!(replayed.entries, 5);
    assert_eq!(replayed.digest, digests[&9], "the digest of the state the node had applied");
    assert_eq!((replayed.state.jobs, replayed.state.commands), (5, 10));
    assert_eq!(replayed.state.workers, BTreeMap::from([("ready".to_owned(), 2)]));

    // Through any index from the snapshot on: the state the node had then.
    for index in 4..=9 {
        let report = verify(dir.path(), Some(index)).unwrap();
        assert!(report.is_clean(), "through {index}: {report:#?}");
        assert_eq!(report.replayed.unwrap().digest, digests[&index], "through {index}");
    }
    assert_ne!(digests[&8], digests[&9], "the digest tells states apart");
    assert_eq!(digests[&5], digests[&6], "a blank entry changes nothing");

    // Before the snapshot, or past the log's end, there is no state to rebuild: said, not guessed.
    for (through, says) in [(3, "the snapshot already reflects index 4"), (10, "entry 10 is missing")] {
        let report = verify(dir.path(), Some(through)).unwrap();
        assert!(report.problems.iter().any(|p| p.contains(says)), "through {through}: {:#?}", report.problems);
        assert!(report.replayed.is_none());
    }
}

#[tokio::test]
async fn a_gap_a_term_going_back_a_garbage_entry_or_a_bad_snapshot_is_found() {
    let faults: Vec<(&str, Fault, &str)> = vec![
        ("a gap", log(|s| drop(s.entries.remove(&7))), "entries 7..=7 are missing"),
        (
            "a term going back",
            log(|s| drop(s.entries.insert(8, entry_json(1, 8, 8)))),
            "entry 8 is of term 1, after term 2",
        ),
        (
            "bytes that are not an entry",
            log(|s| drop(s.entries.insert(5, b"\x00\x01 torn".to_vec()))),
            "entry 5 does not decode",
        ),
        (
            "a command no build knows",
            log(|s| {
                let mut entry: Value = serde_json::from_slice(&entry_json(2, 7, 7)).unwrap();
                entry["payload"]["Normal"]["commands"][0] = serde_json::json!({"cmd": "teleport"});
                s.entries.insert(7, serde_json::to_vec(&entry).unwrap());
            }),
            "entry 7 does not decode",
        ),
        (
            "an entry under another's index",
            log(|s| drop(s.entries.insert(8, entry_json(2, 7, 7)))),
            "the entry stored at index 8 names index 7",
        ),
        (
            "a committed entry replaced",
            log(|s| drop(s.entries.insert(9, entry_json(3, 9, 9)))),
            "the committed log id is index 9 (term 2) but the log's entry there is index 9 (term 3)",
        ),
        (
            "a snapshot that does not read",
            Fault::Snapshot(Box::new(|t: &redb::WriteTransaction| {
                drop(t.open_table(SNAPSHOT).unwrap().insert(DATA_KEY, b"{\"v\":1,".as_slice()).unwrap())
            })),
            "the snapshot does not read",
        ),
        (
            "entries gone without a purge",
            log(|s| s.purged = None),
            "the log starts at 3 but nothing before it was purged",
        ),
        (
            "a committed index past the log",
            log(|s| s.committed = Some(serde_json::to_vec(&log_id(2, 12)).unwrap())),
            "committed entries are missing",
        ),
    ];
    for (fault, change, says) in faults {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(LOG_FILE);
        write_node(&path).await;
        match change {
            Fault::Log(change) => tamper_log(&path, change),
            Fault::Snapshot(change) => tamper_snapshot(&path, change),
        }
        let report = verify(dir.path(), None).unwrap();
        assert!(!report.is_clean(), "{fault} went unnoticed: {report:#?}");
        assert!(report.problems.iter().any(|p| p.contains(says)), "{fault}: {:#?}", report.problems);
    }
}

/// A fault put into the log or into the snapshot.
enum Fault {
    Log(Box<dyn FnOnce(&mut Stored)>),
    Snapshot(Box<dyn FnOnce(&redb::WriteTransaction)>),
}

fn log(change: impl FnOnce(&mut Stored) + 'static) -> Fault {
    Fault::Log(Box::new(change))
}

#[tokio::test]
async fn a_fault_in_the_entries_to_replay_leaves_no_state() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join(LOG_FILE);
    write_node(&path).await;
    tamper_log(&path, |s| drop(s.entries.insert(6, b"{\"log_id\":".to_vec())));
    let report = verify(dir.path(), None).unwrap();
    assert!(report.problems.iter().any(|p| p.contains("cannot be rebuilt through 9: entry 6")), "{report:#?}");
    assert!(report.replayed.is_none());
}

#[test]
fn the_digest_is_canonical_and_tells_states_apart() {
    let value: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[3,{"f":4,"e":"x"}],"c":null}}"#).unwrap();
    let mut out = Vec::new();
    canonical(&value, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":{"c":null,"d":[3,{"e":"x","f":4}]},"b":1}"#);

    let mut state = ClusterState::new();
    state.apply(&register_worker("w1"));
    state.apply(&submit_job("build", 2_000));
    let digest = state_digest(&state).unwrap();
    assert!(digest.starts_with("fnv1a128:") && digest.len() == "fnv1a128:".len() + 32, "{digest}");
    let copy: ClusterState = serde_json::from_slice(&serde_json::to_vec(&state).unwrap()).unwrap();
    assert_eq!(state_digest(&copy).unwrap(), digest, "a snapshot's round trip keeps the digest");
    state.apply(&assign(1, 1, 3_000));
    assert_ne!(state_digest(&state).unwrap(), digest);
}

#[tokio::test]
async fn the_files_of_a_running_node_or_a_wrong_path_are_refused() {
    let dir = TempDir::new().unwrap();
    let storage = crate::storage::open(&dir.path().join(LOG_FILE), Arc::new(RwLock::default())).unwrap();
    let err = verify(dir.path(), None).unwrap_err();
    assert!(matches!(&err, Error::DataDir { message, .. } if message.contains("stop its manager first")), "{err}");
    drop(storage);
    assert!(verify(dir.path(), None).unwrap().is_clean(), "a fresh node's files are sound");
    let err = verify(&dir.path().join("elsewhere"), None).unwrap_err();
    assert!(err.to_string().contains("no log here"), "{err}");
}
