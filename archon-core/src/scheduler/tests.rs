//! Tests of [`BinPack`]: hand-written placements, and property tests over random
//! workers and runs that compare it with a straightforward search of every worker for
//! every run. Each property test prints its seed; set `ARCHON_TEST_SEED=<seed>` to
//! replay one exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use super::*;
use crate::model::{Constraint, Resources, Task, WorkerState};

/// Workers with the free resources the view shows, runs, and the default policy.
#[derive(Debug, Clone)]
struct Case {
    workers: Vec<(Worker, Resources)>,
    specs: Vec<JobSpec>,
    default_policy: PlacementPolicy,
}

impl Case {
    fn view(&self) -> ClusterView<'_> {
        let workers = self
            .workers
            .iter()
            .map(|(w, free)| WorkerSlot { worker: w, free: free.clone(), queue_room: w.queue_room() })
            .collect();
        ClusterView { workers, default_policy: self.default_policy }
    }

    fn pending(&self) -> Vec<PendingRun<'_>> {
        self.specs.iter().enumerate().map(|(i, spec)| PendingRun { run: RunId(i as u64 + 1), spec }).collect()
    }

    fn place(&self) -> Vec<Placement> {
        BinPack.place(&self.view(), &self.pending())
    }

    fn spec(&self, run: RunId) -> &JobSpec {
        &self.specs[run.0 as usize - 1]
    }
}

fn worker(id: u64, capacity: Resources, capabilities: &[&str], labels: &[(&str, &str)]) -> Worker {
    Worker {
        id: WorkerId(id),
        name: format!("w{id}"),
        address: String::new(),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        capacity,
        allocated: Resources::default(),
        capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
        state: WorkerState::Ready,
        registered_at: Timestamp(0),
        running: BTreeSet::new(),
        queue: 0,
        queued: BTreeSet::new(),
    }
}

/// A request of `millis` of CPU and 64 MiB.
fn cpu(millis: u64) -> Resources {
    Resources { cpu_millis: millis, memory_bytes: 64 << 20, ..Resources::default() }
}

/// A worker's capacity: `millis` of CPU and 64 GiB.
fn machine(millis: u64) -> Resources {
    Resources { cpu_millis: millis, memory_bytes: 64 << 30, ..Resources::default() }
}

fn shell(resources: Resources) -> JobSpec {
    let mut spec = JobSpec::new("t", Task::Shell { command: "true".into() });
    spec.resources = resources;
    spec
}

/// `n` empty shell workers with `millis` of CPU and 64 GiB each.
fn cluster(n: u64, millis: u64, specs: Vec<JobSpec>, default_policy: PlacementPolicy) -> Case {
    let capacity = machine(millis);
    let workers = (1..=n).map(|i| (worker(i, capacity.clone(), &["shell"], &[]), capacity.clone())).collect();
    Case { workers, specs, default_policy }
}

/// The worker id of each placed run, by run number (1-based), `None` when not placed.
fn assignment(case: &Case, placements: &[Placement]) -> Vec<Option<u64>> {
    let by_run: BTreeMap<RunId, WorkerId> = placements.iter().map(|p| (p.run, p.worker)).collect();
    (1..=case.specs.len() as u64).map(|r| by_run.get(&RunId(r)).map(|w| w.0)).collect()
}

// ---- hand-written placements ------------------------------------------------------------

#[test]
fn binpack_fills_one_worker_before_the_next() {
    let case = cluster(3, 4000, vec![shell(cpu(1000)); 6], PlacementPolicy::Binpack);
    let placed = case.place();
    assert_eq!(assignment(&case, &placed), [1, 1, 1, 1, 2, 2].map(Some));
}

#[test]
fn binpack_prefers_the_fullest_worker_that_still_fits() {
    let mut case = cluster(3, 4000, vec![shell(cpu(500)), shell(cpu(1500))], PlacementPolicy::Binpack);
    case.workers[0].1.cpu_millis = 1000;
    case.workers[1].1.cpu_millis = 2000;
    let placed = case.place();
    assert_eq!(assignment(&case, &placed), [Some(1), Some(2)]);
}

