//! The faults a simulation injects: which ones a run asks for ([`Faults`]),
//! the plan drawn from the seed before the run starts, and how each action is
//! applied to turmoil's hosts and network at its virtual time.
//!
//! The one thing to know: the plan is fixed by the seed, but a fault aimed at
//! "the leader" picks the manager that leads when it fires, and a crash that
//! would take a second manager down waits until the first is back — both as
//! deterministic as the run itself. Message loss is what TCP makes of it: held
//! (delayed) while it lasts, then, for a lossy cut, every connection across it
//! reset when it heals (see [`crate::net`]); a one-way cut drops what crosses
//! it in its direction and, healing, resets every connection across it too.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use archon_core::store::Store;

use crate::manager::ManagerNode;
use crate::net;
use crate::seed::SeedRng;
use crate::trace::{Event, Trace};

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
    /// ... unless this is set: then the cut outlasts TCP's patience and every
    /// connection across it is reset when it heals.
    pub lossy_isolation: bool,
    /// Crash a manager that does not lead early on, and restart it only once
    /// the leader has compacted its log past the last entry the crashed one
    /// holds (or after a minute): it can catch up only from a snapshot.
    pub lag_follower: bool,
    /// This many more faults, one after another and sometimes overlapping,
    /// each drawn from the seed: a crash of the leader, of any manager (never
    /// two down at once) or of a worker, then its restart; a cut around the
    /// leader or any one host, or between two sides of the cluster, lossy or
    /// not; a one-way cut (one host hears the rest but is not heard, or the
    /// reverse); a slow link; the connections between two hosts reset; a
    /// manager's clock stepped.
    pub storm: u32,
}

/// A fault action, at its virtual time.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    CrashLeader {
        restart_after: Duration,
    },
    CrashManager {
        id: u64,
        restart_after: Duration,
    },
    CrashWorker {
        host: String,
        restart_after: Duration,
    },
    RestartManager(u64),
    /// Crash a manager that does not lead, to restart it once the leader's log
    /// no longer holds what it lacks.
    LagFollower,
    /// Restart manager `id` once the leader purged its log past `last`, or
    /// once `give_up` virtual time has passed.
    RestartWhenPurged {
        id: u64,
        last: u64,
        give_up: Duration,
    },
    RestartWorker(String),
    IsolateLeader {
        heal_after: Duration,
        lossy: bool,
    },
    /// Cut `side` off from every other host.
    Split {
        side: Vec<String>,
        heal_after: Duration,
        lossy: bool,
    },
    Heal {
        pairs: Vec<(String, String)>,
        lossy: bool,
    },
    /// Drop everything `host` sends to the rest (`outgoing`), or everything
    /// the rest sends to it.
    OneWay {
        host: String,
        outgoing: bool,
        heal_after: Duration,
    },
    /// Undo a one-way cut: each `(from, to)` repaired, every connection
    /// between them reset.
    HealOneWay {
        host: String,
        pairs: Vec<(String, String)>,
    },
    SlowLink {
        a: String,
        b: String,
        latency: Duration,
        heal_after: Duration,
    },
    FastLink {
        a: String,
        b: String,
    },
    Reset {
        a: String,
        b: String,
    },
    StepClock {
        id: u64,
        millis: i64,
    },
}

/// What the simulation is made of, for the faults to aim at.
pub(crate) struct Cluster<'a> {
    pub nodes: &'a [Arc<ManagerNode>],
    /// Every host: managers, workers and the client.
    pub hosts: &'a [String],
    pub trace: &'a Trace,
    /// Managers crashed and not yet restarted.
    pub down: BTreeSet<u64>,
}

/// The usual latency bound of a link.
pub(crate) const MAX_LATENCY: Duration = Duration::from_millis(10);

/// The faults' first actions, by virtual time.
pub(crate) fn plan(rng: &mut SeedRng, faults: Faults, managers: u64, workers: u64) -> Vec<(Duration, Action)> {
    let mut plan = Vec::new();
    let mut at = millis(rng, 2_000..5_000);
    if faults.crash_leader {
        let restart_after = millis(rng, 1_000..5_000);
        plan.push((at, Action::CrashLeader { restart_after }));
        at += restart_after + millis(rng, 2_000..5_000);
    }
    if faults.lag_follower {
        plan.push((at, Action::LagFollower));
        at += millis(rng, 1_000..3_000);
    }
    if faults.isolate_leader {
        let heal_after = millis(rng, 1_000..5_000);
        plan.push((at, Action::IsolateLeader { heal_after, lossy: faults.lossy_isolation }));
        at += heal_after + millis(rng, 1_000..3_000);
    }
    for _ in 0..faults.storm {
        plan.push((at, storm_action(rng, managers, workers)));
        at += millis(rng, 300..3_000);
    }
    plan
}

fn millis(rng: &mut SeedRng, range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rng.in_range(range))
}

