//! Archon's end-to-end load generator. Each subcommand prints one result line that
//! goes into benches/RESULTS.md. Build with `--release`.
//!
//! - `inproc`:  no-op function jobs through an in-process manager + worker (MemStore)
//! - `grpc`:    the same through a real `archon dev` process over gRPC, batch submits
//! - `shell`:   `true` shell jobs vs a plain loop spawning /bin/true, same concurrency
//! - `latency`: submit → start latency on an idle `archon dev`, p50/p99
//! - `stores`:  no-op function jobs in process on the embedded Raft store and on
//!   PostgreSQL (a throwaway, durable cluster), same run

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use archon_benches::{InProcCluster, huge_capacity, noop_job, submit_and_drain};
use archon_core::api::Api;
use archon_core::model::{JobSpec, Resources, Task};
use archon_core::store::StoreExt;
use clap::{Parser, Subcommand};
use futures::FutureExt;
use tokio::io::AsyncBufReadExt;

/// The same allocator as the `archon` binary, so in-process figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
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
    },
    /// (b) no-op function jobs through `archon dev` over gRPC.
    Grpc {
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        submitters: usize,
        /// The archon binary (default: next to this one).
        #[arg(long)]
        archon: Option<std::path::PathBuf>,
        /// Use this running server instead of starting `archon dev` (for profiling).
        #[arg(long)]
        server: Option<String>,
    },
    /// (c) shell `true` jobs vs a loop spawning /bin/true.
    Shell {
        #[arg(long, default_value_t = 2_000)]
        jobs: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
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
    /// (d) submit → start latency on an idle node.
    Latency {
        #[arg(long, default_value_t = 300)]
        samples: usize,
        #[arg(long)]
        archon: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Inproc { jobs, batch, submitters } => inproc(jobs, batch, submitters).await,
        Cmd::Grpc { jobs, batch, submitters, archon, server } => grpc(jobs, batch, submitters, archon, server).await,
        Cmd::Shell { jobs, concurrency } => shell(jobs, concurrency).await,
        Cmd::Latency { samples, archon } => latency(samples, archon).await,
        Cmd::Stores { jobs, batch, submitters, rounds } => stores(jobs, batch, submitters, rounds).await,
    }
}