#[test]
fn what_fits_nowhere_now_goes_to_the_queue_with_the_most_room_and_never_past_it() {
    let mut case = cluster(2, 2000, vec![shell(cpu(1000)); 7], PlacementPolicy::Binpack);
    case.workers[0].0.queue = 2;
    case.workers[1].0.queue = 1;
    let placed = case.place();
    // Two fit each worker now; then the queues: worker 1 has the most room, then
    // a tie (the first in view order), then worker 2; the seventh waits.
    assert_eq!(assignment(&case, &placed), [Some(1), Some(1), Some(2), Some(2), Some(1), Some(1), Some(2)]);
    let case = cluster(1, 2000, vec![shell(cpu(1000)); 4], PlacementPolicy::Binpack);
    assert_eq!(assignment(&case, &case.place()), [Some(1), Some(1), None, None], "no queue, no queued placements");
}

#[test]
fn a_worker_with_attempts_queued_takes_new_runs_only_into_its_queue() {
    let mut case = cluster(1, 4000, vec![shell(cpu(1000)); 3], PlacementPolicy::Binpack);
    case.workers[0].0.queue = 2;
    case.workers[0].0.queued.insert(crate::model::AttemptId(9));
    // 4000m is free, but the queued attempt starts first: one place is left.
    assert_eq!(assignment(&case, &case.place()), [Some(1), None, None]);
    let mut too_big = case.clone();
    too_big.specs = vec![shell(cpu(8000))];
    assert_eq!(assignment(&too_big, &too_big.place()), [None], "a run the worker can never take is not queued");
}

#[test]
fn spread_spreads_runs_evenly() {
    let case = cluster(3, 4000, vec![shell(cpu(1000)); 6], PlacementPolicy::Spread);
    let placed = case.place();
    assert_eq!(assignment(&case, &placed), [1, 2, 3, 1, 2, 3].map(Some));
}

#[test]
fn a_jobs_policy_overrides_the_cluster_default() {
    let mut spread = shell(cpu(1000));
    spread.placement = Some(PlacementPolicy::Spread);
    let case = cluster(2, 4000, vec![shell(cpu(1000)), shell(cpu(1000)), spread], PlacementPolicy::Binpack);
    let placed = case.place();
    assert_eq!(assignment(&case, &placed), [Some(1), Some(1), Some(2)]);
}

#[test]
fn higher_priority_runs_are_placed_when_capacity_is_short() {
    let mut high = shell(cpu(600));
    high.priority = 5;
    let low = shell(cpu(600));
    for specs in [vec![high.clone(), low.clone()], vec![low, high]] {
        let case = cluster(1, 1000, specs, PlacementPolicy::Binpack);
        let placed = case.place();
        assert_eq!(placed.len(), 1);
        assert_eq!(case.spec(placed[0].run).priority, 5, "{placed:?}");
    }
}

#[test]
fn runs_of_equal_priority_are_placed_in_the_order_given() {
    let case = cluster(1, 1000, vec![shell(cpu(600)), shell(cpu(600))], PlacementPolicy::Binpack);
    assert_eq!(assignment(&case, &case.place()), [Some(1), None]);
}

#[test]
fn a_small_run_is_placed_after_a_big_one_that_did_not_fit() {
    let case = cluster(2, 1000, vec![shell(cpu(900)), shell(cpu(2000)), shell(cpu(100))], PlacementPolicy::Binpack);
    assert_eq!(assignment(&case, &case.place()), [Some(1), None, Some(1)]);
}

#[test]
fn devices_and_network_are_honoured_like_cpu_and_memory() {
    let capacity = Resources {
        cpu_millis: 8000,
        memory_bytes: 8 << 30,
        network_mbps: 100,
        devices: BTreeMap::from([("gpu".to_owned(), 2)]),
    };
    let plain = Resources { cpu_millis: 8000, memory_bytes: 8 << 30, ..Resources::default() };
    let gpu = |n| Resources { devices: BTreeMap::from([("gpu".to_owned(), n)]), ..cpu(100) };
    let net = |mbps| Resources { network_mbps: mbps, ..cpu(100) };
    let fpga = Resources { devices: BTreeMap::from([("fpga".to_owned(), 1)]), ..cpu(100) };
    let case = Case {
        workers: vec![
            (worker(1, plain.clone(), &["shell"], &[]), plain),
            (worker(2, capacity.clone(), &["shell"], &[]), capacity),
        ],
        specs: vec![shell(gpu(1)), shell(gpu(2)), shell(gpu(1)), shell(net(60)), shell(net(60)), shell(fpga)],
        default_policy: PlacementPolicy::Spread,
    };
    assert_eq!(assignment(&case, &case.place()), [Some(2), None, Some(2), Some(2), None, None]);
}

