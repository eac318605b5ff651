//! The dashboard's overview against its requirement (issue 14): "the overview
//! renders in under 300 ms server time with 1M runs in history and 1,000 workers".
//!
//! One `archon dev` (durable store in a temporary data dir) and, in this process,
//! `--workers` real workers (`WorkerRuntime` over its own gRPC session each, so the
//! manager registers them and they heartbeat), each running one `hold` job sized
//! so its CPU and memory bars differ. The requests the overview page makes
//! (`overview.js`: `/`, then cluster, workers and recent failures at once, then the
//! timeline) and the workers page makes (workers, then the timeline of up to 200 of
//! them) are timed one by one and as the pages issue them: round trips on
//! loopback, an upper bound of the server's time. First with no finished run, then
//! after `--history` no-op runs, one in `--fail-every` of them failing (a function
//! on the bench's workers), and, with `--full-timeline`, again once the timeline
//! holds its full hour (360 samples; that waits about an hour).
//!
//! Build with `cargo build --release -p archon-cli -p archon-benches --bin archon
//! --bin dashboard`, then `target/release/dashboard` (and `target/release/dashboard
//! --full-timeline` for the third phase).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use archon_benches::{Daemon, ended_runs, noop_job};
use archon_core::api::Api;
use archon_core::executor::ExecutorRegistry;
use archon_core::model::{Constraint, ConstraintOp, JobSpec, Resources, Task};
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use archon_exec::FunctionExecutor;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Series the workers page asks the timeline for (`MAX_SERIES` in `workers.js`).
const WORKERS_PAGE_SERIES: usize = 200;
/// Samples in a full timeline: an hour at the default 10 s.
const FULL_TIMELINE: usize = 360;
/// Name prefix of the bench's workers.
const WORKER_PREFIX: &str = "bench-worker-";

