//! Archon with many workers and a deep queue (issue 17, point 3). Build with
//! `--release` (scripts/bench-scale builds and runs every size), then e.g.
//! `target/release/scale --on cluster --workers 1000 --jobs 1000000`.
//!
//! It starts the shipped `archon-manager` daemons — one (`--on single`, a
//! one-node Raft group on its data dir) or three (`--on cluster`) — secured as an
//! operator runs them (TLS 1.3, client certificates from a throwaway CA, an admin
//! token; `--insecure` for plaintext), and no worker daemons. This process then
//! plays N workers: each is the real worker runtime (`WorkerRuntime`) over the
//! real gRPC worker transport (`GrpcTransport`, a connection of its own, every
//! manager's address for failover), with a certificate issued for its name from
//! the cluster's CA, offering `--slots` CPUs; its only executor runs no-op
//! functions. Heartbeats come at the manager's default interval. Then, in order:
//!
//! 1. **connect**: the time until the manager has all N workers in session;
//! 2. **heartbeats**: with nothing queued, the leader's CPU over `--idle-secs`
//!    divided by the heartbeats it received (N ÷ the heartbeat interval): the
//!    manager's cost of one heartbeat, all session upkeep included;
//! 3. **queue**: with the no-op function held shut (the first N × slots attempts
//!    start and wait), `--jobs` no-op jobs (1 CPU each) are submitted in batches;
//!    the leader's RSS before and after is the memory of that many queued runs;
//! 4. **drain**: the function opens and the workers drain the queue. Placement
//!    throughput is counted here, in this process: attempts started by the
//!    workers' executors per second, sustained between the 10 % and 90 % marks of
//!    the queue (start-up and tail left out). While it drains, high-priority
//!    probe jobs are submitted every `--probe-every-ms` (at most `--probes`):
//!    submit → start latency is the probe's own clock at start minus the
//!    client's clock at submit (same host) — how long an urgent job waits for a
//!    slot on a saturated cluster with a deep queue in front of it;
//! 5. **failover** (`--on cluster`): SIGKILL of the leader at rest — every worker
//!    in session, nothing queued, and the followers having applied what the leader
//!    had (after a deep drain they trail it; how far, and how long they took, is
//!    printed apart); the time until a survivor reports itself the new leader
//!    (watched while the submit is tried, to split the election from what
//!    follows), until a new leader acknowledges a submit, until that job
//!    starts, and until all N workers are in session with
//!    the new leader (its `workers` list).
//!
//! The manager's CPU is `utime + stime` of `/proc/PID/stat`, its RSS `VmRSS`
//! (peak `VmHWM`). Everything this process runs shares the machine with the
//! managers, so its own CPU is printed too. It prints human lines and one `ROW
//! system=scale-… submit=scale …` line (see `archon_benches::row`). Every wait is
//! bounded (`--max-secs` for the drain); the managers die with this process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use archon_benches::cluster::{Cluster, ClusterSpec, leader_of};
use archon_benches::row::{Row, ms, quantile, wall_ms};
use archon_benches::{Daemon, ended_runs, noop_job, process_cpu, submit_batches};
use archon_core::api::Api;
use archon_core::auth::Role;
use archon_core::executor::ExecutorRegistry;
use archon_core::model::{JobSpec, Resources, Task};
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use archon_net::tls::{ClientTls, Dialer, TlsFiles};
use archon_net::{GrpcClient, GrpcTransport};
use clap::{Parser, ValueEnum};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The same allocator as the daemons.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The managers to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum On {
    /// One `archon-manager` (a one-node Raft group).
    Single,
    /// Three `archon-manager`s in a Raft group.
    Cluster,
}