#[test]
fn capabilities_constraints_and_draining_exclude_workers() {
    let big = machine(8000);
    let mut draining = worker(1, big.clone(), &["shell", "docker"], &[("zone", "a")]);
    draining.state = WorkerState::Draining;
    let case = Case {
        workers: vec![
            (draining, big.clone()),
            (worker(2, big.clone(), &["shell"], &[("zone", "a")]), big.clone()),
            (worker(3, big.clone(), &["shell", "function:resize"], &[("zone", "b")]), big.clone()),
        ],
        specs: vec![
            JobSpec { constraints: vec!["zone=a".parse().unwrap()], ..shell(cpu(100)) },
            JobSpec { constraints: vec!["zone!=a".parse().unwrap()], ..shell(cpu(100)) },
            JobSpec::new("d", Task::Docker(serde_json::from_str(r#"{"image": "busybox"}"#).unwrap())),
            JobSpec::new("f", Task::Function { name: "resize".into(), input: "null".into() }),
            JobSpec { constraints: vec!["gpu".parse().unwrap()], ..shell(cpu(100)) },
        ],
        default_policy: PlacementPolicy::Spread,
    };
    assert_eq!(assignment(&case, &case.place()), [Some(2), Some(3), None, Some(3), None]);
}

#[test]
fn a_custom_task_goes_only_to_workers_whose_executor_of_that_name_is_registered() {
    let big = machine(8000);
    let custom = |executor: &str| JobSpec::new("c", Task::Custom { executor: executor.into(), input: "null".into() });
    let case = Case {
        workers: vec![
            (worker(1, big.clone(), &["shell", "function:http", "custom"], &[]), big.clone()),
            (worker(2, big.clone(), &["shell", "custom:http"], &[]), big.clone()),
            (worker(3, big.clone(), &["shell", "custom:sql"], &[]), big.clone()),
        ],
        // Neither a function of the same name nor a bare `custom` capability runs it.
        specs: vec![custom("http"), custom("sql"), custom("ftp"), custom("http")],
        default_policy: PlacementPolicy::Spread,
    };
    assert_eq!(assignment(&case, &case.place()), [Some(2), Some(3), None, Some(2)]);
}

#[test]
fn nothing_is_placed_without_workers() {
    let case = cluster(0, 1000, vec![shell(cpu(0)), shell(cpu(100))], PlacementPolicy::Binpack);
    assert!(case.place().is_empty());
}

#[test]
fn more_shapes_than_the_tree_tracks_are_still_placed_like_a_full_search() {
    let functions: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
    let capacity = machine(4000);
    let workers = (0..20u64)
        .map(|i| {
            let caps: Vec<String> =
                (0..100).filter(|f| f % 20 == i || f % 7 == i % 7).map(|f| format!("function:f{f}")).collect();
            let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
            (worker(i + 1, capacity.clone(), &caps, &[]), capacity.clone())
        })
        .collect();
    let specs = (0..400)
        .map(|i| {
            let mut spec =
                JobSpec::new("f", Task::Function { name: functions[i * 37 % 100].clone(), input: "null".into() });
            spec.resources = cpu(100 + (i as u64 * 53) % 400);
            spec
        })
        .collect();
    let case = Case { workers, specs, default_policy: PlacementPolicy::Binpack };
    let placed = case.place();
    check(&case, &placed).unwrap();
    assert_eq!(placed, exhaustive(&case.view(), &case.pending()));
    assert!(placed.len() > 100, "{} placed", placed.len());
}

// ---- references -------------------------------------------------------------------------

/// The straightforward search: every worker for every run, with the full
/// [`Worker::fits_now`] check and the same score as [`BinPack`].
fn exhaustive(view: &ClusterView<'_>, pending: &[PendingRun<'_>]) -> Vec<Placement> {
    let weight = |capacity: u64| if capacity == 0 { 0.0 } else { 0.5 / capacity as f64 };
    let mut order: Vec<&PendingRun<'_>> = pending.iter().collect();
    order.sort_by_key(|p| Reverse(p.spec.priority));
    let mut free: Vec<Resources> = view.workers.iter().map(|w| w.free.clone()).collect();
    let mut placements = Vec::new();
    for p in order {
        let policy = p.spec.placement.unwrap_or(view.default_policy);
        let mut best: Option<(f64, usize)> = None;
        for (i, slot) in view.workers.iter().enumerate() {
            if !slot.worker.accepts_work() || slot.worker.fits_now(p.spec, &free[i]).is_err() {
                continue;
            }
            let (capacity, request) = (&slot.worker.capacity, &p.spec.resources);
            let (cpu_weight, memory_weight) = (weight(capacity.cpu_millis), weight(capacity.memory_bytes));
            let util = capacity.cpu_millis.saturating_sub(free[i].cpu_millis) as f64 * cpu_weight
                + capacity.memory_bytes.saturating_sub(free[i].memory_bytes) as f64 * memory_weight;
            let after = util + request.cpu_millis as f64 * cpu_weight + request.memory_bytes as f64 * memory_weight;
            let score = match policy {
                PlacementPolicy::Binpack => after,
                PlacementPolicy::Spread => -after,
            };
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        if let Some((_, i)) = best {
            free[i].sub(&p.spec.resources);
            placements.push(Placement { run: p.run, worker: view.workers[i].worker.id });
        }
    }
    placements
}

/// `BinPack` as it was before the ranking tree (O(runs × workers)), verbatim.
fn previous_binpack(view: &ClusterView<'_>, pending: &[PendingRun<'_>]) -> Vec<Placement> {
    fn utilization(capacity: &Resources, free: &Resources, request: &Resources) -> f64 {
        let frac = |cap: u64, free: u64, req: u64| {
            if cap == 0 { 0.0 } else { (cap.saturating_sub(free) + req) as f64 / cap as f64 }
        };
        (frac(capacity.cpu_millis, free.cpu_millis, request.cpu_millis)
            + frac(capacity.memory_bytes, free.memory_bytes, request.memory_bytes))
            / 2.0
    }
    let mut free: Vec<Resources> = view.workers.iter().map(|w| w.free.clone()).collect();
    let mut placements = Vec::with_capacity(pending.len().min(1024));
    for p in pending {
        let policy = p.spec.placement.unwrap_or(view.default_policy);
        let mut best: Option<(usize, f64)> = None;
        for (i, slot) in view.workers.iter().enumerate() {
            if slot.worker.fits_now(p.spec, &free[i]).is_err() {
                continue;
            }
            let used = utilization(&slot.worker.capacity, &free[i], &p.spec.resources);
            let score = match policy {
                PlacementPolicy::Binpack => used,
                PlacementPolicy::Spread => -used,
            };
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        if let Some((i, _)) = best {
            free[i].sub(&p.spec.resources);
            placements.push(Placement { run: p.run, worker: view.workers[i].worker.id });
        }
    }
    placements
}

/// Every placement is feasible, no worker gets more than it has free in any dimension,
/// no run is placed twice, and no unplaced run would still fit anywhere.
fn check(case: &Case, placements: &[Placement]) -> Result<(), TestCaseError> {
    let view = case.view();
    let mut placed = BTreeSet::new();
    let mut charged: BTreeMap<WorkerId, Resources> = BTreeMap::new();
    for p in placements {
        prop_assert!(placed.insert(p.run), "{} placed twice", p.run);
        let spec = case.spec(p.run);
        let slot = view.workers.iter().find(|s| s.worker.id == p.worker);
        prop_assert!(slot.is_some(), "{} placed on {}, which is not in the view", p.run, p.worker);
        let worker = slot.map(|s| s.worker).unwrap();
        prop_assert!(worker.accepts_work(), "{} placed on {}, which is {}", p.run, p.worker, worker.state);
        prop_assert_eq!(worker.could_run(spec), Ok(()), "{} placed on {}", p.run, p.worker);
        charged.entry(p.worker).or_default().add(&spec.resources);
    }
    let mut left = Vec::new();
    for slot in &view.workers {
        let charged = charged.remove(&slot.worker.id).unwrap_or_default();
        prop_assert!(
            charged.fits_in(&slot.free) && charged.fits_in(&slot.worker.capacity),
            "{} over-committed: placed {} with {} free of {}",
            slot.worker.id,
            charged,
            slot.free,
            slot.worker.capacity
        );
        left.push(slot.free.minus(&charged));
    }
    for (i, spec) in case.specs.iter().enumerate() {
        let run = RunId(i as u64 + 1);
        if placed.contains(&run) {
            continue;
        }
        for (slot, left) in view.workers.iter().zip(&left) {
            let fits = slot.worker.accepts_work() && slot.worker.fits_now(spec, left).is_ok();
            prop_assert!(!fits, "{} was not placed but still fits on {} ({} left)", run, slot.worker.id, left);
        }
    }
    Ok(())
}

// ---- random cases -------------------------------------------------------------------------

/// A capability or task kind by number: 0 shell, 1 docker, 2 script, then functions.
fn capability(i: u32) -> String {
    match i {
        0 => "shell".to_owned(),
        1 => "docker".to_owned(),
        2 => "script".to_owned(),
        f => format!("function:f{}", f - 3),
    }
}

fn task(i: u32) -> Task {
    match i {
        0 => Task::Shell { command: "true".into() },
        1 => Task::Docker(serde_json::from_str(r#"{"image": "busybox"}"#).unwrap()),
        2 => Task::Script { interpreter: "bash".into(), body: "true".into() },
        f => Task::Function { name: format!("f{}", f - 3), input: "null".into() },
    }
}

/// Small quantised amounts, so that workers fill up and scores tie often.
fn amount(max_units: u64, max_net: u64, max_gpu: u32, max_fpga: u32) -> impl Strategy<Value = Resources> {
    (0..=max_units, 0..=max_units, 0..=max_net, 0..=max_gpu, 0..=max_fpga).prop_map(|(c, m, n, g, f)| Resources {
        cpu_millis: c * 500,
        memory_bytes: m << 30,
        network_mbps: n * 10,
        devices: [("gpu", g), ("fpga", f)]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_owned(), n))
            .collect(),
    })
}

fn policy() -> impl Strategy<Value = Option<PlacementPolicy>> {
    prop_oneof![Just(None), Just(Some(PlacementPolicy::Binpack)), Just(Some(PlacementPolicy::Spread))]
}

/// A worker (id set later) and what the view shows free: capacity minus a random allocation.
fn random_worker(functions: u32) -> impl Strategy<Value = (Worker, Resources)> {
    let labels = (0..4usize, any::<bool>());
    let capabilities = prop::collection::btree_set(0..functions + 3, 0..=(functions + 3).min(8) as usize);
    (amount(8, 4, 2, 1), amount(6, 4, 2, 1), labels, capabilities, prop::bool::weighted(0.9)).prop_map(
        |(capacity, allocated, (zone, ssd), capabilities, ready)| {
            let mut labels = vec![];
            if zone > 0 {
                labels.push(("zone", ["a", "b", "c"][zone - 1]));
            }
            if ssd {
                labels.push(("ssd", "yes"));
            }
            let capabilities: Vec<String> = capabilities.into_iter().map(capability).collect();
            let capabilities: Vec<&str> = capabilities.iter().map(String::as_str).collect();
            let mut w = worker(0, capacity.clone(), &capabilities, &labels);
            w.allocated = allocated;
            if !ready {
                w.state = WorkerState::Draining;
            }
            let free = capacity.minus(&w.allocated);
            (w, free)
        },
    )
}

fn random_spec(functions: u32) -> impl Strategy<Value = JobSpec> {
    let constraints = prop::collection::vec(0..5usize, 0..=2).prop_map(|picks| {
        picks.into_iter().map(|i| ["zone=a", "zone!=b", "zone=c", "ssd", "ssd!=yes"][i].parse().unwrap()).collect()
    });
    (0..functions + 3, amount(3, 2, 1, 1), constraints, -1..=1i32, policy()).prop_map(
        |(kind, resources, constraints, priority, placement): (u32, Resources, Vec<Constraint>, i32, _)| JobSpec {
            resources,
            constraints,
            priority,
            placement,
            ..JobSpec::new("r", task(kind))
        },
    )
}

fn random_case(functions: u32, workers: usize, runs: usize) -> impl Strategy<Value = Case> {
    let default_policy = prop_oneof![Just(PlacementPolicy::Binpack), Just(PlacementPolicy::Spread)];
    (
        prop::collection::vec(random_worker(functions), 0..=workers),
        prop::collection::vec(random_spec(functions), 0..=runs),
        default_policy,
    )
        .prop_map(|(mut workers, specs, default_policy)| {
            for (i, (w, _)) in workers.iter_mut().enumerate() {
                w.id = WorkerId(i as u64 + 1);
            }
            Case { workers, specs, default_policy }
        })
}

/// Runs that fit on every worker all at once, so any policy places them all.
fn roomy_case() -> impl Strategy<Value = Case> {
    let spec = (0..5u32, amount(3, 2, 1, 1), -1..=1i32, policy()).prop_map(|(kind, resources, priority, placement)| {
        JobSpec { resources, priority, placement, ..JobSpec::new("r", task(if kind == 2 { 0 } else { kind })) }
    });
    (prop::collection::vec(spec, 0..=60), 1..=12usize, 0..=3u64, any::<bool>()).prop_map(
        |(specs, workers, spare, spread)| {
            let mut capacity = Resources::default();
            specs.iter().for_each(|s| capacity.add(&s.resources));
            capacity.add(&Resources { cpu_millis: spare * 500, memory_bytes: spare << 30, ..Resources::default() });
            let capabilities = ["shell", "docker", "function:f0", "function:f1"];
            let workers = (1..=workers as u64)
                .map(|i| (worker(i, capacity.clone(), &capabilities, &[("zone", "a")]), capacity.clone()))
                .collect();
            let default_policy = if spread { PlacementPolicy::Spread } else { PlacementPolicy::Binpack };
            Case { workers, specs, default_policy }
        },
    )
}

fn seed() -> u64 {
    let seed = std::env::var("ARCHON_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
    });
    eprintln!("scheduler property test seed: {seed} (replay with ARCHON_TEST_SEED={seed})");
    seed
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, rng_seed: RngSeed::Fixed(seed()), failure_persistence: None, ..Config::default() })
}

