#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Process attempts report what they used: a job that touches ~100 MiB and burns
//! ~0.5 s of CPU is measured within a sane band, whether it is the main child or a
//! child the shell waited for; an attempt that ends by timeout still reports its
//! wall time, and one that never started reports nothing.

use std::time::Duration;

use archon_core::executor::{DEFAULT_TAIL_LIMIT, Executor};
use archon_core::model::{AttemptResult, ExitStatus, JobSpec, ResourceUsage, Task};
use archon_core::testkit::executor_suite::context;
use archon_exec::{ProcessExecutor, ScriptExecutor, ShellExecutor};

/// Allocates and touches 100 MiB, then burns 0.5 s of its own CPU time.
const BURN: &str = "\
import time
b = bytearray(100 * 1024 * 1024)
for i in range(0, len(b), 4096):
    b[i] = 1
start = time.process_time()
while time.process_time() - start < 0.5:
    pass
print(len(b))
";

/// The system's python (a version manager's shim would add its own CPU time).
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

async fn run(executor: &dyn Executor, spec: JobSpec) -> AttemptResult {
    let (ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
    tokio::time::timeout(Duration::from_secs(60), executor.execute(ctx)).await.expect("the attempt hung")
}

/// CPU time in [0.3 s, 3 s], peak memory in [90 MB, 400 MB], and no more CPU than
/// wall time (one single-threaded process at a time; a clock tick of slack).
fn assert_burned_cpu_and_memory(r: &AttemptResult, what: &str) {
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "{what}: stderr: {}", r.stderr.text());
    assert_eq!(r.stdout.text().trim(), "104857600", "{what}: the job ran to its end");
    let usage = r.usage.unwrap_or_else(|| panic!("{what}: no usage reported"));
    let cpu = usage.cpu().as_secs_f64();
    assert!((0.3..=3.0).contains(&cpu), "{what}: cpu {cpu:.3}s is outside [0.3s, 3s]: {usage:?}");
    let peak_mb = usage.peak_memory_bytes as f64 / 1e6;
    assert!((90.0..=400.0).contains(&peak_mb), "{what}: peak {peak_mb:.1} MB is outside [90, 400] MB: {usage:?}");
    assert!(usage.wall_us + 20_000 >= usage.cpu_us(), "{what}: more CPU than wall time: {usage:?}");
    assert!(usage.wall() < Duration::from_secs(30), "{what}: wall time {:?}", usage.wall());
}

#[tokio::test]
async fn a_process_reports_the_cpu_time_and_peak_memory_it_used() {
    let spec = JobSpec::new("burn", Task::Process { argv: vec![python().into(), "-c".into(), BURN.into()] });
    let r = run(&ProcessExecutor::new(), spec).await;
    assert_burned_cpu_and_memory(&r, "python as the main child");
}

#[tokio::test]
async fn what_a_child_the_shell_waited_for_used_is_counted() {
    let body = format!("{} - <<'EOF'\n{BURN}EOF\nstatus=$?\n: the shell outlives python\nexit $status\n", python());
    let spec = JobSpec::new("burn", Task::Script { interpreter: "sh".into(), body });
    let r = run(&ScriptExecutor::new(), spec).await;
    assert_burned_cpu_and_memory(&r, "python as the shell's child");
}

#[tokio::test]
async fn a_timed_out_attempt_still_reports_its_wall_time() {
    let mut spec = JobSpec::new("sleeper", Task::Shell { command: "sleep 30".into() });
    spec.timeout = Some(Duration::from_millis(300));
    let r = run(&ShellExecutor::new().with_kill_grace(Duration::from_millis(100)), spec).await;
    assert_eq!(r.status, ExitStatus::TimedOut);
    let usage = r.usage.expect("a timed-out attempt reports its usage");
    assert!(usage.wall() >= Duration::from_millis(300), "wall {:?} is shorter than the timeout", usage.wall());
    assert!(usage.cpu() < Duration::from_millis(300), "sleeping is not CPU: {usage:?}");
    assert!(usage.peak_memory_bytes > 0, "a sleeping shell has a resident set: {usage:?}");
}

#[tokio::test]
async fn an_attempt_that_never_started_reports_no_usage() {
    let spec = JobSpec::new("missing", Task::Process { argv: vec!["archon-no-such-program".into()] });
    let r = run(&ProcessExecutor::new(), spec).await;
    assert!(matches!(r.status, ExitStatus::Failed { .. }), "{:?}", r.status);
    assert_eq!(r.usage, None::<ResourceUsage>);
}
