//! Archon's end-to-end load generator. Each subcommand prints a human result line
//! that goes into benches/RESULTS.md, and the run commands a machine-readable
//! `ROW …` line for scripts/bench-peers (see `archon_benches::row`). Build with
//! `--release`.
//!
//! - `inproc`:  no-op function jobs through an in-process manager + worker
//!   (MemStore); `--batch 1 --submitters 8` is one job per call from 8 tasks
//! - `grpc`:    the same through a real `archon dev` process over gRPC (secured
//!   as shipped: TLS 1.3, client certificates and its admin token; `--insecure`
//!   for plaintext; `--store URL` on PostgreSQL), or through a 3-manager Raft
//!   group with 2 workers (`--on cluster`); each submitter its own connection
//! - `shell`:   `true` shell jobs vs a plain loop spawning /bin/true, same concurrency
//! - `latency`: submit → start latency at rest (paced submits, one job at a time),
//!   p50/p99, in process, on `archon dev` or on the cluster
//! - `limits`:  the physical limits of a durable one-at-a-time submit: the data
//!   dir's fsync and the loopback gRPC round trip (TLS on), and from them the best
//!   rate for N clients with group commit, N ÷ (fsync + round trip)
//! - `stores`:  no-op function jobs in process on the embedded Raft store and on
//!   PostgreSQL (a throwaway, durable cluster), same run
//!
//! Every load loop is bounded: it stops submitting after `--max-secs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use archon_benches::cluster::{Cluster, ClusterSpec};
use archon_benches::dev::{Dev, DevOptions};
use archon_benches::row::{Row, ms, quantile, wall_ms};
use archon_benches::{InProcCluster, Measured, ended_runs, huge_capacity, noop_job, submit_and_drain, submit_from};
use archon_core::api::Api;
use archon_core::model::{JobSpec, Resources, Task};
use archon_core::store::StoreExt;
use clap::{Parser, Subcommand, ValueEnum};
use futures::FutureExt;

/// The same allocator as the `archon` binary, so in-process figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Where the jobs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum On {
    /// A manager and a worker in this process (MemStore).
    Inproc,
    /// A single `archon dev` process.
    Dev,
    /// Three `archon-manager` processes (a Raft group) and two `archon-worker`s.
    Cluster,
}

