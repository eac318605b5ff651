//! A 1,000-node fan-out/fan-in workflow, measured on the shipped binary (issue
//! 12): `start` → `n0` … `n{W-1}` (each after `start`) → `join` (after all of
//! them), every node a no-op function job, on one `archon dev` (durable store,
//! a worker large enough that placement never waits).
//!
//! Each round submits the workflow and waits for `join`, then — the baseline,
//! same daemon — submits the same W+2 no-op jobs as independent plain jobs in
//! one submit and waits until all of them ended. Per round it prints:
//! - the submit round trip (client);
//! - the workflow's makespan on the server's clock (`join`'s `finished_at`
//!   minus the workflow's `created_at`) and on the client's (submit to `join`'s
//!   end seen), with its phases: `start` done, the fan-out (the latest fan-out
//!   `finished_at`), the fan-in (`join`'s first attempt assigned and started,
//!   minus that latest fan-out end) and `join` itself;
//! - the baseline's makespan (server: the latest `finished_at` minus the
//!   earliest `created_at`; client: submit to all ended);
//! - the time from assigned to started (the assignment's way to the worker)
//!   of the fan-out nodes and of the plain jobs, median and max;
//! - the scheduling overhead per node, (workflow − baseline makespan) / (W+2),
//!   and the CPU the daemon used in each half;
//!
//! then min / median / max over the rounds, and the daemon's RSS before and
//! after. The figures of the runs are read after each timed part (not timed).
//!
//! Build with `cargo build --release -p archon-cli -p archon-benches --all-features`,
//! then `target/release/workflow` (defaults: `--width 1000 --rounds 5`). A wide
//! workflow may need a larger log entry than the default 1 MiB (about 600 bytes
//! a no-op node): `target/release/workflow --width 4000 --rounds 3
//! --max-entry-bytes 4MiB`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use archon_benches::{Daemon, ended_runs, noop_job};
use archon_core::api::{Api, RunQuery, WorkflowDetail};
use archon_core::model::{
    Edge, EdgeCondition, RunId, RunState, Timestamp, WorkflowId, WorkflowNode, WorkflowSpec, WorkflowState,
};
use archon_core::state::Command;
use clap::Parser;
use futures::StreamExt;

/// A fan-out/fan-in workflow against the same jobs submitted plain.
#[derive(Parser)]
struct Cli {
    /// Where `archon` is (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Fan-out nodes between `start` and `join` (the workflow has W+2 nodes).
    #[arg(long, default_value_t = 1000)]
    width: usize,
    /// Rounds, each one workflow then its baseline.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Fail the benchmark if it is not done within this many seconds.
    #[arg(long, default_value_t = 600)]
    deadline: u64,
    /// Passed to `archon dev --max-entry-bytes` (its default: 1MiB).
    #[arg(long)]
    max_entry_bytes: Option<String>,
}

/// What one workflow round measured (ms unless said).
struct WorkflowRound {
    submit: f64,
    makespan: f64,
    wall: f64,
    start_done: f64,
    fan_out_done: f64,
    fan_in_assigned: f64,
    fan_in_started: Option<f64>,
    join: f64,
    /// Assigned to started of the fan-out nodes: median, max.
    fan_out_start: (f64, f64),
    cpu: f64,
}

/// What one baseline round measured (ms unless said).
struct PlainRound {
    submit: f64,
    makespan: f64,
    wall: f64,
    /// Assigned to started of the jobs: median, max.
    start: (f64, f64),
    cpu: f64,
}

/// utime + stime of `pid`, in seconds (100 clock ticks a second on Linux).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("no comm")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks =
        fields.get(11).context("no utime")?.parse::<u64>()? + fields.get(12).context("no stime")?.parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn between(later: Timestamp, earlier: Timestamp) -> f64 {
    (later.0 - earlier.0) as f64
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// `start` → `n0..n{width-1}` → `join`, every node a no-op named after itself.
fn fan_out_fan_in(width: usize) -> WorkflowSpec {
    let node = |name: String, after: Vec<String>| {
        let mut job = noop_job();
        job.name = name.clone();
        WorkflowNode {
            name,
            job,
            after: after.into_iter().map(|parent| Edge { parent, when: EdgeCondition::Success }).collect(),
        }
    };
    let fan: Vec<String> = (0..width).map(|i| format!("n{i}")).collect();
    let mut nodes = Vec::with_capacity(width + 2);
    nodes.push(node("start".into(), Vec::new()));
    nodes.extend(fan.iter().map(|n| node(n.clone(), vec!["start".into()])));
    nodes.push(node("join".into(), fan));
    WorkflowSpec { name: format!("fan-{width}"), nodes, schedule: None }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bins = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?.parent().context("no parent dir")?.to_path_buf(),
    };
    let data = tempfile::tempdir()?;
    let mut dev = spawn(&bins, &data.path().join("data"), cli.max_entry_bytes.as_deref()).await?;
    let outcome = tokio::time::timeout(Duration::from_secs(cli.deadline), run(&cli, &dev)).await;
    // Kill the daemon before its data dir goes (the Drop would kill it too).
    dev.child.kill().await.context("killing archon dev")?;
    drop(data);
    match outcome {
        Ok(result) => result,
        Err(_) => anyhow::bail!("not done within the deadline ({} s)", cli.deadline),
    }
}