fn manager_host(id: u64) -> String {
    crate::manager::host_name(id)
}

fn worker_host(i: u64) -> String {
    format!("worker-{i}")
}

/// Any host but the client, by a draw.
fn any_host(rng: &mut SeedRng, managers: u64, workers: u64) -> String {
    let i = rng.in_range(0..managers + workers);
    if i < managers { manager_host(i + 1) } else { worker_host(i - managers + 1) }
}

fn storm_action(rng: &mut SeedRng, managers: u64, workers: u64) -> Action {
    let lasting = millis(rng, 500..4_000);
    let lossy = rng.in_range(0..2) == 1;
    match rng.in_range(0..11) {
        0 => Action::CrashLeader { restart_after: lasting },
        1 => Action::CrashManager { id: rng.in_range(1..managers + 1), restart_after: lasting },
        2 => Action::CrashWorker { host: worker_host(rng.in_range(1..workers + 1)), restart_after: lasting },
        3 => Action::IsolateLeader { heal_after: lasting, lossy },
        4 => Action::Split { side: vec![any_host(rng, managers, workers)], heal_after: lasting, lossy },
        5 | 6 => {
            // Two sides: a minority of the managers with some of the workers and
            // perhaps the client, against the rest.
            let mut side: Vec<String> = Vec::new();
            let minority = rng.in_range(1..managers.div_ceil(2).max(2));
            let mut ids: Vec<u64> = (1..=managers).collect();
            for _ in 0..minority {
                side.push(manager_host(ids.remove(rng.in_range(0..ids.len() as u64) as usize)));
            }
            side.extend((1..=workers).filter(|_| rng.in_range(0..2) == 1).map(worker_host));
            if rng.in_range(0..2) == 1 {
                side.push(crate::cluster::CLIENT.into());
            }
            Action::Split { side, heal_after: lasting, lossy }
        }
        7 => {
            let a = any_host(rng, managers, workers);
            let b = manager_host(rng.in_range(1..managers + 1));
            let latency = millis(rng, 100..1_500);
            Action::SlowLink { a, b, latency, heal_after: lasting }
        }
        8 => Action::Reset { a: any_host(rng, managers, workers), b: manager_host(rng.in_range(1..managers + 1)) },
        9 => Action::OneWay {
            host: any_host(rng, managers, workers),
            outgoing: rng.in_range(0..2) == 1,
            heal_after: lasting,
        },
        _ => {
            let step = i64::try_from(rng.in_range(1_000..20_000)).unwrap_or(i64::MAX);
            let millis = if rng.in_range(0..2) == 1 { step } else { -step };
            Action::StepClock { id: rng.in_range(1..managers + 1), millis }
        }
    }
}

/// The manager that leads now, if one does.
pub(crate) fn leader(nodes: &[Arc<ManagerNode>]) -> Option<&Arc<ManagerNode>> {
    nodes.iter().find(|n| n.store().is_some_and(|s| s.leadership().borrow().is_leader))
}

