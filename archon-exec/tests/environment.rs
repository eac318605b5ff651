#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A job's env (and secret_env) is added to the worker's, and its working
//! directory is used (a missing one fails the attempt naming it), for every
//! process executor.

use std::collections::BTreeMap;

use archon_core::executor::{DEFAULT_TAIL_LIMIT, Executor};
use archon_core::model::{ExitStatus, JobSpec, Secret, Task};
use archon_core::testkit::executor_suite::context;
use archon_exec::{ProcessExecutor, ScriptExecutor, ShellExecutor};

const REPORT: &str = r#"printf '%s|%s|%s' "$ARCHON_TEST_VAR" "$(pwd -P)" "${PATH:+inherited}""#;

/// The same report as each process executor's task.
fn tasks() -> Vec<(Box<dyn Executor>, Task)> {
    vec![
        (Box::new(ShellExecutor::new()), Task::Shell { command: REPORT.into() }),
        (Box::new(ScriptExecutor::new()), Task::Script { interpreter: "sh".into(), body: REPORT.into() }),
        (Box::new(ProcessExecutor::new()), Task::Process { argv: vec!["sh".into(), "-c".into(), REPORT.into()] }),
    ]
}

#[tokio::test]
async fn env_is_added_and_working_dir_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    for (executor, task) in tasks() {
        let kind = task.kind();
        let mut spec = JobSpec::new("env", task);
        spec.env = BTreeMap::from([("ARCHON_TEST_VAR".to_owned(), "value with spaces".to_owned())]);
        spec.working_dir = Some(dir_path.to_str().unwrap().to_owned());
        let (ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
        let r = executor.execute(ctx).await;
        assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "{kind}: stderr {}", r.stderr.text());
        assert_eq!(r.stdout.text(), format!("value with spaces|{}|inherited", dir_path.display()), "{kind}");
    }
}

#[tokio::test]
async fn secret_env_reaches_the_process_like_env() {
    const SHOW: &str = r#"printf '%s|%s' "$ARCHON_PLAIN" "$ARCHON_SECRET""#;
    let tasks: Vec<(Box<dyn Executor>, Task)> = vec![
        (Box::new(ShellExecutor::new()), Task::Shell { command: SHOW.into() }),
        (Box::new(ScriptExecutor::new()), Task::Script { interpreter: "sh".into(), body: SHOW.into() }),
        (Box::new(ProcessExecutor::new()), Task::Process { argv: vec!["sh".into(), "-c".into(), SHOW.into()] }),
    ];
    for (executor, task) in tasks {
        let kind = task.kind();
        let mut spec = JobSpec::new("secret", task);
        spec.env = BTreeMap::from([("ARCHON_PLAIN".to_owned(), "plain".to_owned())]);
        spec.secret_env = BTreeMap::from([("ARCHON_SECRET".to_owned(), Secret::new("s3cr3t value"))]);
        let (ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
        let r = executor.execute(ctx).await;
        assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "{kind}: stderr {}", r.stderr.text());
        assert_eq!(r.stdout.text(), "plain|s3cr3t value", "{kind}");
    }
}

#[tokio::test]
async fn missing_working_dir_fails_naming_it() {
    let missing = "/nonexistent/archon-test-working-dir";
    for (executor, task) in tasks() {
        let kind = task.kind();
        let mut spec = JobSpec::new("env", task);
        spec.working_dir = Some(missing.to_owned());
        let (ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
        let r = executor.execute(ctx).await;
        match r.status {
            ExitStatus::Failed { reason } => {
                assert!(reason.contains(missing), "{kind}: reason {reason}");
                assert!(reason.contains("working directory"), "{kind}: reason {reason}");
            }
            other => panic!("{kind}: expected Failed, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn working_dir_that_is_a_file_fails_naming_it() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let mut spec = JobSpec::new("env", Task::Shell { command: "true".into() });
    spec.working_dir = Some(path.clone());
    let (ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
    let r = ShellExecutor::new().execute(ctx).await;
    match r.status {
        ExitStatus::Failed { reason } => assert!(reason.contains(&path) && reason.contains("not a directory")),
        other => panic!("expected Failed, got {other:?}"),
    }
}
