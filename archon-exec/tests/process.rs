#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The process executor runs argv directly: no shell, arguments verbatim, and a
//! clear failure when the program cannot start.

use archon_core::executor::{DEFAULT_TAIL_LIMIT, Executor};
use archon_core::model::{ExitStatus, JobSpec, Task};
use archon_core::testkit::executor_suite::context;
use archon_exec::ProcessExecutor;

fn process(argv: &[&str]) -> JobSpec {
    JobSpec::new("process", Task::Process { argv: argv.iter().map(|a| (*a).to_owned()).collect() })
}

#[tokio::test]
async fn missing_program_fails_naming_it() {
    let (ctx, _cancel) = context(process(&["archon-no-such-program", "arg"]), DEFAULT_TAIL_LIMIT, None);
    let r = ProcessExecutor::new().execute(ctx).await;
    match r.status {
        ExitStatus::Failed { reason } => {
            assert!(reason.starts_with("cannot start archon-no-such-program: "), "reason: {reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn program_without_execute_permission_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("not-executable");
    std::fs::write(&program, "#!/bin/sh\necho hi\n").unwrap();
    let program = program.to_str().unwrap();
    let (ctx, _cancel) = context(process(&[program]), DEFAULT_TAIL_LIMIT, None);
    let r = ProcessExecutor::new().execute(ctx).await;
    match r.status {
        ExitStatus::Failed { reason } => assert!(reason.contains(program), "reason: {reason}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn arguments_with_spaces_and_quotes_are_passed_verbatim() {
    let args = ["a b", "it's \"quoted\"", "$HOME", "*", "; exit 3", ""];
    let mut argv = vec!["printf", "[%s]"];
    argv.extend(args);
    let (ctx, _cancel) = context(process(&argv), DEFAULT_TAIL_LIMIT, None);
    let r = ProcessExecutor::new().execute(ctx).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "stderr: {}", r.stderr.text());
    let expected: String = args.iter().map(|a| format!("[{a}]")).collect();
    assert_eq!(r.stdout.text(), expected);
}

#[tokio::test]
async fn empty_argv_fails_instead_of_panicking() {
    let (ctx, _cancel) = context(process(&[]), DEFAULT_TAIL_LIMIT, None);
    let r = ProcessExecutor::new().execute(ctx).await;
    assert!(matches!(r.status, ExitStatus::Failed { ref reason } if reason.contains("argv")), "{:?}", r.status);
}
