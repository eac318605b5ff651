//! The manager and worker runtimes together, in process: submit → place → run →
//! report, retries, cancellation, workers leaving and being reaped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use archon_core::api::{Api, CancelTarget, RunQuery};
use archon_core::executor::{ExecContext, Executor, ExecutorRegistry};
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::model::{AttemptResult, ExitStatus, JobSpec, OutputStream, Resources, RunState, Task, WorkerState};
use archon_core::store::MemStore;
use archon_core::testkit::eventually;
use archon_core::transport::{Hello, InProcTransport, Transport};
use archon_core::worker::{WorkerConfig, WorkerRuntime};
use async_trait::async_trait;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Serves `function:ok`, `function:fail`, `function:flaky` (fails twice, then
/// succeeds), `function:sleep` (until cancelled) and `function:chatty`.
#[derive(Default)]
struct TestExec {
    flaky: AtomicU32,
}

#[async_trait]
impl Executor for TestExec {
    fn capabilities(&self) -> Vec<String> {
        ["ok", "fail", "flaky", "sleep", "chatty"].iter().map(|n| format!("function:{n}")).collect()
    }

    async fn execute(&self, mut ctx: ExecContext) -> AttemptResult {
        let Task::Function { name, input } = &ctx.spec.task else { unreachable!() };
        let status = match name.as_str() {
            "ok" => {
                ctx.output.write(OutputStream::Stdout, input.clone().into()).await;
                ExitStatus::Exited { code: 0 }
            }
            "fail" => ExitStatus::Exited { code: 3 },
            "flaky" => {
                if self.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                    ExitStatus::Exited { code: 1 }
                } else {
                    ExitStatus::Exited { code: 0 }
                }
            }
            "chatty" => {
                // Paced on purpose: the lines must arrive while the run still runs.
                for i in 0..5 {
                    ctx.output.write(OutputStream::Stdout, format!("line {i}\n").into()).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                ExitStatus::Exited { code: 0 }
            }
            _ => {
                ctx.cancel.cancelled().await;
                ExitStatus::Cancelled
            }
        };
        ctx.output.finish(status)
    }
}

fn function(name: &str) -> JobSpec {
    let mut spec = JobSpec::new(name, Task::Function { name: name.into(), input: "\"hi\"".into() });
    spec.retry.backoff_base = Duration::from_millis(20);
    spec.retry.backoff_max = Duration::from_millis(100);
    spec
}

struct Cluster {
    manager: Manager,
    shutdown: CancellationToken,
    workers: Vec<CancellationToken>,
}

impl Cluster {
    async fn start(config: ManagerConfig) -> Cluster {
        let manager = Manager::builder(Arc::new(MemStore::new())).config(config).build();
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let (m, s) = (manager.clone(), shutdown.clone());
            async move { m.run(s).await }
        });
        Cluster { manager, shutdown, workers: Vec::new() }
    }

    fn add_worker(&mut self, name: &str, cpu: u64) -> Arc<WorkerRuntime> {
        let capacity = Resources { cpu_millis: cpu, memory_bytes: 1 << 30, ..Resources::default() };
        self.add_worker_with(WorkerConfig::new(name, capacity))
    }

    fn add_worker_with(&mut self, config: WorkerConfig) -> Arc<WorkerRuntime> {
        let registry = ExecutorRegistry::new().with(Arc::new(TestExec::default()));
        let worker = Arc::new(WorkerRuntime::new(
            config,
            Arc::new(registry),
            Arc::new(InProcTransport::new(self.manager.clone())),
        ));
        let stop = CancellationToken::new();
        tokio::spawn({
            let (w, s) = (worker.clone(), stop.clone());
            async move { w.run(s).await }
        });
        self.workers.push(stop);
        worker
    }

    async fn wait_for_workers(&self, n: usize) {
        eventually(&format!("{n} workers connect"), || async {
            self.manager.list_workers().await.unwrap().iter().filter(|w| w.connected).count() >= n
        })
        .await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for w in &self.workers {
            w.cancel();
        }
    }
}

/// A worker's hello: 1 core, 1 GiB, `function:ok`, nothing running.
fn hello(name: &str) -> Hello {
    Hello {
        protocol: archon_core::transport::PROTOCOL,
        name: name.into(),
        address: String::new(),
        labels: BTreeMap::new(),
        capacity: Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Resources::default() },
        capabilities: ["function:ok".to_owned()].into(),
        running: vec![],
        queue: 0,
    }
}

