//! Cron at scale, measured on the shipped binary (issue 12): `schedules` cron
//! jobs firing every minute on one `archon dev` (durable store) for `minutes`,
//! with a short history retention. Each minute it prints the RSS, the CPU the
//! process used over the minute, and how late the fires were: a run's
//! `created_at` (when the fire was applied) minus its `scheduled_for`, over a
//! sample of jobs. Build with `--release`, then `target/release/cron`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use archon_benches::{Daemon, noop_job};
use archon_core::model::{JobId, Schedule};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    /// Where `archon` is (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Cron jobs, each `* * * * *`.
    #[arg(long, default_value_t = 10_000)]
    schedules: usize,
    /// How long to let them fire.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Jobs whose runs are read for the lateness figures.
    #[arg(long, default_value_t = 200)]
    sample: usize,
    /// The manager's history retention.
    #[arg(long, default_value = "5m")]
    retention: String,
}

/// utime + stime of `pid`, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("no comm")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bins = match cli.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?.parent().context("no parent dir")?.to_path_buf(),
    };
    let data = tempfile::tempdir()?;
    let dev = spawn(&bins, &data.path().join("data"), &cli.retention).await?;
    let api = dev.client().await?;
    let pid = dev.child.id().context("no pid")?;
    let mut spec = noop_job();
    spec.schedule = Some(Box::new(Schedule::new("* * * * *")));
    let mut jobs: Vec<JobId> = Vec::with_capacity(cli.schedules);
    let started = Instant::now();
    for chunk in (0..cli.schedules).collect::<Vec<_>>().chunks(1000) {
        for r in api.submit(vec![spec.clone(); chunk.len()]).await? {
            jobs.push(r.map_err(|e| anyhow::anyhow!("submit rejected: {e}"))?.job);
        }
    }
    println!(
        "cron: {} schedules `* * * * *` submitted in {:.1}s; history retention {}; RSS {:.1} MiB",
        jobs.len(),
        started.elapsed().as_secs_f64(),
        cli.retention,
        dev.rss()? as f64 / (1 << 20) as f64
    );
    let sample: Vec<JobId> = jobs.iter().step_by((jobs.len() / cli.sample.max(1)).max(1)).copied().collect();
    let mut late_all: Vec<i64> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for minute in 1..=cli.minutes {
        let (ticks0, t0) = (cpu_ticks(pid)?, Instant::now());
        tokio::time::sleep(Duration::from_secs(60)).await;
        let cpu = (cpu_ticks(pid)? - ticks0) as f64 / 100.0 / t0.elapsed().as_secs_f64();
        let mut late: Vec<i64> = Vec::new();
        for job in &sample {
            let detail = api.get_job(*job).await?;
            for run in &detail.runs {
                if let Some(at) = run.scheduled_for
                    && seen.insert(run.id)
                {
                    late.push(run.created_at.0 - at.0);
                }
            }
        }
        late.sort_unstable();
        late_all.extend(&late);
        let status = api.status().await?;
        let fired: u64 = status.runs.values().sum();
        println!(
            "cron: minute {minute:>2}: RSS {:.1} MiB, CPU {:.1}% of a core, fires sampled {} (late p50 {} ms, p99 {} ms, max {} ms), runs in the state and history {fired}",
            dev.rss()? as f64 / (1 << 20) as f64,
            cpu * 100.0,
            late.len(),
            percentile(&late, 0.5),
            percentile(&late, 0.99),
            late.last().copied().unwrap_or(0),
        );
    }
    late_all.sort_unstable();
    println!(
        "cron: over {} minutes: {} sampled fires late p50 {} ms, p99 {} ms, max {} ms",
        cli.minutes,
        late_all.len(),
        percentile(&late_all, 0.5),
        percentile(&late_all, 0.99),
        late_all.last().copied().unwrap_or(0),
    );
    Ok(())
}

async fn spawn(bins: &Path, data: &Path, retention: &str) -> anyhow::Result<Daemon> {
    let args: Vec<String> = [
        "dev",
        "--insecure",
        "--listen",
        "127.0.0.1:0",
        "--no-docker",
        "--cpu",
        "1000",
        "--memory",
        "1TiB",
        "--history-retention",
        retention,
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([data.display().to_string()])
    .collect();
    Daemon::spawn(&bins.join("archon"), &args, "gRPC API listening on ").await
}