/// How to start what the jobs go to (not in process).
#[derive(Debug, Clone, clap::Args)]
struct Start {
    /// The archon binary; archon-manager and archon-worker are looked for beside
    /// it (default: next to this one).
    #[arg(long)]
    archon: Option<PathBuf>,
    /// Plaintext without tokens (default: secured as shipped).
    #[arg(long)]
    insecure: bool,
    /// Keep the state in this PostgreSQL database (postgres://…) instead of Raft.
    #[arg(long)]
    store: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// (a) no-op function jobs, in process.
    Inproc {
        #[arg(long, default_value_t = 200_000)]
        jobs: usize,
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        submitters: usize,
        /// Stop submitting after this many seconds.
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
    },
    /// (b) no-op function jobs through `archon dev` (or the cluster) over gRPC.
    Grpc {
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Concurrent clients, each with its own connection.
        #[arg(long, default_value_t = 2)]
        submitters: usize,
        /// `dev` or `cluster`.
        #[arg(long, value_enum, default_value = "dev")]
        on: On,
        #[command(flatten)]
        start: Start,
        /// Use this running plaintext server instead of starting one (for profiling).
        #[arg(long)]
        server: Option<String>,
        /// Stop submitting after this many seconds.
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
    },
    /// (c) shell `true` jobs vs a loop spawning /bin/true, alternating, `runs`
    /// times each; the row has the medians.
    Shell {
        #[arg(long, default_value_t = 2_000)]
        jobs: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// No-op function jobs in process on the Raft store vs PostgreSQL.
    Stores {
        #[arg(long, default_value_t = 50_000)]
        jobs: usize,
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        submitters: usize,
        /// Rounds, alternating the stores.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// (d) submit → start latency at rest: one job at a time, each waited for.
    Latency {
        #[arg(long, default_value_t = 300)]
        samples: usize,
        /// `inproc`, `dev` or `cluster`.
        #[arg(long, value_enum, default_value = "dev")]
        on: On,
        #[command(flatten)]
        start: Start,
        /// The pause between one job's end and the next submit.
        #[arg(long, default_value_t = 5)]
        pause_ms: u64,
        /// Stop sampling after this many seconds.
        #[arg(long, default_value_t = 60)]
        max_secs: u64,
    },
    /// The physical limits of durable one-at-a-time submits on this machine.
    Limits {
        /// write + fdatasync rounds in the data dir's file system.
        #[arg(long, default_value_t = 2_000)]
        fsyncs: usize,
        /// `status` calls to a secured `archon dev`, one after another.
        #[arg(long, default_value_t = 3_000)]
        calls: usize,
        /// Clients submitting one job per call at once.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long)]
        archon: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Inproc { jobs, batch, submitters, max_secs } => {
            inproc(jobs, batch, submitters, Duration::from_secs(max_secs)).await
        }
        Cmd::Grpc { jobs, batch, submitters, on, start, server, max_secs } => {
            grpc(jobs, batch, submitters, on, start, server, Duration::from_secs(max_secs)).await
        }
        Cmd::Shell { jobs, concurrency, runs } => shell(jobs, concurrency, runs).await,
        Cmd::Latency { samples, on, start, pause_ms, max_secs } => {
            latency(samples, on, start, Duration::from_millis(pause_ms), Duration::from_secs(max_secs)).await
        }
        Cmd::Limits { fsyncs, calls, clients, archon } => limits(fsyncs, calls, clients, archon).await,
        Cmd::Stores { jobs, batch, submitters, rounds } => stores(jobs, batch, submitters, rounds).await,
    }
}

/// `one` for one job per call, else `batch`.
fn submit_mode(batch: usize) -> &'static str {
    if batch == 1 { "one" } else { "batch" }
}

/// The ROW of a load run.
fn load_row(system: &str, batch: usize, clients: usize, m: Measured) -> Row {
    Row::new(system, submit_mode(batch))
        .with("jobs", m.jobs)
        .with("clients", clients)
        .with("batch", batch)
        .num("secs", m.took.as_secs_f64(), 2)
        .num("rate", m.rate(), 0)
}

async fn inproc(jobs: usize, batch: usize, submitters: usize, deadline: Duration) -> anyhow::Result<()> {
    let cluster = InProcCluster::start(huge_capacity(), archon_cli::executors::local()).await?;
    let api: Arc<dyn Api> = Arc::new(cluster.manager.clone());
    let clients = vec![api; submitters.max(1)];
    let m = cluster.manager.clone();
    let finished = move || {
        let m = m.clone();
        async move { Ok(m.store().query(|s| s.finished_runs())) }.boxed()
    };
    // Warm up (allocators, code paths), then time from submit to finish.
    let warmup = (jobs / 10).clamp(1_000, 10_000);
    submit_from(clients.clone(), warmup, batch, noop_job(), deadline, finished.clone()).await?;
    let m = submit_from(clients, jobs, batch, noop_job(), deadline, finished).await?;
    drop(cluster);
    let mut line = format!(
        "inproc: {} no-op function jobs, batch {batch}, {submitters} submitters: {:.2}s = {:.0} jobs/s",
        m.jobs,
        m.took.as_secs_f64(),
        m.rate()
    );
    if batch > 1 {
        let floor = bare_queue(jobs).await?;
        line.push_str(&format!(" (bare tokio queue, same run: {:.0} jobs/s)", jobs as f64 / floor.as_secs_f64()));
    }
    println!("{line}");
    load_row("archon-inproc", batch, submitters, m).print();
    Ok(())
}

/// Runs `warmup` no-op jobs (allocators, code paths), then times `jobs` more
/// from submit to finish.
async fn noop_jobs(
    cluster: &InProcCluster,
    warmup: usize,
    jobs: usize,
    batch: usize,
    submitters: usize,
) -> anyhow::Result<Duration> {
    let m = cluster.manager.clone();
    let finished = move || {
        let m = m.clone();
        async move { Ok(m.store().query(|s| s.finished_runs())) }.boxed()
    };
    let api: Arc<dyn Api> = Arc::new(cluster.manager.clone());
    submit_and_drain(api.clone(), warmup, batch, 1, noop_job(), finished.clone()).await?;
    submit_and_drain(api, jobs, batch, submitters, noop_job(), finished).await
}

async fn stores(jobs: usize, batch: usize, submitters: usize, rounds: usize) -> anyhow::Result<()> {
    let durable = std::env::var("PG_DURABLE").map_or(true, |v| v != "0");
    let pg = tokio::task::spawn_blocking(move || archon_store::testkit::TempPostgres::start_with(durable)).await?;
    for round in 1..=rounds {
        for store in ["raft", "postgres"] {
            let data = tempfile::tempdir()?;
            let (store_ref, shutdown): (Arc<dyn archon_core::store::Store>, Box<dyn FnOnce()>) = match store {
                "raft" => {
                    let raft =
                        archon_raft::RaftStore::open(archon_raft::RaftConfig::new(1, "127.0.0.1:1", data.path()))
                            .await?;
                    raft.bootstrap(std::collections::BTreeMap::new()).await?;
                    raft.wait_for_leadership(Duration::from_secs(30)).await?;
                    let r = raft.clone();
                    (Arc::new(raft), Box::new(move || drop(r)))
                }
                _ => {
                    let url = pg.create_database();
                    let config = archon_store::PgConfig::new(url, "http://127.0.0.1:1");
                    let store = archon_store::PgStore::open(config).await?;
                    store.wait_for_leadership(Duration::from_secs(30)).await?;
                    let s = store.clone();
                    (Arc::new(store), Box::new(move || s.shutdown()))
                }
            };
            let cluster = InProcCluster::start_on(store_ref, huge_capacity(), archon_cli::executors::local()).await?;
            let took = noop_jobs(&cluster, 2_000, jobs, batch, submitters).await?;
            drop(cluster);
            shutdown();
            println!(
                "stores round {round}: {store}: {jobs} no-op function jobs, batch {batch}, {submitters} submitters: {:.2}s = {:.0} jobs/s",
                took.as_secs_f64(),
                jobs as f64 / took.as_secs_f64(),
            );
        }
    }
    drop(pg);
    Ok(())
}

/// The peer: a bare in-memory queue with no state, placement or reports — jobs
/// through a tokio channel, a task per job calling the same no-op function, and a
/// completion back. What dispatch costs when nothing is recorded.
async fn bare_queue(jobs: usize) -> anyhow::Result<Duration> {
    let noop = |_: serde_json::Value| async { Ok::<_, String>(serde_json::Value::Null) };
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(65_536);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<u64>(65_536);
    let consumer = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            let done = done_tx.clone();
            tokio::spawn(async move {
                let _ = noop(serde_json::Value::Null).await;
                let _ = done.send(job).await;
            });
        }
    });
    let producer = tokio::spawn(async move {
        for job in 0..jobs as u64 {
            if tx.send(job).await.is_err() {
                break;
            }
        }
    });
    for _ in 0..jobs {
        done_rx.recv().await.context("bare queue stopped")?;
    }
    producer.await?;
    consumer.await?;
    Ok(started.elapsed())
}

