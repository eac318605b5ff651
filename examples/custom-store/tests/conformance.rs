//! The file store against Archon's conformance suites, and against a crash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use archon_core::history::{History, MemHistory};
use archon_core::model::{AttemptId, AttemptResult, ExitStatus, OutputTail, RunId, RunState};
use archon_core::state::{ClusterState, Command};
use archon_core::store::{Store, StoreExt};
use archon_core::testkit::fixtures::{assign, register_worker, submit_job};
use archon_core::testkit::store_suite::StoreHarness;
use archon_core::testkit::{history_suite, store_suite};
use async_trait::async_trait;
use example_custom_store::FileStore;
use tempfile::TempDir;

/// Opens each store in a directory of its own, kept until the harness drops.
#[derive(Default)]
struct Harness {
    dirs: Mutex<Vec<TempDir>>,
}

#[async_trait]
impl StoreHarness for Harness {
    async fn open(&self) -> Arc<dyn Store> {
        let dir = TempDir::new().unwrap();
        let store = FileStore::open(dir.path().join("commands.jsonl")).unwrap();
        self.dirs.lock().unwrap().push(dir);
        Arc::new(store)
    }
}

#[tokio::test]
async fn the_file_store_passes_the_store_suite() {
    store_suite::run_all(&Harness::default()).await;
}

// The history is a `MemHistory` fed by the same state machine the suite's
// reference uses, and this store never prunes on its own, so it answers alike.
#[tokio::test]
async fn the_file_store_passes_the_history_suite() {
    history_suite::run_all(&Harness::default()).await;
}

fn finish(run: u64, attempt: u64, stdout: &'static str) -> Command {
    Command::FinishAttempt {
        at: archon_core::model::Timestamp(5_000),
        run: RunId(run),
        attempt: AttemptId(attempt),
        result: AttemptResult {
            status: ExitStatus::Exited { code: 0 },
            stdout: OutputTail { data: stdout.as_bytes().into(), truncated: 0 },
            stderr: OutputTail::default(),
            usage: None,
        },
    }
}

#[tokio::test]
async fn acknowledged_proposals_survive_a_crash_and_a_torn_last_record_is_dropped() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("commands.jsonl");
    let batches = [
        vec![register_worker("w1")],
        vec![submit_job("a", 2_000), submit_job("b", 2_001)],
        vec![assign(1, 1, 3_000), assign(2, 1, 3_001)],
        vec![finish(1, 1, "one\n"), Command::CancelRun { at: archon_core::model::Timestamp(5_001), run: RunId(2) }],
        vec![submit_job("c", 6_000)],
    ];
    let mut reference = ClusterState::new();
    let history = MemHistory::new();
    {
        let store = FileStore::open(&path).unwrap();
        for batch in &batches {
            let want: Vec<_> = batch.iter().map(|c| reference.apply(c)).collect();
            history.apply(&reference.take_history());
            assert_eq!(store.propose(batch.clone()).await.unwrap(), want);
        }
        // The crash: the store is dropped with no shutdown of any kind.
    }

    let reopened = FileStore::open(&path).unwrap();
    assert_eq!(reopened.records(), batches.len() as u64);
    assert_eq!(reopened.query(ClusterState::clone), reference, "the state after replay");
    let finished = reopened.history().runs(&[RunId(1), RunId(2)]).await.unwrap();
    assert_eq!(finished, history.runs(&[RunId(1), RunId(2)]).await.unwrap(), "the history after replay");
    assert_eq!(finished.first().map(|r| r.run.state), Some(RunState::Succeeded));
    assert_eq!(reopened.history().output(AttemptId(1)).await.unwrap()[0], "one\n".as_bytes());
    drop(reopened);

    // A crash mid-append leaves half a record at the end of the file.
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"[{"cmd":"submit_job","at":7000,"spec":{"na"#).unwrap();
    drop(file);
    let len_before = std::fs::metadata(&path).unwrap().len();

    let recovered = FileStore::open(&path).unwrap();
    assert_eq!(recovered.records(), batches.len() as u64, "the torn record is not counted");
    assert_eq!(recovered.query(ClusterState::clone), reference, "the earlier records all replayed");
    assert!(std::fs::metadata(&path).unwrap().len() < len_before, "the torn record is cut off the file");

    // New proposals land after the last whole record, so the next open reads them.
    let next = submit_job("d", 8_000);
    let want = reference.apply(&next);
    assert_eq!(recovered.propose(vec![next]).await.unwrap(), [want]);
    drop(recovered);
    let again = FileStore::open(&path).unwrap();
    assert_eq!(again.records(), batches.len() as u64 + 1);
    assert_eq!(again.query(ClusterState::clone), reference);
}

#[test]
fn a_damaged_record_before_the_last_fails_the_open() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("commands.jsonl");
    std::fs::write(&path, "[]\nnot json\n[]\n").unwrap();
    let err = FileStore::open(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "[]\nnot json\n[]\n", "the file is left as it was");
}
