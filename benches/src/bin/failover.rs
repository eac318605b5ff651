//! Manager failover under load: how long after `kill -9` of the Raft leader of a
//! 3-manager group a new leader accepts submits. Build first:
//! `cargo build --release --bins -p archon-manager -p archon-worker -p archon-cli -p archon-benches`,
//! then `target/release/failover --rounds 5`.
//!
//! Each round starts three `archon-manager`s (fixed free loopback ports, `--peers`,
//! temporary data dirs) and two `archon-worker`s pointed at all three, runs a
//! steady stream of single-spec submits (each with an idempotency key, through
//! `GrpcClient::connect_any`, several concurrent submitters) of short shell jobs,
//! kills the leader with SIGKILL while jobs run, and measures:
//!
//! - **elected**: kill → a survivor's status shows a leader of a newer term;
//! - **accepts**: kill → the first submit acknowledged by a manager other than the
//!   killed one (the headline figure; target ≤ 2 s);
//! - **stall**: the longest any submit waited for its acknowledgement;
//! - **catch-up**: restart of the killed manager → its `last_applied` reaches the
//!   leader's.
//!
//! Then it checks that no acknowledged submit was lost: every acknowledged job is
//! on the new leader, its one run succeeded with one attempt, and each job's
//! command (which appends its key to a file) ran exactly once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use archon_benches::cluster::{Cluster, ClusterSpec, leader_of};
use archon_core::api::RunDetail;
use archon_core::api::{Api, RunQuery, RunSummary};
use archon_core::model::{AttemptState, JobId, JobSpec, Resources, RunId, RunState, Task};
use archon_net::GrpcClient;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "kill -9 the leader of a 3-manager group under load; time until a new leader accepts submits")]
struct Cli {
    /// How many rounds (each a fresh cluster).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Submits per second, over all submitters (one spec per submit).
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Concurrent submitters, each with its own client.
    #[arg(long, default_value_t = 8)]
    submitters: u32,
    /// Seconds of steady load before the kill.
    #[arg(long, default_value_t = 2.0)]
    before: f64,
    /// Seconds of load after the first submit a new leader acknowledges.
    #[arg(long, default_value_t = 2.0)]
    after: f64,
    /// Each job's shell command, before it appends its key to the marks file.
    #[arg(long, default_value = "sleep 0.2")]
    job: String,
    /// Where archon-manager and archon-worker are (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep each round's data dirs and logs (their paths are printed).
    #[arg(long)]
    keep: bool,
    /// Start the daemons with -v (more detail in their logs).
    #[arg(long)]
    verbose: bool,
    /// The managers' store: `raft` (each its data dir, `--peers`) or `postgres`
    /// (one throwaway, durable PostgreSQL per round, `--store`; no catch-up to time).
    #[arg(long, default_value = "raft", value_parser = ["raft", "postgres"])]
    store: String,
}

/// One acknowledged submit.
#[derive(Debug, Clone)]
struct Ack {
    key: String,
    job: JobId,
    run: Option<RunId>,
    duplicate: bool,
    sent: Instant,
    acked: Instant,
}

/// A submit that was not acknowledged.
#[derive(Debug, Clone)]
struct Failed {
    key: String,
    error: String,
}

/// What the submitters learn about the kill, and tell back.
#[derive(Default)]
struct KillWatch {
    /// When the leader was killed and its endpoint.
    killed: Option<(Instant, String)>,
    /// The first acknowledgement after the kill from another manager.
    first_ack: Option<Instant>,
}