/// What the jobs go to when it is not this process: `archon dev` or a cluster,
/// and how its clients connect.
enum Target {
    Dev(Dev),
    /// The cluster, and the directory of its data dirs, logs and certificates.
    Cluster {
        cluster: Cluster,
        _root: tempfile::TempDir,
    },
    /// A server started by someone else (plaintext).
    Running(String),
}

impl Target {
    async fn start(on: On, start: &Start) -> anyhow::Result<Target> {
        let archon = match &start.archon {
            Some(p) => p.clone(),
            None => std::env::current_exe()?.with_file_name("archon"),
        };
        match on {
            On::Inproc => anyhow::bail!("in process there is no server to start"),
            On::Dev => {
                let options = DevOptions { insecure: start.insecure, store: start.store.clone() };
                Ok(Target::Dev(Dev::start(&archon, &options).await?))
            }
            On::Cluster => {
                let root = tempfile::Builder::new().prefix("archon-cluster-").tempdir()?;
                let bin_dir = archon.parent().context("the archon binary has no directory")?;
                let mut spec = ClusterSpec::new(bin_dir, root.path());
                spec.secure = !start.insecure;
                spec.store = start.store.clone();
                spec.worker_cpu = "100000".into();
                spec.worker_memory = "1TiB".into();
                Ok(Target::Cluster { cluster: Cluster::start(spec).await?, _root: root })
            }
        }
    }

