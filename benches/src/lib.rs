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

/// A child process of a shipped binary (`archon dev`, `archon-manager`, …) for the
/// end-to-end benchmarks: its pid for RSS readings, killed when dropped.
pub struct Daemon {
    /// The process.
    pub child: tokio::process::Child,
    /// The gRPC address it printed.
    pub address: String,
}

impl Daemon {
    /// Spawns `bin ARGS` and waits for the line starting with `ready` (the
    /// address follows it on that line).
    pub async fn spawn(bin: &std::path::Path, args: &[String], ready: &str) -> anyhow::Result<Daemon> {
        use anyhow::Context as _;
        use tokio::io::AsyncBufReadExt as _;
        let mut child = tokio::process::Command::new(bin)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} (build it with cargo build --release)", bin.display()))?;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
        let address = loop {
            let line = lines.next_line().await?.with_context(|| format!("{} exited", bin.display()))?;
            if let Some(rest) = line.split_once(ready).map(|(_, a)| a) {
                break rest.split_whitespace().next().unwrap_or_default().to_owned();
            }
        };
        // Keep reading so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Daemon { child, address })
    }

    /// Its resident set size now, in bytes (`VmRSS`).
    pub fn rss(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.child.id(), "VmRSS:").map(|k| k << 10)
    }

    /// Its peak resident set size so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.child.id(), "VmHWM:").map(|k| k << 10)
    }

    /// A gRPC client to it.
    pub async fn client(&self) -> anyhow::Result<Arc<dyn Api>> {
        Ok(Arc::new(archon_net::GrpcClient::connect(&self.address).await?))
    }
}

fn proc_status_kib(pid: Option<u32>, key: &str) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    let pid = pid.context("the process has exited")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(key)).with_context(|| format!("no {key}"))?;
    Ok(line.split_whitespace().nth(1).context("no value")?.parse()?)
}

/// The bytes of the files under `dir` (what `du --apparent-size` counts).
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += dir_bytes(&entry.path()),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}

/// Runs that ended, as a manager's status counts them.
pub async fn ended_runs(api: &dyn Api) -> anyhow::Result<u64> {
    let s = api.status().await?;
    Ok(["succeeded", "failed", "cancelled", "timed_out", "upstream_failed"].iter().filter_map(|k| s.runs.get(*k)).sum())
}