/// One round's figures.
#[derive(Debug, Clone)]
struct Round {
    elected: Duration,
    accepts: Duration,
    stall: Duration,
    catch_up: Duration,
    catch_up_entries: u64,
    acked: usize,
    duplicates: usize,
    failed: usize,
    spanning: usize,
    requeued: usize,
    drain: Duration,
    problems: Vec<String>,
    old_leader: u64,
    new_leader: u64,
    term: (u64, u64),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.rounds == 0 || cli.submitters == 0 || cli.rate == 0 {
        bail!("--rounds, --submitters and --rate must be at least 1");
    }
    let bin_dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?.parent().context("this binary has no directory")?.to_path_buf(),
    };
    for bin in ["archon-manager", "archon-worker"] {
        if !bin_dir.join(bin).is_file() {
            bail!(
                "{} is missing (build it: cargo build --release --bins -p archon-manager -p archon-worker)",
                bin_dir.join(bin).display()
            );
        }
    }
    println!(
        "failover: {} rounds, {} submits/s from {} submitters, job `{}`, {:.1}s before the kill, {:.1}s after the first new ack",
        cli.rounds, cli.rate, cli.submitters, cli.job, cli.before, cli.after
    );
    let mut rounds = Vec::new();
    for n in 1..=cli.rounds {
        let round = run_round(&cli, &bin_dir, n).await.with_context(|| format!("round {n}"))?;
        println!(
            "round {n}: leader {} (term {}) killed -> {} (term {}); elected {} ms, accepts submits {} ms, longest submit {} ms; \
             {} acked ({} dup, {} failed, {} in flight at the kill, {} requeued unstarted), all terminal {} ms after the stream; \
             restarted node caught up {} entries in {} ms; {}",
            round.old_leader,
            round.term.0,
            round.new_leader,
            round.term.1,
            round.elected.as_millis(),
            round.accepts.as_millis(),
            round.stall.as_millis(),
            round.acked,
            round.duplicates,
            round.failed,
            round.spanning,
            round.requeued,
            round.drain.as_millis(),
            round.catch_up_entries,
            round.catch_up.as_millis(),
            if round.problems.is_empty() {
                "verified: none lost, all succeeded exactly once".to_owned()
            } else {
                format!("PROBLEMS: {}", round.problems.join("; "))
            }
        );
        rounds.push(round);
    }
    let summary = |name: &str, f: fn(&Round) -> Duration| {
        let mut v: Vec<Duration> = rounds.iter().map(f).collect();
        v.sort();
        let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2 };
        println!(
            "{name:<28} min {:>5} ms  median {:>5} ms  max {:>5} ms",
            v[0].as_millis(),
            median.as_millis(),
            v[v.len() - 1].as_millis()
        );
    };
    println!("summary over {} rounds:", rounds.len());
    summary("kill -> new leader elected", |r| r.elected);
    summary("kill -> submits accepted", |r| r.accepts);
    summary("longest submit", |r| r.stall);
    summary("restarted node catch-up", |r| r.catch_up);
    let bad = rounds.iter().filter(|r| !r.problems.is_empty()).count();
    if bad > 0 {
        bail!("{bad} of {} rounds found lost or repeated work", rounds.len());
    }
    println!("all rounds: no acknowledged submit lost, every run succeeded exactly once");
    Ok(())
}