#[derive(Debug, Parser)]
#[command(about = "N simulated workers over real gRPC sessions and a deep queue against archon-manager")]
struct Cli {
    /// One manager or a 3-manager Raft group.
    #[arg(long, value_enum, default_value = "single")]
    on: On,
    /// Simulated workers, each with its own session and connection.
    #[arg(long, default_value_t = 100)]
    workers: usize,
    /// No-op jobs queued and drained.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// CPUs each worker offers; each job takes one, so attempts at once per worker.
    #[arg(long, default_value_t = 4)]
    slots: u64,
    /// Jobs per submit call.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Concurrent submitting clients, each with its own connection.
    #[arg(long, default_value_t = 2)]
    submitters: usize,
    /// Most high-priority probe jobs submitted during the drain.
    #[arg(long, default_value_t = 1_000)]
    probes: usize,
    /// Pause between probe submits.
    #[arg(long, default_value_t = 20)]
    probe_every_ms: u64,
    /// Seconds of idle sessions over which the heartbeat cost is measured.
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
    /// Longest the submits, and then the drain, may each take.
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
    /// Plaintext, no certificates or tokens (default: secured).
    #[arg(long)]
    insecure: bool,
    /// Where archon-manager is (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep the data dirs and logs, and print where they are.
    #[arg(long)]
    keep: bool,
    /// Start the managers with `-v`.
    #[arg(long)]
    verbose: bool,
    /// A flag for every manager, e.g. --manager-flag=--election-timeout=500ms-1s (repeatable).
    #[arg(long = "manager-flag", allow_hyphen_values = true)]
    manager_flags: Vec<String>,
}

/// How long the whole fleet may take to get into session, and to come back after a failover.
const SESSION_WAIT: Duration = Duration::from_secs(120);
/// Pause after the fleet is in session before anything is measured (TLS handshakes, first leases).
const SETTLE: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.workers > 0 && cli.jobs > 0 && cli.slots > 0, "--workers, --jobs and --slots must be positive");
    let bin_dir = match &cli.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()?.parent().context("this binary has no directory")?.to_path_buf(),
    };
    let dir = tempfile::Builder::new().prefix("archon-scale-").tempdir()?;
    let root = if cli.keep { dir.keep() } else { dir.path().to_path_buf() };
    if cli.keep {
        println!("scale: data dirs and logs in {}", root.display());
    }
    let mut spec = ClusterSpec::new(&bin_dir, &root);
    spec.managers = if cli.on == On::Single { 1 } else { 3 };
    spec.workers = 0;
    spec.secure = !cli.insecure;
    spec.verbose = cli.verbose;
    spec.manager_flags = cli.manager_flags.clone();
    let mut cluster = Cluster::start(spec).await?;
    let certs = (!cli.insecure).then(|| root.join("certs"));
    let measured = measure(&cli, &mut cluster, certs.as_deref()).await;
    cluster.stop().await;
    measured.with_context(|| format!("manager logs in {}", root.display()))
}

/// What the simulated workers' executors tell this process.
#[derive(Default)]
struct Seen {
    /// No-op attempts handed to an executor.
    started: AtomicU64,
    /// Probe waits: the probe's clock at start minus the client's at submit, ms.
    probe_waits: Mutex<Vec<f64>>,
    /// The wall clock (ms) at which each failover probe started.
    marks: Mutex<Vec<f64>>,
}

