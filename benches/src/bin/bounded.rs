//! Bounded state, measured on the shipped binaries (issue 11). Each subcommand
//! prints the lines that go into benches/RESULTS.md. Build with `--release`
//! (`cargo build --release --bins`), then e.g. `target/release/bounded memory`.
//!
//! - `memory`:    RSS and data dir of `archon dev` (durable store) after 100k,
//!   300k and 1M no-op jobs through gRPC, then a crash restart on that data
//! - `output`:    10,000 jobs that each print 1 MiB: RSS and data dir
//! - `per-job`:   bytes of memory and disk per pending and per running job at
//!   three sizes (finished jobs: `memory`)
//! - `retention`: 200k jobs under a 1-minute retention, twice (the first brings
//!   the node to its steady state): when they are gone from `list`/`get`, and
//!   the data dir before, at the peak and once it settled
//! - `join`:      a second manager joining a group with 1M finished jobs: how
//!   long until it has applied what the leader had

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use archon_benches::{Daemon, dir_bytes, ended_runs, noop_job, submit_and_drain};
use archon_core::api::{Api, RunQuery};
use archon_core::model::{JobSpec, Resources, RunId, Task};
use clap::{Parser, Subcommand};
use futures::FutureExt;

#[derive(Parser)]
struct Cli {
    /// Where `archon`, `archon-manager` and `archon-worker` are (default: next to this binary).
    #[arg(long, global = true)]
    bin_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// RSS and data dir after each checkpoint of no-op jobs, then a restart.
    Memory {
        #[arg(long, value_delimiter = ',', default_value = "100000,300000,1000000")]
        checkpoints: Vec<usize>,
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        submitters: usize,
    },
    /// Jobs that each print `bytes` of random output.
    Output {
        #[arg(long, default_value_t = 10_000)]
        jobs: usize,
        #[arg(long, default_value_t = 1 << 20)]
        bytes: usize,
        /// Jobs running at once (one core each on a worker offering this many).
        #[arg(long, default_value_t = 8)]
        slots: usize,
    },
    /// Memory and disk per pending and per running job.
    PerJob {
        #[arg(long, value_delimiter = ',', default_value = "10000,30000,100000")]
        pending: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "250,500,1000")]
        running: Vec<usize>,
    },
    /// A burst of no-op jobs under a short retention.
    Retention {
        #[arg(long, default_value_t = 200_000)]
        jobs: usize,
        #[arg(long, default_value = "1m")]
        retention: String,
    },
    /// A manager joining a group with `jobs` finished jobs.
    Join {
        #[arg(long, default_value_t = 1_000_000)]
        jobs: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bins = match cli.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?.parent().context("no parent dir")?.to_path_buf(),
    };
    match cli.command {
        Cmd::Memory { checkpoints, batch, submitters } => memory(&bins, &checkpoints, batch, submitters).await,
        Cmd::Output { jobs, bytes, slots } => output(&bins, jobs, bytes, slots).await,
        Cmd::PerJob { pending, running } => per_job(&bins, &pending, &running).await,
        Cmd::Retention { jobs, retention: keep } => retention(&bins, jobs, &keep).await,
        Cmd::Join { jobs } => join(&bins, jobs).await,
    }
}

const MIB: f64 = (1 << 20) as f64;

