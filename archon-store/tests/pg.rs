//! The PostgreSQL store against a real PostgreSQL server (a throwaway cluster
//! per test binary from `archon_store::testkit`, a fresh database per store):
//! the store conformance suite (once with fsync on, as in production),
//! migrations, reopening from the log and a snapshot, the SQL tables, a
//! model-based property test against MemStore, and a `COMMIT` whose answer is
//! lost (through the cutting proxy of `proxy/`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use archon_core::history::{History, MemHistory};
use archon_core::model::{Attempt, Job, JobId, JobSpec, Run, RunId, Task, Timestamp};
use archon_core::state::{ClusterState, Command, Event, Outcome};
use archon_core::store::{MemStore, Store, StoreExt};
use archon_core::testkit::commands::{step, to_command};
use archon_core::testkit::store_suite::{StoreHarness, run_all};
use archon_store::testkit::TempPostgres;
use archon_store::{Error, PgConfig, PgStore};
use async_trait::async_trait;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use proxy::Proxy;

/// Each test starts a server of its own (stopped when it ends; a static one would
/// outlive the test process); each store gets its own database.
fn server() -> TempPostgres {
    TempPostgres::start()
}

async fn open(url: &str, config: impl FnOnce(PgConfig) -> PgConfig) -> PgStore {
    let store = PgStore::open(config(PgConfig::new(url, "http://127.0.0.1:1"))).await.unwrap();
    store.wait_for_leadership(Duration::from_secs(10)).await.unwrap();
    store
}

struct FreshDatabase(TempPostgres);

#[async_trait]
impl StoreHarness for FreshDatabase {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(open(&self.0.create_database(), |c| c).await)
    }
}

