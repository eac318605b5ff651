//! Workers' queues, with the manager and worker runtimes together in process: a
//! worker holds assigned attempts beyond what fits it and starts each as the
//! ones ahead end — never over its capacity — and a worker killed with queued
//! attempts has them requeued, once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use archon_core::api::Api;
use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::model::{AttemptState, ExitStatus, JobSpec, Resources, RunId, RunState, Task, WorkerId};
use archon_core::store::MemStore;
use archon_core::testkit::eventually;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// `function:gate`: each attempt waits for a permit (or its cancel), counting
/// how many run at once and the most that ever did.
struct Gate {
    permits: Semaphore,
    running: AtomicUsize,
    most: AtomicUsize,
    started: AtomicUsize,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            permits: Semaphore::new(0),
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Executor for Gate {
    fn capabilities(&self) -> Vec<String> {
        vec!["function:gate".into()]
    }

    async fn execute(&self, ctx: ExecContext) -> archon_core::model::AttemptResult {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        let status = tokio::select! {
            permit = self.permits.acquire() => {
                permit.unwrap().forget();
                ExitStatus::Exited { code: 0 }
            }
            () = ctx.cancel.cancelled() => ExitStatus::Cancelled,
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        ctx.output.finish(status)
    }
}

/// A job taking one core.
fn gated() -> JobSpec {
    let mut spec = JobSpec::new("gated", Task::Function { name: "gate".into(), input: "null".into() });
    spec.resources = Resources { cpu_millis: 1000, memory_bytes: 1 << 20, ..Resources::default() };
    spec
}

fn cores(n: u64) -> Resources {
    Resources { cpu_millis: 1000 * n, memory_bytes: 1 << 30, ..Resources::default() }
}

struct Node {
    gate: Arc<Gate>,
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

fn start_worker(manager: &Manager, name: &str, capacity: Resources, queue: u32) -> Node {
    let gate = Arc::new(Gate::default());
    let mut config = WorkerConfig::new(name, capacity);
    config.queue = queue;
    let worker = Arc::new(WorkerRuntime::new(
        config,
        Arc::new(ExecutorRegistry::new().with(gate.clone())),
        Arc::new(InProcTransport::new(manager.clone())),
    ));
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let s = stop.clone();
        async move {
            let _ = worker.run(s).await;
        }
    });
    Node { gate, task, stop }
}

fn start_manager(config: ManagerConfig) -> (Manager, CancellationToken) {
    let manager = Manager::builder(Arc::new(MemStore::new())).config(config).build();
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let (m, s) = (manager.clone(), shutdown.clone());
        async move { m.run(s).await }
    });
    (manager, shutdown)
}

async fn submit(api: &dyn Api, n: usize) -> Vec<RunId> {
    let results = api.submit(vec![gated(); n]).await.unwrap();
    results.into_iter().map(|r| r.unwrap().run.unwrap()).collect()
}

async fn states(api: &dyn Api, runs: &[RunId]) -> BTreeMap<RunState, usize> {
    let mut counts = BTreeMap::new();
    for run in runs {
        *counts.entry(api.get_run(*run).await.unwrap().run.state).or_insert(0) += 1;
    }
    counts
}

async fn queued_on(api: &dyn Api, name: &str) -> usize {
    let workers = api.list_workers().await.unwrap();
    workers.iter().find(|w| w.worker.name == name).map_or(0, |w| w.worker.queued.len())
}

