#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The function executor: JSON in, JSON out on stdout, errors on stderr with exit 1,
//! and a clear failure for unknown functions, bad input and panics.

use std::time::Duration;

use archon_core::executor::{DEFAULT_TAIL_LIMIT, Executor};
use archon_core::model::{AttemptResult, ExitStatus, JobSpec, Task};
use archon_core::testkit::executor_suite::context;
use archon_exec::FunctionExecutor;
use serde_json::{Value, json};

fn functions() -> FunctionExecutor {
    FunctionExecutor::new()
        .register("double", |input: Value| async move {
            let n = input["n"].as_i64().ok_or("input needs an integer n")?;
            Ok(json!({ "doubled": n * 2 }))
        })
        .register("refuse", |_input: Value| async move { Err("not today".to_owned()) })
        .register("explode", |_input: Value| async move {
            if true {
                panic!("kaboom");
            }
            Ok(Value::Null)
        })
}

async fn call(executor: &FunctionExecutor, name: &str, input: &str) -> AttemptResult {
    let task = Task::Function { name: name.into(), input: input.into() };
    let (ctx, _cancel) = context(JobSpec::new("fn", task), DEFAULT_TAIL_LIMIT, None);
    executor.execute(ctx).await
}

#[tokio::test]
async fn ok_output_is_written_as_json_on_stdout() {
    let r = call(&functions(), "double", r#"{"n": 21}"#).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 });
    assert_eq!(r.stdout.text(), "{\"doubled\":42}\n");
    assert_eq!(r.stderr.text(), "");
}

#[tokio::test]
async fn err_exits_1_with_the_message_on_stderr() {
    let r = call(&functions(), "refuse", "null").await;
    assert_eq!(r.status, ExitStatus::Exited { code: 1 });
    assert_eq!(r.stderr.text().trim_end(), "not today");
    assert_eq!(r.stdout.text(), "");
}

#[tokio::test]
async fn unknown_function_fails_naming_it_and_the_registered_ones() {
    let r = call(&functions(), "triple", "null").await;
    match r.status {
        ExitStatus::Failed { reason } => {
            assert!(reason.contains("\"triple\""), "reason: {reason}");
            assert!(reason.contains("double, explode, refuse"), "reason: {reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn input_that_is_not_json_fails_naming_the_function() {
    let r = call(&functions(), "double", "{n: 1").await;
    match r.status {
        ExitStatus::Failed { reason } => {
            assert!(reason.contains("\"double\"") && reason.contains("not JSON"), "reason: {reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_panicking_function_fails_the_attempt_instead_of_the_worker() {
    let r = call(&functions(), "explode", "null").await;
    match r.status {
        ExitStatus::Failed { reason } => assert!(reason.contains("kaboom"), "reason: {reason}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn capabilities_name_each_registered_function() {
    let mut executor = functions();
    executor.register_mut("late", |_input: Value| async move { Ok(Value::Null) });
    assert_eq!(executor.capabilities(), ["function:double", "function:explode", "function:late", "function:refuse"]);
}

#[tokio::test(start_paused = true)]
async fn timeout_drops_the_function_future() {
    struct DropFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = dropped.clone();
    let executor = FunctionExecutor::new().register("forever", move |_input: Value| {
        let guard = DropFlag(flag.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok(Value::Null)
        }
    });
    let mut spec = JobSpec::new("fn", Task::Function { name: "forever".into(), input: "null".into() });
    spec.timeout = Some(Duration::from_secs(5));
    let (ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
    let r = executor.execute(ctx).await;
    assert_eq!(r.status, ExitStatus::TimedOut);
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst), "the function's future was not dropped");
}