/// Waits (up to 10 s) until `run` is in `state`.
async fn reach(api: &dyn Api, run: archon_core::model::RunId, state: RunState) {
    eventually(&format!("{run} is {state:?}"), || async { api.get_run(run).await.unwrap().run.state == state }).await;
}

async fn submit_one(api: &dyn Api, spec: JobSpec) -> archon_core::model::RunId {
    let results = api.submit(vec![spec]).await.unwrap();
    results.into_iter().next().unwrap().unwrap().run.unwrap()
}

#[tokio::test]
async fn a_submitted_job_runs_and_its_output_is_kept() {
    let mut c = Cluster::start(ManagerConfig::default()).await;
    c.add_worker("w1", 1000);
    c.wait_for_workers(1).await;
    let run = submit_one(&c.manager, function("ok")).await;
    let detail = tokio::time::timeout(Duration::from_secs(5), c.manager.wait(run)).await.unwrap().unwrap();
    assert_eq!(detail.run.state, RunState::Succeeded);
    assert_eq!(detail.exit(), Some(&ExitStatus::Exited { code: 0 }));
    assert_eq!(&detail.attempts[0].result.as_ref().unwrap().stdout.data[..], b"\"hi\"");
}

#[tokio::test]
async fn failures_are_retried_per_policy() {
    let mut c = Cluster::start(ManagerConfig::default()).await;
    c.add_worker("w1", 1000);
    c.wait_for_workers(1).await;
    let mut flaky = function("flaky");
    flaky.retry.max_retries = 3;
    let mut fail = function("fail");
    fail.retry.max_retries = 2;
    let (flaky, fail) = (submit_one(&c.manager, flaky).await, submit_one(&c.manager, fail).await);
    let flaky = tokio::time::timeout(Duration::from_secs(5), c.manager.wait(flaky)).await.unwrap().unwrap();
    assert_eq!(flaky.run.state, RunState::Succeeded);
    assert_eq!(flaky.attempts.len(), 3);
    let fail = tokio::time::timeout(Duration::from_secs(5), c.manager.wait(fail)).await.unwrap().unwrap();
    assert_eq!(fail.run.state, RunState::Failed);
    assert_eq!(fail.attempts.len(), 3, "one try and two retries");
    assert_eq!(fail.exit(), Some(&ExitStatus::Exited { code: 3 }));
}

#[tokio::test]
async fn cancelling_a_running_run_kills_it_on_the_worker() {
    let mut c = Cluster::start(ManagerConfig::default()).await;
    let worker = c.add_worker("w1", 1000);
    c.wait_for_workers(1).await;
    let run = submit_one(&c.manager, function("sleep")).await;
    reach(&c.manager, run, RunState::Running).await;
    c.manager.cancel(CancelTarget::Run(run)).await.unwrap();
    let detail = tokio::time::timeout(Duration::from_secs(5), c.manager.wait(run)).await.unwrap().unwrap();
    assert_eq!(detail.run.state, RunState::Cancelled);
    assert_eq!(worker.running_count(), 0);
    // Cancelling a finished run is refused with a reason.
    let again = c.manager.cancel(CancelTarget::Run(run)).await.unwrap_err();
    assert!(again.to_string().contains("cancel"), "{again}");
}

#[tokio::test]
async fn placement_respects_capacity_and_everything_finishes() {
    let mut c = Cluster::start(ManagerConfig::default()).await;
    c.add_worker("w1", 1000);
    c.add_worker("w2", 1000);
    c.wait_for_workers(2).await;
    let specs: Vec<JobSpec> = (0..300)
        .map(|_| {
            let mut s = function("ok");
            s.resources.cpu_millis = 250;
            s
        })
        .collect();
    let results = c.manager.submit(specs).await.unwrap();
    let runs: Vec<_> = results.into_iter().map(|r| r.unwrap().run.unwrap()).collect();
    for run in &runs {
        let d = tokio::time::timeout(Duration::from_secs(10), c.manager.wait(*run)).await.unwrap().unwrap();
        assert_eq!(d.run.state, RunState::Succeeded);
        assert_eq!(d.attempts.len(), 1, "ran exactly once");
    }
    let page = c
        .manager
        .list_runs(RunQuery { state: Some(RunState::Succeeded), limit: Some(1000), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 300);
}

#[tokio::test]
async fn follow_streams_output_while_the_run_runs_and_ends_with_it() {
    let mut c = Cluster::start(ManagerConfig::default()).await;
    c.add_worker("w1", 1000);
    c.wait_for_workers(1).await;
    let run = submit_one(&c.manager, function("chatty")).await;
    let mut stream = c.manager.follow(run).await.unwrap();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().data));
    }
    assert_eq!(text, "line 0\nline 1\nline 2\nline 3\nline 4\n");
}