async fn run_round(cli: &Cli, bin_dir: &Path, n: usize) -> anyhow::Result<Round> {
    let dir = tempfile::Builder::new().prefix("archon-failover-").tempdir()?;
    let root = dir.path().to_path_buf();
    if cli.keep {
        println!("round {n}: data dirs and logs in {}", root.display());
    }
    let postgres = (cli.store == "postgres").then(|| archon_store::testkit::TempPostgres::start_with(true)).map(|pg| {
        let url = pg.create_database();
        (pg, url)
    });
    let mut spec = ClusterSpec::new(bin_dir, &root);
    spec.store = postgres.as_ref().map(|(_, url)| url.clone());
    spec.verbose = cli.verbose;
    let mut cluster = Cluster::start(spec).await?;
    let endpoints = cluster.endpoints.clone();
    let admin = cluster.client().await?;
    let ready_term = cluster.term;

    // The steady stream.
    let marks = root.join("marks.log");
    let watch = Arc::new(Mutex::new(KillWatch::default()));
    let stop = CancellationToken::new();
    let every = Duration::from_secs_f64(f64::from(cli.submitters) / f64::from(cli.rate));
    let mut tasks = Vec::new();
    for s in 0..cli.submitters {
        let client = cluster.client().await?;
        let (stop, watch, marks, job) = (stop.clone(), watch.clone(), marks.clone(), cli.job.clone());
        tasks.push(tokio::spawn(submitter(client, s, every, stop, watch, marks, job)));
    }
    tokio::time::sleep(Duration::from_secs_f64(cli.before)).await;

    // Kill the leader.
    let status = admin.status().await?;
    let old = leader_of(&status).context("no leader before the kill")?.clone();
    let victim = usize::try_from(old.id).ok().and_then(|id| id.checked_sub(1)).filter(|i| *i < 3);
    let victim = victim.with_context(|| format!("leader id {} is not one of ours", old.id))?;
    if old.term != ready_term {
        // A leader change under load alone: heartbeats too slow for the timeouts.
        println!("round {n}: the leader changed under load before the kill (term {ready_term} -> {})", old.term);
    }
    let killed_at = Instant::now();
    cluster.managers[victim].child.start_kill()?;
    lock(&watch).killed = Some((killed_at, endpoints[victim].clone()));
    cluster.managers[victim].child.wait().await?;

    // (a) A survivor's status names a leader of a newer term.
    let mut survivors = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        if i != victim {
            survivors.push(cluster.client_to(e).await?);
        }
    }
    let (elected, new) = loop {
        let polls = futures::future::join_all(survivors.iter().map(|c| c.status())).await;
        let found = polls
            .into_iter()
            .flatten()
            .find_map(|s| s.managers.iter().find(|m| m.role == "leader" && m.term > old.term).cloned());
        if let Some(m) = found {
            break (killed_at.elapsed(), m);
        }
        if killed_at.elapsed() > Duration::from_secs(30) {
            bail!("no new leader within 30s of the kill (logs in {})", root.display());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // (b) Keep the stream going until a new manager acknowledges, then `after` more.
    let first_ack = loop {
        if let Some(at) = lock(&watch).first_ack {
            break at;
        }
        if killed_at.elapsed() > Duration::from_secs(30) {
            bail!("no submit acknowledged within 30s of the kill (logs in {})", root.display());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(Duration::from_secs_f64(cli.after)).await;
    stop.cancel();
    let mut acks = Vec::new();
    let mut failed = Vec::new();
    for t in tasks {
        let (a, f) = t.await?;
        acks.extend(a);
        failed.extend(f);
    }
    let stream_end = Instant::now();

    // Verify on the new leader: every acknowledged run there and succeeded once.
    let leader = cluster.client_to(&new.address).await?;
    let mut problems = Vec::new();
    let mut want: BTreeMap<RunId, &Ack> = BTreeMap::new();
    for a in &acks {
        match a.run {
            Some(r) => {
                want.insert(r, a);
            }
            None => problems.push(format!("{} acked without a run", a.key)),
        }
    }
    let drain_by = Instant::now() + Duration::from_secs(90);
    let runs = loop {
        let runs = all_runs(&leader).await?;
        let open = want.keys().filter(|r| runs.get(r).is_none_or(|s| !s.state.is_terminal())).count();
        if open == 0 {
            break runs;
        }
        if Instant::now() > drain_by {
            problems.push(format!("{open} acknowledged runs missing or unfinished 90s after the stream"));
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let drain = stream_end.elapsed();
    let executions = read_marks(&marks)?;
    let mut jobs_per_key: HashMap<&str, std::collections::HashSet<JobId>> = HashMap::new();
    for r in runs.values() {
        jobs_per_key.entry(r.job_name.as_str()).or_default().insert(r.job);
    }
    let mut runs_per_job: HashMap<JobId, usize> = HashMap::new();
    for r in runs.values() {
        *runs_per_job.entry(r.job).or_default() += 1;
    }
    let (mut lost, mut unsucceeded, mut extra_runs, mut not_once, mut requeued, mut started_twice) = (0, 0, 0, 0, 0, 0);
    for (run, ack) in &want {
        match runs.get(run) {
            None => lost += 1,
            Some(s) => {
                if s.state != RunState::Succeeded {
                    unsucceeded += 1;
                }
                if s.job != ack.job || runs_per_job.get(&s.job).copied().unwrap_or(0) != 1 {
                    extra_runs += 1;
                }
                if s.attempts > 1 {
                    // Attempts that never started (assigned, then found lost) are
                    // requeues, not executions; more than one started is not.
                    let detail = leader.get_run(*run).await?;
                    let started = detail
                        .attempts
                        .iter()
                        .filter(|a| a.started_at.is_some() || a.state == AttemptState::Finished)
                        .count();
                    if started > 1 {
                        started_twice += 1;
                        problems.push(format!("{}: {}", ack.key, describe_attempts(&detail)));
                    } else {
                        requeued += 1;
                    }
                }
            }
        }
        if executions.get(&ack.key).copied().unwrap_or(0) != 1 {
            not_once += 1;
        }
    }
    // What a job whose command ran more than once went through.
    for (key, _) in executions.iter().filter(|(_, c)| **c > 1).take(3) {
        let acked = acks.iter().find(|a| a.key == *key).map(|a| (a.job, a.run, a.duplicate));
        for r in runs.values().filter(|r| r.job_name == *key) {
            let detail = leader.get_run(r.id).await?;
            problems.push(format!(
                "{key} ran twice (acked as {acked:?}): {} of {} created at {}: {}",
                r.id,
                r.job,
                detail.run.created_at.0,
                describe_attempts(&detail)
            ));
        }
    }
    let twice = executions.values().filter(|c| **c > 1).count();
    let keys_twice = jobs_per_key.values().filter(|j| j.len() > 1).count();
    for (count, what) in [
        (lost, "acknowledged runs lost"),
        (unsucceeded, "runs not succeeded"),
        (started_twice, "runs started more than once"),
        (extra_runs, "jobs with other than one run"),
        (not_once, "acknowledged jobs whose command did not run exactly once"),
        (twice, "commands that ran more than once"),
        (keys_twice, "idempotency keys with more than one job"),
    ] {
        if count > 0 {
            problems.push(format!("{count} {what}"));
        }
    }
    let distinct_jobs = acks.iter().map(|a| a.job).collect::<std::collections::HashSet<_>>().len();
    if distinct_jobs != acks.len() {
        problems.push(format!("{} acks share a job with another key", acks.len() - distinct_jobs));
    }

    // Restart the killed manager and time its catch-up (a Raft follower's log; a
    // PostgreSQL follower keeps no state to catch up).
    let restarted_at = Instant::now();
    let log = cluster.manager_log(victim);
    cluster.restart_manager(victim).await?;
    let victim_id = old.id;
    let (catch_up, catch_up_entries) = loop {
        if postgres.is_some() {
            break (Duration::ZERO, 0);
        }
        let s = leader.status().await?;
        let lead = s.managers.iter().find(|m| m.role == "leader").map(|m| m.last_applied);
        let back = s.managers.iter().find(|m| m.id == victim_id && m.role == "follower").map(|m| m.last_applied);
        if let (Some(l), Some(b)) = (lead, back)
            && b >= l
        {
            break (restarted_at.elapsed(), l.saturating_sub(old.last_applied));
        }
        if restarted_at.elapsed() > Duration::from_secs(60) {
            bail!("the restarted manager did not catch up within 60s (log {})", log.display());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    let accepts = first_ack.duration_since(killed_at);
    let stall = acks.iter().map(|a| a.acked.duration_since(a.sent)).max().unwrap_or_default();
    let spanning = acks.iter().filter(|a| a.sent < killed_at && a.acked > killed_at).count();
    for f in failed.iter().take(3) {
        problems.push(format!("submit {} failed: {}", f.key, f.error));
    }
    cluster.stop().await;
    if cli.keep || !problems.is_empty() {
        let kept = dir.keep();
        println!("round {n}: data dirs and logs kept in {}", kept.display());
    }
    Ok(Round {
        elected,
        accepts,
        stall,
        catch_up,
        catch_up_entries,
        acked: acks.len(),
        duplicates: acks.iter().filter(|a| a.duplicate).count(),
        failed: failed.len(),
        spanning,
        requeued,
        drain,
        problems,
        old_leader: old.id,
        new_leader: new.id,
        term: (old.term, new.term),
    })
}

fn lock(watch: &Mutex<KillWatch>) -> std::sync::MutexGuard<'_, KillWatch> {
    watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Submits one short shell job every `every` until `stop`, each with its own
/// idempotency key; a submit that is under way when `stop` fires is finished.
async fn submitter(
    client: GrpcClient,
    s: u32,
    every: Duration,
    stop: CancellationToken,
    watch: Arc<Mutex<KillWatch>>,
    marks: PathBuf,
    job: String,
) -> (Vec<Ack>, Vec<Failed>) {
    let mut acks = Vec::new();
    let mut failed = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let key = format!("s{s}-{i}");
        let command = format!("{job} && echo {key} >> '{}'", marks.display());
        let mut spec = JobSpec::new(key.clone(), Task::Shell { command });
        spec.resources = Resources { cpu_millis: 10, memory_bytes: 1 << 20, ..Resources::default() };
        spec.idempotency_key = Some(key.clone());
        let sent = Instant::now();
        let result = client.submit(vec![spec]).await;
        let acked = Instant::now();
        let endpoint = client.endpoint();
        match result.map(|mut r| r.pop()) {
            Ok(Some(Ok(sub))) => {
                {
                    let mut w = lock(&watch);
                    if let Some((killed_at, killed)) = &w.killed
                        && acked > *killed_at
                        && endpoint != *killed
                        && w.first_ack.is_none()
                    {
                        w.first_ack = Some(acked);
                    }
                }
                acks.push(Ack { key, job: sub.job, run: sub.run, duplicate: sub.duplicate, sent, acked });
            }
            Ok(Some(Err(rejected))) => failed.push(Failed { key, error: format!("rejected: {rejected:?}") }),
            Ok(None) => failed.push(Failed { key, error: "no result".into() }),
            Err(e) => failed.push(Failed { key, error: e.to_string() }),
        }
    }
    (acks, failed)
}

/// A run's attempts in one line, server timestamps in ms.
fn describe_attempts(detail: &RunDetail) -> String {
    let tries: Vec<String> = detail
        .attempts
        .iter()
        .map(|a| {
            format!(
                "{} on {} {:?} assigned {} started {:?} finished {:?}",
                a.id,
                a.worker,
                a.state,
                a.assigned_at.0,
                a.started_at.map(|t| t.0),
                a.finished_at.map(|t| t.0)
            )
        })
        .collect();
    tries.join(" | ")
}

/// Every run the leader has, by id.
async fn all_runs(api: &GrpcClient) -> anyhow::Result<BTreeMap<RunId, RunSummary>> {
    let mut runs = BTreeMap::new();
    let mut before = None;
    loop {
        let page = api.list_runs(RunQuery { before, limit: Some(1000), ..RunQuery::default() }).await?;
        for r in page.items {
            runs.insert(r.id, r);
        }
        match page.next {
            Some(next) => before = Some(next),
            None => return Ok(runs),
        }
    }
}

/// How many times each key's command ran (one line per run in the marks file).
fn read_marks(path: &Path) -> anyhow::Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        *counts.entry(line.to_owned()).or_insert(0) += 1;
    }
    Ok(counts)
}
