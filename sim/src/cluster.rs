//! The harness: builds a turmoil simulation from a seed — managers, workers and
//! a client on turmoil hosts — steps it, injects the planned faults at their
//! virtual times, and hands back the trace with the invariants' verdict.
//!
//! The one thing to know: the fault plan is drawn from the seed before the run
//! starts; *which* manager a fault hits is decided when it fires (the leader of
//! that moment), which is as deterministic as the run itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use crate::checks;
use crate::client::{self, Workload};
use crate::faults::{self, Cluster, Faults};
use crate::manager::{self, ManagerNode};
use crate::net;
use crate::seed::{SeedRng, replay_command};
use crate::trace::Trace;
use crate::worker::WorkerNode;

/// The simulation's fixed epoch: 2024-01-01T00:00:00Z.
const EPOCH_SECS: u64 = 1_704_067_200;

/// The host name of the client.
pub(crate) const CLIENT: &str = "client";

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed every choice comes from.
    pub seed: u64,
    /// How many managers (a Raft group).
    pub managers: u64,
    /// How many workers.
    pub workers: u64,
    /// How many jobs the client submits.
    pub jobs: u64,
    /// Which faults to inject.
    pub faults: Faults,
    /// Virtual time after which the run fails as stuck.
    pub limit: Duration,
}

impl SimConfig {
    /// Three managers, five workers, twenty jobs, no faults.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            managers: 3,
            workers: 5,
            jobs: 20,
            faults: Faults::default(),
            limit: Duration::from_secs(600),
        }
    }
}

/// What a finished simulation gives back.
#[derive(Debug)]
pub struct SimReport {
    /// Its seed.
    pub seed: u64,
    /// Everything that happened.
    pub trace: Trace,
    /// The hash of the trace.
    pub hash: String,
    /// Broken invariants, one sentence each.
    pub violations: Vec<String>,
    /// Virtual time the run took.
    pub elapsed: Duration,
    /// Snapshots the managers built and installed (from the leader), in all.
    pub snapshots: (u64, u64),
}

impl SimReport {
    /// Panics, naming the seed and how to replay it, if an invariant broke.
    pub fn assert_holds(&self, test: &str) {
        if !self.violations.is_empty() {
            panic!(
                "seed {}: {} violation(s):\n  {}\nreplay: {}",
                self.seed,
                self.violations.len(),
                self.violations.join("\n  "),
                replay_command(self.seed, test)
            );
        }
    }
}

/// Why a simulation could not finish.
#[derive(Debug, thiserror::Error)]
#[error("seed {seed}: the simulation failed after {elapsed:?} of virtual time: {message}")]
pub struct SimError {
    /// Its seed.
    pub seed: u64,
    /// Virtual time when it failed.
    pub elapsed: Duration,
    /// What turmoil or a host reported.
    pub message: String,
    /// Everything that happened until then.
    pub trace: Trace,
}