#[tokio::test]
async fn a_leaving_worker_has_its_runs_requeued_elsewhere() {
    let mut c = Cluster::start(ManagerConfig::default()).await;
    c.add_worker("w1", 1000);
    let w1_stop = c.workers[0].clone();
    c.wait_for_workers(1).await;
    let run = submit_one(&c.manager, function("sleep")).await;
    reach(&c.manager, run, RunState::Running).await;
    w1_stop.cancel();
    reach(&c.manager, run, RunState::Pending).await;
    let d = c.manager.get_run(run).await.unwrap();
    assert_eq!(d.run.state, RunState::Pending, "requeued after its worker left");
    assert_eq!(d.run.retries_used, 0, "a lost attempt does not spend a retry");
    c.add_worker("w2", 1000);
    reach(&c.manager, run, RunState::Running).await;
    let d = c.manager.get_run(run).await.unwrap();
    assert_eq!(d.attempts.len(), 2);
    let workers = c.manager.list_workers().await.unwrap();
    assert_eq!(workers.iter().find(|w| w.worker.name == "w1").unwrap().worker.state, WorkerState::Left);
}

#[tokio::test]
async fn a_silent_worker_is_reaped_and_its_runs_requeued() {
    let config = ManagerConfig { worker_timeout: Duration::from_millis(400), ..ManagerConfig::default() };
    let c = Cluster::start(config).await;
    // A worker that registers, takes work, and then says nothing ever again.
    let transport = InProcTransport::new(c.manager.clone());
    let hello = hello("mute");
    let mut session = transport.connect(hello).await.unwrap();
    let run = submit_one(&c.manager, function("ok")).await;
    let assigned = tokio::time::timeout(Duration::from_secs(10), session.inbound.recv()).await.unwrap();
    assert!(matches!(assigned, Some(archon_core::transport::ManagerMessage::Assign(_))));
    // Reaped once the threshold passes; how soon is for benchmarks to measure.
    reach(&c.manager, run, RunState::Pending).await;
    let workers = c.manager.list_workers().await.unwrap();
    assert_eq!(workers[0].worker.state, WorkerState::Lost);
    // Its session is closed, and it is not shown connected although its own
    // stream never ended (an in-process session has no idle limit).
    let closed =
        tokio::time::timeout(Duration::from_secs(10), async { while session.inbound.recv().await.is_some() {} });
    closed.await.expect("the lost worker's session is closed");
    assert!(!c.manager.list_workers().await.unwrap()[0].connected, "a lost worker is shown connected");
    drop(session.outbound);
}

#[tokio::test]
async fn a_duplicate_worker_name_is_refused() {
    let c = Cluster::start(ManagerConfig::default()).await;
    let transport = InProcTransport::new(c.manager.clone());
    let hello = Hello { capabilities: ["shell".to_owned()].into(), ..hello("twin") };
    let _first = transport.connect(hello.clone()).await.unwrap();
    let second = transport.connect(hello).await.unwrap_err();
    assert!(second.to_string().contains("already connected"), "{second}");
}

#[tokio::test]
async fn waits_and_follows_end_when_the_manager_stops() {
    let mut c = Cluster::start(ManagerConfig::default()).await;
    c.add_worker("w1", 1000);
    c.wait_for_workers(1).await;
    let run = submit_one(&c.manager, function("sleep")).await;
    reach(&c.manager, run, RunState::Running).await;
    // Both in flight before the stop: the wait polled until it blocks on the run's end.
    let mut waiter = std::pin::pin!(c.manager.wait(run));
    assert!(futures::poll!(waiter.as_mut()).is_pending(), "the wait ended while the run runs");
    let mut follow = c.manager.follow(run).await.unwrap();
    c.shutdown.cancel();
    let waited = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("wait hung");
    assert!(matches!(waited, Err(archon_core::Error::ShuttingDown)), "{waited:?}");
    let last = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.expect("follow hung");
    assert!(matches!(last, Some(Err(archon_core::Error::ShuttingDown))), "{last:?}");
    assert!(follow.next().await.is_none());
}

