//! Upgrades keep data: the golden fixtures in `tests/fixtures/v0.1` — a data dir
//! and a PostgreSQL dump written by Archon 0.1 with jobs in every state — open
//! with this build's `archon-manager`, show every job, run, output and worker as
//! 0.1 left them, upgrade in place when this version first writes (finished runs
//! move to the history), and still show them all after a `kill -9` and restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use archon_store::testkit::TempPostgres;
use common::{Proc, daemon_bin, free_ports, id_num, json, try_id_num, try_json, wait_for};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0.1");

/// `xz -dc FIXTURE > out`.
fn unpack(fixture: &str, out: &Path) {
    let file = std::fs::File::create(out).unwrap();
    let status = Command::new("xz")
        .args(["-dc", &format!("{FIXTURES}/{fixture}")])
        .stdout(Stdio::from(file))
        .status()
        .expect("xz (Debian's xz-utils) unpacks the fixtures");
    assert!(status.success(), "cannot unpack {fixture}");
}

/// A manager on `store_args`, its address once it listens. Workers are never
/// reaped during the test (the fixture's workers are gone), and the fixture's
/// history and idempotency keys are kept however long ago it was made (the
/// defaults, 7 days and 24 hours, would let the calendar remove them).
fn manager(store_args: &[&str], port: u16, log: &Path) -> (Proc, String) {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--listen", &listen, "--worker-timeout", "1h"];
    args.extend(["--history-retention", "36500d", "--idempotency-window", "36500d"]);
    args.extend(store_args);
    let mut p = Proc::spawn(&daemon_bin("archon-manager"), &args, log);
    p.wait_line("archon-manager listening on ", Duration::from_secs(60));
    let server = format!("http://{listen}");
    wait_for(Duration::from_secs(30), "the manager leads", || try_json(&server, &["jobs", "--limit", "1"]).map(drop));
    (p, server)
}

/// Checks everything the fixture holds, its runs numbered from `base` (0 for the
/// data dir, 10,000 for PostgreSQL), `noops` no-op jobs first.
fn check_fixture(server: &str, base: u64, noops: u64, when: &str) {
    let run = |n: u64| json(server, &["get", &format!("run-{}", base + n)]);
    let named = |n: u64, name: &str, state: &str| {
        let d = run(n);
        assert_eq!((d["job_name"].as_str(), d["run"]["state"].as_str()), (Some(name), Some(state)), "{when}: {d}");
        d
    };
    let hello = named(8001, "hello", "succeeded");
    assert_eq!(hello["attempts"][0]["stdout"]["text"], "hello from 0.1\n", "{when}");
    assert_eq!(hello["attempts"][0]["stderr"]["text"], "to stderr\n", "{when}");
    let binary = named(8002, "binary", "succeeded");
    assert_eq!(binary["attempts"][0]["stdout"]["base64"], "/wABYmluYXJ5", "{when}: ff 00 01 binary");
    let fails = named(8003, "fails", "failed");
    assert_eq!(fails["attempts"][0]["exit"]["code"], 3, "{when}");
    named(8004, "slow", "timed_out");
    named(8005, "keyed", "succeeded");
    named(8006, "parent", "succeeded");
    named(8007, "child-of-success", "succeeded");
    let orphan = named(8008, "child-of-failure", "failed");
    let reason = format!("dependency job-{} did not succeed", base + 8003);
    assert_eq!(orphan["run"]["reason"].as_str(), Some(reason.as_str()), "{when}");
    named(8009, "cancelled-running", "cancelled");
    named(8010, "retrying", "retrying");
    named(8011, "running", "running");
    named(8012, "waiting", "waiting");
    named(8013, "pending", "pending");
    named(8014, "cancelled-pending", "cancelled");
    named(8015, "scheduled", "scheduled");
    for n in [1, noops / 2, noops] {
        let d = json(server, &["get", &format!("run-{n}")]);
        assert_eq!((d["job_name"].as_str(), d["run"]["state"].as_str()), (Some("noop"), Some("succeeded")), "{when}");
    }
    // Listings page through live and finished runs alike, newest first.
    let page = json(server, &["runs", "--limit", "20", "--before", &format!("run-{}", base + 8016)]);
    let ids: Vec<u64> = page["items"].as_array().unwrap().iter().map(|r| id_num(&r["id"])).collect();
    let expected: Vec<u64> = (base + 7996..=base + 8015).rev().collect();
    assert_eq!(ids, expected, "{when}");
    let failed = json(server, &["runs", "--state", "failed", "--before", &format!("run-{}", base + 8016)]);
    let ids: Vec<u64> = failed["items"].as_array().unwrap().iter().map(|r| id_num(&r["id"])).collect();
    assert_eq!(ids, [base + 8008, base + 8003], "{when}");
    let status = json(server, &["status"]);
    assert!(status["jobs"].as_u64().unwrap() >= base + 8015, "{when}: {status}");
    for (state, n) in [("succeeded", noops + 5), ("cancelled", 2), ("timed_out", 1), ("retrying", 1), ("waiting", 1)] {
        assert!(status["runs"][state].as_u64().unwrap() >= n, "{when}: {state} in {status}");
    }
    let workers = json(server, &["workers"]);
    let mut states: Vec<String> = workers["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| format!("{} {}", w["name"].as_str().unwrap(), w["state"].as_str().unwrap()))
        .collect();
    states.sort();
    assert_eq!(states, ["wa ready", "wb ready", "wc draining", "wd left", "we lost"], "{when}");
}

/// What this version writes first upgrades the state: a submit depending on a
/// finished 0.1 job (resolved from the history), the idempotency key 0.1 stored.
fn write_after_the_upgrade(server: &str, base: u64) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("deps.toml");
    std::fs::write(
        &spec,
        format!(
            "[[jobs]]\nname = \"after-success\"\ncommand = \"true\"\ndepends_on = [\"job-{}\"]\n\
             [[jobs]]\nname = \"after-failure\"\ncommand = \"true\"\ndepends_on = [\"job-{}\"]\n",
            base + 8006,
            base + 8003
        ),
    )
    .unwrap();
    let submitted = json(server, &["run", "-f", spec.to_str().unwrap()]);
    let runs: Vec<u64> = submitted.as_array().unwrap().iter().map(|s| id_num(&s["run"])).collect();
    let waits = json(server, &["get", &format!("run-{}", runs[0])]);
    assert_eq!(waits["run"]["state"], "pending", "its dependency succeeded in 0.1: {waits}");
    let fails = json(server, &["get", &format!("run-{}", runs[1])]);
    assert_eq!(fails["run"]["state"], "failed", "{fails}");
    let again = json(server, &["submit", "--idempotency-key", "fixture-key", "--command", "echo keyed"]);
    assert_eq!((try_id_num(&again[0]["job"]), again[0]["duplicate"].as_bool()), (Some(base + 8005), Some(true)));
    runs[1]
}

