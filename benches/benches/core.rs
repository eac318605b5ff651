//! Criterion benchmarks of the pure core: `ClusterState::apply` over a job's whole
//! life, and `BinPack::place`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use archon_core::model::{
    AttemptId, AttemptResult, ExitStatus, JobSpec, PlacementPolicy, Resources, RunId, Task, Timestamp, WorkerId,
};
use archon_core::scheduler::{BinPack, ClusterView, Scheduler, pending_runs};
use archon_core::state::{ClusterState, Command};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn worker(name: String, cpu: u64) -> Command {
    Command::RegisterWorker {
        at: Timestamp(0),
        name,
        address: String::new(),
        labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
        capacity: Resources { cpu_millis: cpu, memory_bytes: 64 << 30, ..Resources::default() },
        capabilities: BTreeSet::from(["shell".to_owned()]),
        running: vec![],
        queue: 0,
    }
}

fn spec(cpu: u64) -> Arc<JobSpec> {
    let mut s = JobSpec::new("b", Task::Shell { command: "true".into() });
    s.resources = Resources { cpu_millis: cpu, memory_bytes: 1 << 20, ..Resources::default() };
    Arc::new(s)
}

/// Submit, assign, start and finish 1,000 jobs: 4,000 commands.
fn apply_job_lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(1000));
    let spec = spec(1);
    g.bench_function("job lifecycle x1000 (4 commands each)", |b| {
        b.iter_batched(
            || {
                let mut s = ClusterState::new();
                s.apply(&worker("w".into(), 1 << 40));
                s
            },
            |mut s| {
                for i in 1..=1000u64 {
                    let at = Timestamp(i as i64);
                    s.apply(&Command::submit(at, spec.clone()));
                    s.apply(&Command::AssignAttempt { at, run: RunId(i), worker: WorkerId(1) });
                    s.apply(&Command::StartAttempt { at, run: RunId(i), attempt: AttemptId(i) });
                    s.apply(&Command::FinishAttempt {
                        at,
                        run: RunId(i),
                        attempt: AttemptId(i),
                        result: AttemptResult::status(ExitStatus::Exited { code: 0 }),
                    });
                }
                s
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

/// A small deterministic generator (PCG-style LCG): the same cluster every run.
struct Lcg(u64);

impl Lcg {
    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `pending` runs of 100–799 millicores onto `workers` identical 4-core workers,
/// which have room for about nine in ten of them.
fn uniform(pending: usize, workers: usize) -> ClusterState {
    let mut s = ClusterState::new();
    for w in 0..workers {
        s.apply(&worker(format!("w{w}"), 4000));
    }
    let mut rng = Lcg(7);
    for _ in 0..pending {
        s.apply(&Command::submit(Timestamp(1), spec(100 + rng.below(700))));
    }
    s
}

/// 10,000 runs onto 1,000 workers of three sizes in three zones, one in ten with two
/// GPUs: a fifth of the runs are pinned to a zone, one in twenty wants a GPU, a third
/// reserve network bandwidth and one in ten asks to be spread.
fn mixed() -> ClusterState {
    let mut s = ClusterState::new();
    for w in 0..1000u64 {
        let size = 1 << (w % 3);
        let mut labels = BTreeMap::from([("zone".to_owned(), ["a", "b", "c"][(w / 3 % 3) as usize].to_owned())]);
        let mut devices = BTreeMap::new();
        if w % 10 == 0 {
            labels.insert("gpu".to_owned(), "yes".to_owned());
            devices.insert("gpu".to_owned(), 2);
        }
        s.apply(&Command::RegisterWorker {
            at: Timestamp(0),
            name: format!("w{w}"),
            address: String::new(),
            labels,
            capacity: Resources { cpu_millis: 2000 * size, memory_bytes: size << 33, network_mbps: 1000, devices },
            capabilities: BTreeSet::from(["shell".to_owned()]),
            running: vec![],
            queue: 0,
        });
    }
    let mut rng = Lcg(11);
    for _ in 0..10_000 {
        let mut job = JobSpec::new("m", Task::Shell { command: "true".into() });
        job.resources = Resources {
            cpu_millis: 100 + rng.below(700),
            memory_bytes: (64 + rng.below(2000)) << 20,
            network_mbps: if rng.below(3) == 0 { 10 + rng.below(90) } else { 0 },
            devices: BTreeMap::new(),
        };
        if rng.below(5) == 0 {
            job.constraints = vec![["zone=a", "zone=b", "zone!=c"][rng.below(3) as usize].parse().unwrap()];
        }
        if rng.below(20) == 0 {
            job.resources.devices.insert("gpu".to_owned(), 1);
        }
        if rng.below(10) == 0 {
            job.placement = Some(PlacementPolicy::Spread);
        }
        s.apply(&Command::submit(Timestamp(1), Arc::new(job)));
    }
    s
}

/// `BinPack::place` for every pending run of the cluster, including building the view.
fn place(c: &mut Criterion) {
    let mut g = c.benchmark_group("binpack place");
    g.measurement_time(Duration::from_secs(8)).sample_size(20);
    let cases = [
        ("1000 pending runs onto 10 workers", uniform(1_000, 10), PlacementPolicy::Binpack),
        ("10000 pending runs onto 1000 workers", uniform(10_000, 1_000), PlacementPolicy::Binpack),
        ("10000 pending runs onto 1000 workers, spread", uniform(10_000, 1_000), PlacementPolicy::Spread),
        ("10000 mixed runs onto 1000 mixed workers", mixed(), PlacementPolicy::Binpack),
    ];
    for (name, s, policy) in &cases {
        let pending = s.queued_len();
        g.throughput(Throughput::Elements(pending as u64));
        g.bench_function(*name, |b| {
            b.iter(|| {
                let view = ClusterView::of(s, *policy);
                let runs = pending_runs(s, Timestamp(2), pending);
                BinPack.place(&view, &runs)
            });
        });
    }
    g.finish();
}

criterion_group!(benches, apply_job_lifecycle, place);
criterion_main!(benches);