    /// Stops what it started and waits until it is gone.
    async fn stop(self) {
        match self {
            Target::Dev(dev) => dev.stop().await,
            Target::Cluster { mut cluster, _root } => cluster.stop().await,
            Target::Running(_) => {}
        }
    }

    /// A client with a connection of its own.
    async fn client(&self) -> anyhow::Result<Arc<dyn Api>> {
        Ok(match self {
            Target::Dev(dev) => dev.client().await?,
            Target::Cluster { cluster, .. } => Arc::new(cluster.client().await?),
            Target::Running(address) => Arc::new(archon_net::GrpcClient::connect(address).await?),
        })
    }
}

/// The ROW name of what `on` and `start` start: `archon-inproc`, `archon-dev-grpc`,
/// `archon-dev-pg` (on PostgreSQL), `archon-cluster`, `archon-cluster-pg`, with
/// `-plain` when insecure.
fn system_name(on: On, start: &Start) -> String {
    let mut name = match (on, start.store.is_some()) {
        (On::Inproc, _) => return "archon-inproc".into(),
        (On::Dev, false) => "archon-dev-grpc",
        (On::Dev, true) => "archon-dev-pg",
        (On::Cluster, false) => "archon-cluster",
        (On::Cluster, true) => "archon-cluster-pg",
    }
    .to_owned();
    if start.insecure {
        name.push_str("-plain");
    }
    name
}

async fn grpc(
    jobs: usize,
    batch: usize,
    submitters: usize,
    on: On,
    start: Start,
    server: Option<String>,
    deadline: Duration,
) -> anyhow::Result<()> {
    anyhow::ensure!(on != On::Inproc, "grpc --on dev|cluster (in process: the inproc command)");
    let target = match server {
        Some(address) => Target::Running(address),
        None => Target::start(on, &start).await?,
    };
    let mut clients = Vec::new();
    for _ in 0..submitters.max(1) {
        clients.push(target.client().await?);
    }
    let status = target.client().await?;
    let finished = move || {
        let api = status.clone();
        async move { ended_runs(api.as_ref()).await }.boxed()
    };
    let warmup = (jobs / 10).clamp(1_000, 10_000);
    submit_from(clients.clone(), warmup, batch, noop_job(), deadline, finished.clone()).await?;
    let m = submit_from(clients, jobs, batch, noop_job(), deadline, finished).await?;
    let system = system_name(on, &start);
    println!(
        "grpc: {} no-op function jobs via {system}, batch {batch}, {submitters} clients: {:.2}s = {:.0} jobs/s",
        m.jobs,
        m.took.as_secs_f64(),
        m.rate()
    );
    load_row(&system, batch, submitters, m).print();
    target.stop().await;
    Ok(())
}

