//! The faults: a seeded schedule of kills, pauses, freezes, disconnects and
//! partitions, overlapping in time on different containers, each healed
//! after a seeded while; the history records each with the boot-clock instant
//! it took effect and the one it was healed.
//!
//! The rules: a container suffers one fault at a time (healed before its
//! next); at most one manager is impaired at once — killed, paused, cut off or
//! on a cut link — and another is impaired only once every manager answers
//! with a leader again (a majority always remains); at most two of the four
//! workers are impaired at once. Everything is healed before [`Faults::run`]
//! returns.
//!
//! A worker is frozen with SIGSTOP to its process, not `docker pause`: a
//! paused container freezes the jobs with the worker, so nothing could run
//! twice, and the lease keeper — the part that must act while the worker is
//! frozen — would be frozen too. Managers are paused whole (a frozen leader).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, Node};
use crate::docker::{Drop, Guard, docker, wait_stopped};
use crate::history::{Event, FaultKind, History};
use crate::marks::boot_micros;
use crate::rng::Rng;

/// How many workers may be impaired at once.
const MAX_WORKERS_IMPAIRED: usize = 2;

/// How to undo a fault.
#[derive(Debug, Clone)]
enum Undo {
    /// `docker start` the container.
    Start(String),
    /// `docker unpause` the container.
    Unpause(String),
    /// SIGCONT the process in the container.
    Continue { container: String, pid: String },
    /// `docker network connect` the container with its address.
    Connect { container: String, ip: String },
    /// Let the dropped packets pass again.
    Pass(Vec<Drop>),
}

/// A fault in effect.
#[derive(Debug)]
struct Active {
    id: u64,
    /// The nodes it impairs (by cluster name).
    targets: Vec<String>,
    heal_at: Instant,
    undo: Undo,
    /// Failed tries to heal it.
    heal_failures: u32,
}

/// The fault injector of a run.
#[derive(Debug)]
pub(crate) struct Faults<'a> {
    cluster: &'a Cluster,
    guard: &'a Guard,
    history: History,
    rng: Rng,
    next_id: u64,
    active: Vec<Active>,
    /// Whether the host's packet filter can cut links (partitions).
    can_cut: bool,
    /// Injected faults by kind.
    pub(crate) counts: BTreeMap<FaultKind, u64>,
}

impl<'a> Faults<'a> {
    /// The faults of run `seed`.
    pub(crate) fn new(cluster: &'a Cluster, guard: &'a Guard, history: History, seed: u64, can_cut: bool) -> Self {
        Faults {
            cluster,
            guard,
            history,
            rng: Rng::stream(seed, "faults"),
            next_id: 1,
            active: Vec::new(),
            can_cut,
            counts: BTreeMap::new(),
        }
    }

    /// Injects faults until `until` (or `stop`), a new one every 1.5–5 s,
    /// healing each when its time comes; then heals what is left.
    pub(crate) async fn run(&mut self, until: Instant, stop: &CancellationToken) -> anyhow::Result<()> {
        let mut next = Instant::now() + self.rng.millis(2_000, 5_000);
        while Instant::now() < until && !stop.is_cancelled() {
            self.heal_due(Instant::now()).await?;
            if Instant::now() >= next {
                self.inject().await;
                next = Instant::now() + self.rng.millis(1_500, 5_000);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = stop.cancelled() => {}
            }
        }
        self.heal_all().await
    }

