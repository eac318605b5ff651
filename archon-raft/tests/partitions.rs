#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Partition tests: seeded scenarios of leader isolation, minority partitions,
//! broken links and node restarts against a real cluster on loopback — three
//! managers (each a real [`RaftStore`](archon_raft::RaftStore) on its own data
//! dir behind a real manager and gRPC server), two real workers, and clients
//! submitting jobs with idempotency keys throughout.
//!
//! Faults are injected per link: Raft's RPCs through the store's
//! [`Links`](archon_raft::network::Links) seam, worker sessions through one TCP
//! proxy per (worker, manager). A restart stops a node's store, manager and server
//! and reopens the same data dir on the same port. Once every fault has healed
//! and the cluster is quiet, the test checks that
//!
//! - no term ever had two leaders (as any node saw it);
//! - every acknowledged submit is on every replica, as the job the client was told;
//! - the replicas' states are equal, and each equals a replay of its own log;
//! - no run reached a terminal state twice (in the log, in the state's counters,
//!   or through two successful attempts), and no attempt ran twice.
//!
//! The seed fixes the schedule — which faults, on which role, for how long, the
//! jobs and their pacing — not the interleaving of real I/O, so replaying a seed
//! replays the scenario, not the exact execution. Each scenario prints its seed
//! first, and every assertion message names it.
//!
//! - `ARCHON_TEST_SEED=N` replays seed N alone.
//! - `ARCHON_PARTITION_SEEDS=K` runs K seeds drawn from the clock; the default, 3
//!   (5–15 s each), is what CI runs. A failed seed does not stop the others: the
//!   test fails at the end, listing every failed seed.
//! - The long soak (about 10 s a seed; plain `cargo test`, since nextest's
//!   slow-test timeout would end it after 5 minutes):
//!   `ARCHON_PARTITION_SEEDS=200 cargo test -p archon-raft --test partitions -- --nocapture`
//! - `RUST_LOG=archon_core=info,archon_raft=info` shows the nodes' logs.

#[path = "partitions/checks.rs"]
mod checks;
#[path = "partitions/client.rs"]
mod client;
#[path = "partitions/cluster.rs"]
mod cluster;
#[path = "partitions/rng.rs"]
mod rng;

use std::collections::BTreeMap;
use std::time::Duration;

use archon_core::model::RunState;
use archon_core::state::ClusterState;
use archon_core::store::{Store, StoreExt};
use archon_raft::network::{GrpcNetwork, Links};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::{BasicNode, Vote};
use tokio::time::Instant;

use client::Submitters;
use cluster::{Cluster, NODES, WORKERS};
use rng::Rng;

/// How long one scenario may take, start to finish, before it fails as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);
/// How long the healed cluster may take to elect a leader, finish every run and
/// bring every replica up to date.
const QUIET_WITHIN: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeded_partitions_and_restarts_lose_nothing_and_keep_one_leader_per_term() {
    init_logs();
    let seeds = rng::seeds();
    println!("partition seeds {seeds:?} (replay one with ARCHON_TEST_SEED=N)");
    let mut failed = Vec::new();
    for seed in seeds {
        let started = Instant::now();
        // Each seed runs in its own task, so one failure (its panic message is
        // printed above) does not hide what the other seeds do.
        match tokio::spawn(tokio::time::timeout(SCENARIO_LIMIT, scenario(seed))).await {
            Ok(Ok(())) => println!("seed {seed}: passed in {:.1?}", started.elapsed()),
            Ok(Err(_)) => {
                println!("seed {seed}: FAILED: the scenario did not finish within {SCENARIO_LIMIT:?}");
                failed.push(seed);
            }
            Err(_) => {
                println!("seed {seed}: FAILED after {:.1?} (see its panic above)", started.elapsed());
                failed.push(seed);
            }
        }
    }
    assert!(failed.is_empty(), "failed seeds: {failed:?} (replay one with ARCHON_TEST_SEED=N)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_fails_as_unreachable_in_its_direction_until_healed() {
    let links = Links::new();
    let node = BasicNode::new("127.0.0.1:1");
    let option = RPCOption::new(Duration::from_secs(1));
    let mut one_to_two = GrpcNetwork::with_links(1, links.clone()).new_client(2, &node).await;
    let mut two_to_one = GrpcNetwork::with_links(2, links.clone()).new_client(1, &node).await;

    links.cut(1, 2);
    assert!(links.is_cut(1, 2) && !links.is_cut(2, 1));
    let err = one_to_two.vote(VoteRequest::new(Vote::new(1, 1), None), option.clone()).await.unwrap_err();
    assert!(matches!(&err, openraft::error::RPCError::Unreachable(_)), "{err:?}");
    assert!(err.to_string().contains("link from node 1 is cut"), "{err}");

    // The other direction is whole: the RPC is sent (and finds nobody at port 1).
    let err = two_to_one.vote(VoteRequest::new(Vote::new(1, 2), None), option.clone()).await.unwrap_err();
    assert!(!err.to_string().contains("is cut"), "{err}");

    links.heal_all();
    let err = one_to_two.vote(VoteRequest::new(Vote::new(1, 1), None), option).await.unwrap_err();
    assert!(!err.to_string().contains("is cut"), "{err}");
}

/// The faults a phase injects.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The leader loses its Raft links; its workers may keep theirs to it.
    IsolateLeader,
    /// A follower loses its Raft links; a worker may be stranded with it.
    IsolateFollower,
    /// The link between the leader and one follower breaks (both stay connected
    /// to the third node).
    CutLeaderLink,
    /// The leader stops and comes back on the same data dir and port.
    RestartLeader,
    /// A follower stops and comes back on the same data dir and port.
    RestartFollower,
    /// The leader is isolated, and restarts while still cut off.
    IsolateAndRestartLeader,
}