/// Shell `true` jobs on an in-process cluster (a worker with `concurrency`
/// cores, each job taking one, the worker's queue as shipped) against a plain
/// loop keeping `concurrency` /bin/true processes going: loop then Archon,
/// `runs` times over, each printed; the row holds the medians.
async fn shell(jobs: usize, concurrency: usize, runs: usize) -> anyhow::Result<()> {
    let capacity = Resources { cpu_millis: 1000 * concurrency as u64, memory_bytes: 1 << 40, ..Resources::default() };
    let cluster = InProcCluster::start(capacity, archon_exec::local_registry()).await?;
    let mut spec = JobSpec::new("true", Task::Shell { command: "true".into() });
    spec.resources = Resources { cpu_millis: 1000, memory_bytes: 0, ..Resources::default() };
    let (mut loops, mut archons, mut pcts) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs.max(1) {
        let baseline = spawn_loop(jobs, concurrency).await?;
        let m = cluster.manager.clone();
        // Counted from what this run adds to the runs finished before it.
        let before = m.store().query(|s| s.finished_runs());
        let finished = move || {
            let m = m.clone();
            async move { Ok(m.store().query(|s| s.finished_runs()) - before) }.boxed()
        };
        let api: Arc<dyn Api> = Arc::new(cluster.manager.clone());
        let took = submit_and_drain(api, jobs, 1000, 1, spec.clone(), finished).await?;
        let (b, a) = (jobs as f64 / baseline.as_secs_f64(), jobs as f64 / took.as_secs_f64());
        println!(
            "shell run {run}: {jobs} jobs at concurrency {concurrency}: loop spawning /bin/true {b:.0}/s, archon shell \
             `true` {a:.0}/s = {:.1}% of the loop",
            100.0 * a / b
        );
        loops.push(b);
        archons.push(a);
        pcts.push(100.0 * a / b);
    }
    let list = pcts.iter().map(|p| format!("{p:.1}")).collect::<Vec<_>>().join("/");
    let (b, a, pct) = (median(&mut loops), median(&mut archons), median(&mut pcts));
    println!(
        "shell: median of {} runs at concurrency {concurrency}: loop {b:.0}/s, archon {a:.0}/s, {pct:.1}% of the loop \
         (runs: {list})",
        pcts.len()
    );
    Row::new("shell", &format!("c{concurrency}"))
        .with("jobs", jobs)
        .with("concurrency", concurrency)
        .with("runs", pcts.len())
        .num("loop", b, 0)
        .num("archon", a, 0)
        .num("pct", pct, 1)
        .with("pcts", list)
        .print();
    Ok(())
}