async fn run(cli: &Cli, dev: &Daemon) -> anyhow::Result<()> {
    anyhow::ensure!(cli.width > 0 && cli.rounds > 0, "--width and --rounds must be at least 1");
    let api = dev.client().await?;
    let api = &*api;
    let pid = dev.child.id().context("archon dev has exited")?;
    wait_for_worker(api).await?;
    let spec = fan_out_fan_in(cli.width);
    let nodes = cli.width + 2;
    let entry = Command::SubmitWorkflow { at: Timestamp(0), spec: Arc::new(spec.clone()) }.size_hint();
    let rss_before = dev.rss()?;
    println!(
        "workflow: start → {w} fan-out → join ({nodes} no-op nodes, {edges} edges; about {kib:.0} KiB in the log); \
         baseline: {nodes} plain no-op jobs in one submit; {rounds} rounds; archon dev RSS {rss:.1} MiB",
        w = cli.width,
        edges = 2 * cli.width,
        kib = entry as f64 / 1024.0,
        rounds = cli.rounds,
        rss = mib(rss_before),
    );
    let mut flows = Vec::with_capacity(cli.rounds);
    let mut plains = Vec::with_capacity(cli.rounds);
    for round in 1..=cli.rounds {
        let w = workflow_round(api, &spec, pid).await.with_context(|| format!("round {round}, workflow"))?;
        let p = plain_round(api, nodes, pid).await.with_context(|| format!("round {round}, baseline"))?;
        let n = nodes as f64;
        println!(
            "round {round}: workflow submit {:.1} ms, makespan {:.0} ms server / {:.1} ms client \
             (start done at {:.0}, fan-out done at {:.0}, join assigned +{:.0} started +{} after it, join {:.0} ms; \
             fan-out assigned→started p50 {:.0} max {:.0} ms), {:.3} ms/node, daemon CPU {:.2} s | plain submit \
             {:.1} ms, makespan {:.0} ms server / {:.1} ms client (assigned→started p50 {:.0} max {:.0} ms), \
             {:.3} ms/node, daemon CPU {:.2} s | overhead {:.3} ms/node server, {:.3} ms/node client",
            w.submit,
            w.makespan,
            w.wall,
            w.start_done,
            w.fan_out_done,
            w.fan_in_assigned,
            w.fan_in_started.map_or("?".into(), |s| format!("{s:.0}")),
            w.join,
            w.fan_out_start.0,
            w.fan_out_start.1,
            w.makespan / n,
            w.cpu,
            p.submit,
            p.makespan,
            p.wall,
            p.start.0,
            p.start.1,
            p.makespan / n,
            p.cpu,
            (w.makespan - p.makespan) / n,
            (w.wall - p.wall) / n,
        );
        flows.push(w);
        plains.push(p);
    }
    let n = nodes as f64;
    println!("summary over {} rounds (min / median / max):", cli.rounds);
    let rows: [(&str, Vec<f64>, &str); 19] = [
        ("workflow submit (round trip)", flows.iter().map(|w| w.submit).collect(), "ms"),
        ("workflow makespan, server", flows.iter().map(|w| w.makespan).collect(), "ms"),
        ("workflow wall, client", flows.iter().map(|w| w.wall).collect(), "ms"),
        ("workflow makespan per node", flows.iter().map(|w| w.makespan / n).collect(), "ms"),
        ("  start done after", flows.iter().map(|w| w.start_done).collect(), "ms"),
        ("  fan-out done after", flows.iter().map(|w| w.fan_out_done).collect(), "ms"),
        ("  fan-in: join assigned after the last parent", flows.iter().map(|w| w.fan_in_assigned).collect(), "ms"),
        ("  join assigned to finished", flows.iter().map(|w| w.join).collect(), "ms"),
        ("  fan-out assigned→started, p50", flows.iter().map(|w| w.fan_out_start.0).collect(), "ms"),
        ("  fan-out assigned→started, max", flows.iter().map(|w| w.fan_out_start.1).collect(), "ms"),
        ("workflow daemon CPU", flows.iter().map(|w| w.cpu).collect(), "s"),
        ("plain submit (round trip)", plains.iter().map(|p| p.submit).collect(), "ms"),
        ("plain makespan, server", plains.iter().map(|p| p.makespan).collect(), "ms"),
        ("plain wall, client", plains.iter().map(|p| p.wall).collect(), "ms"),
        ("plain makespan per node", plains.iter().map(|p| p.makespan / n).collect(), "ms"),
        ("  plain assigned→started, p50", plains.iter().map(|p| p.start.0).collect(), "ms"),
        ("  plain assigned→started, max", plains.iter().map(|p| p.start.1).collect(), "ms"),
        ("plain daemon CPU", plains.iter().map(|p| p.cpu).collect(), "s"),
        (
            "overhead per node, server",
            flows.iter().zip(&plains).map(|(w, p)| (w.makespan - p.makespan) / n).collect(),
            "ms",
        ),
    ];
    for (label, values, unit) in rows {
        let (lo, mid, hi) = min_median_max(values);
        println!("  {label:<46} {lo:>9.3} / {mid:>9.3} / {hi:>9.3} {unit}");
    }
    let (lo, mid, hi) = min_median_max(flows.iter().zip(&plains).map(|(w, p)| (w.wall - p.wall) / n).collect());
    println!("  {:<46} {lo:>9.3} / {mid:>9.3} / {hi:>9.3} ms", "overhead per node, client");
    println!(
        "archon dev RSS: {:.1} MiB before the rounds, {:.1} MiB after (peak {:.1} MiB)",
        mib(rss_before),
        mib(dev.rss()?),
        mib(dev.peak_rss()?)
    );
    Ok(())
}