impl Seen {
    fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The simulated workers: their runtimes run until `shutdown`.
struct Fleet {
    seen: Arc<Seen>,
    /// Opens (true) and shuts the no-op function.
    gate: watch::Sender<bool>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// When the last runtime was built and every one started connecting.
    spawned: Instant,
}

impl Fleet {
    /// Starts `cli.workers` worker runtimes against `endpoints`, with the no-op
    /// function shut; over TLS with a certificate each from the CA in `certs`.
    fn start(cli: &Cli, endpoints: &[String], certs: Option<&Path>) -> anyhow::Result<Fleet> {
        let seen = Arc::new(Seen::default());
        let (gate, opened) = watch::channel(false);
        let functions = archon_exec::FunctionExecutor::new()
            .register("noop", {
                let seen = seen.clone();
                move |_: Value| {
                    seen.started.fetch_add(1, Ordering::Relaxed);
                    let mut opened = opened.clone();
                    async move {
                        if !*opened.borrow() {
                            let _ = opened.wait_for(|open| *open).await;
                        }
                        Ok(Value::Null)
                    }
                }
            })
            .register("probe", {
                let seen = seen.clone();
                move |input: Value| {
                    let waited = wall_ms() - input.as_f64().unwrap_or(f64::NAN);
                    lock(&seen.probe_waits).push(waited.max(0.0));
                    async { Ok(Value::Null) }
                }
            })
            .register("mark", {
                let seen = seen.clone();
                move |_: Value| {
                    lock(&seen.marks).push(wall_ms());
                    async { Ok(Value::Null) }
                }
            });
        let executors = Arc::new(ExecutorRegistry::new().with(Arc::new(functions)));
        // As the worker daemon: its reconnect back-off.
        let daemon = archon_cli::daemon::worker::WorkerDaemonConfig::default();
        let capacity = Resources { cpu_millis: cli.slots * 1000, memory_bytes: 1 << 30, ..Resources::default() };
        let mut workers = Vec::with_capacity(cli.workers);
        for i in 1..=cli.workers {
            let name = format!("sim{i}");
            let dialer = match certs {
                Some(dir) => {
                    use archon_cli::certs::{LEAF_DAYS, issue};
                    issue(dir, Role::Worker, &name, &[], LEAF_DAYS, true)?;
                    Dialer::tls(ClientTls::load(TlsFiles::in_dir(dir, &name), Role::Worker)?)
                }
                None => Dialer::plain(),
            };
            let transport = Arc::new(GrpcTransport::with_dialer(endpoints.to_vec(), dialer));
            let mut config = WorkerConfig::new(name.clone(), capacity.clone());
            config.address = "scale".into();
            config.reconnect_base = daemon.reconnect_base;
            config.reconnect_cap = daemon.reconnect_cap;
            workers.push((name, WorkerRuntime::new(config, executors.clone(), transport)));
        }
        // All at once, as after a power cut or a rolling restart of the managers.
        let shutdown = CancellationToken::new();
        let spawned = Instant::now();
        let tasks = workers
            .into_iter()
            .map(|(name, worker)| {
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    if let Err(e) = worker.run(stop).await {
                        eprintln!("scale: worker {name} stopped: {e}");
                    }
                })
            })
            .collect();
        Ok(Fleet { seen, gate, shutdown, tasks, spawned })
    }

    /// Stops every runtime (10 s at most).
    async fn stop(self) {
        self.shutdown.cancel();
        let all = futures::future::join_all(self.tasks);
        let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
    }
}