/// One simulation at a time per process: tokio numbers tasks from one
/// process-wide counter (see [`align_task_ids`]).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs the simulation `config` describes to its end. Simulations in one
/// process run one after the other.
pub fn run(config: &SimConfig) -> Result<SimReport, SimError> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let trace = Trace::new();
    align_task_ids().map_err(|e| SimError {
        seed: config.seed,
        elapsed: Duration::ZERO,
        message: format!("cannot align tokio's task ids: {e}"),
        trace: trace.clone(),
    })?;
    net::forget_connections();
    let mut rng = SeedRng::new(config.seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .simulation_duration(config.limit)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(faults::MAX_LATENCY)
        .build();

    let ids: Vec<u64> = (1..=config.managers).collect();
    let members: BTreeMap<u64, String> = ids.iter().map(|&id| (id, manager::address(id))).collect();
    let addresses: Vec<String> = members.values().cloned().collect();
    let timeouts = election_timeouts(&mut rng, ids.len());
    let nodes: Vec<Arc<ManagerNode>> = ids
        .iter()
        .zip(timeouts)
        .map(|(&id, timeout)| Arc::new(ManagerNode::new(id, members.clone(), timeout, trace.clone())))
        .collect();
    for node in &nodes {
        let (name, node) = (node.name.clone(), Arc::clone(node));
        sim.host(name.as_str(), move || Arc::clone(&node).run());
    }
    let mut hosts: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    for i in 1..=config.workers {
        let worker = Arc::new(WorkerNode::new(format!("worker-{i}"), addresses.clone(), rng.next_u64(), trace.clone()));
        let name = worker.name.clone();
        sim.host(name.as_str(), move || Arc::clone(&worker).run());
        hosts.push(name);
    }
    hosts.push(CLIENT.into());
    let jobs =
        (0..config.jobs).map(|i| (format!("job-{i}"), rng.in_range(500..5_000), rng.in_range(0..1_000))).collect();
    let faults_over = Arc::new(AtomicBool::new(false));
    let workload = Workload { jobs, managers: addresses, faults_over: Arc::clone(&faults_over) };
    sim.client(CLIENT, client::run(workload, nodes.clone(), trace.clone()));

    let mut plan = faults::plan(&mut rng, config.faults, config.managers, config.workers);
    let mut cluster = Cluster { nodes: &nodes, hosts: &hosts, trace: &trace, down: Default::default() };
    let fail = |sim: &turmoil::Sim<'_>, message: String| SimError {
        seed: config.seed,
        elapsed: sim.elapsed(),
        message,
        trace: trace.clone(),
    };
    loop {
        let now = sim.elapsed();
        while plan.first().is_some_and(|(at, _)| *at <= now) {
            let (_, action) = plan.remove(0);
            if let Some(follow_up) = faults::apply(&mut sim, action, &mut cluster) {
                let at = now + follow_up.0;
                let slot = plan.partition_point(|(t, _)| *t <= at);
                plan.insert(slot, (at, follow_up.1));
            }
        }
        if plan.is_empty() {
            faults_over.store(true, Ordering::Relaxed);
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(fail(&sim, e.to_string())),
        }
        // The safety invariants, on the trace so far, once a virtual second:
        // a run stops at the second it broke one, not ten minutes later.
        if sim.elapsed().as_millis() / 1_000 != now.as_millis() / 1_000 {
            let violations = checks::safety_violations(&trace.entries());
            if !violations.is_empty() {
                return Ok(report(config.seed, trace, violations, sim.elapsed(), &nodes));
            }
        }
    }
    let entries = trace.entries();
    let mut violations = checks::violations(&entries);
    violations.extend(checks::own_logs_replayed(&nodes, &entries));
    Ok(report(config.seed, trace, violations, sim.elapsed(), &nodes))
}

/// The report of a run that ended after `elapsed`, with the snapshots all
/// managers built and installed.
fn report(
    seed: u64,
    trace: Trace,
    violations: Vec<String>,
    elapsed: Duration,
    nodes: &[Arc<ManagerNode>],
) -> SimReport {
    let snapshots = nodes.iter().map(|n| n.snapshots()).fold((0, 0), |(b, i), (nb, ni)| (b + nb, i + ni));
    SimReport { seed, hash: trace.hash(), trace, violations, elapsed, snapshots }
}

/// Moves tokio's process-wide task counter to a multiple of 64. A
/// current-thread runtime keeps its tasks in lists chosen by task id (id mod 4),
/// and dropping a crashed host's runtime drops them list by list; so without
/// this the order a crash closes things in — sockets, sessions — depends on how
/// many tasks the process spawned before the simulation, and a second run of
/// one seed in the same process diverges at the first crash.
fn align_task_ids() -> std::io::Result<()> {
    const ALIGN: u64 = 64;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async {
        for _ in 0..=ALIGN {
            let id: u64 = tokio::spawn(async {}).id().to_string().parse().map_err(std::io::Error::other)?;
            if id % ALIGN == ALIGN - 1 {
                return Ok(());
            }
        }
        Err(std::io::Error::other("tokio's task ids are not consecutive"))
    })
}

/// openraft looks for an election on a tick every 1.5 heartbeat intervals
/// (50 ms in [`archon_raft::RaftConfig`]).
const ELECTION_TICK_MS: u64 = 75;

/// One election timeout per manager, each in a tick window of its own:
/// (150, 225], (225, 300], … ms.
///
/// openraft draws a node's election timeout once, when the node starts, and
/// campaigns on its first tick past it. Every simulated host starts at the same
/// instant, so two managers whose timeouts round up to the same tick campaign
/// at the same instant round after round and split every vote (seed 38 did,
/// for ten minutes of virtual time); a real cluster's jitter breaks such a tie,
/// the simulation has none. Timeouts in distinct windows campaign on distinct
/// periods, so a tie — even between a restarted manager and the others — cannot
/// repeat forever.
fn election_timeouts(rng: &mut SeedRng, count: usize) -> Vec<Duration> {
    let mut windows: Vec<u64> = (2..2 + count as u64 + 1).collect();
    let mut timeouts = Vec::with_capacity(count);
    while timeouts.len() < count {
        let window = windows.remove(rng.in_range(0..windows.len() as u64) as usize);
        timeouts.push(Duration::from_millis(window * ELECTION_TICK_MS + rng.in_range(1..ELECTION_TICK_MS + 1)));
    }
    timeouts
}