#[tokio::test]
async fn a_full_outbox_drops_live_output_but_never_blocks_the_attempt_or_its_result() {
    // A worker whose outbox holds 8 reports runs 20 chatty attempts at once: far
    // more live chunks than fit. Chunks beyond the room are dropped; every attempt
    // still ends, reports, and keeps its full tail.
    let mut c = Cluster::start(ManagerConfig::default()).await;
    let registry = ExecutorRegistry::new().with(Arc::new(TestExec::default()));
    let mut config =
        WorkerConfig::new("tiny-outbox", Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Resources::default() });
    config.outbox = 8;
    let worker =
        Arc::new(WorkerRuntime::new(config, Arc::new(registry), Arc::new(InProcTransport::new(c.manager.clone()))));
    let stop = CancellationToken::new();
    tokio::spawn({
        let (w, s) = (worker.clone(), stop.clone());
        async move { w.run(s).await }
    });
    c.workers.push(stop);
    c.wait_for_workers(1).await;
    // Many runs printing lines at once: far more chunks than the outbox holds.
    let specs: Vec<JobSpec> = (0..20)
        .map(|_| {
            let mut s = function("chatty");
            s.resources.cpu_millis = 10;
            s
        })
        .collect();
    let runs: Vec<_> = c.manager.submit(specs).await.unwrap().into_iter().map(|r| r.unwrap().run.unwrap()).collect();
    for run in runs {
        let d = tokio::time::timeout(Duration::from_secs(10), c.manager.wait(run)).await.expect("blocked").unwrap();
        assert_eq!(d.run.state, RunState::Succeeded);
        // The tail is complete even if live chunks were dropped.
        assert_eq!(d.attempts[0].result.as_ref().unwrap().stdout.text(), "line 0\nline 1\nline 2\nline 3\nline 4\n");
    }
}

#[tokio::test]
async fn a_worker_shutting_down_drains_lets_short_jobs_finish_then_requeues_the_rest() {
    // Generous bounds throughout: CI machines are slow and busy, and each phase
    // is awaited by state rather than by a fixed sleep.
    let mut c = Cluster::start(ManagerConfig::default()).await;
    let mut config =
        WorkerConfig::new("drainer", Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Resources::default() });
    config.drain_grace = Duration::from_secs(3);
    c.add_worker_with(config);
    c.wait_for_workers(1).await;
    let short = submit_one(&c.manager, function("chatty")).await; // ~500 ms
    let long = submit_one(&c.manager, function("sleep")).await; // until killed
    for run in [short, long] {
        reach(&c.manager, run, RunState::Running).await;
    }
    c.workers[0].cancel();
    // While draining: the worker is Draining and a new job is not placed on it.
    eventually("the worker shows as draining", || async {
        c.manager.list_workers().await.unwrap()[0].worker.state == WorkerState::Draining
    })
    .await;
    let late = submit_one(&c.manager, function("ok")).await;
    let short = tokio::time::timeout(Duration::from_secs(10), c.manager.wait(short)).await.expect("short").unwrap();
    assert_eq!(short.run.state, RunState::Succeeded, "a job shorter than the grace finishes");
    eventually("the worker leaves", || async {
        c.manager.list_workers().await.unwrap()[0].worker.state == WorkerState::Left
    })
    .await;
    let long = c.manager.get_run(long).await.unwrap();
    assert_eq!(long.run.state, RunState::Pending, "the job still running after the grace is requeued");
    assert_eq!(long.run.retries_used, 0);
    assert_eq!(
        c.manager.get_run(late).await.unwrap().run.state,
        RunState::Pending,
        "nothing new went to the draining worker"
    );
}