const FAULTS: [Fault; 6] = [
    Fault::IsolateLeader,
    Fault::IsolateFollower,
    Fault::CutLeaderLink,
    Fault::RestartLeader,
    Fault::RestartFollower,
    Fault::IsolateAndRestartLeader,
];

/// One seeded scenario: start, inject faults in phases while clients submit,
/// heal, wait for quiet, check, stop, replay the logs.
async fn scenario(seed: u64) {
    let mut rng = Rng::new(seed);
    let snapshot_every = if rng.chance(50) { 30 } else { 100_000 };
    let phases = rng.between(2, 4);
    println!(
        "seed {seed}: {phases} fault phases, snapshots every {snapshot_every} entries \
         (replay: ARCHON_TEST_SEED={seed} cargo nextest run -p archon-raft --test partitions)"
    );
    let mut cluster = Cluster::start(seed, snapshot_every).await;
    let first = cluster.wait_for_leader(Duration::from_secs(30)).await;
    assert!(first.is_some(), "seed {seed}: no leader was elected within 30s of starting");

    let submitters = Submitters::start(seed, &cluster.addresses(), 2, &mut rng);
    // The seeded pauses, here and in `inject`, are the schedule (how long clients
    // submit, a fault holds, the cluster settles), not waits for an event: those
    // have deadlines (`wait_for_leader`, `quiet`).
    tokio::time::sleep(rng.millis(300, 1000)).await;
    for phase in 1..=phases {
        let fault = rng.pick(&FAULTS);
        let hold = rng.millis(300, 2500);
        let settle = rng.millis(300, 1500);
        inject(&mut cluster, fault, hold, &mut rng, phase).await;
        cluster.heal();
        println!("seed {seed} phase {phase}: healed; settling for {settle:?}");
        tokio::time::sleep(settle).await;
    }
    let report = submitters.stop(seed).await;
    println!(
        "seed {seed}: {} submits acknowledged, {} in doubt, {} calls retried",
        report.acked.len(),
        report.in_doubt.len(),
        report.retries
    );
    assert!(!report.acked.is_empty(), "seed {seed}: no submit was ever acknowledged");

    quiet(&cluster, &report).await;
    let views = cluster.views().await;
    let leaders = cluster.leaders.lock().unwrap().clone();
    checks::one_leader_per_term(seed, &leaders);
    checks::acknowledged_submits_survive(seed, &report, &views);
    checks::replicas_are_equal(seed, &views);
    let executions = cluster.executions.lock().unwrap().clone();
    checks::runs_end_once(seed, &views[0], &executions);

    cluster.stop_all().await;
    let mut replayed = 0;
    for view in &views {
        if checks::log_replays_to_the_state(seed, &cluster.data_dir(view.id), view).await {
            replayed += 1;
        }
    }
    println!(
        "seed {seed}: {} runs, {} terms with a leader, {replayed} of {} logs replayed",
        views[0].runs.len(),
        leaders.len(),
        views.len()
    );
}

