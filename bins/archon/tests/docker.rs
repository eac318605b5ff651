//! Docker jobs through the shipped binaries, on the machine's real Docker engine
//! with the `archon-test/busybox:1` image (`scripts/docker-images` builds it; no
//! registry is reachable). `archon submit --docker` and `[docker]` spec files run
//! containers with the job's limits, exit code, output (live with `logs -f`) and
//! out-of-memory end; cancel, Ctrl-C of `archon dev` and a restart after a crash
//! leave no container behind; and docker jobs go only to workers that advertise
//! `docker`. These tests never skip: no engine or no image fails them.
//!
//! Containers are found with the `docker` CLI by their `archon.owner` label (the
//! worker's state dir, unique to each test) and `archon.run`, since run ids repeat
//! across the tests running at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use common::{CLI, Proc, cli, daemon_bin, id_num, json, text, try_id_num, try_json, wait_for, wait_runs_ended};

/// The test image (see `scripts/docker-images`).
const IMAGE: &str = "archon-test/busybox:1";

/// The `docker` CLI.
fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the docker CLI ({e}): these tests need Docker"))
}

/// Panics, saying what to do, unless the engine answers and the test image is there.
fn require_docker() {
    let engine = docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        engine.status.success(),
        "these tests need the machine's Docker engine and none answers (start dockerd): {}",
        text(&engine.stderr)
    );
    let image = docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    assert!(image.status.success(), "the test image {IMAGE} is missing: run scripts/docker-images");
}

/// A fresh temp dir by its canonical path: a worker labels its containers with
/// its canonical state dir.
fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap();
    (dir, path)
}

/// The containers of one worker (label `archon.owner`), removed when dropped so a
/// failed test leaves none behind. Declare it before the daemons: it is dropped
/// after them.
struct Containers {
    owner: String,
}

impl Containers {
    /// The containers of the worker whose state dir is `state_dir`.
    fn of_worker(state_dir: &Path) -> Containers {
        Containers { owner: state_dir.display().to_string() }
    }

