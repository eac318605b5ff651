//! The REST API against gRPC on the same `archon dev`, same run (issue 13):
//!
//! - `submit`: no-op function jobs submitted and drained, in batches
//!   (`POST /api/v1/jobs/batch` vs gRPC `Submit` of the same size) and one by one
//!   (`POST /api/v1/jobs` vs gRPC `Submit` of one spec) from concurrent clients;
//! - `list`: with a history of `--history` finished runs, the latency of listing
//!   runs (first page, a state filter, a page deep in the history, one job's
//!   runs) over REST and over gRPC, p50 / p99.
//!
//! Build with `cargo build --release -p archon-cli -p archon-benches`, then
//! `target/release/rest submit` and `target/release/rest list`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use archon_benches::{Daemon, ended_runs, noop_job, submit_and_drain};
use archon_core::api::{Api, RunQuery};
use archon_core::model::{JobId, RunId, RunState};
use clap::{Parser, Subcommand};
use futures::FutureExt;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// The archon binary (default: next to this one).
    #[arg(long, global = true)]
    archon: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Submit throughput, REST vs gRPC, batches and single jobs.
    Submit {
        /// Jobs per batched round.
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        /// Jobs per batch.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Jobs per single-submit round.
        #[arg(long, default_value_t = 5_000)]
        singles: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Rounds, alternating REST and gRPC.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// List latency over a large history, REST vs gRPC.
    List {
        /// Finished runs in the history.
        #[arg(long, default_value_t = 1_000_000)]
        history: usize,
        /// Requests per query and protocol.
        #[arg(long, default_value_t = 500)]
        samples: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bin = match cli.archon {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("archon"),
    };
    let data = tempfile::tempdir()?;
    let args: Vec<String> =
        ["dev", "--insecure", "--listen", "127.0.0.1:0", "--cpu", "1000000", "--memory", "1TiB", "--data-dir"]
            .iter()
            .map(|s| s.to_string())
            .chain([data.path().display().to_string()])
            .collect();
    let dev = Daemon::spawn(&bin, &args, "gRPC API listening on ").await?;
    let base = dev.address.trim_end_matches('/').to_owned();
    let grpc = dev.client().await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    match cli.command {
        Cmd::Submit { jobs, batch, singles, clients, rounds } => {
            submit(&base, &http, grpc, jobs, batch, singles, clients, rounds).await
        }
        Cmd::List { history, samples } => list(&base, &http, grpc, history, samples).await,
    }
}

/// The JSON draft of [`noop_job`]: the spec-file form the REST API takes.
fn noop_draft() -> serde_json::Value {
    serde_json::json!({ "name": "noop", "function": "noop", "cpu": "1m", "memory": "0" })
}

#[allow(clippy::too_many_arguments)]
async fn submit(
    base: &str,
    http: &reqwest::Client,
    grpc: Arc<dyn Api>,
    jobs: usize,
    batch: usize,
    singles: usize,
    clients: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let finished = {
        let api = grpc.clone();
        move || {
            let api = api.clone();
            async move { ended_runs(api.as_ref()).await }.boxed()
        }
    };
    // Warm up both paths.
    submit_and_drain(grpc.clone(), 10_000, batch, 1, noop_job(), finished.clone()).await?;
    rest_batches(base, http, 10_000, batch, 1, &grpc).await?;
    for round in 1..=rounds {
        let took = rest_batches(base, http, jobs, batch, 2, &grpc).await?;
        report("REST batch", round, jobs, batch, 2, took);
        let took = submit_and_drain(grpc.clone(), jobs, batch, 2, noop_job(), finished.clone()).await?;
        report("gRPC batch", round, jobs, batch, 2, took);
        let took = rest_singles(base, http, singles, clients, &grpc).await?;
        report("REST single", round, singles, 1, clients, took);
        let took = submit_and_drain(grpc.clone(), singles, 1, clients, noop_job(), finished.clone()).await?;
        report("gRPC single", round, singles, 1, clients, took);
    }
    Ok(())
}

fn report(what: &str, round: usize, jobs: usize, batch: usize, clients: usize, took: Duration) {
    println!(
        "{what} round {round}: {jobs} no-op jobs, batch {batch}, {clients} clients: {:.2}s = {:.0} jobs/s",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64()
    );
}

/// Waits until `target` runs have ended.
async fn drain(grpc: &Arc<dyn Api>, target: u64) -> anyhow::Result<()> {
    while ended_runs(grpc.as_ref()).await? < target {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

async fn rest_batches(
    base: &str,
    http: &reqwest::Client,
    jobs: usize,
    batch: usize,
    clients: usize,
    grpc: &Arc<dyn Api>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let before = ended_runs(grpc.as_ref()).await?;
    let body = serde_json::to_vec(&serde_json::json!({ "jobs": vec![noop_draft(); batch] }))?;
    let per = jobs / clients;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, body, url) = (http.clone(), body.clone(), format!("{base}/api/v1/jobs/batch"));
        tasks.push(tokio::spawn(async move {
            let mut left = per;
            while left > 0 {
                let answer = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?
                    .error_for_status()?;
                let answer: serde_json::Value = answer.json().await?;
                if let Some(bad) =
                    answer["results"].as_array().and_then(|r| r.iter().find(|x| x.get("error").is_some()))
                {
                    anyhow::bail!("a job was refused: {bad}");
                }
                left = left.saturating_sub(batch);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    drain(grpc, before + (per.div_ceil(batch) * batch * clients) as u64).await?;
    Ok(started.elapsed())
}

async fn rest_singles(
    base: &str,
    http: &reqwest::Client,
    jobs: usize,
    clients: usize,
    grpc: &Arc<dyn Api>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let before = ended_runs(grpc.as_ref()).await?;
    let body = serde_json::to_vec(&noop_draft())?;
    let per = jobs / clients;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, body, url) = (http.clone(), body.clone(), format!("{base}/api/v1/jobs"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                http.post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?
                    .error_for_status()?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    drain(grpc, before + (per * clients) as u64).await?;
    Ok(started.elapsed())
}

/// p50 and p99 of `samples` timings, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

async fn list(
    base: &str,
    http: &reqwest::Client,
    grpc: Arc<dyn Api>,
    history: usize,
    samples: usize,
) -> anyhow::Result<()> {
    let finished = {
        let api = grpc.clone();
        move || {
            let api = api.clone();
            async move { ended_runs(api.as_ref()).await }.boxed()
        }
    };
    let took = submit_and_drain(grpc.clone(), history, 5_000, 2, noop_job(), finished).await?;
    println!("history: {history} finished runs made in {:.1}s", took.as_secs_f64());
    let deep = RunId((history / 2) as u64);
    let job = JobId((history / 3) as u64);
    let queries: [(&str, String, RunQuery); 4] = [
        ("first page (50)", "limit=50".into(), RunQuery { limit: Some(50), ..RunQuery::default() }),
        (
            "state=succeeded (50)",
            "state=succeeded&limit=50".into(),
            RunQuery { state: Some(RunState::Succeeded), limit: Some(50), ..RunQuery::default() },
        ),
        (
            "page at the middle (50)",
            format!("before={deep}&limit=50"),
            RunQuery { before: Some(deep), limit: Some(50), ..RunQuery::default() },
        ),
        ("one job's runs", format!("job={job}"), RunQuery { job: Some(job), ..RunQuery::default() }),
    ];
    for (name, params, query) in queries {
        let url = format!("{base}/api/v1/runs?{params}");
        let (mut rest, mut rpc) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
        for _ in 0..samples {
            let t = Instant::now();
            let page: serde_json::Value = http.get(&url).send().await?.error_for_status()?.json().await?;
            rest.push(t.elapsed());
            page["items"].as_array().context("items")?;
            let t = Instant::now();
            grpc.list_runs(query.clone()).await?;
            rpc.push(t.elapsed());
        }
        let ((r50, r99), (g50, g99)) = (percentiles(rest), percentiles(rpc));
        println!(
            "list runs, {name}, over {history} runs: REST p50 {r50:.2} ms p99 {r99:.2} ms; gRPC p50 {g50:.2} ms p99 {g99:.2} ms"
        );
    }
    Ok(())
}
