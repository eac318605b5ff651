//! The harness: builds a turmoil simulation from a seed — managers, workers and
//! a client on turmoil hosts — steps it, injects the planned faults at their
//! virtual times, and hands back the trace with the invariants' verdict.
//!
//! The one thing to know: the fault plan is drawn from the seed before the run
//! starts; *which* manager a fault hits is decided when it fires (the leader of
//! that moment), which is as deterministic as the run itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use archon_core::store::Store;

use crate::checks;
use crate::client::{self, Workload};
use crate::manager::{self, ManagerNode};
use crate::seed::{SeedRng, replay_command};
use crate::trace::{Event, Trace};
use crate::worker::WorkerNode;

/// The simulation's fixed epoch: 2024-01-01T00:00:00Z.
const EPOCH_SECS: u64 = 1_704_067_200;

/// The host name of the client.
const CLIENT: &str = "client";

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
    /// Three managers, two workers, twenty jobs, no faults.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            managers: 3,
            workers: 2,
            jobs: 20,
            faults: Faults::default(),
            limit: Duration::from_secs(600),
        }
    }
}

/// The faults to inject, each at a time drawn from the seed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Crash the leader (not gracefully: its unsynced writes are lost) and
    /// restart it a few seconds later.
    pub crash_leader: bool,
    /// Cut the leader off from every other host for a few seconds, then heal.
    /// What crosses the cut is held and delivered on healing, as TCP's
    /// retransmissions would deliver it...
    pub isolate_leader: bool,
    /// ... unless this is set: then it is dropped (turmoil's `partition`).
    /// turmoil's TCP does not retransmit, so every connection that lost a
    /// segment stays stalled after the heal, as if black-holed.
    pub lossy_isolation: bool,
}

/// A fault action, at its virtual time.
#[derive(Debug, Clone)]
enum Action {
    CrashLeader { restart_after: Duration },
    Restart(u64),
    IsolateLeader { heal_after: Duration },
    Heal(u64),
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
    let mut rng = SeedRng::new(config.seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(config.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .simulation_duration(config.limit)
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
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
    let workload = Workload { jobs, managers: addresses };
    sim.client(CLIENT, client::run(workload, nodes.clone(), trace.clone()));

    let mut plan = plan(&mut rng, config.faults);
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
            if let Some(follow_up) = apply(&mut sim, action, &nodes, &hosts, &trace, config.faults.lossy_isolation) {
                let at = now + follow_up.0;
                let slot = plan.partition_point(|(t, _)| *t <= at);
                plan.insert(slot, (at, follow_up.1));
            }
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(fail(&sim, e.to_string())),
        }
    }
    let violations = checks::violations(&trace.entries());
    Ok(SimReport { seed: config.seed, hash: trace.hash(), trace, violations, elapsed: sim.elapsed() })
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

/// Distinct election timeouts in 200–400 ms, one per manager.
fn election_timeouts(rng: &mut SeedRng, count: usize) -> Vec<Duration> {
    let mut millis: Vec<u64> = Vec::with_capacity(count);
    while millis.len() < count {
        let candidate = rng.in_range(200..400);
        // Apart by more than a round trip, so two never stand at once for long.
        if millis.iter().all(|m| m.abs_diff(candidate) > 20) {
            millis.push(candidate);
        }
    }
    millis.into_iter().map(Duration::from_millis).collect()
}

/// The faults' first actions, by virtual time.
fn plan(rng: &mut SeedRng, faults: Faults) -> Vec<(Duration, Action)> {
    let mut plan = Vec::new();
    let mut at = Duration::from_millis(rng.in_range(2_000..5_000));
    if faults.crash_leader {
        let restart_after = Duration::from_millis(rng.in_range(1_000..5_000));
        plan.push((at, Action::CrashLeader { restart_after }));
        at += restart_after + Duration::from_millis(rng.in_range(2_000..5_000));
    }
    if faults.isolate_leader {
        let heal_after = Duration::from_millis(rng.in_range(1_000..5_000));
        plan.push((at, Action::IsolateLeader { heal_after }));
    }
    plan
}

/// The manager that leads now, if one does.
fn leader(nodes: &[Arc<ManagerNode>]) -> Option<&Arc<ManagerNode>> {
    nodes.iter().find(|n| n.store().is_some_and(|s| s.leadership().borrow().is_leader))
}

/// Applies `action`; returns the action that undoes it and after how long.
fn apply(
    sim: &mut turmoil::Sim<'_>,
    action: Action,
    nodes: &[Arc<ManagerNode>],
    hosts: &[String],
    trace: &Trace,
    lossy: bool,
) -> Option<(Duration, Action)> {
    let retry = Duration::from_millis(100);
    let fault = |what: String| trace.record_at(sim.elapsed().as_millis(), Event::Fault { what });
    match action {
        Action::CrashLeader { restart_after } => {
            let Some(node) = leader(nodes) else { return Some((retry, Action::CrashLeader { restart_after })) };
            fault(format!("crash {}", node.name));
            node.crash();
            sim.crash(node.name.as_str());
            Some((restart_after, Action::Restart(node.id)))
        }
        Action::Restart(id) => {
            let node = nodes.iter().find(|n| n.id == id)?;
            fault(format!("restart {}", node.name));
            sim.bounce(node.name.as_str());
            None
        }
        Action::IsolateLeader { heal_after } => {
            let Some(node) = leader(nodes) else { return Some((retry, Action::IsolateLeader { heal_after })) };
            fault(format!("isolate {}{}", node.name, if lossy { " (lossy)" } else { "" }));
            for other in hosts.iter().filter(|h| **h != node.name) {
                if lossy {
                    sim.partition(node.name.as_str(), other.as_str());
                } else {
                    sim.hold(node.name.as_str(), other.as_str());
                }
            }
            Some((heal_after, Action::Heal(node.id)))
        }
        Action::Heal(id) => {
            let node = nodes.iter().find(|n| n.id == id)?;
            fault(format!("heal {}", node.name));
            for other in hosts.iter().filter(|h| **h != node.name) {
                if lossy {
                    sim.repair(node.name.as_str(), other.as_str());
                } else {
                    sim.release(node.name.as_str(), other.as_str());
                }
            }
            None
        }
    }
}