#[test]
fn a_data_dir_of_archon_0_1_opens_with_everything_and_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    unpack("raft.redb.xz", &data.join("raft.redb"));
    let port = free_ports(1)[0];
    let data_arg = data.to_str().unwrap();
    let (mut first, server) = manager(&["--data-dir", data_arg], port, &dir.path().join("m1.log"));
    check_fixture(&server, 0, 8000, "as 0.1 left it");
    let last = write_after_the_upgrade(&server, 0);
    check_fixture(&server, 0, 8000, "after the upgrade");
    first.kill9();
    let (_second, server) = manager(&["--data-dir", data_arg], port, &dir.path().join("m2.log"));
    check_fixture(&server, 0, 8000, "after kill -9 and a restart");
    let after = json(&server, &["get", &format!("run-{last}")]);
    assert_eq!(after["run"]["state"], "failed", "{after}");
}

#[test]
fn a_postgresql_database_of_archon_0_1_opens_with_everything_and_is_migrated() {
    let pg = TempPostgres::start();
    let url = pg.create_database();
    let dump = tempfile::NamedTempFile::new().unwrap();
    unpack("postgres.sql.xz", dump.path());
    let restored = Command::new("psql")
        .args([url.as_str(), "-q", "-v", "ON_ERROR_STOP=1", "-f", dump.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(restored.status.success(), "restoring the dump: {}", String::from_utf8_lossy(&restored.stderr));
    let db = url.rsplit('/').next().unwrap().to_owned();
    let sql = |q: &str| String::from_utf8_lossy(&pg.psql(&db, q).stdout).trim().to_owned();
    assert_eq!(sql("SELECT count(*) FROM __diesel_schema_migrations"), "1", "the dump is of 0.1's schema");

    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let (mut first, server) = manager(&["--store", &url], port, &dir.path().join("m1.log"));
    assert_eq!(
        sql("SELECT count(*) FROM __diesel_schema_migrations"),
        "3",
        "migrated at start (every migration since 0.1)"
    );
    check_fixture(&server, 10_000, 18_000, "as 0.1 left it");
    write_after_the_upgrade(&server, 10_000);
    check_fixture(&server, 10_000, 18_000, "after the upgrade");
    // The finished runs are the history's rows now.
    assert_eq!(sql("SELECT count(*) >= 18007 FROM archon_runs WHERE record IS NOT NULL"), "t");
    assert_eq!(
        sql("SELECT convert_from(data, 'UTF8') FROM archon_output WHERE attempt_id = 18001 AND stream = 0"),
        "hello from 0.1"
    );
    first.kill9();
    let (_second, server) = manager(&["--store", &url], port, &dir.path().join("m2.log"));
    check_fixture(&server, 10_000, 18_000, "after kill -9 and a restart");
}