/// Injects `fault` for `hold`, and undoes a restart (links are healed by the caller).
async fn inject(cluster: &mut Cluster, fault: Fault, hold: Duration, rng: &mut Rng, phase: u64) {
    let seed = cluster.seed;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let target = match leader {
        Some(leader) => leader,
        None => rng.pick(&NODES),
    };
    let followers: Vec<u64> = NODES.iter().copied().filter(|n| *n != target).collect();
    let follower = rng.pick(&followers);
    let what = match fault {
        Fault::IsolateLeader => {
            for other in &followers {
                cluster.cut_raft(target, *other);
            }
            let strand = rng.chance(50);
            if !strand {
                for w in 0..WORKERS {
                    cluster.set_worker_link(w, target, true);
                }
            }
            let workers = if strand { "its workers stay with it" } else { "workers cut off from it too" };
            format!("isolate leader {target} ({workers})")
        }
        Fault::IsolateFollower => {
            for other in NODES.iter().filter(|n| **n != follower) {
                cluster.cut_raft(follower, *other);
            }
            if rng.chance(50) {
                let w = rng.below(WORKERS as u64) as usize;
                for other in NODES.iter().filter(|n| **n != follower) {
                    cluster.set_worker_link(w, *other, true);
                }
                format!("isolate follower {follower} with worker w{} stranded on its side", w + 1)
            } else {
                format!("isolate follower {follower}")
            }
        }
        Fault::CutLeaderLink => {
            cluster.cut_raft(target, follower);
            format!("cut the link between leader {target} and follower {follower}")
        }
        Fault::IsolateAndRestartLeader => {
            for other in &followers {
                cluster.cut_raft(target, *other);
            }
            println!("seed {seed} phase {phase}: isolate leader {target}, restart it half way through {hold:?}");
            tokio::time::sleep(hold / 2).await;
            cluster.stop_node(target).await;
            cluster.restart_node(target).await;
            tokio::time::sleep(hold / 2).await;
            return;
        }
        Fault::RestartLeader | Fault::RestartFollower => {
            let node = if matches!(fault, Fault::RestartLeader) { target } else { follower };
            println!("seed {seed} phase {phase}: restart node {node} (leader {leader:?}), down for {hold:?}");
            cluster.stop_node(node).await;
            tokio::time::sleep(hold).await;
            cluster.restart_node(node).await;
            return;
        }
    };
    println!("seed {seed} phase {phase}: {what} (leader {leader:?}) for {hold:?}");
    tokio::time::sleep(hold).await;
}

/// Waits until the healed cluster is quiet — every node up and applied to the
/// leader's last entry, every acknowledged job's runs ended, nothing more proposed
/// for a moment — and returns each node's (id, applied index, state).
async fn quiet(cluster: &Cluster, report: &client::Report) -> Vec<(u64, Option<u64>, ClusterState)> {
    let seed = cluster.seed;
    let deadline = Instant::now() + QUIET_WITHIN;
    let mut previous: Option<Option<u64>> = None;
    loop {
        let settled = settled_index(cluster, report);
        if settled.is_some() && previous == settled {
            let states = cluster.states();
            if states.len() == NODES.len() && states.iter().all(|(_, applied, _)| Some(*applied) == settled) {
                return states;
            }
        }
        previous = settled;
        if Instant::now() >= deadline {
            panic!(
                "seed {seed}: the cluster did not go quiet within {QUIET_WITHIN:?} of healing:\n{}",
                describe(cluster)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The log index every node has applied, when the cluster is settled at one.
fn settled_index(cluster: &Cluster, report: &client::Report) -> Option<Option<u64>> {
    if NODES.iter().any(|id| !cluster.is_up(*id)) {
        return None;
    }
    let leader = cluster.leader()?;
    let store = cluster.store(leader)?;
    if !store.leadership().borrow().is_leader {
        return None;
    }
    let metrics = cluster.metrics();
    let last = metrics.iter().find(|(id, _)| *id == leader)?.1.last_log_index;
    let all_applied = metrics.iter().all(|(_, m)| m.last_applied.map(|l| l.index) == last && m.last_log_index == last);
    // Every run has ended (and so left the live state), acknowledged jobs included.
    let work_done = store.query(|s| s.runs().is_empty() && report.acked.iter().all(|a| s.issued_job(a.job)));
    (all_applied && work_done).then_some(last)
}

/// Where each node stands, and the runs that have not ended, for a timeout message.
fn describe(cluster: &Cluster) -> String {
    let mut lines = Vec::new();
    for (id, m) in cluster.metrics() {
        lines.push(format!(
            "  node {id}: {:?} term {} leader {:?} last log {:?} applied {:?}",
            m.state,
            m.current_term,
            m.current_leader,
            m.last_log_index,
            m.last_applied.map(|l| l.index)
        ));
    }
    for id in NODES.iter().filter(|id| !cluster.is_up(**id)) {
        lines.push(format!("  node {id}: down"));
    }
    for (id, _, state) in cluster.states() {
        let mut by_state: BTreeMap<RunState, usize> = BTreeMap::new();
        for run in state.runs().values() {
            *by_state.entry(run.state).or_default() += 1;
        }
        let open: Vec<String> = state
            .runs()
            .values()
            .filter(|r| !r.state.is_terminal())
            .take(5)
            .map(|r| format!("{} {} attempts {:?}", r.id, r.state, r.attempts))
            .collect();
        let workers: Vec<String> =
            state.workers().values().map(|w| format!("{} {:?} running {:?}", w.name, w.state, w.running)).collect();
        lines.push(format!("  node {id} runs {by_state:?}; open {open:?}; workers {workers:?}"));
    }
    lines.join("\n")
}

/// Logs to the test's output when `RUST_LOG` asks for them.
fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
