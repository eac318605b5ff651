//! Managers that keep their state in PostgreSQL (`--store postgres://…`), as
//! processes on loopback against a throwaway PostgreSQL cluster per test
//! (`archon_store::testkit::TempPostgres`): `archon dev` whose runs show in SQL
//! and survive a restart, three `archon-manager`s on one database failing over
//! within 5 s of a SIGKILL of the leader, a database restarted under load, and a
//! database that is down when a manager starts. No acknowledged submit may be
//! lost and no run may end with two successful attempts.
//!
//! Every URL carries a password (trust authentication ignores it): it must never
//! show in anything a daemon prints. Each daemon's stdout is copied to a file
//! beside its stderr log for that check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use archon_store::testkit::TempPostgres;
use common::{
    CLI, Proc, SubmitStream, daemon_bin, id_num, json, storage_trouble, successful_attempts, text, try_json, wait_for,
};

/// The password every test puts in its URLs.
const PASSWORD: &str = "hunter2";

/// A fresh database on `pg`: its URL with [`PASSWORD`] in it, and its name.
fn database(pg: &TempPostgres) -> (String, String) {
    let url = pg.create_database();
    let name = url.rsplit('/').next().unwrap().to_owned();
    (url.replacen("postgres://postgres@", &format!("postgres://postgres:{PASSWORD}@"), 1), name)
}

/// How the daemons must print `url`: password masked.
fn redacted(url: &str) -> String {
    url.replace(PASSWORD, "***")
}