/// Applies `action`; returns what follows it (the undoing, or the same
/// action again when it cannot be applied yet) and after how long.
pub(crate) fn apply(
    sim: &mut turmoil::Sim<'_>,
    action: Action,
    cluster: &mut Cluster<'_>,
) -> Option<(Duration, Action)> {
    let retry = Duration::from_millis(100);
    let at = sim.elapsed().as_millis();
    let trace = cluster.trace;
    let fault = |what: String| trace.record_at(at, Event::Fault { what });
    match action {
        Action::CrashLeader { restart_after } => {
            let Some(id) = leader(cluster.nodes).map(|n| n.id) else {
                return Some((retry, Action::CrashLeader { restart_after }));
            };
            apply(sim, Action::CrashManager { id, restart_after }, cluster)
        }
        Action::CrashManager { id, restart_after } => {
            // Never two managers down at once: a majority stays up.
            if cluster.down.iter().any(|d| *d != id) {
                return Some((retry, Action::CrashManager { id, restart_after }));
            }
            if !cluster.down.insert(id) {
                return None;
            }
            let node = cluster.nodes.iter().find(|n| n.id == id)?;
            fault(format!("crash {}", node.name));
            node.crash();
            sim.crash(node.name.as_str());
            Some((restart_after, Action::RestartManager(id)))
        }
        Action::LagFollower => {
            // A leader, no manager down, and one that does not lead.
            let leading = leader(cluster.nodes).map(|n| n.id).filter(|_| cluster.down.is_empty());
            let Some(node) = leading.and_then(|leading| cluster.nodes.iter().find(|n| n.id != leading)) else {
                return Some((retry, Action::LagFollower));
            };
            let last = node.store().and_then(|s| s.raft().metrics().borrow().last_log_index).unwrap_or(0);
            let (id, give_up) = (node.id, sim.elapsed() + Duration::from_secs(60));
            apply(sim, Action::CrashManager { id, restart_after: Duration::ZERO }, cluster)?;
            Some((retry, Action::RestartWhenPurged { id, last, give_up }))
        }
        Action::RestartWhenPurged { id, last, give_up } => {
            let purged = leader(cluster.nodes)
                .and_then(|n| n.store())
                .and_then(|s| s.raft().metrics().borrow().purged)
                .is_some_and(|purged| purged.index > last);
            if !purged && sim.elapsed() < give_up {
                return Some((retry, Action::RestartWhenPurged { id, last, give_up }));
            }
            apply(sim, Action::RestartManager(id), cluster)
        }
        Action::RestartManager(id) => {
            let node = cluster.nodes.iter().find(|n| n.id == id)?;
            cluster.down.remove(&id);
            fault(format!("restart {}", node.name));
            sim.bounce(node.name.as_str());
            None
        }
        Action::CrashWorker { host, restart_after } => {
            if !sim.is_host_running(host.as_str()) {
                return None;
            }
            fault(format!("crash {host}"));
            sim.crash(host.as_str());
            Some((restart_after, Action::RestartWorker(host)))
        }
        Action::RestartWorker(host) => {
            fault(format!("restart {host}"));
            sim.bounce(host.as_str());
            None
        }
        Action::IsolateLeader { heal_after, lossy } => {
            let Some(node) = leader(cluster.nodes) else {
                return Some((retry, Action::IsolateLeader { heal_after, lossy }));
            };
            let side = vec![node.name.clone()];
            apply(sim, Action::Split { side, heal_after, lossy }, cluster)
        }
        Action::Split { side, heal_after, lossy } => {
            let others: Vec<&String> = cluster.hosts.iter().filter(|h| !side.contains(h)).collect();
            fault(format!("cut {} from the rest{}", side.join(", "), if lossy { " (lossy)" } else { "" }));
            let mut pairs = Vec::new();
            for a in &side {
                for b in &others {
                    sim.hold(a.as_str(), b.as_str());
                    pairs.push((a.clone(), (*b).clone()));
                }
            }
            Some((heal_after, Action::Heal { pairs, lossy }))
        }
        Action::Heal { pairs, lossy } => {
            let mut reset = 0;
            for (a, b) in &pairs {
                if lossy {
                    reset += net::reset_between(sim.lookup(a.as_str()), sim.lookup(b.as_str()));
                }
                sim.release(a.as_str(), b.as_str());
            }
            let side: BTreeSet<&str> = pairs.iter().map(|(a, _)| a.as_str()).collect();
            let side: Vec<&str> = side.into_iter().collect();
            fault(if lossy {
                format!("heal {} ({reset} connections across the cut reset)", side.join(", "))
            } else {
                format!("heal {}", side.join(", "))
            });
            None
        }
        Action::OneWay { host, outgoing, heal_after } => {
            fault(format!("cut what {host} {} the rest", if outgoing { "sends to" } else { "hears from" }));
            let mut pairs = Vec::new();
            for other in cluster.hosts.iter().filter(|h| **h != host) {
                let (from, to) = if outgoing { (&host, other) } else { (other, &host) };
                sim.partition_oneway(from.as_str(), to.as_str());
                pairs.push((from.clone(), to.clone()));
            }
            Some((heal_after, Action::HealOneWay { host, pairs }))
        }
        Action::HealOneWay { host, pairs } => {
            // turmoil's TCP never retransmits what the cut dropped: each
            // connection across it is stalled for good, as a real one is once
            // TCP gives up. Reset them all.
            let mut reset = 0;
            for (from, to) in &pairs {
                reset += net::reset_between(sim.lookup(from.as_str()), sim.lookup(to.as_str()));
                sim.repair_oneway(from.as_str(), to.as_str());
            }
            fault(format!("heal the one-way cut of {host} ({reset} connections across it reset)"));
            None
        }
        Action::SlowLink { a, b, latency, heal_after } => {
            fault(format!("slow {a} <-> {b} to {} ms", latency.as_millis()));
            sim.set_link_max_message_latency(a.as_str(), b.as_str(), latency);
            Some((heal_after, Action::FastLink { a, b }))
        }
        Action::FastLink { a, b } => {
            fault(format!("speed up {a} <-> {b}"));
            sim.set_link_max_message_latency(a.as_str(), b.as_str(), MAX_LATENCY);
            None
        }
        Action::Reset { a, b } => {
            let reset = net::reset_between(sim.lookup(a.as_str()), sim.lookup(b.as_str()));
            fault(format!("reset {a} <-> {b} ({reset} connections)"));
            None
        }
        Action::StepClock { id, millis } => {
            let node = cluster.nodes.iter().find(|n| n.id == id)?;
            let to = node.skew.millis().saturating_add(millis).clamp(-30_000, 30_000);
            fault(format!("step {}'s clock by {millis} ms (skew {to} ms)", node.name));
            node.skew.set(to);
            None
        }
    }
}
