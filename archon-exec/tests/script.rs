#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The script executor's temporary file: private while the script runs, gone when
//! the attempt ends, however it ends.

use std::path::PathBuf;
use std::time::Duration;

use archon_core::executor::{DEFAULT_TAIL_LIMIT, Executor};
use archon_core::model::{ExitStatus, JobSpec, Task};
use archon_core::testkit::executor_suite::context;
use archon_exec::ScriptExecutor;

fn script(interpreter: &str, body: &str) -> JobSpec {
    JobSpec::new("script", Task::Script { interpreter: interpreter.into(), body: body.into() })
}

/// The script path printed on the first line of stdout.
fn printed_path(stdout: &str) -> PathBuf {
    let line = stdout.lines().next().unwrap_or_else(|| panic!("no path in {stdout:?}"));
    PathBuf::from(line)
}

#[tokio::test]
async fn script_file_is_private_and_removed_after_the_run() {
    let (ctx, _cancel) = context(script("sh", "echo \"$0\"\nstat -c %a \"$0\"\n"), DEFAULT_TAIL_LIMIT, None);
    let r = ScriptExecutor::new().execute(ctx).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "stderr: {}", r.stderr.text());
    let stdout = r.stdout.text();
    let path = printed_path(&stdout);
    assert!(path.is_absolute(), "{path:?}");
    assert_eq!(stdout.lines().nth(1), Some("600"), "the script file must be readable by its owner only");
    assert!(!path.exists(), "{path:?} was left behind");
}

#[tokio::test]
async fn script_file_is_removed_after_a_timeout() {
    let mut spec = script("sh", "echo \"$0\"\nsleep 60\n");
    spec.timeout = Some(Duration::from_secs(1));
    let (ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
    let r = ScriptExecutor::new().execute(ctx).await;
    assert_eq!(r.status, ExitStatus::TimedOut);
    let path = printed_path(&r.stdout.text());
    assert!(!path.exists(), "{path:?} was left behind");
}

#[tokio::test]
async fn script_failing_with_a_code_removes_its_file_and_reports_the_code() {
    let (ctx, _cancel) = context(script("sh", "echo \"$0\"\nexit 7\n"), DEFAULT_TAIL_LIMIT, None);
    let r = ScriptExecutor::new().execute(ctx).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 7 });
    let path = printed_path(&r.stdout.text());
    assert!(!path.exists(), "{path:?} was left behind");
}

#[tokio::test]
async fn missing_interpreter_fails_naming_it() {
    let (ctx, _cancel) = context(script("archon-no-such-interpreter", "echo hi\n"), DEFAULT_TAIL_LIMIT, None);
    let r = ScriptExecutor::new().execute(ctx).await;
    match r.status {
        ExitStatus::Failed { reason } => {
            assert!(reason.contains("cannot start archon-no-such-interpreter"), "reason: {reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}