#[tokio::test]
async fn queued_attempts_start_as_the_running_ones_end_and_never_over_capacity() {
    let (manager, shutdown) = start_manager(ManagerConfig::default());
    let w = start_worker(&manager, "w1", cores(2), 3);
    eventually("the worker registers", async || manager.list_workers().await.unwrap().len() == 1).await;
    let runs = submit(&manager, 6).await;

    // Two run, three wait in the worker's queue (assigned, not started), one in the cluster's.
    eventually("two run and three are queued", async || {
        w.gate.started.load(Ordering::SeqCst) == 2 && queued_on(&manager, "w1").await == 3
    })
    .await;
    let counts = states(&manager, &runs).await;
    assert_eq!(counts.get(&RunState::Running), Some(&2), "{counts:?}");
    assert_eq!(counts.get(&RunState::Scheduled), Some(&3), "{counts:?}");
    assert_eq!(counts.get(&RunState::Pending), Some(&1), "{counts:?}");
    let info = manager.list_workers().await.unwrap().remove(0);
    assert_eq!(info.worker.queue, 3);
    assert_eq!(info.worker.allocated.cpu_millis, 2000, "queued attempts hold nothing until they start");

    // Each end starts the next on the worker; the pending one follows through the queue.
    for ended in 1..=6usize {
        w.gate.permits.add_permits(1);
        let want = (ended + 2).min(6);
        eventually(&format!("{ended} ended and {want} started"), async || {
            w.gate.started.load(Ordering::SeqCst) == want
        })
        .await;
    }
    eventually("every run succeeded", async || states(&manager, &runs).await.get(&RunState::Succeeded) == Some(&6))
        .await;
    assert_eq!(w.gate.most.load(Ordering::SeqCst), 2, "never more at once than the worker's two cores");
    for run in &runs {
        assert_eq!(manager.get_run(*run).await.unwrap().attempts.len(), 1, "{run} ran once");
    }
    let info = manager.list_workers().await.unwrap().remove(0);
    assert!(info.worker.queued.is_empty() && info.worker.allocated.is_zero(), "{:?}", info.worker);
    w.stop.cancel();
    shutdown.cancel();
}

#[tokio::test]
async fn a_worker_killed_with_queued_attempts_has_them_requeued_once_and_run_elsewhere() {
    let config = ManagerConfig {
        heartbeat_interval: Duration::from_millis(100),
        worker_timeout: Duration::from_millis(1000),
        ..ManagerConfig::default()
    };
    let (manager, shutdown) = start_manager(config);
    let doomed = start_worker(&manager, "doomed", cores(1), 3);
    eventually("the worker registers", async || manager.list_workers().await.unwrap().len() == 1).await;
    let runs = submit(&manager, 4).await;
    eventually("one runs and three are queued", async || {
        doomed.gate.started.load(Ordering::SeqCst) == 1 && queued_on(&manager, "doomed").await == 3
    })
    .await;

    // Killed: no goodbye, nothing reported; the reaper declares it lost.
    doomed.task.abort();
    eventually("the worker is declared lost", async || {
        manager.list_workers().await.unwrap()[0].worker.state == archon_core::model::WorkerState::Lost
    })
    .await;
    let counts = states(&manager, &runs).await;
    assert_eq!(counts.get(&RunState::Pending), Some(&4), "all four requeued: {counts:?}");

    let rescuer = start_worker(&manager, "rescuer", cores(4), 0);
    rescuer.gate.permits.add_permits(4);
    eventually("every run succeeded on the rescuer", async || {
        states(&manager, &runs).await.get(&RunState::Succeeded) == Some(&4)
    })
    .await;
    let doomed_id = WorkerId(1);
    for run in &runs {
        let detail = manager.get_run(*run).await.unwrap();
        let attempts: Vec<(WorkerId, AttemptState)> = detail.attempts.iter().map(|a| (a.worker, a.state)).collect();
        assert_eq!(attempts.len(), 2, "{run} requeued exactly once: {attempts:?}");
        assert_eq!(attempts[0], (doomed_id, AttemptState::Lost), "{run}");
        assert_eq!(attempts[1].1, AttemptState::Finished, "{run}");
        assert_eq!(detail.run.retries_used, 0, "{run}: losing a worker spends no retry");
    }
    assert_eq!(rescuer.gate.started.load(Ordering::SeqCst), 4);
    assert_eq!(doomed.gate.started.load(Ordering::SeqCst), 1, "the queued ones never started on the dead worker");
    rescuer.stop.cancel();
    shutdown.cancel();
}
