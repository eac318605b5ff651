//! A manager and a worker in process sharing one node's metrics, as `archon
//! dev` does: what runs is counted on both sides, the cluster's gauges follow
//! the state, and the whole registry passes `promtool check metrics` (when
//! promtool is installed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;

use archon_core::api::Api;
use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::manager::Manager;
use archon_core::metrics::Metrics;
use archon_core::model::{AttemptResult, ExitStatus, JobSpec, Resources, Task};
use archon_core::store::MemStore;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

/// `function:ok` and `function:fail` (exit 3), each "spawning" first.
struct TestExec;

#[async_trait]
impl Executor for TestExec {
    fn capabilities(&self) -> Vec<String> {
        vec!["function:ok".into(), "function:fail".into()]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        ctx.output.spawned();
        let Task::Function { name, .. } = &ctx.spec.task else { unreachable!() };
        let code = if name == "ok" { 0 } else { 3 };
        ctx.output.finish(ExitStatus::Exited { code })
    }
}

fn value(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

fn promtool_accepts(text: &str) {
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: promtool is not installed (Debian: apt-get install prometheus); format not linted");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics failed:\n{said}\non:\n{text}");
}

#[tokio::test]
async fn a_manager_and_its_worker_count_what_ran_in_one_registry() {
    let metrics = Metrics::new();
    let manager = Manager::builder(Arc::new(MemStore::new())).metrics(metrics.clone()).build();
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let (m, s) = (manager.clone(), shutdown.clone());
        async move { m.run(s).await }
    });
    let mut config =
        WorkerConfig::new("w1", Resources { cpu_millis: 2000, memory_bytes: 1 << 30, ..Resources::default() });
    config.metrics = metrics.clone();
    let registry = ExecutorRegistry::new().with(Arc::new(TestExec));
    let worker = WorkerRuntime::new(config, Arc::new(registry), Arc::new(InProcTransport::new(manager.clone())));
    tokio::spawn({
        let s = shutdown.clone();
        async move { worker.run(s).await }
    });

    let specs = ["ok", "ok", "fail"].map(|n| JobSpec::new(n, Task::Function { name: n.into(), input: "1".into() }));
    let submitted = manager.submit(specs.to_vec()).await.unwrap();
    for s in submitted {
        let detail = manager.wait(s.unwrap().run.unwrap()).await.unwrap();
        assert!(detail.run.state.is_terminal());
    }

    let text = manager.metrics().encode();
    assert_eq!(value(&text, r#"archon_dispatches_total{kind="function"}"#), 3.0, "{text}");
    assert_eq!(value(&text, r#"archon_run_completions_total{state="succeeded"}"#), 2.0, "{text}");
    assert_eq!(value(&text, r#"archon_run_completions_total{state="failed"}"#), 1.0, "{text}");
    assert_eq!(value(&text, r#"archon_run_start_latency_seconds_count{kind="function"}"#), 3.0, "{text}");
    assert_eq!(value(&text, r#"archon_run_duration_seconds_count{kind="function"}"#), 3.0, "{text}");
    assert_eq!(value(&text, r#"archon_executor_starts_total{kind="function"}"#), 3.0, "{text}");
    assert_eq!(value(&text, r#"archon_executor_failures_total{kind="function",reason="exit_code"}"#), 1.0, "{text}");
    assert_eq!(value(&text, r#"archon_executor_spawn_duration_seconds_count{kind="function"}"#), 3.0, "{text}");
    assert_eq!(value(&text, r#"archon_runs{state="succeeded"}"#), 2.0, "{text}");
    assert_eq!(value(&text, r#"archon_queue_depth{queue="pending"}"#), 0.0, "{text}");
    assert_eq!(value(&text, r#"archon_workers{state="ready"}"#), 1.0, "{text}");
    assert_eq!(value(&text, r#"archon_worker_cpu_capacity_cores{worker="w1"}"#), 2.0, "{text}");
    assert!(text.contains(r#"archon_worker_heartbeat_age_seconds{worker="w1"}"#), "{text}");
    assert_eq!(value(&text, "archon_manager_leading"), 1.0, "{text}");
    assert_eq!(manager.metrics().encode().matches("# TYPE archon_runs gauge").count(), 1);
    promtool_accepts(&text);
    shutdown.cancel();
}

#[tokio::test]
async fn a_manager_built_without_metrics_keeps_a_registry_of_its_own() {
    let a = Manager::builder(Arc::new(MemStore::new())).build();
    let b = Manager::builder(Arc::new(MemStore::new())).build();
    assert!(a.metrics().encode().contains("archon_manager_leading"));
    assert!(!a.metrics().encode().contains("archon_executor"));
    // Two managers, two registries: neither sees the other's families twice.
    assert_eq!(b.metrics().encode().matches("# TYPE archon_runs gauge").count(), 1);
}