fn submit(i: i64) -> Command {
    let spec = JobSpec::new(format!("j{i}"), Task::Shell { command: "true".into() });
    Command::submit(Timestamp(1_700_000_000_000 + i), Arc::new(spec))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pg_store_conforms() {
    run_all(&FreshDatabase(server())).await;
}

/// The other tests run PostgreSQL without fsync, for speed; this one keeps its
/// defaults (fsync and synchronous commit on), as a production database has.
#[tokio::test(flavor = "multi_thread")]
async fn the_pg_store_conforms_with_fsync_on() {
    let pg = TempPostgres::start_with(true);
    let fsync = pg.psql("postgres", "SHOW fsync");
    assert_eq!(String::from_utf8_lossy(&fsync.stdout).trim(), "on");
    run_all(&FreshDatabase(pg)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pg_store_history_conforms() {
    archon_core::testkit::history_suite::run_all(&FreshDatabase(server())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_create_the_schema_change_nothing_when_current_and_refuse_a_newer_one() {
    let pg = server();
    let url = pg.create_database();
    let applied = archon_store::migrate(&url).await.unwrap();
    assert_eq!(applied.len(), 3, "an empty database gets every migration: {applied:?}");
    let tables =
        pg.psql(url.rsplit('/').next().unwrap(), "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'archon_%'");
    assert_eq!(String::from_utf8_lossy(&tables.stdout).trim(), "9");
    assert!(archon_store::migrate(&url).await.unwrap().is_empty(), "an up-to-date database is left alone");

    let db = url.rsplit('/').next().unwrap();
    let out = pg.psql(db, "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refused = archon_store::migrate(&url).await.unwrap_err();
    assert!(matches!(refused, Error::SchemaTooNew { .. }), "{refused}");
    let text = refused.to_string();
    assert!(text.contains("29991231000000") && text.contains("newer than this binary"), "{text}");
    let refused = PgStore::open(PgConfig::new(&url, "x")).await.unwrap_err();
    assert!(matches!(refused, Error::SchemaTooNew { .. }), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_or_unreachable_database_is_a_clear_error_without_the_password() {
    let e = PgStore::open(PgConfig::new("mysql://u:hunter2@db/x", "x")).await.unwrap_err().to_string();
    assert!(e.contains("not a PostgreSQL URL") && !e.contains("hunter2"), "{e}");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://archon:hunter2@127.0.0.1:{port}/archon");
    let e = PgStore::open(PgConfig::new(&url, "x")).await.unwrap_err().to_string();
    assert!(e.contains("cannot reach the database at postgres://archon:***@127.0.0.1"), "{e}");
    assert!(!e.contains("hunter2"), "the password leaked: {e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reopened_store_has_every_acknowledged_command_and_the_tables_show_them() {
    let pg = server();
    let url = pg.create_database();
    let before = {
        let store = open(&url, |c| PgConfig { snapshot_every: 7, ..c }).await;
        for i in 0..25 {
            store.propose(vec![submit(i)]).await.unwrap();
        }
        // A batch of several commands, committed together.
        store.propose((25..40).map(submit).collect()).await.unwrap();
        let state = store.query(Clone::clone);
        store.shutdown();
        state
    };
    assert_eq!(before.jobs().len(), 40);
    let store = open(&url, |c| c).await;
    assert_eq!(store.query(Clone::clone), before, "the reopened state differs");
    let db = url.rsplit('/').next().unwrap();
    let sql = |q: &str| String::from_utf8_lossy(&pg.psql(db, q).stdout).trim().to_owned();
    assert_eq!(sql("SELECT count(*) FROM archon_jobs"), "40");
    assert_eq!(sql("SELECT count(*) FROM archon_runs WHERE state = 'pending'"), "40");
    assert_eq!(sql("SELECT max(index) > 0 FROM archon_snapshots"), "t", "a snapshot was written");
    // The log keeps only what follows the latest snapshot.
    assert_eq!(sql("SELECT count(*) FROM archon_log WHERE index <= (SELECT max(index) FROM archon_snapshots)"), "0");
    assert_eq!(sql("SELECT (SELECT count(*) FROM archon_log) + (SELECT max(index) FROM archon_snapshots)"), "40");
    assert_eq!(sql("SELECT name FROM archon_jobs WHERE id = 3"), "j2");
    assert_eq!(sql("SELECT term FROM archon_leader"), "2", "each leadership has its own term");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_with_secret_env_is_logged_as_format_3_and_read_back_with_its_value() {
    let pg = server();
    let url = pg.create_database();
    let mut spec = JobSpec::new("deploy", Task::Shell { command: "true".into() });
    spec.secret_env.insert("API_TOKEN".into(), "s3cr3t-in-postgres".into());
    {
        let store = open(&url, |c| c).await;
        store.propose(vec![submit(0), Command::submit(Timestamp(1_700_000_000_001), Arc::new(spec))]).await.unwrap();
        store.shutdown();
    }
    let db = url.rsplit('/').next().unwrap();
    let formats =
        String::from_utf8_lossy(&pg.psql(db, "SELECT format FROM archon_log ORDER BY index").stdout).into_owned();
    assert_eq!(formats.split_whitespace().collect::<Vec<_>>(), ["3", "3"], "one batch, labelled with its newest");
    // Reopened, the log is read back (a format this binary knows) with the value intact.
    let store = open(&url, |c| c).await;
    let job = store.query(|s| s.jobs().values().find(|j| j.spec.name == "deploy").cloned()).unwrap();
    assert_eq!(job.spec.secret_env["API_TOKEN"].expose(), "s3cr3t-in-postgres");
}

fn seed() -> u64 {
    let seed = std::env::var("ARCHON_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
    });
    eprintln!("PgStore vs MemStore property test seed: {seed} (replay with ARCHON_TEST_SEED={seed})");
    seed
}

/// The queryable tables, one line per row, as psql prints them.
fn tables_of(pg: &TempPostgres, url: &str) -> Vec<String> {
    let db = url.rsplit('/').next().unwrap();
    [
        "SELECT id, runs, cancelled FROM archon_jobs ORDER BY id",
        "SELECT id, job_id, state, attempts, retries_used, finished_ms IS NOT NULL FROM archon_runs ORDER BY id",
        "SELECT id, run_id, worker_id, state, exit_code FROM archon_attempts ORDER BY id",
        "SELECT id, name, state, running FROM archon_workers ORDER BY id",
    ]
    .iter()
    .map(|q| {
        let out = pg.psql(db, q);
        assert!(out.status.success(), "{q}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .collect()
}

/// What [`tables_of`] must print for `state` and the `history` it handed over:
/// live rows and finished ones alike.
fn expected_tables(state: &ClusterState, history: &MemHistory) -> Vec<String> {
    let b = |v: bool| if v { "t" } else { "f" };
    let name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let lines = |rows: BTreeMap<u64, String>| rows.into_values().map(|r| r + "\n").collect::<String>();
    let runs: Vec<Run> = state
        .runs()
        .values()
        .cloned()
        .chain(history.run_ids().into_iter().filter_map(|r| history.run_record(r)).map(|r| r.run.clone()))
        .collect();
    let attempts: Vec<Attempt> = state
        .attempts()
        .values()
        .cloned()
        .chain(history.run_ids().into_iter().filter_map(|r| history.run_record(r)).flat_map(|r| r.attempts.clone()))
        .collect();
    let jobs: Vec<Job> = state
        .jobs()
        .values()
        .cloned()
        .chain(history.job_ids().into_iter().filter_map(|j| history.job_record(j)).map(|j| j.job.clone()))
        .collect();
    vec![
        lines(jobs.iter().map(|j| (j.id.0, format!("{}|{}|{}", j.id.0, j.runs.len(), b(j.cancelled)))).collect()),
        lines(
            runs.iter()
                .map(|r| {
                    let done = b(r.finished_at.is_some());
                    let line = format!(
                        "{}|{}|{}|{}|{}|{done}",
                        r.id.0,
                        r.job.0,
                        r.state.as_str(),
                        r.attempts.len(),
                        r.retries_used
                    );
                    (r.id.0, line)
                })
                .collect(),
        ),
        lines(
            attempts
                .iter()
                .map(|a| {
                    let code =
                        a.result.as_ref().and_then(|r| r.status.code()).map(|c| c.to_string()).unwrap_or_default();
                    let st = name(serde_json::to_value(a.state).unwrap());
                    (a.id.0, format!("{}|{}|{}|{st}|{code}", a.id.0, a.run.0, a.worker.0))
                })
                .collect(),
        ),
        lines(
            state
                .workers()
                .values()
                .map(|w| (w.id.0, format!("{}|{}|{}|{}", w.id.0, w.name, w.state.as_str(), w.running.len())))
                .collect(),
        ),
    ]
}

/// The same random command sequences, proposed in random batches, give equal
/// states and outcomes on PgStore and MemStore; the SQL tables show exactly that
/// state; and a PgStore reopened from the database has the same state again.
#[test]
fn pg_store_and_mem_store_agree_on_random_command_sequences() {
    let pg_server = server();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 12,
        rng_seed: RngSeed::Fixed(seed()),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop::collection::vec((step(), 0..400u16, 1..6usize), 1..120);
    runner
        .run(&strategy, |steps| {
            runtime.block_on(async {
                let url = pg_server.create_database();
                let pg = open(&url, |c| PgConfig { snapshot_every: 50, ..c }).await;
                let mem = MemStore::new();
                let mut model = ClusterState::new();
                let history = MemHistory::new();
                let mut at = Timestamp(1_000_000);
                let mut batch = Vec::new();
                for (i, (step, dt, batch_size)) in steps.iter().enumerate() {
                    at = at.plus(Duration::from_millis(u64::from(*dt)));
                    let command = to_command(&model, &history, step, at);
                    model.apply(&command);
                    history.apply(&model.take_history());
                    batch.push(command);
                    if batch.len() >= *batch_size || i + 1 == steps.len() {
                        let on_pg = pg.propose(batch.clone()).await.unwrap();
                        let on_mem = mem.propose(std::mem::take(&mut batch)).await.unwrap();
                        prop_assert_eq!(on_pg, on_mem);
                    }
                }
                let pg_state = pg.query(Clone::clone);
                prop_assert_eq!(&pg_state, &mem.query(Clone::clone));
                prop_assert_eq!(&pg_state, &model);
                let tables = tables_of(&pg_server, &url);
                prop_assert_eq!(tables, expected_tables(&model, &history));
                let ids: Vec<RunId> = (1..=300).map(RunId).collect();
                let kept = pg.history().runs(&ids).await.unwrap();
                prop_assert_eq!(kept, history.runs(&ids).await.unwrap());
                pg.shutdown();
                let reopened = open(&url, |c| c).await;
                prop_assert_eq!(&reopened.query(Clone::clone), &model);
                reopened.shutdown();
                Ok(())
            })
        })
        .unwrap();
}

/// A leader that lost its lock without noticing (its checks are far apart here)
/// cannot write once another manager has taken over: its transaction sees the
/// newer term and fails, it steps down, and nothing of its batch is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_deposed_leaders_late_write_fails_and_stores_nothing() {
    let pg = server();
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let sql = |q: &str| {
        let out = pg.psql(&db, q);
        assert!(out.status.success(), "{q}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let old = open(&url, |c| PgConfig { election_poll: Duration::from_secs(3600), ..c }).await;
    old.propose(vec![submit(1)]).await.unwrap();
    // Its lock connection dies (a network cut, a killed backend): the lock is free.
    let killed = sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 16722 AND objid = 1128812366",
    );
    assert_eq!(killed, "1", "the old leader's lock connection");
    let new =
        PgStore::open(PgConfig { election_poll: Duration::from_millis(50), ..PgConfig::new(&url, "http://new:1") })
            .await
            .unwrap();
    new.wait_for_leadership(Duration::from_secs(10)).await.unwrap();
    assert_eq!(sql("SELECT term FROM archon_leader"), "2");
    assert!(old.leadership().borrow().is_leader, "the old leader has not noticed yet");

    let late = old.propose(vec![submit(2)]).await.unwrap_err();
    assert!(matches!(late, archon_core::Error::NotLeader { .. }), "{late}");
    assert!(!old.leadership().borrow().is_leader, "it stepped down");
    assert_eq!(sql("SELECT count(*) FROM archon_log"), "1", "the late write stored nothing");
    assert_eq!(sql("SELECT count(*) FROM archon_jobs"), "1");
    // The new leader has the first job and carries on.
    assert_eq!(new.query(|s| s.jobs().len()), 1);
    new.propose(vec![submit(3)]).await.unwrap();
    assert_eq!(sql("SELECT count(*) FROM archon_log"), "2");
    let followers = old.propose(vec![submit(4)]).await.unwrap_err();
    assert!(matches!(followers, archon_core::Error::NotLeader { .. }), "{followers}");
}

/// Dropping the last handle of a leading store stops its campaign and frees the
/// lock, so another manager leads (no explicit shutdown needed).
#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_leading_store_frees_the_lock() {
    let pg = server();
    let url = pg.create_database();
    let first = open(&url, |c| c).await;
    first.propose(vec![submit(1)]).await.unwrap();
    drop(first);
    let second = open(&url, |c| c).await;
    assert_eq!(second.query(|s| s.jobs().len()), 1);
}

fn keyed_submit(i: i64, key: &str) -> Command {
    let mut spec = JobSpec::new(format!("j{i}"), Task::Shell { command: "true".into() });
    spec.idempotency_key = Some(key.into());
    Command::submit(Timestamp(1_700_000_000_000 + i), Arc::new(spec))
}

/// The job a submit's outcome names, and whether it was an earlier one's.
fn accepted(outcomes: &[Outcome]) -> (JobId, bool) {
    match outcomes.first().map(Outcome::events) {
        Some([Event::JobAccepted { job, duplicate, .. }, ..]) => (*job, *duplicate),
        other => panic!("not an accepted submit: {other:?}"),
    }
}

fn job_with_key(state: &ClusterState, key: &str) -> Option<JobId> {
    state.jobs().values().find(|j| j.spec.idempotency_key.as_deref() == Some(key)).map(|j| j.id)
}

/// Asserts that the log holds `count` entries, numbered 1 to `count` without a gap.
fn assert_log_is_contiguous(pg: &TempPostgres, db: &str, count: usize) {
    let out = pg.psql(db, "SELECT count(*), min(index), max(index) FROM archon_log");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{count}|1|{count}"), "the log's entries");
}

/// The connection drops after COMMIT reached the server and before its answer
/// reached the writer. The batch is in doubt; the writer asks the database
/// before it writes again, so its answer is the truth (Ok exactly when the job
/// is stored), the batches after it are stored at the indexes that follow (no
/// wedge on the log's primary key), and a retry with the same idempotency key
/// finds the first job if it was stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_whose_answer_is_lost_is_answered_truthfully_and_the_next_batches_are_stored() {
    lose_a_commits_answer(true).await;
}

/// The same, but the connection drops just before the COMMIT would reach the
/// server: the writer cannot tell the difference, and must answer "not stored".
#[tokio::test(flavor = "multi_thread")]
async fn a_commit_lost_on_its_way_is_answered_not_stored_and_the_next_batches_are_stored() {
    let stored = lose_a_commits_answer(false).await;
    assert_eq!(stored, None, "the server never got the COMMIT");
}

/// Cuts the connection that carries a keyed submit's COMMIT, after forwarding it
/// or instead, and checks the answer, the log and a retry; the job if stored.
async fn lose_a_commits_answer(forward_commit: bool) -> Option<JobId> {
    let pg = server();
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let proxy = Proxy::start(pg.port()).await;
    // One pooled connection: the batch's, then the read-back's (the lock has its own).
    let store = open(&proxy.url(&db), |c| PgConfig { pool_size: 1, ..c }).await;
    store.propose(vec![submit(0)]).await.unwrap();

    if forward_commit {
        proxy.cut_after_next_commit();
    } else {
        proxy.cut_before_next_commit();
    }
    let first = store.propose(vec![keyed_submit(1, "in-doubt")]).await;
    assert_eq!(proxy.cuts(), 1, "the connection was cut at COMMIT: {first:?}");
    let stored = store.query(|s| job_with_key(s, "in-doubt"));
    eprintln!("the in-doubt batch was {}", if stored.is_some() { "stored" } else { "not stored" });
    match (&first, stored) {
        (Ok(outcomes), Some(job)) => assert_eq!(accepted(outcomes), (job, false)),
        (Err(archon_core::Error::Unavailable(message)), None) => {
            assert!(message.contains("did not store"), "{message}");
        }
        (answer, job) => panic!("the answer {answer:?} is not the truth (the job in the state: {job:?})"),
    }
    assert!(store.leadership().borrow().is_leader, "the lock connection was not cut: it still leads");
    let in_doubt = usize::from(stored.is_some());
    let in_table = pg.psql(&db, "SELECT count(*) FROM archon_jobs WHERE spec->>'idempotency_key' = 'in-doubt'");
    assert_eq!(String::from_utf8_lossy(&in_table.stdout).trim(), in_doubt.to_string(), "the database holds the job");
    assert_log_is_contiguous(&pg, &db, 1 + in_doubt);

    for i in 2..6 {
        store.propose(vec![submit(i)]).await.unwrap();
    }
    store.propose((6..9).map(submit).collect()).await.unwrap();
    assert_log_is_contiguous(&pg, &db, 8 + in_doubt);

    let again = accepted(&store.propose(vec![keyed_submit(9, "in-doubt")]).await.unwrap());
    match stored {
        Some(job) => assert_eq!(again, (job, true), "the retry finds the first job"),
        None => assert!(!again.1, "nothing to find: the retry is a new job"),
    }
    let state = store.query(Clone::clone);
    assert_eq!(state.jobs().len(), 9, "a stored first job was found again; a lost one was submitted anew");
    store.shutdown();
    // A manager starting from the tables sees exactly what was acknowledged.
    let reopened = open(&url, |c| c).await;
    assert_eq!(reopened.query(Clone::clone), state);
    stored
}

/// The COMMIT's answer is lost and the database stays unreachable: the writer
/// keeps asking for `in_doubt_timeout`, then steps down and says the outcome is
/// unknown. Once the database is back it leads again from the tables, and the
/// same idempotency key tells the client what happened.
#[tokio::test(flavor = "multi_thread")]
async fn a_writer_that_cannot_learn_a_batchs_fate_steps_down_and_says_the_outcome_is_unknown() {
    let pg = server();
    let url = pg.create_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let proxy = Proxy::start(pg.port()).await;
    let store = open(&proxy.url(&db), |c| PgConfig {
        pool_size: 1,
        in_doubt_timeout: Duration::from_secs(2),
        retry_cap: Duration::from_millis(200),
        election_poll: Duration::from_millis(50),
        ..c
    })
    .await;
    store.propose(vec![submit(0)]).await.unwrap();

    proxy.go_down_at_next_commit();
    let first = store.propose(vec![keyed_submit(1, "in-doubt")]).await.unwrap_err();
    assert_eq!(proxy.cuts(), 1);
    let archon_core::Error::Unavailable(message) = &first else { panic!("{first}") };
    assert!(message.contains("outcome of this submit is unknown"), "{message}");
    assert!(message.contains("retry with the same idempotency key"), "{message}");
    assert!(!store.leadership().borrow().is_leader, "it stepped down");
    let refused = store.propose(vec![submit(2)]).await.unwrap_err();
    assert!(matches!(refused, archon_core::Error::NotLeader { .. }), "{refused}");

    proxy.heal();
    store.wait_for_leadership(Duration::from_secs(30)).await.unwrap();
    let stored = store.query(|s| job_with_key(s, "in-doubt"));
    eprintln!("the in-doubt batch was {}", if stored.is_some() { "stored" } else { "not stored" });
    let in_doubt = usize::from(stored.is_some());
    assert_log_is_contiguous(&pg, &db, 1 + in_doubt);
    let again = accepted(&store.propose(vec![keyed_submit(3, "in-doubt")]).await.unwrap());
    match stored {
        Some(job) => assert_eq!(again, (job, true), "the retry finds the first job"),
        None => assert!(!again.1, "nothing to find: the retry is a new job"),
    }
    store.propose((4..7).map(submit).collect()).await.unwrap();
    assert_log_is_contiguous(&pg, &db, 5 + in_doubt);
    let out = pg.psql(&db, "SELECT term FROM archon_leader");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2", "it took over again");
}
