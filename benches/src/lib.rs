//! Shared set-up for Archon's benchmarks: an in-process cluster and job builders.

use std::sync::Arc;
use std::time::Duration;

use archon_core::api::Api;
use archon_core::executor::ExecutorRegistry;
use archon_core::manager::Manager;
use archon_core::model::{JobSpec, Resources, Task};
use archon_core::store::MemStore;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use tokio_util::sync::CancellationToken;

/// A manager and one worker in this process, on `MemStore`.
pub struct InProcCluster {
    /// The manager (also the API).
    pub manager: Manager,
    shutdown: CancellationToken,
}

impl InProcCluster {
    /// Starts a manager and a worker offering `capacity` and running `executors`.
    pub async fn start(capacity: Resources, executors: ExecutorRegistry) -> anyhow::Result<InProcCluster> {
        InProcCluster::start_on(Arc::new(MemStore::new()), capacity, executors).await
    }

    /// [`InProcCluster::start`] on `store`, which must be leading already.
    pub async fn start_on(
        store: Arc<dyn archon_core::store::Store>,
        capacity: Resources,
        executors: ExecutorRegistry,
    ) -> anyhow::Result<InProcCluster> {
        let manager = Manager::builder(store).build();
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let (m, s) = (manager.clone(), shutdown.clone());
            async move { m.run(s).await }
        });
        let worker = WorkerRuntime::new(
            WorkerConfig::new("bench-worker", capacity),
            Arc::new(executors),
            Arc::new(InProcTransport::new(manager.clone())),
        );
        tokio::spawn({
            let s = shutdown.clone();
            async move { worker.run(s).await }
        });
        for _ in 0..500 {
            if manager.list_workers().await?.iter().any(|w| w.connected) {
                return Ok(InProcCluster { manager, shutdown });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("the worker did not connect")
    }
}

impl Drop for InProcCluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A no-op function job that reserves almost nothing.
pub fn noop_job() -> JobSpec {
    let mut spec = JobSpec::new("noop", Task::Function { name: "noop".into(), input: "null".into() });
    spec.resources = Resources { cpu_millis: 1, memory_bytes: 0, ..Resources::default() };
    spec
}

/// Capacity large enough that placement never waits.
pub fn huge_capacity() -> Resources {
    Resources { cpu_millis: 1 << 40, memory_bytes: 1 << 50, network_mbps: 0, devices: Default::default() }
}

/// Submits `jobs` in batches of `batch` from `submitters` concurrent tasks, then
/// waits until every run has ended. Returns the elapsed time.
pub async fn submit_and_drain(
    api: Arc<dyn Api>,
    jobs: usize,
    batch: usize,
    submitters: usize,
    spec: JobSpec,
    finished: impl Fn() -> futures::future::BoxFuture<'static, anyhow::Result<u64>>,
) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    let before = finished().await?;
    let per = jobs / submitters;
    let mut tasks = Vec::new();
    for _ in 0..submitters {
        let (api, spec) = (api.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            let mut left = per;
            while left > 0 {
                let n = left.min(batch);
                let results = api.submit(vec![spec.clone(); n]).await?;
                if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                    anyhow::bail!("submit rejected: {e}");
                }
                left -= n;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let target = before + (per * submitters) as u64;
    while finished().await? < target {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(started.elapsed())
}