/// Waits until `api` (a manager) has `n` workers in session with it; returns how
/// long after `began` that was, or fails `limit` after it.
async fn until_in_session(api: &GrpcClient, n: usize, began: Instant, limit: Duration) -> anyhow::Result<Duration> {
    let mut last = 0;
    loop {
        if let Ok(workers) = api.list_workers().await {
            last = workers.iter().filter(|w| w.connected).count();
            if last >= n {
                return Ok(began.elapsed());
            }
        }
        if began.elapsed() > limit {
            bail!("{last} of {n} workers in session after {:.0}s", limit.as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The index in `cluster.managers` of the manager `status` says leads.
async fn leader_index(api: &GrpcClient, cluster: &Cluster) -> anyhow::Result<usize> {
    let status = api.status().await?;
    let leader = leader_of(&status).context("no leader")?;
    usize::try_from(leader.id)
        .ok()
        .and_then(|id| id.checked_sub(1))
        .filter(|i| *i < cluster.managers.len())
        .with_context(|| format!("leader id {} is not one of ours", leader.id))
}

/// CPU used by `daemons` together so far.
fn cpu_of<'a>(daemons: impl IntoIterator<Item = &'a Daemon>) -> anyhow::Result<Duration> {
    daemons.into_iter().map(Daemon::cpu).sum()
}

fn own_cpu() -> anyhow::Result<Duration> {
    process_cpu(std::process::id())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Cores used: CPU time over wall time.
fn cores(cpu: Duration, wall: Duration) -> f64 {
    cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

async fn measure(cli: &Cli, cluster: &mut Cluster, certs: Option<&Path>) -> anyhow::Result<()> {
    let system = match (cli.on, cli.insecure) {
        (On::Single, false) => "scale-single",
        (On::Single, true) => "scale-single-plain",
        (On::Cluster, false) => "scale-cluster",
        (On::Cluster, true) => "scale-cluster-plain",
    };
    let (n, jobs) = (cli.workers, cli.jobs);
    let admin = cluster.client().await?;
    let mut row = Row::new(system, "scale").with("workers", n).with("jobs", jobs).with("slots", cli.slots);

    // 1. Connect.
    let began = Instant::now();
    let fleet = Fleet::start(cli, &cluster.endpoints, certs)?;
    let prepared = fleet.spawned.duration_since(began);
    let leader = leader_index(&admin, cluster).await?;
    let connected = until_in_session(&admin, n, fleet.spawned, SESSION_WAIT).await?;
    println!(
        "{system}: {n} workers in session {:.2}s after their runtimes started, all at once ({:.2}s to issue \
         certificates and build them before); leader m{}",
        connected.as_secs_f64(),
        prepared.as_secs_f64(),
        leader + 1
    );
    row = row.num("connect_s", connected.as_secs_f64(), 2);

    // 2. Idle heartbeats.
    tokio::time::sleep(SETTLE).await;
    let interval = archon_core::manager::ManagerConfig::default().heartbeat_interval;
    let followers = || cluster.managers.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, d)| d);
    let (l0, f0, o0, t0) = (cluster.managers[leader].cpu()?, cpu_of(followers())?, own_cpu()?, Instant::now());
    tokio::time::sleep(Duration::from_secs(cli.idle_secs)).await;
    let wall = t0.elapsed();
    let idle_leader = cores(cluster.managers[leader].cpu()? - l0, wall);
    let idle_followers = cores(cpu_of(followers())? - f0, wall);
    let idle_own = cores(own_cpu()? - o0, wall);
    let beats = n as f64 / interval.as_secs_f64();
    let per_beat_us = idle_leader * 1e6 / beats;
    let rss_idle = cluster.managers[leader].rss()?;
    println!(
        "{system}: idle, {n} workers heartbeating every {interval:?} ({beats:.0}/s): leader {:.1}% of a core = \
         {per_beat_us:.0} µs per heartbeat; followers {:.1}%; this process (the workers) {:.1}%; leader RSS {:.0} MiB",
        idle_leader * 100.0,
        idle_followers * 100.0,
        idle_own * 100.0,
        mib(rss_idle)
    );
    row = row
        .num("hb_per_s", beats, 0)
        .num("hb_leader_cores", idle_leader, 4)
        .num("hb_us", per_beat_us, 1)
        .num("hb_followers_cores", idle_followers, 4)
        .num("hb_workers_cores", idle_own, 3)
        .num("rss_idle_mib", mib(rss_idle), 0);

    // 3. Queue: the first N × slots attempts start and wait; the rest queue up.
    let mut spec = noop_job();
    spec.resources.cpu_millis = 1000;
    let mut clients: Vec<Arc<dyn Api>> = Vec::new();
    for _ in 0..cli.submitters.max(1) {
        clients.push(Arc::new(cluster.client().await?));
    }
    let (l0, t0) = (cluster.managers[leader].cpu()?, Instant::now());
    let submitted = submit_batches(clients, jobs, cli.batch, spec, Duration::from_secs(cli.max_secs)).await?;
    let submit_took = t0.elapsed();
    let submit_cores = cores(cluster.managers[leader].cpu()? - l0, submit_took);
    // Let the held attempts reach the workers so the queue holds what it will hold.
    let held = (n as u64 * cli.slots).min(submitted as u64);
    let wait_held = Instant::now();
    while fleet.seen.started() < held && wait_held.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_queued = cluster.managers[leader].rss()?;
    let queued = admin.status().await?.queued;
    // Every submitted run is live now: held, on its way to a worker, or queued.
    let per_run = (rss_queued as f64 - rss_idle as f64) / (submitted.max(1) as f64);
    println!(
        "{system}: {submitted} jobs submitted in {:.2}s = {:.0}/s (batches of {}, {} clients; leader {:.0}% of a \
         core); {} attempts held, {queued} runs queued; leader RSS {:.0} MiB (+{per_run:.0} bytes per live run)",
        submit_took.as_secs_f64(),
        submitted as f64 / submit_took.as_secs_f64(),
        cli.batch,
        cli.submitters,
        submit_cores * 100.0,
        fleet.seen.started(),
        mib(rss_queued)
    );
    row = row
        .with("submitted", submitted)
        .num("submit_rate", submitted as f64 / submit_took.as_secs_f64(), 0)
        .with("queued", queued)
        .num("rss_queued_mib", mib(rss_queued), 0)
        .num("bytes_per_live_run", per_run, 0);

    // 4. Drain, with probes.
    let drain = drain(cli, cluster, leader, &fleet, &admin, submitted).await?;
    let sustained = drain.rate_between(0.1, 0.9, submitted as f64).unwrap_or(0.0);
    let mut waits = lock(&fleet.seen.probe_waits).clone();
    let (p50, p99) = (quantile(&mut waits, 0.5), quantile(&mut waits, 0.99));
    let rss_drained = cluster.managers[leader].rss()?;
    let rss_peak = cluster.managers[leader].peak_rss()?;
    let deciles: Vec<String> = (0..10)
        .map(|d| {
            let rate = drain.rate_between(d as f64 / 10.0, (d + 1) as f64 / 10.0, submitted as f64);
            rate.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"))
        })
        .collect();
    let per_1k = drain.leader_cores * 1e3 * drain.took.as_secs_f64() / (drain.started as f64 / 1e3).max(1e-9);
    println!(
        "{system}: drained {} of {submitted} in {:.2}s{}: sustained {sustained:.0} placements/s (attempts started, \
         10%→90% of the queue); per tenth of the queue: {}; leader {:.0}% of a core ({per_1k:.1} ms CPU per 1,000 \
         placements), followers {:.0}%, this process {:.0}%",
        drain.started,
        drain.took.as_secs_f64(),
        if drain.finished { "" } else { " (DID NOT FINISH: stopped at --max-secs)" },
        deciles.join(" "),
        drain.leader_cores * 100.0,
        drain.follower_cores * 100.0,
        drain.own_cores * 100.0,
    );
    println!(
        "{system}: {} high-priority probes during the drain: submit→start (the probe's clock) p50 {p50:.1} ms p99 \
         {p99:.1} ms; leader RSS after the drain {:.0} MiB, peak {:.0} MiB",
        waits.len(),
        mib(rss_drained),
        mib(rss_peak)
    );
    row = row
        .with("drained", drain.finished)
        .num("drain_s", drain.took.as_secs_f64(), 2)
        .num("placements", sustained, 0)
        .with("deciles", deciles.join(","))
        .num("drain_leader_cores", drain.leader_cores, 3)
        .num("cpu_ms_per_1k", per_1k, 1)
        .num("drain_followers_cores", drain.follower_cores, 3)
        .num("drain_workers_cores", drain.own_cores, 3)
        .with("probes", waits.len())
        .num("p50_ms", p50, 1)
        .num("p99_ms", p99, 1)
        .num("rss_drained_mib", mib(rss_drained), 0)
        .num("rss_peak_mib", mib(rss_peak), 0);

    // 5. Failover.
    if cli.on == On::Cluster {
        let f = failover(cluster, leader, &fleet, n).await?;
        println!(
            "{system}: SIGKILL of leader m{} with {n} workers in session: a new leader (m{}) reported itself \
             elected after {:.0} ms and acknowledged a submit after {:.0} ms, the job started after {:.0} ms, all \
             {n} workers in session with it after {:.0} ms (in session over time: {})",
            leader + 1,
            f.new_leader + 1,
            ms(f.elected),
            ms(f.accepts),
            f.job_started_ms,
            ms(f.all_back),
            f.progress
        );
        println!(
            "{system}: before the kill, the followers trailed the leader by up to {} entries and took {:.0} ms to apply them",
            f.lag_entries,
            ms(f.catch_up)
        );
        row = row.with("follower_lag_entries", f.lag_entries).num("follower_catchup_ms", ms(f.catch_up), 0);
        row = row
            .num("failover_elected_ms", ms(f.elected), 0)
            .num("failover_accept_ms", ms(f.accepts), 0)
            .num("failover_start_ms", f.job_started_ms, 0)
            .num("failover_workers_ms", ms(f.all_back), 0);
    }
    fleet.stop().await;
    row.print();
    Ok(())
}

/// What the drain saw.
struct Drained {
    /// (seconds since the function opened, no-op attempts started by then).
    samples: Vec<(f64, u64)>,
    /// No-op attempts started in all.
    started: u64,
    /// Open → every run ended (or the limit).
    took: Duration,
    /// Every run ended within `--max-secs`.
    finished: bool,
    leader_cores: f64,
    follower_cores: f64,
    own_cores: f64,
}

impl Drained {
    /// When `count` attempts had started, interpolated between samples.
    fn when(&self, count: f64) -> Option<f64> {
        let after = self.samples.iter().position(|(_, c)| *c as f64 >= count)?;
        let (t1, c1) = self.samples[after];
        let Some(&(t0, c0)) = after.checked_sub(1).and_then(|i| self.samples.get(i)) else { return Some(t1) };
        let share = (count - c0 as f64) / ((c1 - c0) as f64).max(1.0);
        Some(t0 + share * (t1 - t0))
    }

    /// Attempts started per second between the `from` and `to` shares of `total`
    /// (up to the last sample if `to` was never reached); `None` for a stretch
    /// that had started before the function opened (the held attempts).
    fn rate_between(&self, from: f64, to: f64, total: f64) -> Option<f64> {
        let held = self.samples.first().map_or(0, |s| s.1) as f64;
        let from = (from * total).max(held) / total;
        if from >= to {
            return None;
        }
        let (Some(t0), Some(&(last_t, last_c))) = (self.when(from * total), self.samples.last()) else { return None };
        let (t1, c1) = match self.when(to * total) {
            Some(t) => (t, to * total),
            None => (last_t, last_c as f64),
        };
        Some((c1 - from * total) / (t1 - t0).max(1e-3))
    }
}

/// Opens the no-op function and samples the starts until every run ended,
/// submitting probes while most of the queue is still there.
async fn drain(
    cli: &Cli,
    cluster: &Cluster,
    leader: usize,
    fleet: &Fleet,
    admin: &GrpcClient,
    submitted: usize,
) -> anyhow::Result<Drained> {
    let followers = || cluster.managers.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, d)| d);
    let (l0, f0, o0) = (cluster.managers[leader].cpu()?, cpu_of(followers())?, own_cpu()?);
    let before = ended_runs(admin).await?;
    let opened = Instant::now();
    fleet.gate.send_replace(true);
    let stop_probes = CancellationToken::new();
    let prober = tokio::spawn(probe(
        Arc::new(cluster.client().await?),
        cli.probes,
        Duration::from_millis(cli.probe_every_ms),
        stop_probes.clone(),
    ));
    let limit = Duration::from_secs(cli.max_secs);
    let mut samples = vec![(0.0, fleet.seen.started())];
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while fleet.seen.started() < submitted as u64 && opened.elapsed() < limit {
        tick.tick().await;
        let started = fleet.seen.started();
        samples.push((opened.elapsed().as_secs_f64(), started));
        if started as f64 >= 0.9 * submitted as f64 {
            stop_probes.cancel();
        }
    }
    stop_probes.cancel();
    let probes = prober.await??;
    // Every run ended: the no-op jobs and the probes.
    let target = before + submitted as u64 + probes as u64;
    let mut finished = false;
    while opened.elapsed() < limit {
        if ended_runs(admin).await? >= target {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = opened.elapsed();
    Ok(Drained {
        started: fleet.seen.started(),
        samples,
        took,
        finished,
        leader_cores: cores(cluster.managers[leader].cpu()? - l0, took),
        follower_cores: cores(cpu_of(followers())? - f0, took),
        own_cores: cores(own_cpu()? - o0, took),
    })
}

/// Submits up to `count` high-priority probe jobs, one every `every` (each in a
/// task of its own, so a slow acknowledgement does not delay the next), until
/// `stop`; returns how many were accepted.
async fn probe(api: Arc<dyn Api>, count: usize, every: Duration, stop: CancellationToken) -> anyhow::Result<usize> {
    let mut submits = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while submits.len() < count {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let mut spec =
            JobSpec::new("probe", Task::Function { name: "probe".into(), input: format!("{:.3}", wall_ms()) });
        spec.resources = Resources { cpu_millis: 1000, memory_bytes: 0, ..Resources::default() };
        spec.priority = 100;
        let api = api.clone();
        submits.spawn(async move {
            let results = api.submit(vec![spec]).await?;
            if let Some(Err(e)) = results.into_iter().next() {
                bail!("probe rejected: {e}");
            }
            anyhow::Ok(())
        });
    }
    let mut sent = 0;
    while let Some(done) = submits.join_next().await {
        done??;
        sent += 1;
    }
    Ok(sent)
}

/// What a failover took.
struct Failover {
    new_leader: usize,
    /// Kill → a survivor reports itself leader of a newer term (polled every
    /// 10 ms, so up to a poll late).
    elected: Duration,
    /// Kill → a submit acknowledged.
    accepts: Duration,
    /// Kill → that job started on a worker, ms (by the job's clock).
    job_started_ms: f64,
    /// Kill → every worker in session with the new leader.
    all_back: Duration,
    /// Workers in session with the new leader at its first poll past 1, 2, 3, 5
    /// and 10 s after the kill (`SECONDS:COUNT`, the poll's own time).
    progress: String,
    /// How far the furthest follower's applied index trailed the leader's when
    /// the fleet was back at rest, in entries.
    lag_entries: u64,
    /// How long it then took every follower to apply the leader's index (the
    /// kill comes after).
    catch_up: Duration,
}

/// SIGKILLs the leader and times the way back (each wait at most [`SESSION_WAIT`]).
async fn failover(cluster: &mut Cluster, leader: usize, fleet: &Fleet, n: usize) -> anyhow::Result<Failover> {
    // Every worker with the leader and nothing left running.
    let old = cluster.client_to(&cluster.endpoints[leader]).await?;
    until_in_session(&old, n, Instant::now(), SESSION_WAIT).await?;
    let status = old.status().await?;
    let old_term = leader_of(&status).map_or(0, |m| m.term);
    // At rest: the followers have applied what the leader had. After a deep
    // drain on shared cores they trail it; that wait is reported apart.
    let target = leader_of(&status).map_or(0, |m| m.last_applied);
    let lag_entries = status.managers.iter().map(|m| target.saturating_sub(m.last_applied)).max().unwrap_or(0);
    let catching_up = Instant::now();
    loop {
        let status = old.status().await?;
        if status.managers.len() == cluster.endpoints.len() && status.managers.iter().all(|m| m.last_applied >= target)
        {
            break;
        }
        if catching_up.elapsed() > SESSION_WAIT {
            bail!("the followers did not apply the leader's index {target} within {SESSION_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let catch_up = catching_up.elapsed();
    drop(old);
    let client = cluster.client().await?;
    let mut survivors = Vec::new();
    for (i, e) in cluster.endpoints.iter().enumerate() {
        if i != leader {
            survivors.push((i, cluster.client_to(e).await?.find_leader_for(Duration::ZERO)));
        }
    }
    let (killed_wall, killed) = (wall_ms(), Instant::now());
    cluster.managers[leader].kill().await?;
    println!("failover: SIGKILL of m{} at {killed_wall} ms since the epoch", leader + 1);

    // A submit acknowledged (with an idempotency key, so the client may try
    // every manager) while the survivors are watched for the new leader, so the
    // time splits into the election and what follows it.
    let acknowledged = async {
        let mut tries = Vec::new();
        let accepts = loop {
            let mut spec = JobSpec::new("failover", Task::Function { name: "mark".into(), input: "null".into() });
            spec.resources = Resources { cpu_millis: 1000, memory_bytes: 0, ..Resources::default() };
            spec.idempotency_key = Some("scale-failover".into());
            let sent = killed.elapsed().as_secs_f64();
            let outcome = match tokio::time::timeout(Duration::from_secs(5), client.submit(vec![spec])).await {
                Ok(Ok(results)) if results.iter().all(Result::is_ok) => break killed.elapsed(),
                Ok(Ok(results)) => format!("{:?}", results.into_iter().find_map(Result::err)),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 5 s".to_owned(),
            };
            tries.push(format!("{sent:.2}s→{:.2}s: {outcome}", killed.elapsed().as_secs_f64()));
            if killed.elapsed() > SESSION_WAIT {
                bail!("no submit acknowledged within {SESSION_WAIT:?} of the kill");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok((accepts, tries))
    };
    // The first survivor to report itself leader of a newer term.
    let elected = async {
        loop {
            let polls =
                futures::future::join_all(survivors.iter().map(|(i, c)| async move { (*i, c.status().await) })).await;
            let found = polls.into_iter().find_map(|(i, s)| {
                let s = s.ok()?;
                let m = leader_of(&s)?;
                (m.term > old_term && m.id == i as u64 + 1).then_some(i)
            });
            if let Some(i) = found {
                return Ok((i, killed.elapsed()));
            }
            if killed.elapsed() > SESSION_WAIT {
                bail!("no new leader within {SESSION_WAIT:?} of the kill");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let ((accepts, tries), (new_leader, elected)) = tokio::try_join!(acknowledged, elected)?;

    let api = survivors.iter().find(|(i, _)| *i == new_leader).map(|(_, c)| c).context("the new leader")?;
    let marks = [1.0, 2.0, 3.0, 5.0, 10.0];
    let mut progress = Vec::new();
    let mut reported = 0;
    let all_back = loop {
        let back = api.list_workers().await.map(|w| w.iter().filter(|w| w.connected).count()).unwrap_or(0);
        let secs = killed.elapsed().as_secs_f64();
        let passed = marks.iter().filter(|m| secs >= **m).count();
        if passed > reported {
            reported = passed;
            progress.push(format!("{secs:.1}s:{back}"));
        }
        if back >= n {
            break killed.elapsed();
        }
        if killed.elapsed() > SESSION_WAIT {
            bail!("{back} of {n} workers back in session {SESSION_WAIT:?} after the kill");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let started = loop {
        if let Some(at) = lock(&fleet.seen.marks).first() {
            break at - killed_wall;
        }
        if killed.elapsed() > SESSION_WAIT {
            bail!("the job submitted after the kill did not start within {SESSION_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if !tries.is_empty() {
        println!("failover: submits refused before the one acknowledged: {}", tries.join("; "));
    }
    Ok(Failover {
        new_leader,
        elected,
        accepts,
        job_started_ms: started,
        all_back,
        progress: progress.join(" "),
        lag_entries,
        catch_up,
    })
}