/// How long a plain loop takes to run `/bin/true` `jobs` times, `concurrency` at once.
async fn spawn_loop(jobs: usize, concurrency: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let permit = sem.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let status = tokio::process::Command::new("/bin/true").status().await;
            drop(permit);
            status
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

async fn latency(samples: usize, on: On, start: Start, pause: Duration, deadline: Duration) -> anyhow::Result<()> {
    let system = system_name(on, &start);
    let figures = match on {
        On::Inproc => latency_inproc(samples, pause, deadline).await?,
        On::Dev | On::Cluster => {
            let target = Target::start(on, &start).await?;
            let api = target.client().await?;
            let figures = latency_remote(api.as_ref(), samples, pause, deadline).await?;
            drop(api);
            target.stop().await;
            figures
        }
    };
    let Latencies { mut to_start, mut round_trip, how } = figures;
    let clock = if how == "job-clock" { "the job's own clock" } else { "the manager's start record, ms clock" };
    let n = to_start.len();
    anyhow::ensure!(n > 0, "no latency sample within {}s", deadline.as_secs());
    let (p50, p99) = (quantile(&mut to_start, 0.5), quantile(&mut to_start, 0.99));
    let (r50, r99) = (quantile(&mut round_trip, 0.5), quantile(&mut round_trip, 0.99));
    println!(
        "latency: {n} no-op jobs one at a time on an idle {system}: submit→start ({clock}) p50 {p50:.2} ms p99 \
         {p99:.2} ms; submit→end known to the client p50 {r50:.2} ms p99 {r99:.2} ms"
    );
    Row::new(&system, "latency")
        .with("samples", n)
        .num("p50_ms", p50, 3)
        .num("p99_ms", p99, 3)
        .num("end_p50_ms", r50, 3)
        .num("end_p99_ms", r99, 3)
        .with("clock", how)
        .print();
    Ok(())
}

/// Submit → start samples in milliseconds, and submit → the client knows the run ended.
struct Latencies {
    to_start: Vec<f64>,
    round_trip: Vec<f64>,
    /// Whose clock said when the job started: `job-clock` or `manager-record-ms`.
    how: &'static str,
}

/// Over the network the manager records when an attempt started (its clock, in
/// whole milliseconds, on the same host as the client): the sample is that
/// instant (+0.5 ms, the middle of its millisecond) minus the client's clock at
/// submit.
async fn latency_remote(
    api: &dyn Api,
    samples: usize,
    pause: Duration,
    deadline: Duration,
) -> anyhow::Result<Latencies> {
    let mut spec = noop_job();
    spec.name = "latency".into();
    let mut out = Latencies { to_start: Vec::new(), round_trip: Vec::new(), how: "manager-record-ms" };
    let began = Instant::now();
    // The first few pay for lazily built state on both sides.
    for i in 0..samples + 20 {
        if began.elapsed() > deadline {
            break;
        }
        let (sent_wall, sent) = (wall_ms(), Instant::now());
        let run = submit_one(api, spec.clone()).await?;
        let done = api.wait(run).await?;
        let ended = ms(sent.elapsed());
        let started = done.attempts.first().and_then(|a| a.started_at).context("the run has no started attempt")?;
        if i >= 20 {
            out.round_trip.push(ended);
            out.to_start.push((started.0 as f64 + 0.5 - sent_wall).max(0.0));
        }
        tokio::time::sleep(pause).await;
    }
    Ok(out)
}

/// In process the job is a function that notes the instant it starts, as the
/// Celery and apalis peers' handlers do: its input is the client's clock at submit.
async fn latency_inproc(samples: usize, pause: Duration, deadline: Duration) -> anyhow::Result<Latencies> {
    let (stamps, mut started) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let functions = archon_exec::FunctionExecutor::new()
        .register("noop", |_| async { Ok(serde_json::Value::Null) })
        .register("stamp", move |input: serde_json::Value| {
            let waited = wall_ms() - input.as_f64().unwrap_or(f64::NAN);
            let _ = stamps.send(waited);
            async { Ok(serde_json::Value::Null) }
        });
    let mut registry = archon_exec::local_registry();
    registry.register(Arc::new(functions));
    let cluster = InProcCluster::start(huge_capacity(), registry).await?;
    let api = &cluster.manager;
    let mut out = Latencies { to_start: Vec::new(), round_trip: Vec::new(), how: "job-clock" };
    let began = Instant::now();
    for i in 0..samples + 20 {
        if began.elapsed() > deadline {
            break;
        }
        let sent = Instant::now();
        let mut spec = noop_job();
        spec.name = "latency".into();
        spec.task = Task::Function { name: "stamp".into(), input: format!("{:.3}", wall_ms()) };
        let run = submit_one(api, spec).await?;
        let waited = tokio::time::timeout(Duration::from_secs(10), started.recv())
            .await
            .context("the job did not start within 10s")?
            .context("the worker stopped")?;
        api.wait(run).await?;
        if i >= 20 {
            out.round_trip.push(ms(sent.elapsed()));
            out.to_start.push(waited.max(0.0));
        }
        tokio::time::sleep(pause).await;
    }
    drop(cluster);
    Ok(out)
}

async fn limits(fsyncs: usize, calls: usize, clients: usize, archon: Option<PathBuf>) -> anyhow::Result<()> {
    let archon = match archon {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("archon"),
    };
    let dev = Dev::start(&archon, &DevOptions::default()).await?;

    // The data dir's file system: append a small block and fdatasync it, as a log does.
    let beside = dev.data_dir().parent().context("the data dir has no parent")?.to_path_buf();
    let probe_dir = tempfile::Builder::new().prefix("fsync-probe-").tempdir_in(&beside)?;
    let path = probe_dir.path().join("probe");
    let mut syncs = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<f64>> {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let block = [0x5a_u8; 512];
        let mut took = Vec::with_capacity(fsyncs);
        for i in 0..fsyncs + 50 {
            let started = Instant::now();
            file.write_all(&block)?;
            file.sync_data()?;
            if i >= 50 {
                took.push(ms(started.elapsed()));
            }
        }
        Ok(took)
    })
    .await??;
    let fsync = quantile(&mut syncs, 0.5);
    let fsync_mean = syncs.iter().sum::<f64>() / syncs.len().max(1) as f64;

    // The loopback round trip of a small call, TLS and token on, one connection.
    let api = dev.client().await?;
    let mut trips = Vec::with_capacity(calls);
    for i in 0..calls + 200 {
        let started = Instant::now();
        api.status().await?;
        if i >= 200 {
            trips.push(ms(started.elapsed()));
        }
    }
    let rtt = quantile(&mut trips, 0.5);
    let limit = clients as f64 * 1e3 / (fsync + rtt);

    // The same call from `clients` clients at once, each on its own connection
    // and waiting for each answer: how many calls a second this machine serves
    // when a call does no work, and the CPU each costs the server and the client.
    let mut apis = Vec::with_capacity(clients);
    for _ in 0..clients {
        apis.push(dev.client().await?);
    }
    let per_client = calls.max(1);
    let (server0, own0, started) =
        (dev.daemon.cpu()?, archon_benches::process_cpu(std::process::id())?, Instant::now());
    let calling = apis.iter().map(|api| async move {
        for _ in 0..per_client {
            api.status().await?;
        }
        anyhow::Ok(())
    });
    futures::future::try_join_all(calling).await?;
    let took = started.elapsed();
    let total = (per_client * clients) as f64;
    let ceiling = total / took.as_secs_f64();
    let server_us = (dev.daemon.cpu()? - server0).as_secs_f64() * 1e6 / total;
    let client_us = (archon_benches::process_cpu(std::process::id())? - own0).as_secs_f64() * 1e6 / total;
    println!(
        "limits: fdatasync of a 512-byte append in {} p50 {fsync:.3} ms (mean {fsync_mean:.3} ms, {} rounds); \
         gRPC status round trip over loopback, TLS + token, p50 {rtt:.3} ms ({calls} calls); best one-at-a-time \
         rate for {clients} clients with group commit = {clients} / ({fsync:.3} + {rtt:.3}) ms = {limit:.0} jobs/s; \
         {clients} clients calling status at once: {ceiling:.0} calls/s, {server_us:.0} µs of the server's CPU and \
         {client_us:.0} µs of the clients' per call",
        beside.display(),
        syncs.len(),
    );
    Row::new("limits", "limits")
        .num("fsync_ms", fsync, 3)
        .num("fsync_mean_ms", fsync_mean, 3)
        .num("rtt_ms", rtt, 3)
        .with("clients", clients)
        .num("limit", limit, 0)
        .num("calls_ceiling", ceiling, 0)
        .num("call_server_us", server_us, 0)
        .num("call_client_us", client_us, 0)
        .with("dir", beside.display())
        .print();
    drop((api, apis, probe_dir));
    dev.stop().await;
    Ok(())
}

/// Submits `spec` alone and returns its run.
async fn submit_one(api: &dyn Api, spec: JobSpec) -> anyhow::Result<archon_core::model::RunId> {
    let results = api.submit(vec![spec]).await?;
    results.into_iter().next().context("no result")?.map_err(|e| anyhow::anyhow!("{e}"))?.run.context("no run")
}