#[derive(Parser)]
struct Cli {
    /// Finished runs in the history.
    #[arg(long, default_value_t = 1_000_000)]
    history: usize,
    /// One run in this many fails (so `state=failed` has hits all through the history).
    #[arg(long, default_value_t = 100)]
    fail_every: usize,
    /// Workers registered besides `archon dev`'s own.
    #[arg(long, default_value_t = 1_000)]
    workers: usize,
    /// CPU cores each worker offers.
    #[arg(long, default_value_t = 8)]
    worker_cpus: u64,
    /// Memory each worker offers, in GiB.
    #[arg(long, default_value_t = 32)]
    worker_gib: u64,
    /// Timings per request and per page.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// After the history, wait until the timeline holds a full hour and measure again.
    #[arg(long)]
    full_timeline: bool,
    /// The archon binary (default: next to this one).
    #[arg(long)]
    archon: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bin = match &cli.archon {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("archon"),
    };
    let data = tempfile::tempdir()?;
    let args: Vec<String> = [
        "dev",
        "--insecure",
        "--listen",
        "127.0.0.1:0",
        "--cpu",
        "1000000",
        "--memory",
        "1TiB",
        "--no-docker",
        "--history-retention",
        "30d",
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([data.path().display().to_string()])
    .collect();
    let mut dev = Daemon::spawn(&bin, &args, "gRPC API listening on ").await?;
    let base = dev.address.trim_end_matches('/').to_owned();
    let grpc = dev.client().await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;

    let stop_workers = CancellationToken::new();
    let outcome = bench(&cli, &dev, &base, &grpc, &http, &stop_workers).await;
    stop_workers.cancel();
    dev.child.kill().await?;
    outcome
}

async fn bench(
    cli: &Cli,
    dev: &Daemon,
    base: &str,
    grpc: &Arc<dyn Api>,
    http: &reqwest::Client,
    stop_workers: &CancellationToken,
) -> anyhow::Result<()> {
    let capacity =
        Resources { cpu_millis: cli.worker_cpus * 1000, memory_bytes: cli.worker_gib << 30, ..Resources::default() };
    let started = Instant::now();
    start_workers(&dev.address, cli.workers, &capacity, stop_workers);
    wait_for_workers(grpc.as_ref(), cli.workers).await?;
    println!("{} workers connected in {:.1}s", cli.workers, started.elapsed().as_secs_f64());
    let started = Instant::now();
    hold_workers(grpc.as_ref(), cli.workers, &capacity).await?;
    println!("{} hold jobs running in {:.1}s", cli.workers, started.elapsed().as_secs_f64());
    // The overview's charts need samples: the first is taken at start, then every 10 s.
    wait_for_samples(http, base, 2, Duration::from_secs(30)).await?;

    print_table(&measure(http, base, cli.samples, "no finished run").await?);
    println!("{}", phase_note(dev, http, base).await?);
    if cli.history > 0 {
        let (took, failed) = fill_history(grpc.clone(), cli.history, cli.fail_every).await?;
        println!("history: {} finished runs ({failed} failed) made in {:.1}s", cli.history, took.as_secs_f64());
        print_table(&measure(http, base, cli.samples, &format!("{} finished runs", cli.history)).await?);
        println!("{}", phase_note(dev, http, base).await?);
    }
    if cli.full_timeline {
        wait_for_samples(http, base, FULL_TIMELINE, Duration::from_secs(65 * 60)).await?;
        print_table(&measure(http, base, cli.samples, "full hour of timeline").await?);
        println!("{}", phase_note(dev, http, base).await?);
    }
    Ok(())
}

/// Prints a phase's rows as a markdown table.
fn print_table(rows: &[Row]) {
    println!("\n| phase | request | p50 | p99 | max | bytes |\n|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!();
}

/// The bench's executors: `hold` runs until cancelled, `fail` fails at once.
fn bench_executors() -> Arc<ExecutorRegistry> {
    let functions = FunctionExecutor::new()
        .register("hold", |_| std::future::pending::<Result<serde_json::Value, String>>())
        .register("fail", |_| async { Err::<serde_json::Value, String>("failed on purpose".into()) });
    Arc::new(ExecutorRegistry::new().with(Arc::new(functions)))
}

/// Starts `count` workers in this process, each with its own gRPC session to
/// the manager at `address`, labelled `slot=<i>`.
fn start_workers(address: &str, count: usize, capacity: &Resources, shutdown: &CancellationToken) {
    let executors = bench_executors();
    for slot in 0..count {
        let mut config = WorkerConfig::new(format!("{WORKER_PREFIX}{slot:04}"), capacity.clone());
        config.address = "bench".into();
        config.labels.insert("slot".into(), slot.to_string());
        config.outbox = 1_024;
        let transport = Arc::new(archon_net::GrpcTransport::new(vec![address.to_owned()]));
        let worker = WorkerRuntime::new(config, executors.clone(), transport);
        let shutdown = shutdown.clone();
        tokio::spawn(async move { worker.run(shutdown).await });
    }
}

/// Waits (at most 5 minutes) until `count` bench workers are connected.
async fn wait_for_workers(api: &dyn Api, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let workers = api.list_workers().await?;
        let connected = workers.iter().filter(|w| w.connected && w.worker.name.starts_with(WORKER_PREFIX)).count();
        if connected >= count {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "only {connected} of {count} workers connected in 5 minutes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A share in thousandths, spread over 0..1000 by slot (the same every run).
fn share(slot: usize, salt: u64) -> u64 {
    let mut x = (slot as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x % 1000
}

/// One `hold` job per worker, pinned to it, reserving a different share of its
/// CPU and memory; waits (at most 5 minutes) until all run.
async fn hold_workers(api: &dyn Api, count: usize, capacity: &Resources) -> anyhow::Result<()> {
    let specs: Vec<JobSpec> = (0..count)
        .map(|slot| {
            let task = Task::Function { name: "hold".into(), input: "null".into() };
            let mut spec = JobSpec::new(format!("hold-{slot}"), task);
            spec.resources = Resources {
                cpu_millis: (capacity.cpu_millis * share(slot, 1) / 1000).max(1),
                memory_bytes: capacity.memory_bytes * share(slot, 2) / 1000,
                ..Resources::default()
            };
            spec.constraints =
                vec![Constraint { label: "slot".into(), op: ConstraintOp::Equals, value: slot.to_string() }];
            spec
        })
        .collect();
    for chunk in specs.chunks(5_000) {
        if let Some(Err(e)) = api.submit(chunk.to_vec()).await?.into_iter().find(|r| r.is_err()) {
            anyhow::bail!("a hold job was refused: {e}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let running = api.status().await?.runs.get("running").copied().unwrap_or(0);
        if running >= count as u64 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "only {running} of {count} hold jobs run after 5 minutes");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Submits `runs` jobs in batches of 5,000 from 2 clients, as `rest list` does:
/// no-op functions on `archon dev`'s worker, every `fail_every`-th a `fail`
/// function on a bench worker. Waits (at most an hour) until all have ended;
/// returns the time taken and how many failed.
async fn fill_history(api: Arc<dyn Api>, runs: usize, fail_every: usize) -> anyhow::Result<(Duration, usize)> {
    const BATCH: usize = 5_000;
    const SUBMITTERS: usize = 2;
    let started = Instant::now();
    let before = ended_runs(api.as_ref()).await?;
    let fail = {
        let mut spec = JobSpec::new("fail", Task::Function { name: "fail".into(), input: "null".into() });
        spec.resources = noop_job().resources;
        spec
    };
    let failing = move |i: usize| fail_every > 0 && i % fail_every == fail_every - 1;
    let per = runs / SUBMITTERS;
    let mut tasks = Vec::new();
    for submitter in 0..SUBMITTERS {
        let (api, fail) = (api.clone(), fail.clone());
        tasks.push(tokio::spawn(async move {
            let range = submitter * per..(submitter + 1) * per;
            let mut next = range.start;
            while next < range.end {
                let end = (next + BATCH).min(range.end);
                let batch = (next..end).map(|i| if failing(i) { fail.clone() } else { noop_job() }).collect();
                if let Some(Err(e)) = api.submit(batch).await?.into_iter().find(|r| r.is_err()) {
                    anyhow::bail!("submit rejected: {e}");
                }
                next = end;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let target = before + (per * SUBMITTERS) as u64;
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let ended = ended_runs(api.as_ref()).await?;
        if ended >= target {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {} of {runs} runs ended in an hour", ended - before);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((started.elapsed(), (0..per * SUBMITTERS).filter(|&i| failing(i)).count()))
}

/// Waits (at most `patience`) until the timeline holds `samples` samples.
async fn wait_for_samples(
    http: &reqwest::Client,
    base: &str,
    samples: usize,
    patience: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        let have = timeline_samples(http, base).await?;
        if have >= samples {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the timeline holds {have} samples, not {samples}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn timeline_samples(http: &reqwest::Client, base: &str) -> anyhow::Result<usize> {
    let timeline: serde_json::Value =
        http.get(format!("{base}/api/v1/timeline")).send().await?.error_for_status()?.json().await?;
    Ok(timeline["samples"].as_array().context("samples")?.len())
}

/// What the manager holds at the end of a phase, for the record.
async fn phase_note(dev: &Daemon, http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let cluster: serde_json::Value =
        http.get(format!("{base}/api/v1/cluster")).send().await?.error_for_status()?.json().await?;
    Ok(format!(
        "  cluster: workers {}, runs {}; timeline samples {}; archon dev RSS {} MiB",
        cluster["workers"],
        cluster["runs"],
        timeline_samples(http, base).await?,
        dev.rss()? >> 20
    ))
}

/// One GET with its body read; its round trip and the body's size.
async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    let body = http.get(url).send().await?.error_for_status()?.bytes().await?;
    Ok((t.elapsed(), body.len()))
}

/// A timed row of the table.
struct Row {
    phase: String,
    what: String,
    timings: Vec<Duration>,
    bytes: Option<usize>,
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut t = self.timings.clone();
        t.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| ms(t[((t.len() as f64 - 1.0) * q).round() as usize]);
        let bytes = self.bytes.map_or_else(|| "—".to_owned(), |b| b.to_string());
        write!(
            f,
            "| {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {bytes} |",
            self.phase,
            self.what,
            at(0.5),
            at(0.99),
            ms(t[t.len() - 1])
        )
    }
}

/// Times every request the two pages make, alone and as the pages issue them.
async fn measure(http: &reqwest::Client, base: &str, samples: usize, phase: &str) -> anyhow::Result<Vec<Row>> {
    let workers: serde_json::Value =
        http.get(format!("{base}/api/v1/workers")).send().await?.error_for_status()?.json().await?;
    let ids: Vec<&str> = workers["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter(|w| w["state"] != "left")
        .filter_map(|w| w["id"].as_str())
        .take(WORKERS_PAGE_SERIES)
        .collect();
    let url = |path: &str| format!("{base}{path}");
    let (page, cluster, workers, failed, timeline) = (
        url("/"),
        url("/api/v1/cluster"),
        url("/api/v1/workers"),
        url("/api/v1/runs?state=failed&limit=8"),
        url("/api/v1/timeline"),
    );
    let series = url(&format!("/api/v1/timeline?workers={}", ids.join(",")));
    let failures: serde_json::Value = http.get(&failed).send().await?.error_for_status()?.json().await?;
    println!("{phase}: state=failed&limit=8 answers {} runs", failures["items"].as_array().context("items")?.len());
    let alone = [
        ("`GET /`", &page),
        ("`GET /api/v1/cluster`", &cluster),
        ("`GET /api/v1/workers`", &workers),
        ("`GET /api/v1/runs?state=failed&limit=8`", &failed),
        ("`GET /api/v1/timeline`", &timeline),
    ];
    let series_name = format!("`GET /api/v1/timeline?workers=` {} ids", ids.len());
    let mut rows = Vec::new();
    for (what, url) in alone.iter().copied().chain([(series_name.as_str(), &series)]) {
        for _ in 0..samples.min(10) {
            get(http, url).await?;
        }
        let mut timings = Vec::with_capacity(samples);
        let mut bytes = 0;
        for _ in 0..samples {
            let (took, size) = get(http, url).await?;
            timings.push(took);
            bytes = size;
        }
        rows.push(Row { phase: phase.into(), what: what.into(), timings, bytes: Some(bytes) });
    }

    let mut timings = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        get(http, &page).await?;
        futures::try_join!(get(http, &cluster), get(http, &workers), get(http, &failed))?;
        get(http, &timeline).await?;
        timings.push(t.elapsed());
    }
    let what = "overview as `overview.js` loads it: `/`, then cluster ∥ workers ∥ failed, then timeline";
    rows.push(Row { phase: phase.into(), what: what.into(), timings, bytes: None });

    let mut timings = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        get(http, &page).await?;
        futures::try_join!(get(http, &cluster), get(http, &workers), get(http, &failed), get(http, &timeline))?;
        timings.push(t.elapsed());
    }
    let what = "overview, `/` then all four API requests at once";
    rows.push(Row { phase: phase.into(), what: what.into(), timings, bytes: None });

    let mut timings = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        futures::try_join!(get(http, &cluster), get(http, &workers), get(http, &failed))?;
        timings.push(t.elapsed());
    }
    let what = "overview refresh on a change: cluster ∥ workers ∥ failed";
    rows.push(Row { phase: phase.into(), what: what.into(), timings, bytes: None });

    let mut timings = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        get(http, &workers).await?;
        get(http, &series).await?;
        timings.push(t.elapsed());
    }
    let what = "workers page: workers, then the timeline of the first 200";
    rows.push(Row { phase: phase.into(), what: what.into(), timings, bytes: None });
    Ok(rows)
}
