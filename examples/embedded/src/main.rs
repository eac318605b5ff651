//! Run with: `cargo run -p example-embedded`
//!
//! Archon embedded in your own program: a manager on an in-memory store and a
//! worker in the same process, a Rust function registered by name, jobs submitted
//! and their results awaited. Copy this file to start your own.

use std::sync::Arc;

use archon_core::api::Api;
use archon_core::manager::Manager;
use archon_core::model::{JobSpec, Resources, Task};
use archon_core::store::MemStore;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use archon_exec::FunctionExecutor;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();

    // 1. The manager: cluster state in memory, the default bin-packing scheduler.
    let manager = Manager::builder(Arc::new(MemStore::new())).build();
    tokio::spawn({
        let (manager, shutdown) = (manager.clone(), shutdown.clone());
        async move { manager.run(shutdown).await }
    });

    // 2. A worker that runs shell, script and process jobs, plus our own function.
    let functions = FunctionExecutor::new().register("word_count", |input: Value| async move {
        let text = input["text"].as_str().ok_or("input needs a \"text\" string")?;
        Ok(json!({ "words": text.split_whitespace().count() }))
    });
    let mut executors = archon_exec::local_registry();
    executors.register(Arc::new(functions));
    let capacity = Resources { cpu_millis: 2000, memory_bytes: 1 << 30, ..Resources::default() };
    let worker = WorkerRuntime::new(
        WorkerConfig::new("embedded-worker", capacity),
        Arc::new(executors),
        Arc::new(InProcTransport::new(manager.clone())),
    );
    let worker_stop = shutdown.child_token();
    let worker_task = tokio::spawn(async move { worker.run(worker_stop).await });

    // 3. Submit jobs and wait for their results.
    let input = json!({ "text": "the quick brown fox jumps over the lazy dog" }).to_string();
    let jobs = vec![
        JobSpec::new("count words", Task::Function { name: "word_count".into(), input }),
        JobSpec::new("say hello", Task::Shell { command: "echo hello from a shell job".into() }),
    ];
    for submitted in manager.submit(jobs).await? {
        let run = submitted?.run.ok_or_else(|| anyhow::anyhow!("a one-off job always has a run"))?;
        let done = manager.wait(run).await?;
        let output = done.attempts.last().and_then(|a| a.result.as_ref()).map(|r| r.stdout.text()).unwrap_or_default();
        println!("{} ({}): {} -> {}", done.job_name, run, done.run.state, output.trim());
    }

    // 4. Stop: the worker kills anything still running, then the manager stops.
    shutdown.cancel();
    worker_task.await??;
    Ok(())
}