fn min_median_max(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |i: usize| values.get(i).copied().unwrap_or(f64::NAN);
    (at(0), at(values.len() / 2), at(values.len().saturating_sub(1)))
}

/// Waits (up to 30 s) until the dev worker is connected, so the first round
/// does not wait for it.
async fn wait_for_worker(api: &dyn Api) -> anyhow::Result<()> {
    for _ in 0..3000 {
        if api.list_workers().await?.iter().any(|w| w.connected) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("the dev worker did not connect within 30 s")
}

async fn workflow_round(api: &dyn Api, spec: &WorkflowSpec, pid: u32) -> anyhow::Result<WorkflowRound> {
    let cpu0 = cpu_seconds(pid)?;
    let t0 = Instant::now();
    let submitted = api.submit_workflow(spec.clone()).await.context("submit_workflow")?;
    let submit = ms(t0.elapsed());
    let join_job = *submitted.jobs.last().context("no jobs")?;
    let join_run = api.get_job(join_job).await?.runs.first().map(|r| r.id).context("join has no run")?;
    let done = api.wait(join_run).await.context("waiting for join")?;
    let wall = ms(t0.elapsed());
    let cpu = cpu_seconds(pid)? - cpu0;
    // The figures, after the timing.
    anyhow::ensure!(done.run.state == RunState::Succeeded, "join ended {}", done.run.state);
    let detail = finished_workflow(api, submitted.workflow.context("no workflow id")?).await?;
    anyhow::ensure!(detail.state == WorkflowState::Succeeded, "the workflow ended {}", detail.state);
    let created = detail.workflow.created_at;
    let join_finished = done.run.finished_at.context("join has no finished_at")?;
    let finished = |i: usize| {
        detail.runs.get(i).and_then(|r| r.as_ref()).and_then(|r| r.finished_at).with_context(|| {
            format!("node {i} ({}) has no finished run", spec.nodes.get(i).map_or("?", |n| n.name.as_str()))
        })
    };
    let start_finished = finished(0)?;
    let mut last_parent = start_finished;
    for i in 1..spec.nodes.len() - 1 {
        last_parent = last_parent.max(finished(i)?);
    }
    let attempt = done.attempts.first().context("join has no attempt")?;
    let fan_out: Vec<RunId> =
        detail.runs.get(1..spec.nodes.len() - 1).unwrap_or_default().iter().flatten().map(|r| r.id).collect();
    let fan_out_start = start_delays(api, &fan_out).await?;
    Ok(WorkflowRound {
        submit,
        makespan: between(join_finished, created),
        wall,
        start_done: between(start_finished, created),
        fan_out_done: between(last_parent, created),
        fan_in_assigned: between(attempt.assigned_at, last_parent),
        fan_in_started: attempt.started_at.map(|s| between(s, last_parent)),
        join: between(join_finished, attempt.assigned_at),
        fan_out_start,
        cpu,
    })
}

/// The workflow once it has left the live state (its end reaches the history a
/// moment after `join`'s); up to 10 s.
async fn finished_workflow(api: &dyn Api, id: WorkflowId) -> anyhow::Result<WorkflowDetail> {
    for _ in 0..100 {
        let detail = api.get_workflow(id).await?;
        if detail.state != WorkflowState::Running && detail.runs.iter().all(Option::is_some) {
            return Ok(detail);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{id} still running (or missing runs) 10 s after join ended")
}

async fn plain_round(api: &dyn Api, nodes: usize, pid: u32) -> anyhow::Result<PlainRound> {
    let before = ended_runs(api).await?;
    let cpu0 = cpu_seconds(pid)?;
    let t0 = Instant::now();
    let results = api.submit(vec![noop_job(); nodes]).await.context("submit")?;
    let submit = ms(t0.elapsed());
    let mut runs = Vec::with_capacity(nodes);
    for r in results {
        runs.push(r.map_err(|e| anyhow::anyhow!("submit rejected: {e}"))?.run.context("a job without a run")?);
    }
    // Runs are placed in id order: wait for the last, then for the count.
    api.wait(*runs.last().context("no runs")?).await.context("waiting for the last run")?;
    let target = before + nodes as u64;
    let mut polls = 0u32;
    while ended_runs(api).await? < target {
        polls += 1;
        anyhow::ensure!(polls < 30_000, "the plain runs did not all end within a minute of the last");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let wall = ms(t0.elapsed());
    let cpu = cpu_seconds(pid)? - cpu0;
    // The figures, after the timing.
    let (first_created, last_finished) = run_span(api, &runs).await?;
    let start = start_delays(api, &runs).await?;
    Ok(PlainRound { submit, makespan: between(last_finished, first_created), wall, start, cpu })
}

/// The median and the largest time from assigned to started of the first
/// attempts of `runs` (ms), read with `get_run`, 16 at a time.
async fn start_delays(api: &dyn Api, runs: &[RunId]) -> anyhow::Result<(f64, f64)> {
    let details: Vec<_> =
        futures::stream::iter(runs.iter().map(|id| api.get_run(*id))).buffered(16).collect::<Vec<_>>().await;
    let mut delays = Vec::with_capacity(runs.len());
    for detail in details {
        let detail = detail?;
        let attempt = detail.attempts.first().with_context(|| format!("{} has no attempt", detail.run.id))?;
        let started = attempt.started_at.with_context(|| format!("{} has no start", detail.run.id))?;
        delays.push(between(started, attempt.assigned_at));
    }
    let (_, median, max) = min_median_max(delays);
    Ok((median, max))
}

/// The earliest `created_at` and latest `finished_at` of `runs` (the newest
/// runs of the cluster), read from `list_runs`; retried for up to 5 s while
/// some have not reached the listing.
async fn run_span(api: &dyn Api, runs: &[RunId]) -> anyhow::Result<(Timestamp, Timestamp)> {
    let pages = runs.len() / 1000 + 3;
    for _ in 0..50 {
        let mut seen: HashMap<RunId, (RunState, Timestamp, Option<Timestamp>)> = HashMap::new();
        let mut before = None;
        for _ in 0..pages {
            let page = api.list_runs(RunQuery { before, limit: Some(1000), ..RunQuery::default() }).await?;
            for r in page.items {
                seen.insert(r.id, (r.state, r.created_at, r.finished_at));
            }
            if runs.iter().all(|r| seen.contains_key(r)) {
                break;
            }
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        let mut first = Timestamp(i64::MAX);
        let mut last = Timestamp(i64::MIN);
        let mut complete = true;
        for r in runs {
            match seen.get(r) {
                Some((state, created, Some(finished))) => {
                    anyhow::ensure!(*state == RunState::Succeeded, "{r} ended {state}");
                    first = first.min(*created);
                    last = last.max(*finished);
                }
                _ => complete = false,
            }
        }
        if complete {
            return Ok((first, last));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("some plain runs are missing from list_runs (or unfinished) 5 s after they ended")
}

async fn spawn(bins: &Path, data: &Path, max_entry_bytes: Option<&str>) -> anyhow::Result<Daemon> {
    let mut args: Vec<String> = [
        "dev",
        "--insecure",
        "--listen",
        "127.0.0.1:0",
        "--no-docker",
        "--cpu",
        "1000",
        "--memory",
        "1TiB",
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([data.display().to_string()])
    .collect();
    if let Some(bytes) = max_entry_bytes {
        args.extend(["--max-entry-bytes".to_string(), bytes.to_string()]);
    }
    Daemon::spawn(&bins.join("archon"), &args, "gRPC API listening on ").await
}
