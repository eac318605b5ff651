//! Cron schedules on the durable Raft store, on a manual clock: a cluster
//! stopped for three simulated hours runs, on restart, exactly the fires inside
//! the catch-up window (in order) and records the older ones as missed, and
//! nothing fires twice across restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use archon_core::api::Api;
use archon_core::clock::ManualClock;
use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::manager::Manager;
use archon_core::model::{
    AttemptResult, ExitStatus, JobId, JobSpec, OverlapPolicy, Resources, RunState, Schedule, Task, Timestamp,
};
use archon_core::testkit::eventually;
use archon_core::transport::InProcTransport;
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use archon_raft::{RaftConfig, RaftStore};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

/// Serves `function:ok`: succeeds at once.
struct Succeed;

#[async_trait]
impl Executor for Succeed {
    fn capabilities(&self) -> Vec<String> {
        vec!["function:ok".into()]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        ctx.output.finish(ExitStatus::Exited { code: 0 })
    }
}

/// A manager on a Raft store in `dir`, with one in-process worker, on `clock`.
struct Node {
    store: RaftStore,
    manager: Manager,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    async fn start(dir: &std::path::Path, clock: &ManualClock, fresh: bool) -> Node {
        let store = RaftStore::open(RaftConfig::new(1, "127.0.0.1:1", dir)).await.unwrap();
        if fresh {
            store.bootstrap(BTreeMap::new()).await.unwrap();
        }
        store.wait_for_leadership(Duration::from_secs(10)).await.unwrap();
        let manager = Manager::builder(Arc::new(store.clone())).clock(Arc::new(clock.clone())).build();
        let stop = CancellationToken::new();
        let mut tasks = vec![tokio::spawn({
            let (m, s) = (manager.clone(), stop.clone());
            async move {
                m.run(s).await.unwrap();
            }
        })];
        let capacity = Resources { cpu_millis: 4000, memory_bytes: 1 << 30, ..Resources::default() };
        let worker = Arc::new(WorkerRuntime::new(
            WorkerConfig::new("w", capacity),
            Arc::new(ExecutorRegistry::new().with(Arc::new(Succeed))),
            Arc::new(InProcTransport::new(manager.clone())),
        ));
        tasks.push(tokio::spawn({
            let s = stop.clone();
            async move {
                let _ = worker.run(s).await;
            }
        }));
        Node { store, manager, stop, tasks }
    }

    /// Stops the worker and the manager, then the store, and lets go of the
    /// data dir (so the next node can open it).
    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
        drop(self.manager);
        let files = self.store.files();
        self.store.shutdown().await.unwrap();
        drop(self.store);
        // The node's tasks and threads let go of its files as they wind down.
        assert!(files.wait_closed(Duration::from_secs(30)).await, "the node's files still open 30 s after it stopped");
    }
}

fn utc(text: &str) -> Timestamp {
    let t = humantime::parse_rfc3339(text).unwrap();
    Timestamp(i64::try_from(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap())
}

fn cron_spec(expr: &str, tz: &str, overlap: OverlapPolicy) -> JobSpec {
    let mut spec = JobSpec::new("tick", Task::Function { name: "ok".into(), input: "null".into() });
    spec.schedule = Some(Box::new(Schedule { timezone: tz.into(), overlap, ..Schedule::new(expr) }));
    spec
}

/// The fire instants of `job`'s runs that succeeded, oldest first.
async fn ran(api: &dyn Api, job: JobId) -> Vec<Timestamp> {
    let detail = api.get_job(job).await.unwrap();
    let mut at: Vec<Timestamp> = detail
        .runs
        .iter()
        .filter(|r| r.state == RunState::Succeeded)
        .map(|r| r.scheduled_for.expect("a cron run has its fire instant"))
        .collect();
    at.sort();
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_three_hours_down_exactly_the_fires_inside_the_catch_up_window_run() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(utc("2026-03-02T00:00:30Z"));
    let node = Node::start(dir.path(), &clock, true).await;
    let spec = cron_spec("*/10 * * * *", "UTC", OverlapPolicy::BufferAll);
    let job = node.manager.submit(vec![spec]).await.unwrap().remove(0).unwrap().job;
    clock.advance(Duration::from_secs(600));
    eventually("the 00:10 fire ran", || async { ran(&node.manager, job).await.len() == 1 }).await;
    node.stop().await;

    // Three hours down; back at 03:10:30. The window (1 h) reaches to 02:10:30.
    clock.advance(Duration::from_secs(3 * 3600));
    let node = Node::start(dir.path(), &clock, false).await;
    let expected: Vec<Timestamp> = ["00:10", "02:20", "02:30", "02:40", "02:50", "03:00", "03:10"]
        .iter()
        .map(|hm| utc(&format!("2026-03-02T{hm}:00Z")))
        .collect();
    eventually("the fires inside the window ran", || async { ran(&node.manager, job).await.len() >= 7 }).await;
    let detail = node.manager.get_job(job).await.unwrap();
    let schedule = detail.schedule.expect("a cron job shows its schedule").state;
    assert_eq!(ran(&node.manager, job).await, expected, "exactly the fires inside the window, in order");
    // 00:20 … 02:10 were older than the window: recorded, not run.
    assert_eq!(schedule.missed.count, 12, "{schedule:?}");
    assert_eq!(schedule.missed.recent.back(), Some(&utc("2026-03-02T02:10:00Z")));
    assert_eq!(schedule.missed.recent.len(), 10);
    assert_eq!(schedule.fired.count, 7);
    assert_eq!(schedule.cursor, utc("2026-03-02T03:10:00Z"));

    // Another restart: the new leader's ticker carries on from the cursor, so
    // the next fire is 03:20 and none of the earlier ones fires again.
    node.stop().await;
    let node = Node::start(dir.path(), &clock, false).await;
    clock.advance(Duration::from_secs(10 * 60));
    eventually("the 03:20 fire ran", || async { ran(&node.manager, job).await.len() >= 8 }).await;
    let mut expected = expected;
    expected.push(utc("2026-03-02T03:20:00Z"));
    assert_eq!(ran(&node.manager, job).await, expected, "nothing fired twice");
    let schedule = node.manager.get_job(job).await.unwrap().schedule.unwrap().state;
    assert_eq!((schedule.fired.count, schedule.missed.count), (8, 12));
    node.stop().await;
}
