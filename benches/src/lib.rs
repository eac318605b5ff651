//! Shared set-up for Archon's benchmarks: an in-process cluster, job builders,
//! the submit-and-drain load loop, and the shipped daemons as child processes
//! ([`Daemon`], [`dev::Dev`], [`cluster::Cluster`]). What to know: every child
//! process is killed when its handle is dropped.

pub mod cluster;
pub mod dev;
pub mod row;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    let clients = vec![api; submitters.max(1)];
    Ok(submit_from(clients, jobs, batch, spec, Duration::MAX, finished).await?.took)
}

/// What a bounded load run did: the jobs it submitted (all of them ended) and
/// how long from the first submit to the last run's end.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Jobs submitted and ended.
    pub jobs: usize,
    /// First submit to last end.
    pub took: Duration,
}

impl Measured {
    /// Jobs per second, end to end.
    pub fn rate(&self) -> f64 {
        self.jobs as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// How long runs may take to end after the last submit before a load run gives up.
pub const DRAIN_GRACE: Duration = Duration::from_secs(60);

/// Submits about `jobs` in batches of `batch`, each client its share one call
/// after another, all clients at once; stops submitting when `deadline` has
/// passed, then waits until every submitted run has ended (as `finished`
/// counts them; at most [`DRAIN_GRACE`] more).
pub async fn submit_from(
    clients: Vec<Arc<dyn Api>>,
    jobs: usize,
    batch: usize,
    spec: JobSpec,
    deadline: Duration,
    finished: impl Fn() -> futures::future::BoxFuture<'static, anyhow::Result<u64>>,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let before = finished().await?;
    let submitted = submit_batches(clients, jobs, batch, spec, deadline.saturating_sub(started.elapsed())).await?;
    let target = before + submitted as u64;
    let give_up = deadline.saturating_add(DRAIN_GRACE);
    loop {
        let ended = finished().await?;
        if ended >= target {
            break;
        }
        if started.elapsed() > give_up {
            anyhow::bail!(
                "{} of {submitted} runs had not ended {:.0}s after the first submit",
                target - ended,
                give_up.as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Measured { jobs: submitted, took: started.elapsed() })
}

/// Submits about `jobs` in batches of `batch`, each client its share one call
/// after another, all clients at once, for at most `for_at_most`; returns how
/// many were submitted. Nothing waits for the runs.
pub async fn submit_batches(
    clients: Vec<Arc<dyn Api>>,
    jobs: usize,
    batch: usize,
    spec: JobSpec,
    for_at_most: Duration,
) -> anyhow::Result<usize> {
    anyhow::ensure!(!clients.is_empty() && batch > 0, "a load run needs a client and a batch of at least one");
    let began = Instant::now();
    let per = jobs / clients.len();
    let submitted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for api in clients {
        let (spec, submitted) = (spec.clone(), submitted.clone());
        tasks.push(tokio::spawn(async move {
            let mut left = per;
            while left > 0 && began.elapsed() < for_at_most {
                let n = left.min(batch);
                let results = api.submit(vec![spec.clone(); n]).await?;
                if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                    anyhow::bail!("submit rejected: {e}");
                }
                submitted.fetch_add(n, Ordering::Relaxed);
                left -= n;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(submitted.load(Ordering::Relaxed))
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
        Daemon::start(bin, args, None, ready).await
    }

    /// [`Daemon::spawn`] with its stderr appended to `log` and its state dir
    /// (`ARCHON_STATE_DIR`, a worker's process ledger) beside it; gives up when
    /// `ready` has not come within 20 s.
    pub async fn spawn_logged(
        bin: &std::path::Path,
        args: &[String],
        log: &std::path::Path,
        ready: &str,
    ) -> anyhow::Result<Daemon> {
        use anyhow::Context as _;
        let wait = Daemon::start(bin, args, Some(log), ready);
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .with_context(|| format!("{} did not print {ready:?} within 20s (see {})", bin.display(), log.display()))?
    }

    async fn start(
        bin: &std::path::Path,
        args: &[String],
        log: Option<&std::path::Path>,
        ready: &str,
    ) -> anyhow::Result<Daemon> {
        use anyhow::Context as _;
        use tokio::io::AsyncBufReadExt as _;
        let mut command = tokio::process::Command::new(bin);
        command.args(args).stdout(std::process::Stdio::piped()).kill_on_drop(true);
        match log {
            Some(log) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .with_context(|| format!("cannot open {}", log.display()))?;
                command.stderr(file).env("ARCHON_STATE_DIR", log.with_extension("state"));
            }
            None => {
                command.stderr(std::process::Stdio::null());
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {} (build it with cargo build --release)", bin.display()))?;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
        let seen = log.map(|l| format!(" (see {})", l.display())).unwrap_or_default();
        let address = loop {
            let line = lines.next_line().await?.with_context(|| format!("{} exited{seen}", bin.display()))?;
            if let Some(rest) = line.split_once(ready).map(|(_, a)| a) {
                break rest.split_whitespace().next().unwrap_or_default().to_owned();
            }
        };
        // Keep reading so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Daemon { child, address })
    }

    /// SIGKILL, and wait until it is gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// Its resident set size now, in bytes (`VmRSS`).
    pub fn rss(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.child.id(), "VmRSS:").map(|k| k << 10)
    }

    /// Its peak resident set size so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.child.id(), "VmHWM:").map(|k| k << 10)
    }

    /// The CPU time it has used so far (user + system).
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        use anyhow::Context as _;
        process_cpu(self.child.id().context("the process has exited")?)
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

/// The CPU time process `pid` has used so far: `utime + stime` of
/// `/proc/PID/stat`, in clock ticks of 10 ms (`CLK_TCK` is 100 on Linux).
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    use anyhow::Context as _;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let after = stat.rsplit_once(')').context("no ) in /proc/PID/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After `)`: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks = |i: usize| -> anyhow::Result<u64> { Ok(fields.get(i).context("short /proc/PID/stat")?.parse()?) };
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
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