/// `archon dev` on `data` with a worker offering `cpu` cores, and `flags`.
async fn dev(bins: &Path, data: &Path, cpu: &str, flags: &[&str]) -> anyhow::Result<Daemon> {
    let mut args: Vec<String> =
        ["dev", "--insecure", "--listen", "127.0.0.1:0", "--no-docker", "--cpu", cpu, "--memory", "1TiB"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.push("--data-dir".into());
    args.push(data.display().to_string());
    args.extend(flags.iter().map(|s| s.to_string()));
    Daemon::spawn(&bins.join("archon"), &args, "gRPC API listening on ").await
}

/// Submits `n` copies of `spec` in batches, not waiting for them to run.
async fn submit_only(api: &dyn Api, spec: &JobSpec, n: usize, batch: usize) -> anyhow::Result<Vec<RunId>> {
    let mut runs = Vec::with_capacity(n);
    let mut left = n;
    while left > 0 {
        let k = left.min(batch);
        for r in api.submit(vec![spec.clone(); k]).await? {
            let r = r.map_err(|e| anyhow::anyhow!("submit rejected: {e}"))?;
            runs.push(r.run.context("no run")?);
        }
        left -= k;
    }
    Ok(runs)
}

/// Polls `check` every 100 ms until it holds, for at most `deadline`.
async fn until<F, Fut>(deadline: Duration, what: &str, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    while !check().await? {
        anyhow::ensure!(started.elapsed() < deadline, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(started.elapsed())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

async fn memory(bins: &Path, checkpoints: &[usize], batch: usize, submitters: usize) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let dir = data.path().join("data");
    let mut dev = dev(bins, &dir, "1000000", &[]).await?;
    let api = dev.client().await?;
    let finished = {
        let api = api.clone();
        move || {
            let api = api.clone();
            async move { ended_runs(api.as_ref()).await }.boxed()
        }
    };
    submit_and_drain(api.clone(), 10_000, batch, 1, noop_job(), finished.clone()).await?;
    let (rss0, disk0) = (dev.rss()?, dir_bytes(&dir));
    println!("memory: after a 10,000-job warm-up: RSS {}, data dir {}", mib(rss0), mib(disk0));
    let (mut done, mut first_rss) = (0usize, None);
    for &checkpoint in checkpoints {
        let n = checkpoint.saturating_sub(done);
        let took = submit_and_drain(api.clone(), n, batch, submitters, noop_job(), finished.clone()).await?;
        done = checkpoint;
        let (rss, disk) = (dev.rss()?, dir_bytes(&dir));
        let first = *first_rss.get_or_insert(rss);
        println!(
            "memory: {done} no-op jobs finished ({n} in {:.1}s = {:.0} jobs/s): RSS {} (peak {}; {:+.1}% vs the first checkpoint), \
             data dir {}; per finished job {:.0} B of memory and {:.0} B of disk over the warm-up",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            mib(rss),
            mib(dev.peak_rss()?),
            100.0 * (rss as f64 - first as f64) / first as f64,
            mib(disk),
            (rss as f64 - rss0 as f64) / done as f64,
            (disk as f64 - disk0 as f64) / done as f64,
        );
    }
    // A crash (SIGKILL) and a restart on the same data: how soon it serves.
    let last = api.list_runs(RunQuery { limit: Some(1), ..RunQuery::default() }).await?;
    let last = last.items.first().context("no runs")?.id;
    dev.child.kill().await?;
    drop(api);
    let started = Instant::now();
    let dev = self::dev(bins, &dir, "1000000", &[]).await?;
    let listening = started.elapsed();
    let api = dev.client().await?;
    until(Duration::from_secs(60), "status after the restart", || async {
        Ok(api.status().await.is_ok_and(|s| s.managers.iter().any(|m| m.role == "leader")))
    })
    .await?;
    let led = started.elapsed();
    let run = api.get_run(last).await?;
    let page = api.list_runs(RunQuery { limit: Some(100), ..RunQuery::default() }).await?;
    let served = started.elapsed();
    anyhow::ensure!(run.run.state.is_terminal() && page.items.len() == 100, "the history is not all there");
    println!(
        "memory: restart after SIGKILL with {done} finished jobs (data dir {}): listening {:.2}s, leading {:.2}s, \
         `get` of the last run and a page of `list` answered {:.2}s after the spawn; RSS then {}",
        mib(dir_bytes(&dir)),
        listening.as_secs_f64(),
        led.as_secs_f64(),
        served.as_secs_f64(),
        mib(dev.rss()?),
    );
    Ok(())
}

async fn output(bins: &Path, jobs: usize, bytes: usize, slots: usize) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let dir = data.path().join("data");
    let dev = dev(bins, &dir, &slots.to_string(), &[]).await?;
    let api = dev.client().await?;
    let mut spec =
        JobSpec::new("print", Task::Shell { command: format!("head -c {bytes} /dev/urandom; echo done >&2") });
    spec.resources = Resources { cpu_millis: 1000, memory_bytes: 0, ..Resources::default() };
    let (rss0, disk0) = (dev.rss()?, dir_bytes(&dir));
    let started = Instant::now();
    let runs = submit_only(api.as_ref(), &spec, jobs, 1_000).await?;
    let peak_disk = std::sync::atomic::AtomicU64::new(0);
    until(Duration::from_secs(3_600), "every printing job ended", || async {
        peak_disk.fetch_max(dir_bytes(&dir), std::sync::atomic::Ordering::Relaxed);
        Ok(ended_runs(api.as_ref()).await? >= jobs as u64)
    })
    .await?;
    let peak_disk = peak_disk.into_inner();
    let took = started.elapsed();
    for run in [runs[0], runs[jobs / 2], runs[jobs - 1]] {
        let d = api.get_run(run).await?;
        let out = &d.attempts.first().context("no attempt")?.result.as_ref().context("no result")?.stdout;
        anyhow::ensure!(out.data.len() == bytes && out.truncated == 0, "{run}: {} bytes kept", out.data.len());
    }
    println!(
        "output: {jobs} jobs each printing {bytes} B of random bytes, {slots} at a time: {:.1}s ({:.1} MiB/s of output); \
         RSS before {} → after {} (peak {}); data dir before {} → after {} (peak {}); 3 runs' output read back whole",
        took.as_secs_f64(),
        (jobs * bytes) as f64 / MIB / took.as_secs_f64(),
        mib(rss0),
        mib(dev.rss()?),
        mib(dev.peak_rss()?),
        mib(disk0),
        mib(dir_bytes(&dir)),
        mib(peak_disk),
    );
    Ok(())
}

/// Stops `archon dev` as Ctrl-C does, so it stops its running jobs' processes.
async fn interrupt(mut dev: Daemon) -> anyhow::Result<()> {
    if let Some(pid) = dev.child.id() {
        std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status()?;
    }
    tokio::time::timeout(Duration::from_secs(60), dev.child.wait()).await??;
    Ok(())
}

async fn per_job(bins: &Path, pending: &[usize], running: &[usize]) -> anyhow::Result<()> {
    let sleeper = |cpu_millis| {
        let mut spec = JobSpec::new("sleep", Task::Shell { command: "sleep 600".into() });
        spec.resources = Resources { cpu_millis, memory_bytes: 0, ..Resources::default() };
        spec
    };
    // Pending: a worker of one core runs a job taking it all; jobs asking for a
    // whole core wait in the queue behind it.
    let mut spec = noop_job();
    spec.resources.cpu_millis = 1000;
    measure_live(bins, "pending", pending, "1", Some(sleeper(1000)), spec, |s| s.queued).await?;
    // Running: shell jobs that sleep until the run is over.
    let running_count = |s: &archon_core::api::ClusterStatus| s.runs.get("running").copied().unwrap_or(0);
    measure_live(bins, "running", running, "1000000", None, sleeper(1), running_count).await
}

/// RSS and data dir of a fresh `archon dev` as live jobs of one kind are added
/// up to each size (counted by `count` of the status).
async fn measure_live(
    bins: &Path,
    kind: &str,
    sizes: &[usize],
    cpu: &str,
    blocker: Option<JobSpec>,
    spec: JobSpec,
    count: fn(&archon_core::api::ClusterStatus) -> u64,
) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let dir = data.path().join("data");
    let dev = dev(bins, &dir, cpu, &[]).await?;
    let api = dev.client().await?;
    // Warm up with a few no-op jobs (allocator, code paths).
    let finished = {
        let api = api.clone();
        move || {
            let api = api.clone();
            async move { ended_runs(api.as_ref()).await }.boxed()
        }
    };
    submit_and_drain(api.clone(), 2_000, 1_000, 1, noop_job(), finished).await?;
    if let Some(blocker) = blocker {
        submit_only(api.as_ref(), &blocker, 1, 1).await?;
        until(Duration::from_secs(60), "the blocker running", || async {
            Ok(api.status().await?.runs.get("running").is_some_and(|n| *n == 1))
        })
        .await?;
    }
    let (rss0, disk0) = (dev.rss()?, dir_bytes(&dir));
    let mut done = 0;
    for &size in sizes {
        submit_only(api.as_ref(), &spec, size - done, 1_000).await?;
        done = size;
        until(Duration::from_secs(600), "the jobs live", || async { Ok(count(&api.status().await?) >= done as u64) })
            .await?;
        let (rss, disk) = (dev.rss()?, dir_bytes(&dir));
        println!(
            "per-job: {done} {kind} jobs: RSS {} ({:.0} B per job over the warm-up), data dir {} ({:.0} B per job)",
            mib(rss),
            (rss as f64 - rss0 as f64) / done as f64,
            mib(disk),
            (disk as f64 - disk0 as f64) / done as f64,
        );
    }
    interrupt(dev).await
}

async fn retention(bins: &Path, jobs: usize, keep: &str) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let dir = data.path().join("data");
    let dev = dev(bins, &dir, "1000000", &["--history-retention", keep]).await?;
    let api = dev.client().await?;
    let fresh = dir_bytes(&dir);
    println!("retention {keep}: a fresh data dir: {}", mib(fresh));
    // The first burst brings the node to its steady state: the log's file holds
    // the entries since the last snapshot and the tail kept behind it for
    // followers, whatever the history holds. The second is measured against it.
    let mut before = fresh;
    for round in ["warm-up", "measured"] {
        let aged = burst_and_age(api.clone(), &dir, jobs, keep, round).await?;
        if round == "measured" {
            let verdict = if aged <= 2 * before { "within" } else { "NOT within" };
            println!(
                "retention {keep}: after the measured burst the data dir settled at {} = {:.2}× its {} before it: {verdict} 2×",
                mib(aged),
                aged as f64 / before as f64,
                mib(before)
            );
        }
        before = aged;
    }
    Ok(())
}

