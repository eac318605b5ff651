#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every executor in this crate passes archon-core's executor conformance suite.

use std::sync::Arc;
use std::time::Duration;

use archon_core::model::Task;
use archon_core::testkit::executor_suite::{SuiteTasks, run_all};
use archon_exec::{FunctionExecutor, ProcessExecutor, ScriptExecutor, ShellExecutor};
use serde_json::Value;

/// Quotes `text` for `sh`.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Shell command lines for each behaviour (also the bodies of `sh` scripts).
fn shell_line(behaviour: Behaviour<'_>) -> String {
    match behaviour {
        Behaviour::Print(text) => format!("printf '%s' {}", quote(text)),
        Behaviour::PrintStderr(text) => format!("printf '%s' {} >&2", quote(text)),
        Behaviour::Exit(code) => format!("exit {code}"),
        Behaviour::Sleep(secs) => format!("sleep {secs}"),
        Behaviour::PrintBytes(n) => format!("head -c {n} /dev/zero | tr '\\0' x"),
    }
}

enum Behaviour<'a> {
    Print(&'a str),
    PrintStderr(&'a str),
    Exit(i32),
    Sleep(u64),
    PrintBytes(usize),
}

struct ShellTasks;

impl SuiteTasks for ShellTasks {
    fn print(&self, text: &str) -> Task {
        Task::Shell { command: shell_line(Behaviour::Print(text)) }
    }
    fn print_stderr(&self, text: &str) -> Task {
        Task::Shell { command: shell_line(Behaviour::PrintStderr(text)) }
    }
    fn exit_with(&self, code: i32) -> Task {
        Task::Shell { command: shell_line(Behaviour::Exit(code)) }
    }
    fn sleep(&self, secs: u64) -> Task {
        Task::Shell { command: shell_line(Behaviour::Sleep(secs)) }
    }
    fn print_bytes(&self, n: usize) -> Task {
        Task::Shell { command: shell_line(Behaviour::PrintBytes(n)) }
    }
}

struct ScriptTasks;

impl ScriptTasks {
    fn script(behaviour: Behaviour<'_>) -> Task {
        Task::Script { interpreter: "sh".into(), body: format!("#!/bin/sh\n{}\n", shell_line(behaviour)) }
    }
}

impl SuiteTasks for ScriptTasks {
    fn print(&self, text: &str) -> Task {
        ScriptTasks::script(Behaviour::Print(text))
    }
    fn print_stderr(&self, text: &str) -> Task {
        ScriptTasks::script(Behaviour::PrintStderr(text))
    }
    fn exit_with(&self, code: i32) -> Task {
        ScriptTasks::script(Behaviour::Exit(code))
    }
    fn sleep(&self, secs: u64) -> Task {
        ScriptTasks::script(Behaviour::Sleep(secs))
    }
    fn print_bytes(&self, n: usize) -> Task {
        ScriptTasks::script(Behaviour::PrintBytes(n))
    }
}

struct ProcessTasks;

fn argv(args: &[&str]) -> Task {
    Task::Process { argv: args.iter().map(|a| (*a).to_owned()).collect() }
}

impl SuiteTasks for ProcessTasks {
    fn print(&self, text: &str) -> Task {
        argv(&["printf", "%s", text])
    }
    fn print_stderr(&self, text: &str) -> Task {
        argv(&["sh", "-c", "printf '%s' \"$1\" >&2", "sh", text])
    }
    fn exit_with(&self, code: i32) -> Task {
        argv(&["sh", "-c", &format!("exit {code}")])
    }
    fn sleep(&self, secs: u64) -> Task {
        argv(&["sleep", &secs.to_string()])
    }
    fn print_bytes(&self, n: usize) -> Task {
        argv(&["head", "-c", &n.to_string(), "/dev/zero"])
    }
}

struct FunctionTasks;

fn call(name: &str, input: Value) -> Task {
    Task::Function { name: name.into(), input: input.to_string() }
}

impl SuiteTasks for FunctionTasks {
    fn print(&self, text: &str) -> Task {
        call("echo", Value::from(text))
    }
    fn print_stderr(&self, text: &str) -> Task {
        call("fail", Value::from(text))
    }
    fn exit_with(&self, code: i32) -> Task {
        call("exit", Value::from(code))
    }
    fn sleep(&self, secs: u64) -> Task {
        call("sleep", Value::from(secs))
    }
    fn print_bytes(&self, n: usize) -> Task {
        call("bytes", Value::from(n))
    }
    fn exit_codes(&self) -> Vec<i32> {
        vec![1]
    }
}

fn suite_functions() -> FunctionExecutor {
    FunctionExecutor::new()
        .register("echo", |input: Value| async move { Ok(input) })
        .register("fail", |input: Value| async move { Err(input.as_str().unwrap_or_default().to_owned()) })
        .register("exit", |input: Value| async move {
            match input.as_i64() {
                Some(0) => Ok(Value::Null),
                code => Err(format!("asked to exit with {code:?}")),
            }
        })
        .register("sleep", |input: Value| async move {
            tokio::time::sleep(Duration::from_secs(input.as_u64().unwrap_or(0))).await;
            Ok(Value::Null)
        })
        .register("bytes", |input: Value| async move {
            let n = input.as_u64().ok_or("input must be a byte count")?;
            Ok(Value::String("x".repeat(usize::try_from(n).map_err(|e| e.to_string())?)))
        })
}

#[tokio::test]
async fn shell_executor_conforms() {
    run_all(Arc::new(ShellExecutor::new()), &ShellTasks).await;
}

#[tokio::test]
async fn script_executor_conforms() {
    run_all(Arc::new(ScriptExecutor::new()), &ScriptTasks).await;
}

#[tokio::test]
async fn process_executor_conforms() {
    run_all(Arc::new(ProcessExecutor::new()), &ProcessTasks).await;
}

#[tokio::test]
async fn function_executor_conforms() {
    run_all(Arc::new(suite_functions()), &FunctionTasks).await;
}

#[tokio::test]
async fn local_registry_conforms_for_each_kind_it_serves() {
    let registry = Arc::new(archon_exec::local_registry());
    let capabilities = registry.capability_set();
    assert_eq!(capabilities.into_iter().collect::<Vec<_>>(), ["process", "script", "shell"]);
    run_all(registry.clone(), &ShellTasks).await;
    run_all(registry.clone(), &ScriptTasks).await;
    run_all(registry, &ProcessTasks).await;
}