async fn inproc(jobs: usize, batch: usize, submitters: usize) -> anyhow::Result<()> {
    let cluster = InProcCluster::start(huge_capacity(), archon::executors::local()).await?;
    let took = noop_jobs(&cluster, 10_000, jobs, batch, submitters).await?;
    drop(cluster);
    let floor = bare_queue(jobs).await?;
    println!(
        "inproc: {jobs} no-op function jobs, batch {batch}, {submitters} submitters: {:.2}s = {:.0} jobs/s (bare tokio queue, same run: {:.0} jobs/s)",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64(),
        jobs as f64 / floor.as_secs_f64(),
    );
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
            let cluster = InProcCluster::start_on(store_ref, huge_capacity(), archon::executors::local()).await?;
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

/// A running `archon dev` child and a gRPC client to it.
struct DevProcess {
    child: tokio::process::Child,
    api: Arc<dyn Api>,
    /// Its data dir, removed when the run ends.
    _data: tempfile::TempDir,
}

async fn start_dev(archon: Option<std::path::PathBuf>) -> anyhow::Result<DevProcess> {
    let bin = match archon {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("archon"),
    };
    let data = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(&bin)
        .args(["dev", "--insecure", "--listen", "127.0.0.1:0", "--cpu", "1000000", "--memory", "1TiB", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!("cannot start {} (build it with cargo build --release --bin archon)", bin.display())
        })?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let address = loop {
        let line = lines.next_line().await?.context("archon dev exited")?;
        if let Some(a) = line.strip_prefix("gRPC API listening on ") {
            break a.trim().to_owned();
        }
    };
    let api: Arc<dyn Api> = Arc::new(archon_net::GrpcClient::connect(&address).await?);
    Ok(DevProcess { child, api, _data: data })
}

async fn grpc(
    jobs: usize,
    batch: usize,
    submitters: usize,
    archon: Option<std::path::PathBuf>,
    server: Option<String>,
) -> anyhow::Result<()> {
    let mut dev = match server {
        Some(address) => {
            let api: Arc<dyn Api> = Arc::new(archon_net::GrpcClient::connect(&address).await?);
            let child = tokio::process::Command::new("true").spawn()?;
            DevProcess { child, api, _data: tempfile::tempdir()? }
        }
        None => start_dev(archon).await?,
    };
    let api = dev.api.clone();
    let finished = move || {
        let api = api.clone();
        async move {
            let s = api.status().await?;
            Ok(["succeeded", "failed", "cancelled", "timed_out", "upstream_failed"]
                .iter()
                .filter_map(|k| s.runs.get(*k))
                .sum())
        }
        .boxed()
    };
    submit_and_drain(dev.api.clone(), 10_000, batch, 1, noop_job(), finished.clone()).await?;
    let took = submit_and_drain(dev.api.clone(), jobs, batch, submitters, noop_job(), finished).await?;
    println!(
        "grpc: {jobs} no-op function jobs via archon dev, batch {batch}, {submitters} submitters: {:.2}s = {:.0} jobs/s",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64()
    );
    dev.child.kill().await?;
    Ok(())
}

async fn shell(jobs: usize, concurrency: usize) -> anyhow::Result<()> {
    // Baseline: a plain loop keeping `concurrency` /bin/true processes going.
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
    let baseline = started.elapsed();

    // Archon: shell jobs `true`, each reserving one core of a worker with `concurrency` cores.
    let capacity = Resources { cpu_millis: 1000 * concurrency as u64, memory_bytes: 1 << 40, ..Resources::default() };
    let cluster = InProcCluster::start(capacity, archon_exec::local_registry()).await?;
    let mut spec = JobSpec::new("true", Task::Shell { command: "true".into() });
    spec.resources = Resources { cpu_millis: 1000, memory_bytes: 0, ..Resources::default() };
    let m = cluster.manager.clone();
    let finished = move || {
        let m = m.clone();
        async move { Ok(m.store().query(|s| s.finished_runs())) }.boxed()
    };
    let api: Arc<dyn Api> = Arc::new(cluster.manager.clone());
    let took = submit_and_drain(api, jobs, 1000, 1, spec, finished).await?;
    let (b, a) = (jobs as f64 / baseline.as_secs_f64(), jobs as f64 / took.as_secs_f64());
    println!(
        "shell: {jobs} jobs at concurrency {concurrency}: loop spawning /bin/true {b:.0}/s, archon shell `true` {a:.0}/s = {:.0}% of the loop",
        100.0 * a / b
    );
    Ok(())
}

async fn latency(samples: usize, archon: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let mut dev = start_dev(archon).await?;
    let mut round_trip = Vec::with_capacity(samples);
    let mut to_start = Vec::with_capacity(samples);
    let mut spec = noop_job();
    spec.name = "latency".into();
    for _ in 0..samples {
        let sent = Instant::now();
        let results = dev.api.submit(vec![spec.clone()]).await?;
        let run =
            results.into_iter().next().context("no result")?.map_err(|e| anyhow::anyhow!("{e}"))?.run.context("run")?;
        let done = dev.api.wait(run).await?;
        round_trip.push(sent.elapsed());
        let created = done.run.created_at;
        if let Some(started) = done.attempts.first().and_then(|a| a.started_at) {
            to_start.push(Duration::from_millis(u64::try_from(started.0 - created.0).unwrap_or(0)));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "latency: {samples} sequential no-op jobs on an idle archon dev: submit→finished round trip (client, gRPC) p50 {:?} p99 {:?}; submit→start (server clocks, ms resolution) p50 {:?} p99 {:?}",
        pct(&mut round_trip, 0.5),
        pct(&mut round_trip, 0.99),
        pct(&mut to_start, 0.5),
        pct(&mut to_start, 0.99)
    );
    dev.child.kill().await?;
    Ok(())
}