/// Runs `jobs` no-op jobs at once, waits until `list` and `get` no longer show
/// them, then until the data dir stops shrinking (no change for 5 s); returns
/// the size it settled at.
async fn burst_and_age(
    api: std::sync::Arc<dyn Api>,
    dir: &Path,
    jobs: usize,
    keep: &str,
    round: &str,
) -> anyhow::Result<u64> {
    let finished = {
        let api = api.clone();
        move || {
            let api = api.clone();
            async move { ended_runs(api.as_ref()).await }.boxed()
        }
    };
    let first = submit_only(api.as_ref(), &noop_job(), 1, 1).await?[0];
    let took = submit_and_drain(api.clone(), jobs - 1, 5_000, 2, noop_job(), finished).await?;
    let burst_end = Instant::now();
    let peak = dir_bytes(dir);
    until(Duration::from_secs(600), "every run removed", || async {
        let page = api.list_runs(RunQuery::default()).await?;
        let removed =
            matches!(api.get_run(first).await, Err(e) if e.to_string().contains("removed by the retention policy"));
        Ok(page.items.is_empty() && removed)
    })
    .await?;
    let gone = burst_end.elapsed();
    let err = api.get_run(first).await.err().map(|e| e.to_string()).unwrap_or_default();
    let mut last = (dir_bytes(dir), Instant::now());
    until(Duration::from_secs(600), "the data dir settled", || {
        let size = dir_bytes(dir);
        if size != last.0 {
            last = (size, Instant::now());
        }
        let settled = last.1.elapsed() >= Duration::from_secs(5);
        async move { Ok(settled) }
    })
    .await?;
    let files: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.is_file()))
        .map(|e| format!("{} {}", e.file_name().to_string_lossy(), mib(e.metadata().map(|m| m.len()).unwrap_or(0))))
        .collect();
    println!(
        "retention {keep}, {round} burst: {jobs} no-op jobs in {:.1}s; data dir right after {}; all gone from `list` and \
         `get` {:.1}s after the burst (`get {first}`: \"{err}\"); the data dir then settled at {} ({}) {:.1}s after the burst",
        took.as_secs_f64(),
        mib(peak),
        gone.as_secs_f64(),
        mib(last.0),
        files.join(", "),
        burst_end.elapsed().as_secs_f64() - 5.0,
    );
    Ok(last.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn join(bins: &Path, jobs: usize) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let (p1, p2) = (free_port()?, free_port()?);
    let (a1, a2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let manager = |id: u64, listen: &str, extra: &[String]| {
        let mut args: Vec<String> = vec![
            "--listen".into(),
            listen.into(),
            "--node-id".into(),
            id.to_string(),
            "--data-dir".into(),
            data.path().join(format!("node-{id}")).display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        args
    };
    let m1 = Daemon::spawn(&bins.join("archon-manager"), &manager(1, &a1, &[]), "archon-manager listening on ").await?;
    let worker_args: Vec<String> = ["--manager", &a1, "--name", "w1", "--cpu", "1000000", "--memory", "1TiB"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let _w = Daemon::spawn(&bins.join("archon-worker"), &worker_args, "offering").await?;
    let api = m1.client().await?;
    until(Duration::from_secs(60), "the worker connected", || async {
        Ok(api.list_workers().await?.iter().any(|w| w.connected))
    })
    .await?;
    let finished = {
        let api = api.clone();
        move || {
            let api = api.clone();
            async move { ended_runs(api.as_ref()).await }.boxed()
        }
    };
    let took = submit_and_drain(api.clone(), jobs, 5_000, 2, noop_job(), finished).await?;
    let leader_applied = applied(api.as_ref(), 1).await?;
    println!(
        "join: {jobs} no-op jobs through archon-manager + archon-worker in {:.1}s; node 1 applied {leader_applied}, data dir {}",
        took.as_secs_f64(),
        mib(dir_bytes(&data.path().join("node-1")))
    );
    let started = Instant::now();
    let m2 =
        Daemon::spawn(&bins.join("archon-manager"), &manager(2, &a2, &["--join".into(), a1.clone()]), "listening on ")
            .await?;
    let api2 = m2.client().await?;
    until(Duration::from_secs(600), "node 2 caught up", || async {
        Ok(applied(api2.as_ref(), 2).await.is_ok_and(|a| a >= leader_applied))
    })
    .await?;
    let caught_up = started.elapsed();
    let sample = api.list_runs(RunQuery { limit: Some(1), ..RunQuery::default() }).await?.items[0].id;
    let on_2 = api2.get_run(sample).await;
    println!(
        "join: node 2 joined and applied index {leader_applied} {:.2}s after it was spawned (snapshot install of the \
         live state and {} of history); its data dir {}; RSS node 1 {}, node 2 {}; node 2 answers `get {sample}`: {}",
        caught_up.as_secs_f64(),
        mib(dir_bytes(&data.path().join("node-1"))),
        mib(dir_bytes(&data.path().join("node-2"))),
        mib(m1.rss()?),
        mib(m2.rss()?),
        if on_2.is_ok() { "yes" } else { "no" }
    );
    Ok(())
}

/// The last index manager `id` applied, as it reports itself.
async fn applied(api: &dyn Api, id: u64) -> anyhow::Result<u64> {
    let s = api.status().await?;
    Ok(s.managers.iter().find(|m| m.id == id).context("no such manager")?.last_applied)
}