/// The answer of `query` on `database`, one row a line, columns split by `|`.
fn sql(pg: &TempPostgres, database: &str, query: &str) -> String {
    let out = pg.psql(database, query);
    assert!(out.status.success(), "{query}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// The leader row: its term and the leader's address.
fn leader_row(pg: &TempPostgres, database: &str) -> (u64, String) {
    let row = sql(pg, database, "SELECT term, address FROM archon_leader");
    let (term, address) = row.split_once('|').unwrap_or_else(|| panic!("archon_leader: {row:?}"));
    (term.parse().unwrap(), address.to_owned())
}

/// Starts `bin` as a [`Proc`] (stderr to `log`) whose stdout is also copied to
/// `log` with the extension `stdout`. bash execs the daemon, so the process id
/// is the daemon's own (signals and SIGKILL reach it) and `tee` ends with it.
fn spawn(bin: &Path, args: &[&str], log: &Path) -> Proc {
    let copy = log.with_extension("stdout");
    let script = format!("exec \"$0\" \"$@\" > >(exec tee -a '{}')", copy.display());
    let mut all = vec!["-c", &script, bin.to_str().unwrap()];
    all.extend(args);
    Proc::spawn(Path::new("/bin/bash"), &all, log)
}

/// Asserts nothing any daemon printed under `dir` (stdout copies, stderr logs)
/// holds the password.
fn assert_password_never_printed(dir: &Path) {
    let mut read = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if matches!(path.extension().and_then(|e| e.to_str()), Some("log" | "stdout")) {
            let printed = std::fs::read_to_string(&path).unwrap();
            let leaks: Vec<&str> = printed.lines().filter(|l| l.contains(PASSWORD)).collect();
            assert!(leaks.is_empty(), "{} shows the password: {leaks:?}", path.display());
            read += 1;
        }
    }
    assert!(read >= 2, "nothing printed under {}", dir.display());
}

/// `archon dev --store URL` on a fixed port and data dir, restartable.
struct Dev {
    proc: Proc,
    server: String,
    url: String,
    dir: PathBuf,
    starts: usize,
}

impl Dev {
    fn start(dir: &Path, url: &str) -> Dev {
        let server = format!("127.0.0.1:{}", common::free_ports(1)[0]);
        let proc = Dev::spawn(&server, url, dir, 1);
        Dev { proc, server, url: url.to_owned(), dir: dir.to_owned(), starts: 1 }
    }

    fn spawn(server: &str, url: &str, dir: &Path, n: usize) -> Proc {
        let data = dir.join("data");
        let args = [
            "dev",
            "--insecure",
            "--listen",
            server,
            "--data-dir",
            data.to_str().unwrap(),
            "--store",
            url,
            "--cpu",
            "8",
            "--memory",
            "8GiB",
            "--worker-name",
            "dev-worker",
        ];
        let mut p = spawn(Path::new(CLI), &args, &dir.join(format!("dev.{n}.log")));
        let at = p.wait_line("Archon keeps its state in PostgreSQL at ", Duration::from_secs(30));
        assert_eq!(at, redacted(url));
        let at = p.wait_line("gRPC API listening on ", Duration::from_secs(60));
        assert_eq!(at.trim(), format!("http://{server}"));
        p
    }

    /// Starts it again on the same port, database and data dir.
    fn restart(&mut self) {
        assert!(!self.proc.alive(), "still running");
        self.starts += 1;
        self.proc = Dev::spawn(&self.server, &self.url, &self.dir, self.starts);
    }
}

#[test]
fn dev_on_postgres_runs_jobs_and_sql_shows_them() {
    let pg = TempPostgres::start();
    let (url, db) = database(&pg);
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(dir.path(), &url);

    let out = common::cli(&dev.server, &["submit", "--wait", "--name", "greeter", "--command", "echo hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    // Committed before the CLI heard of its end: the tables show it at once.
    let rows = "SELECT r.id, r.state, r.attempts, j.name FROM archon_runs r JOIN archon_jobs j ON j.id = r.job_id";
    assert_eq!(sql(&pg, &db, rows), "1|succeeded|1|greeter");
    let attempts = sql(&pg, &db, "SELECT run_id, state, exit_code FROM archon_attempts");
    assert_eq!(attempts, "1|finished|0");
    let before = json(&dev.server, &["get", "run-1"]);

    dev.proc.signal(nix::sys::signal::Signal::SIGINT);
    let status = dev.proc.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "archon dev exited with {status}:\n{}", dev.proc.stderr_tail(20));
    let unreachable = common::cli(&dev.server, &["jobs"]);
    assert!(!unreachable.status.success(), "something else answers on {}", dev.server);

    dev.restart();
    let after = json(&dev.server, &["get", "run-1"]);
    assert_eq!(after["run"]["state"], "succeeded", "{after}");
    assert_eq!(after["job_name"], "greeter", "{after}");
    assert_eq!(after["attempts"][0]["stdout"]["text"], "hi\n", "{after}");
    assert_eq!(after, before, "the run's history changed across the restart");
    // It goes on from there: the next job is job-2, and it runs.
    let out = common::cli(&dev.server, &["submit", "--wait", "--command", "echo again"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "again\n");
    assert_eq!(sql(&pg, &db, "SELECT count(*) FROM archon_runs WHERE state = 'succeeded'"), "2");

    dev.proc.signal(nix::sys::signal::Signal::SIGINT);
    dev.proc.wait_exit(Duration::from_secs(30));
    for n in 1..=dev.starts {
        // `tee` may still be writing the copy of its stdout.
        wait_for(Duration::from_secs(10), &format!("start {n} saying it stopped"), || {
            let printed = std::fs::read_to_string(dir.path().join(format!("dev.{n}.stdout"))).unwrap();
            if printed.contains("Archon dev cluster stopped.") { Ok(()) } else { Err(printed) }
        });
    }
    assert_password_never_printed(dir.path());
}

/// `archon-manager`s sharing one database, on ports of their own.
struct Managers {
    dir: PathBuf,
    url: String,
    ports: Vec<u16>,
    running: BTreeMap<usize, Proc>,
}

impl Managers {
    fn new(dir: &Path, url: &str, n: usize) -> Managers {
        Managers { dir: dir.to_owned(), url: url.to_owned(), ports: common::free_ports(n), running: BTreeMap::new() }
    }

    fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// Every manager, comma-separated (what the CLI and the worker are given).
    fn servers(&self) -> String {
        (0..self.ports.len()).map(|i| self.addr(i)).collect::<Vec<_>>().join(",")
    }

    /// Starts manager `i`; [`Managers::wait_listening`] waits until it serves.
    fn spawn(&mut self, i: usize) {
        let (listen, node) = (self.addr(i), (i + 1).to_string());
        let args = [
            "--listen",
            &listen,
            "--node-id",
            &node,
            "--store",
            &self.url,
            "--heartbeat-interval",
            "300ms",
            "--worker-timeout",
            "3s",
        ];
        let log = self.dir.join(format!("manager-{i}.log"));
        self.running.insert(i, spawn(&daemon_bin("archon-manager"), &args, &log));
    }

    fn wait_listening(&mut self, i: usize) {
        let (url, listen) = (redacted(&self.url), self.addr(i));
        let p = self.running.get_mut(&i).unwrap();
        let at = p.wait_line("Archon keeps its state in PostgreSQL at ", Duration::from_secs(30));
        assert_eq!(at, url);
        let at = p.wait_line("archon-manager listening on ", Duration::from_secs(60));
        assert_eq!(at, format!("http://{listen} (API and worker sessions; state in PostgreSQL)"));
    }

    /// The one running manager that leads, and its term, once every running
    /// manager answers `archon status` itself: exactly one says leader, the
    /// others follower, all in the term of the leader row, whose address is the
    /// leader's.
    fn wait_leader(&self, pg: &TempPostgres, db: &str) -> (usize, u64) {
        wait_for(Duration::from_secs(30), "one leader of the running managers", || {
            let mut leaders = Vec::new();
            let mut views = Vec::new();
            for i in self.running.keys() {
                let status = try_json(&self.addr(*i), &["status"])?;
                let me = &status["managers"][0];
                if status["managers"].as_array().map(Vec::len) != Some(1)
                    || me["address"] != format!("http://{}", self.addr(*i))
                {
                    return Err(format!("manager {i} reports {}", status["managers"]));
                }
                match me["role"].as_str() {
                    Some("leader") => leaders.push((*i, me["term"].as_u64().unwrap())),
                    Some("follower") => {}
                    _ => return Err(format!("manager {i} reports {me}")),
                }
                views.push(me.clone());
            }
            let [(leader, term)] = leaders[..] else { return Err(format!("leaders: {views:?}")) };
            let row = leader_row(pg, db);
            let terms: BTreeSet<u64> = views.iter().map(|m| m["term"].as_u64().unwrap()).collect();
            if row != (term, format!("http://{}", self.addr(leader))) || terms.len() != 1 {
                return Err(format!("archon_leader {row:?}; views {views:?}"));
            }
            Ok((leader, term))
        })
    }

    /// SIGKILL of manager `i`, waiting until it is gone.
    fn kill(&mut self, i: usize) {
        let mut p = self.running.remove(&i).unwrap();
        p.kill9();
        let trouble = storage_trouble(&p.stderr());
        assert!(trouble.is_empty(), "manager {i} reported trouble before it was killed: {trouble:?}");
    }
}

/// The ids of the jobs `server` holds.
fn job_ids(server: &str) -> BTreeSet<u64> {
    let jobs = common::list_all(server, "jobs").unwrap();
    jobs.iter().map(|j| id_num(&j["id"])).collect()
}

/// Asserts every acknowledged submit got its own job and `server` has it, and
/// that each of their runs ends succeeded with exactly one successful attempt.
fn assert_acked_work_done_once(server: &str, acked: &[common::Acked]) {
    let ids: BTreeSet<u64> = acked.iter().map(|a| a.job).collect();
    assert_eq!(ids.len(), acked.len(), "two acknowledged submits got the same job id");
    let present = job_ids(server);
    let missing: Vec<&u64> = ids.difference(&present).collect();
    assert!(missing.is_empty(), "acknowledged jobs lost: {missing:?}");
    let runs: Vec<u64> = acked.iter().map(|a| a.run).collect();
    common::wait_runs_ended(server, &runs, Duration::from_secs(60));
    let mut rerun = 0;
    for a in acked {
        let d = json(server, &["get", &format!("run-{}", a.run)]);
        assert_eq!(id_num(&d["run"]["job"]), a.job, "{d}");
        assert_eq!(d["run"]["state"], "succeeded", "{d}");
        assert_eq!(successful_attempts(&d), 1, "not exactly one successful attempt: {d}");
        if d["attempts"].as_array().unwrap().len() > 1 {
            rerun += 1;
        }
    }
    eprintln!("{} acknowledged runs succeeded once each; {rerun} needed more than one attempt", acked.len());
}

#[test]
fn three_managers_on_one_database_fail_over_and_lose_no_acknowledged_submit() {
    let pg = TempPostgres::start();
    let (url, db) = database(&pg);
    let dir = tempfile::tempdir().unwrap();
    let mut g = Managers::new(dir.path(), &url, 3);
    // The first creates the schema; the others start together on it. (Managers
    // started together on an empty database race each other's migrations: see
    // `managers_started_together_on_an_empty_database_all_start`.)
    g.spawn(0);
    g.wait_listening(0);
    g.spawn(1);
    g.spawn(2);
    g.wait_listening(1);
    g.wait_listening(2);
    let (leader, term) = g.wait_leader(&pg, &db);
    eprintln!("manager {leader} leads in term {term}");

    // A worker given every manager; a follower's address alone is enough for the
    // CLI, which is redirected to the leader.
    let servers = g.servers();
    let worker_args =
        ["--manager", &servers, "--name", "w1", "--cpu", "4", "--memory", "4GiB", "--reconnect-base", "100ms"];
    let mut worker_args = worker_args.to_vec();
    worker_args.extend(["--reconnect-cap", "500ms"]);
    let mut worker = spawn(&daemon_bin("archon-worker"), &worker_args, &dir.path().join("worker.log"));
    let follower = g.addr((leader + 1) % 3);
    let (job, run) = common::submit(&follower, &["--command", "echo via a follower"]).unwrap();
    let detail = wait_for(Duration::from_secs(30), "the job submitted via a follower ran", || {
        let d = try_json(&follower, &["get", &format!("run-{run}")])?;
        if d["run"]["state"] == "succeeded" { Ok(d) } else { Err(d["run"]["state"].to_string()) }
    });
    assert_eq!(id_num(&detail["run"]["job"]), job);
    assert_eq!(detail["attempts"][0]["stdout"]["text"], "via a follower\n");

    let stream = SubmitStream::start(&servers, "sleep 0.1", 3);
    stream.wait_count(20, Duration::from_secs(60));
    let (leader, _) = g.wait_leader(&pg, &db);
    let before = stream.count();
    g.kill(leader);
    let killed_at = Instant::now();
    eprintln!("killed the leader, manager {leader}, after {before} acknowledged submits");
    // How soon is printed, not asserted: timing belongs to benchmarks.
    let first = wait_for(Duration::from_secs(60), "an acknowledged submit sent after the kill", || {
        let acked = stream.snapshot();
        let any = acked.iter().filter(|a| a.acked > killed_at).map(|a| a.acked).min();
        let fresh = acked.iter().filter(|a| a.sent > killed_at).map(|a| a.acked).min();
        match (any, fresh) {
            (Some(any), Some(fresh)) => Ok((any, fresh)),
            _ => Err(format!("none yet; failures: {:?}", stream.last_failures(3))),
        }
    });
    eprintln!(
        "takeover: first submit acknowledged {:?} after the kill; the first one sent after it, {:?} after",
        first.0 - killed_at,
        first.1 - killed_at
    );
    // Submits go on after the takeover, not just the first one.
    wait_for(Duration::from_secs(60), "more submits acknowledged after the takeover", || {
        let after = stream.snapshot().iter().filter(|a| a.sent > first.1).count();
        if after >= 5 { Ok(()) } else { Err(format!("{after} so far; failures: {:?}", stream.last_failures(3))) }
    });
    let (acked, failures) = stream.stop();
    eprintln!("{} submits acknowledged, {} failed: {:?}", acked.len(), failures.len(), failures.last());

    let (new_leader, new_term) = g.wait_leader(&pg, &db);
    assert_ne!(new_leader, leader);
    assert!(new_term > term, "the term did not increase: {term} then {new_term}");
    eprintln!("manager {new_leader} leads in term {new_term}");
    assert_acked_work_done_once(&g.addr(new_leader), &acked);

    assert!(worker.alive(), "the worker died:\n{}", worker.stderr_tail(20));
    for (i, p) in &g.running {
        let trouble = storage_trouble(&p.stderr());
        assert!(trouble.is_empty(), "manager {i}: {trouble:?}");
    }
    assert_password_never_printed(dir.path());
}

#[test]
fn postgres_restarted_under_load_loses_no_acknowledged_work() {
    let pg = TempPostgres::start();
    let (url, db) = database(&pg);
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(dir.path(), &url);
    let stream = SubmitStream::start(&dev.server, "sleep 0.2", 2);
    stream.wait_count(10, Duration::from_secs(60));

    let failed_before = stream.failures.lock().unwrap().len();
    pg.stop();
    let stopped_at = Instant::now();
    eprintln!("PostgreSQL stopped after {} acknowledged submits", stream.count());
    // Submits fail while it is down (once the CLI gives up looking for a
    // leader), and archon dev waits for its database.
    let failed = wait_for(Duration::from_secs(60), "a submit failed during the outage", || {
        let failures = stream.failures.lock().unwrap();
        match failures.get(failed_before) {
            Some((_, why)) => Ok(why.clone()),
            None => Err(format!("{} failures, none since the stop", failures.len())),
        }
    });
    eprintln!("during the outage: {failed}");
    assert!(dev.proc.alive(), "archon dev died without its database:\n{}", dev.proc.stderr_tail(20));
    let in_outage = stream.snapshot().iter().filter(|a| a.sent > stopped_at).count();
    assert_eq!(in_outage, 0, "submits were acknowledged with the database down");

    pg.restart();
    let restarted_at = Instant::now();
    let back = wait_for(Duration::from_secs(30), "a submit acknowledged after the restart", || {
        let first = stream.snapshot().iter().filter(|a| a.acked > restarted_at).map(|a| a.acked).min();
        first.map(|at| at - restarted_at).ok_or_else(|| format!("failures: {:?}", stream.last_failures(2)))
    });
    eprintln!("PostgreSQL down {:?}; submits acknowledged again {back:?} after its restart", restarted_at - stopped_at);
    stream.wait_count(stream.count() + 5, Duration::from_secs(30));
    let (acked, failures) = stream.stop();
    eprintln!("{} submits acknowledged, {} failed", acked.len(), failures.len());

    assert_acked_work_done_once(&dev.server, &acked);
    let succeeded: usize = sql(&pg, &db, "SELECT count(*) FROM archon_runs WHERE state = 'succeeded'").parse().unwrap();
    assert!(succeeded >= acked.len(), "{succeeded} succeeded runs in archon_runs for {} acknowledged", acked.len());
    assert!(dev.proc.alive(), "archon dev died:\n{}", dev.proc.stderr_tail(20));
    let trouble = storage_trouble(&dev.proc.stderr());
    assert!(trouble.is_empty(), "{trouble:?}");
    assert_password_never_printed(dir.path());
}

#[test]
fn an_unreachable_database_at_start_is_retried_until_it_answers() {
    let pg = TempPostgres::start();
    let (url, _) = database(&pg);
    pg.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut g = Managers::new(dir.path(), &url, 1);
    g.spawn(0);
    let started = Instant::now();
    let unreachable = format!("cannot reach the database at {}", redacted(&url));
    let manager = &g.running[&0];
    // It says so, and tries again (a second failure, with the next delay): it did
    // not give up after the first.
    wait_for(Duration::from_secs(60), "the manager trying the database again", || {
        let stderr = manager.stderr();
        let said = stderr.lines().filter(|l| l.starts_with(&unreachable)).count() >= 2;
        if said && stderr.contains("; retrying in 1s") && stderr.contains("; retrying in 2s") {
            Ok(())
        } else {
            Err(stderr)
        }
    });
    let manager = g.running.get_mut(&0).unwrap();
    assert!(manager.alive(), "it gave up on its database:\n{}", manager.stderr_tail(20));

    pg.restart();
    g.wait_listening(0);
    eprintln!("the manager served {:?} after it started", started.elapsed());
    // Alone on its database, it takes the leader lock and serves the API.
    wait_for(Duration::from_secs(20), "the manager leading", || {
        let status = try_json(&g.addr(0), &["status"])?;
        if status["managers"][0]["role"] == "leader" { Ok(()) } else { Err(status.to_string()) }
    });
    let jobs = json(&g.addr(0), &["jobs"]);
    assert_eq!(jobs["items"], serde_json::json!([]), "{jobs}");
    let retries = g.running[&0].stderr().matches("; retrying in ").count();
    assert!(retries >= 2, "{retries} retries:\n{}", g.running[&0].stderr());
    assert_password_never_printed(dir.path());

    // A store that is not PostgreSQL is refused at once, naming the setting and
    // the form it takes, and without the password.
    for store in ["mysql://x", "mysql://archon:hunter2@db/archon"] {
        let out = Command::new(daemon_bin("archon-manager")).args(["--store", store]).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.starts_with("error: store: "), "{err}");
        assert!(err.contains("postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"), "{err}");
        assert!(!err.contains(PASSWORD), "{err}");
    }
}

/// Managers started at the same moment on an empty database all start (the
/// schema is created once).
#[test]
fn managers_started_together_on_an_empty_database_all_start() {
    let pg = TempPostgres::start();
    let (url, db) = database(&pg);
    let dir = tempfile::tempdir().unwrap();
    let mut g = Managers::new(dir.path(), &url, 3);
    for i in 0..3 {
        g.spawn(i);
    }
    for i in 0..3 {
        g.wait_listening(i);
    }
    g.wait_leader(&pg, &db);
}