    /// Full ids of its containers (running or not) matching `filters` too.
    fn ids(&self, filters: &[String]) -> Vec<String> {
        let owner = format!("label=archon.owner={}", self.owner);
        let mut args = vec!["ps", "-a", "-q", "--no-trunc", "--filter", owner.as_str()];
        for f in filters {
            args.extend(["--filter", f.as_str()]);
        }
        let out = docker(&args);
        assert!(out.status.success(), "docker {args:?}: {}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// Its containers of `run`.
    fn of_run(&self, run: u64) -> Vec<String> {
        self.ids(&[format!("label=archon.run=run-{run}")])
    }

    /// The one running container of `run`, once it runs.
    fn wait_running(&self, run: u64) -> String {
        wait_for(Duration::from_secs(30), &format!("a running container for run-{run}"), || {
            let ids = self.ids(&[format!("label=archon.run=run-{run}"), "status=running".into()]);
            match ids.as_slice() {
                [id] => Ok(id.clone()),
                _ => Err(format!("running: {ids:?}")),
            }
        })
    }

    /// Asserts that none of its containers is left (Archon removed them all).
    fn assert_none_left(&self, after: &str) {
        let left = self.ids(&[]);
        assert!(left.is_empty(), "containers of {} left after {after}: {left:?}", self.owner);
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let ids = self.ids(&[]);
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
}

/// `docker inspect` of one container, or `None` once it no longer exists.
fn inspect(id: &str) -> Option<Value> {
    let out = docker(&["inspect", id]);
    if !out.status.success() {
        return None;
    }
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(all[0].clone())
}

/// Waits until container `id` no longer exists.
fn wait_gone(id: &str, within: Duration) {
    wait_for(within, &format!("container {id} removed"), || match inspect(id) {
        None => Ok(()),
        Some(c) => Err(format!("it is {}", c["State"]["Status"])),
    });
}

/// `archon dev` with a temp data dir (its worker's state dir) on a port of its own.
struct Dev {
    proc: Proc,
    server: String,
    data: PathBuf,
}

impl Dev {
    /// Starts it in `dir`, its worker named `worker`.
    fn start(dir: &Path, worker: &str) -> Dev {
        let data = dir.join("data");
        let args = [
            "dev",
            "--insecure",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--cpu",
            "4",
            "--memory",
            "4GiB",
            "--worker-name",
            worker,
        ];
        let mut proc = Proc::spawn(Path::new(CLI), &args, &dir.join("dev.log"));
        let server = proc.wait_line("gRPC API listening on ", Duration::from_secs(30)).trim().to_owned();
        Dev { proc, server, data }
    }

    /// The containers its worker makes.
    fn containers(dir: &Path) -> Containers {
        Containers::of_worker(&dir.join("data"))
    }
}

/// `archon-manager` on a port of its own, and `archon-worker`s with state dirs
/// under the same temp dir.
struct Cluster {
    dir: PathBuf,
    manager: Proc,
    server: String,
    starts: usize,
}

impl Cluster {
    /// A manager with a 300 ms heartbeat and a 2 s reaper threshold.
    fn start(dir: &Path) -> Cluster {
        let data = dir.join("manager");
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "300ms",
            "--worker-timeout",
            "2s",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        let mut manager = Proc::spawn(&daemon_bin("archon-manager"), &args, &dir.join("manager.log"));
        let at = manager.wait_line("archon-manager listening on ", Duration::from_secs(30));
        let server = at.split_whitespace().next().unwrap().to_owned();
        Cluster { dir: dir.to_owned(), manager, server, starts: 0 }
    }

    /// The state dir of the worker `name`.
    fn state_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Starts the worker `name` (4 CPUs, 4 GiB) with its state dir and `extra` flags.
    fn worker(&mut self, name: &str, extra: &[&str]) -> Proc {
        self.starts += 1;
        let state = self.state_dir(name);
        let mut args = vec!["--manager", &self.server, "--name", name, "--cpu", "4", "--memory", "4GiB"];
        args.extend(["--state-dir", state.to_str().unwrap(), "--reconnect-base", "100ms", "--reconnect-cap", "1s"]);
        args.extend_from_slice(extra);
        let log = self.dir.join(format!("{name}.{}.log", self.starts));
        Proc::spawn(&daemon_bin("archon-worker"), &args, &log)
    }

    /// Waits until the worker `name` is connected and ready; its JSON.
    fn wait_ready(&self, name: &str) -> Value {
        wait_for(Duration::from_secs(20), &format!("worker {name} ready"), || {
            let workers = try_json(&self.server, &["workers"])?;
            workers["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["name"] == name && w["connected"] == true && w["state"] == "ready")
                .cloned()
                .ok_or_else(|| format!("{workers}"))
        })
    }
}

/// The worker `name` in `archon workers --output json`.
fn worker_named(server: &str, name: &str) -> Value {
    let workers = json(server, &["workers"]);
    workers["items"].as_array().unwrap().iter().find(|w| w["name"] == name).cloned().unwrap_or_else(|| {
        panic!("no worker {name}: {workers}");
    })
}

/// Its capabilities.
fn capabilities(worker: &Value) -> Vec<&str> {
    worker["capabilities"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect()
}

/// The run id in `submitted job-N as run-N`, which `archon submit` prints to stderr.
fn submitted_run(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("submitted ")?.split(" as run-").nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no \"submitted … as run-N\" in: {stderr}"))
}

/// Submits one job without waiting; its (job, run) ids. Unlike `common::submit`,
/// `--output json` goes before the subcommand, so a container command after `--`
/// stays as given.
fn submit(server: &str, args: &[&str]) -> (u64, u64) {
    let out = cli(server, &[&["--output", "json", "submit"], args].concat());
    assert!(out.status.success(), "submit {args:?}: exit {:?}: {}", out.status.code(), text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    match (try_id_num(&v[0]["job"]), try_id_num(&v[0]["run"])) {
        (Some(job), Some(run)) => (job, run),
        _ => panic!("unexpected submit answer: {v}"),
    }
}

/// `archon get run-N --output json`.
fn run_detail(server: &str, run: u64) -> Value {
    json(server, &["get", &format!("run-{run}")])
}

#[test]
fn a_docker_job_runs_from_the_cli_with_its_limits_and_exit_code() {
    require_docker();
    let (_tmp, dir) = temp_dir();
    let containers = Dev::containers(&dir);
    let dev = Dev::start(&dir, "dev-docker");

    let script = "echo \"$GREETING\"; ls /sys/class/net; exit 3";
    let limits = ["--network", "none", "--cpu", "500m", "--memory", "128MiB"];
    let mut args = vec!["submit", "--docker", IMAGE, "--env", "GREETING=hi"];
    args.extend(limits);
    args.extend(["--wait", "--", "sh", "-c", script]);
    let out = cli(&dev.server, &args);
    assert_eq!(out.status.code(), Some(3), "the container's exit code: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\nlo\n", "the env var and only the loopback interface (--network none)");
    let first = submitted_run(&text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("run-{first} failed (exit code 3)")), "{}", text(&out.stderr));
    assert!(containers.of_run(first).is_empty(), "the finished run's container was not removed");

    // A running container carries the job's limits and Archon's labels.
    let mut args = vec!["--docker", IMAGE];
    args.extend(limits);
    args.extend(["--", "sleep", "30"]);
    let (job, run) = submit(&dev.server, &args);
    let id = containers.wait_running(run);
    let c = inspect(&id).expect("the running container");
    let host = &c["HostConfig"];
    assert_eq!(host["NanoCpus"], 500_000_000, "--cpu 500m: {host}");
    assert_eq!(host["Memory"], 134_217_728, "--memory 128MiB: {host}");
    assert_eq!(host["MemorySwap"], 134_217_728, "no swap beyond the memory limit: {host}");
    assert_eq!(host["NetworkMode"], "none", "{host}");
    assert_eq!(host["PidsLimit"], 4096, "the default pids limit: {host}");
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["archon.managed"], "true", "{labels}");
    assert_eq!(labels["archon.owner"], dev.data.display().to_string(), "{labels}");
    assert_eq!(labels["archon.worker"], "dev-docker", "{labels}");
    assert_eq!(labels["archon.job"], format!("job-{job}"), "{labels}");
    let attempt = id_num(&run_detail(&dev.server, run)["attempts"][0]["id"]);
    assert_eq!(labels["archon.attempt"], format!("att-{attempt}"), "{labels}");
    let name = c["Name"].as_str().unwrap();
    assert!(name.starts_with(&format!("/archon-att-{attempt}-")), "container name {name}");

    // Cancel ends it as cancelled and removes its container.
    let out = cli(&dev.server, &["cancel", &format!("run-{run}")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ended = wait_runs_ended(&dev.server, &[run], Duration::from_secs(15));
    assert_eq!(ended[&run]["state"], "cancelled", "{}", ended[&run]);
    let d = run_detail(&dev.server, run);
    assert_eq!(d["attempts"][0]["exit"]["kind"], "cancelled", "{d}");
    wait_gone(&id, Duration::from_secs(10));

    // A spec file with a [docker] table.
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/specs/docker.toml");
    let out = cli(&dev.server, &["run", "-f", spec.to_str().unwrap(), "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from a container\nlo\n");

    // The dev worker advertises docker.
    let worker = worker_named(&dev.server, "dev-docker");
    assert!(capabilities(&worker).contains(&"docker"), "{worker}");
    assert!(capabilities(&worker).contains(&"shell"), "{worker}");

    containers.assert_none_left("every run ended");
}

/// `archon logs -f` as a child process: its lines as they arrive.
struct Follow {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Follow {
    fn start(server: &str, run: u64) -> Follow {
        let mut child = Command::new(CLI)
            .args(["logs", "-f", &format!("run-{run}")])
            .env("ARCHON_SERVER", server)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Follow { child, lines }
    }

    /// The next line; panics if none comes within `within`.
    fn next_line(&mut self, within: Duration) -> String {
        self.lines.recv_timeout(within).unwrap_or_else(|e| panic!("no line from logs -f within {within:?}: {e}"))
    }

    /// Every further line until the stream closes; bounded by `within`.
    fn read_to_end(&mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => got.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return got,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("logs -f still streaming after {within:?}; got {:?}", got)
                }
            }
        }
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "logs -f did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn logs_follow_streams_a_containers_output_live() {
    require_docker();
    let (_tmp, dir) = temp_dir();
    let containers = Dev::containers(&dir);
    let dev = Dev::start(&dir, "dev-logs");
    // The container prints `one`, then waits for the test to open its gate.
    let script = "echo one; until [ -e /tmp/gate ]; do sleep 0.05; done; echo two";
    let (_, run) = submit(&dev.server, &["--docker", IMAGE, "--", "sh", "-c", script]);
    let mut follow = Follow::start(&dev.server, run);
    assert_eq!(follow.next_line(Duration::from_secs(60)), "one");
    let id = containers.wait_running(run);
    assert_eq!(run_detail(&dev.server, run)["run"]["state"], "running", "`one` came while the run runs: live");
    let opened = docker(&["exec", &id, "touch", "/tmp/gate"]);
    assert!(
        opened.status.success(),
        "docker exec {id} touch /tmp/gate: {} {} {}\nrun: {}\narchon dev's log ends:\n{}",
        opened.status,
        text(&opened.stdout),
        text(&opened.stderr),
        run_detail(&dev.server, run),
        dev.proc.stderr_tail(40)
    );
    assert_eq!(
        follow.read_to_end(Duration::from_secs(60)),
        ["two"],
        "the stream went on until the run ended: {}\narchon dev's log ends:\n{}",
        run_detail(&dev.server, run),
        dev.proc.stderr_tail(40)
    );
    assert!(follow.wait(Duration::from_secs(30)).success());
    // The stream ends with the run.
    let d = run_detail(&dev.server, run);
    assert_eq!(d["run"]["state"], "succeeded", "{d}");
    assert_eq!(d["attempts"][0]["stdout"]["text"], "one\ntwo\n", "{d}");
    containers.assert_none_left("the run ended");
}

#[test]
fn a_memory_hog_ends_out_of_memory() {
    require_docker();
    let (_tmp, dir) = temp_dir();
    let containers = Dev::containers(&dir);
    let dev = Dev::start(&dir, "dev-oom");
    let args = ["submit", "--docker", IMAGE, "--memory", "32MiB", "--wait", "--"];
    let hog = ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"];
    let out = cli(&dev.server, &[&args[..], &hog[..]].concat());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "an OOM-killed run exits 137: {stderr}");
    let run = submitted_run(&stderr);
    assert!(stderr.contains(&format!("run-{run} failed (out of memory)")), "{stderr}");
    let d = run_detail(&dev.server, run);
    assert_eq!(d["run"]["state"], "failed", "{d}");
    assert_eq!(d["attempts"][0]["exit"]["kind"], "out_of_memory", "{d}");
    assert!(d["run"]["reason"].as_str().unwrap_or_default().contains("out of memory"), "{d}");
    containers.assert_none_left("the run ended");
}

#[test]
fn docker_jobs_go_only_to_workers_with_docker() {
    require_docker();
    let (_tmp, dir) = temp_dir();
    let mut c = Cluster::start(&dir);
    let _nodock_containers = Containers::of_worker(&c.state_dir("nodock"));
    let dock_containers = Containers::of_worker(&c.state_dir("dock"));
    let mut nodock = c.worker("nodock", &["--no-docker"]);
    nodock.wait_line("Docker jobs are off on this worker (--no-docker)", Duration::from_secs(20));
    let mut dock = c.worker("dock", &[]);
    dock.wait_line("Docker jobs run on the engine at ", Duration::from_secs(20));
    let nodock_id = c.wait_ready("nodock")["id"].clone();
    let dock_id = c.wait_ready("dock")["id"].clone();
    let nodock_caps = worker_named(&c.server, "nodock");
    assert!(!capabilities(&nodock_caps).contains(&"docker"), "{nodock_caps}");
    assert!(capabilities(&nodock_caps).contains(&"shell"), "{nodock_caps}");
    let dock_caps = worker_named(&c.server, "dock");
    assert!(capabilities(&dock_caps).contains(&"docker"), "{dock_caps}");

    let runs: Vec<u64> = (0..6)
        .map(|_| submit(&c.server, &["--docker", IMAGE, "--cpu", "100m", "--placement", "spread", "--", "true"]).1)
        .collect();
    wait_runs_ended(&c.server, &runs, Duration::from_secs(30));
    for run in &runs {
        let d = run_detail(&c.server, *run);
        assert_eq!(d["run"]["state"], "succeeded", "{d}");
        assert_eq!(common::successful_attempts(&d), 1, "{d}");
        for a in d["attempts"].as_array().unwrap() {
            assert_eq!(a["worker"], dock_id, "a docker attempt ran on a worker without docker: {d}");
        }
    }
    dock_containers.assert_none_left("every docker run ended");

    // Without a docker worker, a docker job is refused: nobody could run it.
    dock.signal(Signal::SIGTERM);
    let status = dock.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "archon-worker dock exited with {status}");
    wait_for(Duration::from_secs(10), "dock to have left", || {
        let w = worker_named(&c.server, "dock");
        if w["state"] == "left" { Ok(()) } else { Err(format!("{w}")) }
    });
    let jobs_before = json(&c.server, &["jobs"])["items"].as_array().unwrap().len();
    let out = cli(&c.server, &["submit", "--docker", IMAGE, "--cpu", "100m", "--", "true"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no worker can run it: nodock cannot run docker tasks"), "{stderr}");
    let jobs_after = json(&c.server, &["jobs"])["items"].as_array().unwrap().len();
    assert_eq!(jobs_after, jobs_before, "the refused job was stored");
    // Shell jobs still run, on nodock.
    let (_, shell) = submit(&c.server, &["--command", "echo on nodock"]);
    wait_runs_ended(&c.server, &[shell], Duration::from_secs(20));
    let d = run_detail(&c.server, shell);
    assert_eq!(d["run"]["state"], "succeeded", "{d}");
    assert_eq!(d["attempts"][0]["worker"], nodock_id, "{d}");
    assert_eq!(d["attempts"][0]["stdout"]["text"], "on nodock\n", "{d}");
    assert!(nodock.alive() && c.manager.alive());
}

#[test]
fn a_restarted_worker_removes_the_containers_its_crashed_predecessor_left() {
    require_docker();
    let (_tmp, dir) = temp_dir();
    let mut c = Cluster::start(&dir);
    let containers = Containers::of_worker(&c.state_dir("w"));
    let mut w = c.worker("w", &[]);
    c.wait_ready("w");
    let (_, run) = submit(&c.server, &["--docker", IMAGE, "--", "sleep", "300"]);
    let id = containers.wait_running(run);
    let name = inspect(&id).unwrap()["Name"].as_str().unwrap().trim_start_matches('/').to_owned();

    w.kill9();
    // A negative check, so a fixed moment: nothing marks when a stop the worker's
    // death might have set off would have landed.
    std::thread::sleep(Duration::from_millis(300));
    let still = inspect(&id).expect("the container of the crashed worker");
    assert_eq!(still["State"]["Running"], true, "a crashed worker cannot stop its container: {}", still["State"]);

    let mut again = c.worker("w", &[]);
    let removed = again.wait_line("removed ", Duration::from_secs(20));
    assert_eq!(removed, format!("1 container(s) left running by a crashed worker: {name}"));
    wait_gone(&id, Duration::from_secs(10));
    c.wait_ready("w");
    // The manager saw the first attempt lost; cancelling the requeued run leaves nothing.
    wait_for(Duration::from_secs(15), "the crashed attempt marked lost", || {
        let d = run_detail(&c.server, run);
        if d["attempts"][0]["state"] == "lost" { Ok(()) } else { Err(format!("{d}")) }
    });
    let out = cli(&c.server, &["cancel", &format!("run-{run}")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ended = wait_runs_ended(&c.server, &[run], Duration::from_secs(20));
    assert_eq!(ended[&run]["state"], "cancelled", "{}", ended[&run]);
    wait_for(Duration::from_secs(10), "no container of the cancelled run", || {
        let left = containers.of_run(run);
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    });
    containers.assert_none_left("the run was cancelled");
    assert!(again.alive(), "the restarted worker died: {}", again.stderr_tail(20));
}

#[test]
fn stopping_dev_with_ctrl_c_removes_running_containers() {
    require_docker();
    let (_tmp, dir) = temp_dir();
    let containers = Dev::containers(&dir);
    let mut dev = Dev::start(&dir, "dev-ctrl-c");
    let (_, run) = submit(&dev.server, &["--docker", IMAGE, "--", "sleep", "300"]);
    let id = containers.wait_running(run);
    dev.proc.signal(Signal::SIGINT);
    let status = dev.proc.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "archon dev exited with {status}: {}", dev.proc.stderr_tail(20));
    assert!(inspect(&id).is_none(), "the running container outlived archon dev");
    assert!(containers.of_run(run).is_empty(), "a container of run-{run} is left");
    containers.assert_none_left("archon dev stopped");
}
