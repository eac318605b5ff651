//! End-to-end tests of the shipped binary: `archon dev` runs as a child process on a
//! port it picks, and every step is an `archon` CLI invocation against it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{CLI as BIN, Dev, text};

fn pid_alive(pid: i32) -> bool {
    // A zombie has exited already; only a process still running counts.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// How long a killed job's process may take to go: generous, and far less than
/// the 300 s its `sleep` would run if nothing killed it.
const GONE_WITHIN: Duration = Duration::from_secs(30);

fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !pid_alive(pid)
}

#[test]
fn submit_wait_propagates_exit_codes_and_output() {
    let dev = Dev::start();
    let ok = dev.cli(&["submit", "--wait", "--command", "echo hello from archon"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout), "hello from archon\n");
    let failed = dev.cli(&["submit", "--wait", "--command", "echo bad >&2; exit 7"]);
    assert_eq!(failed.status.code(), Some(7));
    assert!(text(&failed.stderr).contains("bad"), "{}", text(&failed.stderr));
    let echo = dev.cli(&["submit", "--wait", "--function", "echo", "--input", r#"{"n": 1}"#]);
    assert_eq!(echo.status.code(), Some(0), "{}", text(&echo.stderr));
    assert_eq!(text(&echo.stdout), "{\"n\":1}\n");
    let argv = dev.cli(&["submit", "--wait", "--", "/bin/sh", "-c", "exit 5"]);
    assert_eq!(argv.status.code(), Some(5));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sh");
    std::fs::write(&script, "echo from script; exit 4\n").unwrap();
    let s = dev.cli(&["submit", "--wait", "--script", script.to_str().unwrap(), "--interpreter", "sh"]);
    assert_eq!(s.status.code(), Some(4));
    assert_eq!(text(&s.stdout), "from script\n");
}

#[test]
fn a_failing_job_is_retried_then_fails() {
    let dev = Dev::start();
    let out = dev.cli(&[
        "submit",
        "--wait",
        "--max-retries",
        "2",
        "--retry-backoff",
        "100ms",
        "--command",
        "echo try; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let runs = dev.json(&["runs"]);
    let run = &runs["items"][0];
    assert_eq!(run["state"], "failed");
    assert_eq!(run["attempts"], 3, "one try and two retries: {run}");
}

#[test]
fn a_timeout_ends_the_run_and_kills_its_process_tree() {
    let dev = Dev::start();
    // The job would run 300 s: ending at all (with 124) is the timeout's doing.
    let out = dev.cli(&["submit", "--wait", "--timeout", "1s", "--command", "sleep 300 & echo $!; wait"]);
    assert_eq!(out.status.code(), Some(124), "timed out runs exit 124: {}", text(&out.stderr));
    let pid: i32 = text(&out.stdout).trim().parse().expect("the job printed its child's pid");
    assert!(wait_gone(pid, GONE_WITHIN), "the grandchild sleep {pid} survived the timeout");
    let runs = dev.json(&["runs"]);
    assert_eq!(runs["items"][0]["state"], "timed_out");
    let detail = dev.json(&["get", runs["items"][0]["id"].as_str().unwrap()]);
    assert_eq!(detail["attempts"][0]["exit"]["kind"], "timed_out", "{detail}");
}

#[test]
fn cancel_kills_a_running_job() {
    let dev = Dev::start();
    let run = dev.submit(&["--command", "sleep 300 & echo $!; wait"]);
    let pid = dev.first_line_of(&run).trim().parse::<i32>().unwrap();
    assert!(pid_alive(pid));
    let out = dev.cli(&["cancel", &run]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dev.wait_for_state(&run, "cancelled", Duration::from_secs(30));
    let detail = dev.json(&["get", &run]);
    assert_eq!(detail["attempts"][0]["exit"]["kind"], "cancelled");
    assert!(wait_gone(pid, GONE_WITHIN), "the cancelled job's sleep {pid} survived");
    let again = dev.cli(&["cancel", &run]);
    assert_eq!(again.status.code(), Some(2), "cancelling a finished run is refused");
}

#[test]
fn logs_follow_streams_lines_as_they_are_printed() {
    let dev = Dev::start();
    // The job prints a line, then waits for the test to open its gate before the rest.
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let command = format!("echo line1; until [ -e {} ]; do sleep 0.05; done; echo line2; echo line3", gate.display());
    let run = dev.submit(&["--command", &command]);
    let mut follow = Command::new(BIN)
        .args(["logs", "-f", &run])
        .env("ARCHON_SERVER", &dev.server)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, "line1");
    assert_eq!(dev.run_state(&run), "running", "the first line came while the run still runs: live");
    std::fs::write(&gate, "").unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(rest, ["line2", "line3"], "the stream went on until the run ended");
    assert!(follow.wait().unwrap().success());
    assert_eq!(dev.run_state(&run), "succeeded");
}

#[test]
fn read_commands_print_json() {
    let dev = Dev::start();
    dev.cli(&["submit", "--wait", "--name", "greeter", "--command", "echo hi"]);
    let status = dev.json(&["status"]);
    assert_eq!(status["jobs"], 1);
    assert_eq!(status["managers"][0]["role"], "leader");
    let jobs = dev.json(&["jobs"]);
    assert_eq!(jobs["items"][0]["name"], "greeter");
    let job = dev.json(&["get", "job-1"]);
    assert_eq!(job["job"]["task"]["command"], "echo hi");
    let run = dev.json(&["get", "run-1"]);
    assert_eq!(run["attempts"][0]["stdout"]["text"], "hi\n");
    let workers = dev.json(&["workers"]);
    assert_eq!(workers["items"][0]["state"], "ready");
    assert_eq!(workers["items"][0]["capacity"]["cpu_millis"], 4000);
    // The table shows state, last seen, allocated/capacity and running counts.
    let table = text(&dev.cli(&["workers"]).stdout);
    for column in ["STATE", "LAST SEEN", "CPU", "MEMORY", "RUNNING"] {
        assert!(table.contains(column), "no {column} column: {table}");
    }
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains(" ready ") && row.contains(" ago ") && row.contains(" 0/4 ") && row.contains(" 0B/4GiB "),
        "{row}"
    );
    let runs = dev.json(&["runs", "--job", "job-1", "--state", "succeeded"]);
    assert_eq!(runs["items"].as_array().unwrap().len(), 1);
    let jobs = dev.json(&["jobs", "--kind", "shell", "--state", "succeeded"]);
    assert_eq!(jobs["items"][0]["name"], "greeter", "{jobs}");
    for filter in [["--kind", "process"], ["--state", "failed"]] {
        let jobs = dev.json(&["jobs", filter[0], filter[1]]);
        assert_eq!(jobs["items"].as_array().unwrap().len(), 0, "jobs {filter:?}: {jobs}");
    }
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_nothing_is_stored() {
    let dev = Dev::start();
    let dir = tempfile::tempdir().unwrap();
    let bad_spec = dir.path().join("bad.toml");
    std::fs::write(&bad_spec, "command = \"true\"\ntimeout = \"soon\"\n").unwrap();
    let broken_spec = dir.path().join("broken.toml");
    std::fs::write(&broken_spec, "command = \n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["submit", "--timeout", "5x", "--command", "true"], "--timeout: \"5x\" is not a duration (try 30s"),
        (vec!["submit", "--memory", "lots", "--command", "true"], "--memory: \"lots\" is not a size (try 256MiB"),
        (vec!["submit", "--cpu", "many", "--command", "true"], "--cpu: \"many\" is not a CPU amount (try 500m"),
        (vec!["submit", "--command", "  "], "--command: must not be empty"),
        (vec!["submit", "--cpu", "64", "--command", "true"], "more than any worker has"),
        (vec!["submit", "--env", "NOEQUALS", "--command", "true"], "--env: \"NOEQUALS\" is not NAME=value"),
        (vec!["submit", "--function", "echo", "--input", "{bad"], "--input: not JSON"),
        (vec!["submit", "--function", "nosuch"], "cannot run function:nosuch"),
        (vec!["submit", "--executor", "http"], "cannot run custom:http"),
        (vec!["run", "-f", bad_spec.to_str().unwrap()], "timeout: \"soon\" is not a duration"),
        (vec!["run", "-f", broken_spec.to_str().unwrap()], "not valid TOML"),
        (vec!["run", "-f", "/no/such/spec.toml"], "cannot read"),
        (vec!["get", "run-999"], "run-999 not found"),
        (vec!["get", "12"], "is not a job, run or workflow id (try job-12, run-12 or wf-12)"),
        (vec!["cancel", "job-42"], "job-42"),
        (vec!["logs", "run-x"], "RUN: \"run-x\" is not a run id"),
        (vec!["jobs", "--kind", "nope"], "--kind: \"nope\" is not a task kind (one of shell, script, process"),
        (vec!["jobs", "--state", "nope"], "--state: \"nope\" is not a run state (one of waiting"),
    ];
    dev.assert_refused(&cases);
    assert_eq!(dev.job_count(), 0, "a refused submit stored a job");
    let unreachable = Command::new(BIN).args(["status"]).env("ARCHON_SERVER", "127.0.0.1:1").output().unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(text(&unreachable.stderr).contains("127.0.0.1:1"), "{}", text(&unreachable.stderr));
}

#[test]
fn ctrl_c_stops_dev_cleanly_and_kills_running_jobs() {
    let mut dev = Dev::start();
    let run = dev.submit(&["--command", "sleep 300 & echo $!; wait"]);
    let pid: i32 = dev.first_line_of(&run).trim().parse().unwrap();
    assert!(pid_alive(pid));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(dev.child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = dev.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "archon dev did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "archon dev exited with {status}");
    assert!(wait_gone(pid, GONE_WITHIN), "the job's sleep {pid} was orphaned");
}

#[test]
fn get_shows_why_a_run_is_still_pending() {
    // The dev worker offers 4 CPUs and queues nothing beyond them.
    let log = tempfile::NamedTempFile::new().unwrap();
    let dev = Dev::start_with(&["--queue", "0"], log.path());
    let busy = dev.submit(&["--cpu", "3", "--command", "sleep 30"]);
    dev.wait_for_state(&busy, "running", Duration::from_secs(30));
    let waiting = dev.submit(&["--cpu", "2", "--command", "true"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = dev.cli(&["get", &waiting]);
        let table = text(&out.stdout);
        if table.contains("pending:    waiting for capacity: needs cpu 2") {
            assert!(table.contains("has cpu 1 "), "{table}");
            break;
        }
        assert!(Instant::now() < deadline, "no pending reason shown: {table}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(dev.cli(&["cancel", &busy]).status.code(), Some(0));
    dev.wait_for_state(&waiting, "succeeded", Duration::from_secs(30));
}