#[test]
fn placements_are_feasible_never_overcommit_and_leave_nothing_that_fits() {
    runner(512)
        .run(&random_case(2, 12, 60), |case| {
            check(&case, &case.place())?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_ranking_tree_chooses_like_a_search_of_every_worker() {
    runner(256)
        .run(&random_case(2, 40, 150), |case| {
            prop_assert_eq!(case.place(), exhaustive(&case.view(), &case.pending()));
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_ranking_tree_chooses_like_a_search_of_every_worker_at_scale() {
    runner(6)
        .run(&random_case(6, 300, 2000), |case| {
            let placed = case.place();
            check(&case, &placed)?;
            prop_assert_eq!(placed, exhaustive(&case.view(), &case.pending()));
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_same_input_gives_the_same_placements() {
    runner(128)
        .run(&random_case(2, 20, 80), |case| {
            let again = case.clone();
            prop_assert_eq!(case.place(), again.place());
            Ok(())
        })
        .unwrap();
}

#[test]
fn places_as_many_runs_as_the_previous_scheduler_when_every_run_fits_everywhere() {
    runner(256)
        .run(&roomy_case(), |case| {
            let placed = case.place();
            check(&case, &placed)?;
            let previous = previous_binpack(&case.view(), &case.pending());
            prop_assert_eq!(placed.len(), previous.len());
            prop_assert_eq!(placed.len(), case.specs.len());
            Ok(())
        })
        .unwrap();
}