    /// Heals every fault still in effect, now.
    pub(crate) async fn heal_all(&mut self) -> anyhow::Result<()> {
        for _ in 0..20 {
            if self.active.is_empty() {
                return Ok(());
            }
            self.heal_due(Instant::now() + Duration::from_secs(3600)).await?;
            if !self.active.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        bail!("faults left unhealed: {:?}", self.active)
    }

    /// Heals the faults due by `by`; one that fails to heal is tried again a
    /// second later (an error after ten failures).
    async fn heal_due(&mut self, by: Instant) -> anyhow::Result<()> {
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].heal_at > by {
                i += 1;
                continue;
            }
            match self.undo(&self.active[i].undo.clone()).await {
                Ok(()) => {
                    let done = self.active.remove(i);
                    self.history.record(&Event::Healed { id: done.id, at: boot_micros() });
                }
                Err(e) => {
                    let a = &mut self.active[i];
                    a.heal_failures += 1;
                    self.history.note(format!("healing fault {} failed (try {}): {e:#}", a.id, a.heal_failures));
                    if a.heal_failures >= 10 {
                        return Err(e.context(format!("cannot heal fault {} on {:?}", a.id, a.targets)));
                    }
                    a.heal_at = Instant::now() + Duration::from_secs(1);
                    i += 1;
                }
            }
        }
        Ok(())
    }

    async fn undo(&self, undo: &Undo) -> anyhow::Result<()> {
        match undo {
            Undo::Start(c) => docker(&["start", c]).await.map(drop),
            Undo::Unpause(c) => docker(&["unpause", c]).await.map(drop),
            Undo::Continue { container, pid } => docker(&["exec", container, "kill", "-CONT", pid]).await.map(drop),
            Undo::Connect { container, ip } => {
                docker(&["network", "connect", "--ip", ip, &self.cluster.network, container]).await.map(drop)
            }
            Undo::Pass(drops) => self.guard.pass_packets(drops).await,
        }
    }

    fn busy(&self, name: &str) -> bool {
        self.active.iter().any(|a| a.targets.iter().any(|t| t == name))
    }

    fn impaired_managers(&self) -> usize {
        self.cluster.managers.iter().filter(|m| self.busy(&m.name)).count()
    }

    fn free_workers(&self) -> Vec<Node> {
        self.cluster.workers.iter().filter(|w| !self.busy(&w.name)).cloned().collect()
    }

    fn impaired_workers(&self) -> usize {
        self.cluster.workers.len() - self.free_workers().len()
    }

    /// Whether a manager may be impaired now: none is, and every manager
    /// answers with one leader in its view (a restarted one has rejoined).
    async fn managers_whole(&self) -> bool {
        if self.impaired_managers() > 0 {
            return false;
        }
        for m in &self.cluster.managers {
            let Ok(status) = self.cluster.status_of(m).await else { return false };
            let managers = status["managers"].as_array().cloned().unwrap_or_default();
            if managers.iter().filter(|v| v["role"] == "leader").count() != 1 {
                return false;
            }
        }
        true
    }

    /// Draws a fault kind and its targets under the rules, and injects it
    /// (nothing when the rules allow none now). A failed injection is noted.
    /// Every draw is made first, whatever the cluster's state, so a seed
    /// draws the same numbers at each turn.
    async fn inject(&mut self) {
        let cut = if self.can_cut { 1 } else { 0 };
        let weights = [12, 14, 10, 16, 8, 12, 14 * cut, 8 * cut];
        let kind = self.rng.weighted(&weights).map(|i| FaultKind::ALL[i]);
        let manager = self.rng.range(0, 3) as usize;
        let other = 1 + self.rng.range(0, 2) as usize;
        let worker = self.rng.next_u64() as usize;
        let width = self.rng.range(0, 3) as usize;
        let planned = self.rng.millis(500, 10_000);
        let Some(kind) = kind else { return };
        let managers = &self.cluster.managers;
        let manager_kind = matches!(
            kind,
            FaultKind::KillManager
                | FaultKind::PauseManager
                | FaultKind::DisconnectManager
                | FaultKind::Partition
                | FaultKind::CutLink
        );
        if manager_kind && !self.managers_whole().await {
            return;
        }
        let worker_room = MAX_WORKERS_IMPAIRED.saturating_sub(self.impaired_workers());
        let mut free = self.free_workers();
        let n = free.len();
        if n > 0 {
            free.rotate_left(worker % n);
        }
        let manager = managers[manager % managers.len()].clone();
        let targets: Vec<Node> = match kind {
            FaultKind::KillWorker | FaultKind::FreezeWorker | FaultKind::DisconnectWorker => {
                if worker_room == 0 {
                    return;
                }
                free.into_iter().take(1).collect()
            }
            FaultKind::Partition => {
                std::iter::once(manager).chain(free.into_iter().take(width.min(worker_room))).collect()
            }
            FaultKind::CutLink => {
                let i = managers.iter().position(|m| m.name == manager.name).unwrap_or(0);
                vec![manager, managers[(i + other) % managers.len()].clone()]
            }
            _ => vec![manager],
        };
        let Some(first) = targets.first().cloned() else { return };
        // A paused manager is a frozen leader, not a dead one: shorter.
        let planned = if kind == FaultKind::PauseManager { planned.min(Duration::from_secs(6)) } else { planned };
        let at = boot_micros();
        let undo = match self.apply(kind, &first, &targets).await {
            Ok(undo) => undo,
            Err(e) => {
                self.history.note(format!("{kind:?} on {} not injected: {e:#}", first.name));
                return;
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        self.history.record(&Event::Fault {
            id,
            kind,
            targets: names.clone(),
            at,
            effective: boot_micros(),
            planned_ms: u64::try_from(planned.as_millis()).unwrap_or(u64::MAX),
        });
        eprintln!("archon-chaos: fault {id}: {} on {} for {planned:?}", kind.describe(), names.join(" + "));
        *self.counts.entry(kind).or_default() += 1;
        self.active.push(Active { id, targets: names, heal_at: Instant::now() + planned, undo, heal_failures: 0 });
    }

    /// Puts `kind` in effect on `first` (and, for partitions, `targets`); how to undo it.
    async fn apply(&self, kind: FaultKind, first: &Node, targets: &[Node]) -> anyhow::Result<Undo> {
        let c = first.container.clone();
        match kind {
            FaultKind::KillManager | FaultKind::KillWorker => {
                docker(&["kill", &c]).await?;
                // Its processes are gone once the container has stopped.
                if !wait_stopped(&c, Duration::from_secs(30)).await {
                    bail!("{c} still runs 30 s after docker kill");
                }
                Ok(Undo::Start(c))
            }
            FaultKind::PauseManager => {
                docker(&["pause", &c]).await?;
                Ok(Undo::Unpause(c))
            }
            FaultKind::FreezeWorker => {
                // The worker is the init's child named archon-worker (its lease
                // keeper is the worker's child, and is left running).
                let script = "for p in $(cat /proc/1/task/1/children); do \
                              if [ \"$(cat /proc/$p/comm)\" = archon-worker ]; then kill -STOP $p && echo $p; fi; done";
                let pid = docker(&["exec", &c, "sh", "-c", script]).await?.trim().to_owned();
                if pid.is_empty() || pid.contains(char::is_whitespace) {
                    bail!("no single worker process found in {c}: {pid:?}");
                }
                Ok(Undo::Continue { container: c, pid })
            }
            FaultKind::DisconnectManager | FaultKind::DisconnectWorker => {
                docker(&["network", "disconnect", &self.cluster.network, &c]).await?;
                Ok(Undo::Connect { container: c, ip: first.ip.clone() })
            }
            FaultKind::Partition | FaultKind::CutLink => {
                let inside: Vec<&Node> = targets.iter().collect();
                let outside: Vec<&Node> = if kind == FaultKind::CutLink {
                    targets.iter().skip(1).collect()
                } else {
                    self.cluster.nodes().filter(|n| !targets.iter().any(|t| t.name == n.name)).collect()
                };
                let inside = if kind == FaultKind::CutLink { vec![inside[0]] } else { inside };
                let drops: Vec<Drop> = inside
                    .iter()
                    .flat_map(|a| outside.iter().map(|b| Drop { from: a.ip.clone(), to: b.ip.clone() }))
                    .collect();
                if let Err(e) = self.guard.drop_packets(&drops).await {
                    let _ = self.guard.pass_packets(&drops).await;
                    return Err(e);
                }
                Ok(Undo::Pass(drops))
            }
        }
    }
}
