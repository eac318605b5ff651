#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Nothing an attempt starts outlives it: timeouts and cancels kill the whole
//! process group (escalating to SIGKILL), and background processes are killed when
//! the main command exits.
//!
//! Every job here would run for 300 s if nothing killed it, so a generous bound
//! ([`HANG_LIMIT`]) tells a kill from none; how quickly a kill lands is for
//! benchmarks to measure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use archon_core::executor::{DEFAULT_TAIL_LIMIT, Executor};
use archon_core::model::{ExitStatus, JobSpec, OutputStream, Task};
use archon_core::testkit::executor_suite::{CollectingSink, context};
use archon_exec::ShellExecutor;

fn shell(name: &str, command: &str) -> JobSpec {
    JobSpec::new(name, Task::Shell { command: command.into() })
}

/// The first line of `text` as a pid.
fn pid_in(text: &str) -> i32 {
    text.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("no pid in {text:?}"))
}

/// Whether `pid` is a live (not zombie) process.
fn is_running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // "pid (comm) STATE ..." — comm may contain spaces or parentheses.
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X" | "x"))
}

/// How long an attempt or a killed process may take to end before the test
/// calls it hung: far less than the 300 s its sleep would last.
const HANG_LIMIT: Duration = Duration::from_secs(60);

/// Runs `spec` to its end, failing if it is still going after [`HANG_LIMIT`].
async fn run(executor: &dyn Executor, spec: JobSpec) -> archon_core::model::AttemptResult {
    let (ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
    tokio::time::timeout(HANG_LIMIT, executor.execute(ctx)).await.expect("the attempt hung")
}

/// Waits (up to [`HANG_LIMIT`]) for `pid` to be gone, then asserts it is.
async fn assert_dies(pid: i32, what: &str) {
    let deadline = Instant::now() + HANG_LIMIT;
    while is_running(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if is_running(pid) {
        // Do not leave it behind for the next test run.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        panic!("{what}: process {pid} is still running");
    }
}

/// Runs `spec`, cancelling it once a first line of stdout arrived; returns the result
/// and how long it took from the cancel.
async fn run_and_cancel_after_first_line(
    executor: &dyn Executor,
    spec: JobSpec,
) -> (archon_core::model::AttemptResult, Duration) {
    let sink = Arc::new(CollectingSink::new());
    let (ctx, cancel) = context(spec, DEFAULT_TAIL_LIMIT, Some(sink.clone()));
    let canceller = async {
        let deadline = Instant::now() + HANG_LIMIT;
        while !sink.bytes(OutputStream::Stdout).contains(&b'\n') {
            assert!(Instant::now() < deadline, "no first line within {HANG_LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
        Instant::now()
    };
    let attempt = tokio::time::timeout(HANG_LIMIT, executor.execute(ctx));
    let (result, cancelled_at) = tokio::join!(attempt, canceller);
    (result.expect("the attempt hung after the cancel"), cancelled_at.elapsed())
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let mut spec = shell("grandchild", "sleep 300 & echo $!; wait");
    spec.timeout = Some(Duration::from_secs(1));
    let r = run(&ShellExecutor::new(), spec).await;
    assert_eq!(r.status, ExitStatus::TimedOut);
    assert_dies(pid_in(&r.stdout.text()), "the background sleep after the timeout").await;
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let spec = shell("grandchild", "sleep 300 & echo $!; wait");
    let (r, _) = run_and_cancel_after_first_line(&ShellExecutor::new(), spec).await;
    assert_eq!(r.status, ExitStatus::Cancelled);
    assert_dies(pid_in(&r.stdout.text()), "the background sleep after the cancel").await;
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() {
    // An ignored signal stays ignored across fork and exec, so the sleep ignores it too.
    let mut spec = shell("stubborn", "trap '' TERM; sleep 300 & echo $!; wait");
    spec.timeout = Some(Duration::from_secs(1));
    let executor = ShellExecutor::new().with_kill_grace(Duration::from_millis(300));
    let started = Instant::now();
    let r = run(&executor, spec).await;
    let took = started.elapsed();
    assert_eq!(r.status, ExitStatus::TimedOut);
    assert!(took >= Duration::from_millis(1300), "SIGKILL came before the grace ended: {took:?}");
    assert_dies(pid_in(&r.stdout.text()), "the TERM-ignoring sleep").await;
}

#[tokio::test]
async fn cancel_escalates_to_sigkill_when_sigterm_is_ignored() {
    let spec = shell("stubborn", "trap '' TERM; sleep 300 & echo $!; wait");
    let executor = ShellExecutor::new().with_kill_grace(Duration::from_millis(300));
    let (r, since_cancel) = run_and_cancel_after_first_line(&executor, spec).await;
    assert_eq!(r.status, ExitStatus::Cancelled);
    assert!(since_cancel >= Duration::from_millis(300), "SIGKILL came before the grace ended");
    assert_dies(pid_in(&r.stdout.text()), "the TERM-ignoring sleep").await;
}

#[tokio::test]
async fn background_process_is_killed_when_the_command_exits() {
    // The background sleep holds stdout open: without the group kill the attempt
    // would wait 300s for end of file.
    let spec = shell("background", "sleep 300 & echo $!; echo started");
    let r = run(&ShellExecutor::new(), spec).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 });
    assert!(r.stdout.text().ends_with("started\n"), "stdout {:?}", r.stdout.text());
    assert_dies(pid_in(&r.stdout.text()), "the background sleep").await;
}

#[tokio::test]
async fn a_signal_death_is_reported_as_signaled() {
    let (ctx, _cancel) = context(shell("self-kill", "kill -USR1 $$"), DEFAULT_TAIL_LIMIT, None);
    let r = ShellExecutor::new().execute(ctx).await;
    assert_eq!(r.status, ExitStatus::Signaled { signal: nix::sys::signal::Signal::SIGUSR1 as i32 });
}

#[tokio::test]
async fn grace_period_lets_the_rest_of_the_group_clean_up_after_the_main_process_exits() {
    // The main shell dies on SIGTERM at once; the subshell traps it and needs a
    // moment to clean up (its `sleep 0.3`), well within the grace period. The
    // grace is longer than HANG_LIMIT: an executor that sat it out would hang.
    let command = "(trap 'sleep 0.3; echo cleaned up; exit 0' TERM; while :; do sleep 0.1; done) & wait";
    let mut spec = shell("cleanup", command);
    spec.timeout = Some(Duration::from_secs(1));
    let executor = ShellExecutor::new().with_kill_grace(Duration::from_secs(300));
    let r = run(&executor, spec).await;
    assert_eq!(r.status, ExitStatus::TimedOut);
    assert_eq!(r.stdout.text(), "cleaned up\n");
}