#[tokio::test]
async fn a_run_that_fits_but_not_now_stays_pending_with_its_reason() {
    let mut c = Cluster::start(ManagerConfig::default()).await;
    let capacity = Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Resources::default() };
    c.add_worker_with(WorkerConfig { queue: 1, ..WorkerConfig::new("w1", capacity) });
    c.wait_for_workers(1).await;
    let mut big = function("sleep");
    big.resources.cpu_millis = 800;
    let running = submit_one(&c.manager, big.clone()).await;
    // The second waits in the worker's one-place queue; the third in the cluster's.
    let _queued = submit_one(&c.manager, big.clone()).await;
    let waiting = submit_one(&c.manager, big).await;
    eventually("a pending reason is recorded", || async {
        c.manager.get_run(waiting).await.unwrap().pending_reason.is_some()
    })
    .await;
    let d = c.manager.get_run(waiting).await.unwrap();
    assert_eq!(d.run.state, RunState::Pending);
    let reason = d.pending_reason.unwrap();
    assert!(reason.starts_with("waiting for capacity: needs cpu 800m"), "{reason}");
    assert!(reason.contains("w1 has cpu 200m mem 960MiB free and its queue of 1 full"), "{reason}");
    // Draining the only worker changes the reason; a running run has none.
    let w = c.manager.list_workers().await.unwrap()[0].worker.id;
    c.manager.set_draining(w, true).await.unwrap();
    eventually("the reason follows the drain", || async {
        c.manager.get_run(waiting).await.unwrap().pending_reason.unwrap_or_default().contains("accepts work")
    })
    .await;
    assert_eq!(c.manager.get_run(running).await.unwrap().pending_reason, None);
}

fn hello_protocol(ahead: u32) -> u32 {
    archon_core::transport::PROTOCOL + ahead
}

#[tokio::test]
async fn a_worker_speaking_a_newer_session_protocol_is_refused_and_not_registered() {
    let c = Cluster::start(ManagerConfig::default()).await;
    let transport = InProcTransport::new(c.manager.clone());
    let hello = Hello { protocol: archon_core::transport::PROTOCOL + 1, ..hello("from-the-future") };
    let Err(refused) = transport.connect(hello).await else { panic!("a newer worker was let in") };
    let message = refused.to_string();
    let expected = format!("session protocol {}, this manager {}", hello_protocol(1), hello_protocol(0));
    assert!(message.contains(&expected), "{message}");
    assert!(message.contains("upgrade the managers before the workers"), "{message}");
    assert!(c.manager.list_workers().await.unwrap().is_empty(), "nothing was registered");
}

#[tokio::test]
async fn a_workflow_whose_worker_dies_mid_run_finishes_with_every_node_succeeded_once() {
    use archon_core::model::{Edge, EdgeCondition, WorkflowNode, WorkflowSpec};
    let config = ManagerConfig {
        worker_timeout: Duration::from_millis(400),
        heartbeat_interval: Duration::from_millis(100),
        ..ManagerConfig::default()
    };
    let mut c = Cluster::start(config).await;
    // The first node goes to a worker that takes it and is never heard of again.
    let transport = InProcTransport::new(c.manager.clone());
    let hello = hello("doomed");
    let mut session = transport.connect(hello).await.unwrap();
    let node = |name: &str, after: &[&str]| WorkflowNode {
        name: name.into(),
        job: function("ok"),
        after: after.iter().map(|p| Edge { parent: (*p).into(), when: EdgeCondition::Success }).collect(),
    };
    let spec = WorkflowSpec {
        name: "etl".into(),
        nodes: vec![node("extract", &[]), node("transform", &["extract"]), node("load", &["transform"])],
        schedule: None,
    };
    let jobs = c.manager.submit_workflow(spec).await.unwrap().jobs;
    let assigned = tokio::time::timeout(Duration::from_secs(5), session.inbound.recv()).await.unwrap();
    assert!(matches!(assigned, Some(archon_core::transport::ManagerMessage::Assign(_))), "{assigned:?}");
    // Reaped, its attempt lost and the node requeued; a healthy worker takes over.
    c.add_worker("healthy", 1000);
    let last = c.manager.get_job(jobs[2]).await.unwrap().runs[0].id;
    reach(&c.manager, last, RunState::Succeeded).await;
    for &job in &jobs {
        let detail = c.manager.get_job(job).await.unwrap();
        assert_eq!(detail.runs.len(), 1, "{job}: one run");
        let run = c.manager.get_run(detail.runs[0].id).await.unwrap();
        assert_eq!(run.run.state, RunState::Succeeded, "{job}");
        let succeeded = run
            .attempts
            .iter()
            .filter(|a| a.result.as_ref().is_some_and(|r| r.status == ExitStatus::Exited { code: 0 }))
            .count();
        assert_eq!(succeeded, 1, "{job} succeeded once: {:?}", run.attempts);
        if job == jobs[0] {
            assert_eq!(run.attempts.len(), 2, "the first node's first attempt was lost with its worker");
        }
    }
    drop(session.outbound);
}
