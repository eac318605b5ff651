//! Durability of `archon dev`: its state lives in a Raft log on the data dir, so a
//! crash (SIGKILL, no chance to flush anything) in the middle of a burst of submits
//! loses no acknowledged job, and a restart on the same data dir and port picks up
//! where it stopped: runs in flight are requeued and end once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{CLI, Proc, SubmitStream, id_num, json, successful_attempts, text, try_json, wait_for};

/// `archon dev` on a fixed port and data dir, restartable.
struct Dev {
    proc: Proc,
    server: String,
    data: PathBuf,
    logs: PathBuf,
    starts: usize,
}

impl Dev {
    fn start(dir: &Path) -> Dev {
        let port = common::free_ports(1)[0];
        let server = format!("127.0.0.1:{port}");
        let data = dir.join("data");
        let (proc, starts) = (Dev::spawn(&server, &data, dir, 1), 1);
        Dev { proc, server, data, logs: dir.to_owned(), starts }
    }

    fn spawn(server: &str, data: &Path, logs: &Path, n: usize) -> Proc {
        let log = logs.join(format!("dev.{n}.log"));
        let args = [
            "dev",
            "--insecure",
            "--listen",
            server,
            "--data-dir",
            data.to_str().unwrap(),
            "--cpu",
            "8",
            "--memory",
            "8GiB",
            "--worker-name",
            "dev-worker",
        ];
        let mut p = Proc::spawn(Path::new(CLI), &args, &log);
        let at = p.wait_line("gRPC API listening on ", Duration::from_secs(30));
        assert_eq!(at.trim(), format!("http://{server}"));
        p
    }

    /// Starts it again on the same port and data dir.
    fn restart(&mut self) {
        assert!(!self.proc.alive(), "still running");
        self.starts += 1;
        self.proc = Dev::spawn(&self.server, &self.data, &self.logs, self.starts);
    }
}

#[test]
fn kill_dash_nine_during_a_burst_of_submits_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(dir.path());
    let stream = SubmitStream::start(&dev.server, "sleep 1", 2);
    stream.wait_count(8, Duration::from_secs(30));
    // Kill it while runs are running and submits are in flight.
    wait_for(Duration::from_secs(10), "runs running", || {
        let running = try_json(&dev.server, &["runs", "--state", "running"])?;
        let n = running["items"].as_array().unwrap().len();
        if n >= 2 { Ok(()) } else { Err(format!("{n} running")) }
    });
    dev.proc.kill9();
    let killed_at = Instant::now();
    let (acked, failures) = stream.stop();
    assert!(!acked.is_empty());
    let after = failures.iter().filter(|(sent, _)| *sent > killed_at).count();
    eprintln!(
        "{} submits acknowledged before the crash; {} failed ({after} sent after it)",
        acked.len(),
        failures.len()
    );
    let trouble = common::storage_trouble(&dev.proc.stderr());
    assert!(trouble.is_empty(), "{trouble:?}");

    dev.restart();
    let trouble = common::storage_trouble(&dev.proc.stderr());
    assert!(trouble.is_empty(), "the restart found trouble: {trouble:?}");
    // Every acknowledged job is there.
    for a in &acked {
        let job = json(&dev.server, &["get", &format!("job-{}", a.job)]);
        assert_eq!(job["job"]["task"]["command"], "sleep 1", "{job}");
    }
    // Every run ends succeeded, exactly once; those running at the crash were requeued.
    let runs: Vec<u64> = acked.iter().map(|a| a.run).collect();
    common::wait_runs_ended(&dev.server, &runs, Duration::from_secs(60));
    let mut requeued = 0;
    for r in &runs {
        let d = json(&dev.server, &["get", &format!("run-{r}")]);
        assert_eq!(d["run"]["state"], "succeeded", "{d}");
        assert_eq!(successful_attempts(&d), 1, "{d}");
        let attempts = d["attempts"].as_array().unwrap();
        if attempts.len() > 1 {
            requeued += 1;
            assert!(attempts[..attempts.len() - 1].iter().all(|a| a["state"] == "lost"), "{d}");
        }
    }
    eprintln!("{requeued} runs in flight at the crash were requeued");
    assert!(requeued >= 1, "no run was running at the crash, so nothing was tested");
    // The dev worker is back, and new jobs get new ids.
    let workers = json(&dev.server, &["workers"]);
    let ready: Vec<_> = workers["items"].as_array().unwrap().iter().filter(|w| w["connected"] == true).collect();
    assert_eq!(ready.len(), 1, "{workers}");
    assert_eq!(ready[0]["name"], "dev-worker");
    let highest = acked.iter().map(|a| a.job).max().unwrap();
    let (job, _) = common::submit(&dev.server, &["--command", "true"]).unwrap();
    assert!(job > highest, "job-{job} reuses an id at or below the acknowledged job-{highest}");
}

#[test]
fn a_restarted_dev_keeps_its_jobs_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(dir.path());
    let out = common::cli(&dev.server, &["submit", "--wait", "--name", "keeper", "--command", "echo kept; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "kept\n");
    let before = json(&dev.server, &["get", "run-1"]);

    dev.proc.signal(nix::sys::signal::Signal::SIGINT);
    let status = dev.proc.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "archon dev exited with {status}");
    let unreachable = common::cli(&dev.server, &["jobs"]);
    assert!(!unreachable.status.success(), "something else answers on {}", dev.server);

    dev.restart();
    let jobs = json(&dev.server, &["jobs"]);
    let names: Vec<&str> = jobs["items"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["keeper"], "{jobs}");
    let job = json(&dev.server, &["get", "job-1"]);
    assert_eq!(job["job"]["task"]["command"], "echo kept; exit 3", "{job}");
    let after = json(&dev.server, &["get", "run-1"]);
    assert_eq!(after, before, "the run's history changed across the restart");
    assert_eq!(after["run"]["state"], "failed");
    assert_eq!(after["attempts"][0]["stdout"]["text"], "kept\n");
    assert_eq!(after["attempts"][0]["exit"]["code"], 3);
    let logs = common::cli(&dev.server, &["logs", "run-1"]);
    assert_eq!(text(&logs.stdout), "kept\n");
    let table = text(&common::cli(&dev.server, &["jobs"]).stdout);
    assert!(table.contains("keeper"), "{table}");
    // It goes on from there: the next job is job-2, and it runs.
    let out = common::cli(&dev.server, &["submit", "--wait", "--command", "echo again"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ids: BTreeSet<u64> =
        json(&dev.server, &["jobs"])["items"].as_array().unwrap().iter().map(|j| id_num(&j["id"])).collect();
    assert_eq!(ids, BTreeSet::from([1, 2]));
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_restart_after_kill_dash_nine_kills_the_jobs_the_crashed_worker_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Dev::start(dir.path());
    let pidfile = dir.path().join("job.pid");
    let command = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
    let (_, run) = common::submit(&dev.server, &["--command", &command]).unwrap();
    let pid: i32 = wait_for(Duration::from_secs(20), "the job to start its sleep", || {
        std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse().ok()).ok_or_else(|| "no pid yet".into())
    });
    assert!(!ended(pid), "the job's sleep {pid} is running");
    std::fs::remove_file(&pidfile).unwrap();

    dev.proc.kill9();
    // A negative check, so a fixed moment: nothing marks when a kill set off by the
    // worker's death (a parent-death signal, say) would have landed.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!ended(pid), "a crashed worker cannot kill its jobs: sleep {pid} lives on as an orphan");

    dev.restart();
    wait_for(Duration::from_secs(10), "the orphaned sleep to be killed on restart", || {
        if ended(pid) { Ok(()) } else { Err(format!("sleep {pid} still runs")) }
    });
    // Its run was requeued and runs again, alone.
    let again: i32 = wait_for(Duration::from_secs(20), "the requeued run to start", || {
        std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse().ok()).ok_or_else(|| "no pid yet".into())
    });
    assert_ne!(again, pid);
    let out = common::cli(&dev.server, &["cancel", &format!("run-{run}")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    common::wait_runs_ended(&dev.server, &[run], Duration::from_secs(10));
    assert!(ended(again), "the cancelled run's sleep {again} is gone");
}
