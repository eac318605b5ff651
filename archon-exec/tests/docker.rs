//! The docker executor against the machine's real Docker engine, running the
//! `archon-test/busybox:1` image that `scripts/docker-images` builds from scratch
//! (no registry is reachable). These tests never skip: an unreachable engine or a
//! missing image fails them with what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use archon_core::executor::{DEFAULT_TAIL_LIMIT, Executor};
use archon_core::model::{
    AttemptId, AttemptResult, DockerTask, ExitStatus, JobSpec, PullPolicy, ResourceUsage, Resources, Task,
};
use archon_core::testkit::eventually;
use archon_core::testkit::executor_suite::{self, CollectingSink, SUITE_ATTEMPT, SuiteTasks, context};
use archon_exec::{DockerExecutor, DockerSettings, LABEL_ATTEMPT, LABEL_OWNER};
use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};

/// The test image (see `scripts/docker-images`).
const IMAGE: &str = "archon-test/busybox:1";

/// An executor on the real engine with an owner identity of its own, so tests
/// running at once never see each other's containers.
async fn executor_with(settings: DockerSettings) -> DockerExecutor {
    let executor = DockerExecutor::connect(settings).await.unwrap_or_else(|e| {
        panic!("{e}: the docker tests need the machine's Docker engine (scripts/test checks it is up)")
    });
    let engine = engine();
    if engine.inspect_image(IMAGE).await.is_err() {
        panic!("the test image {IMAGE} is missing: run scripts/docker-images (scripts/test does)");
    }
    executor
}

async fn executor() -> DockerExecutor {
    executor_with(DockerSettings { worker: "docker-tests".into(), ..DockerSettings::default() }).await
}

/// A direct client of the engine, to look at what the executor made.
fn engine() -> Docker {
    Docker::connect_with_unix_defaults().expect("a client for the local engine")
}

fn task(command: &[&str]) -> DockerTask {
    DockerTask {
        image: IMAGE.into(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        entrypoint: None,
        network: "none".into(),
        user: None,
        mounts: vec![],
        pull: PullPolicy::IfNotPresent,
    }
}

fn job(task: DockerTask) -> JobSpec {
    JobSpec::new("docker-test", Task::Docker(Box::new(task)))
}

async fn run(executor: &DockerExecutor, spec: JobSpec) -> AttemptResult {
    let (ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
    tokio::time::timeout(Duration::from_secs(60), executor.execute(ctx)).await.expect("the attempt hung")
}

/// The containers (running or not) that carry `executor`'s owner label.
async fn containers_of(executor: &DockerExecutor) -> Vec<String> {
    let filters = HashMap::from([("label", vec![format!("{LABEL_OWNER}={}", executor.settings().owner)])]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let found = engine().list_containers(Some(options)).await.unwrap();
    found.into_iter().filter_map(|c| c.id).collect()
}

/// The attempt cgroups (in any v1 hierarchy) whose names start with `prefix`.
fn cgroups_named(prefix: &str) -> Vec<String> {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return Vec::new() };
    let mut found = Vec::new();
    for hierarchy in hierarchies.flatten() {
        let Ok(dirs) = std::fs::read_dir(hierarchy.path().join("archon")) else { continue };
        for dir in dirs.flatten() {
            if dir.file_name().to_string_lossy().starts_with(prefix) {
                found.push(dir.path().display().to_string());
            }
        }
    }
    found
}

/// Polls `find` until it finds something; fails after a generous minute.
async fn until_found<T, F: Future<Output = Vec<T>>>(what: &str, mut find: impl FnMut() -> F) -> Vec<T> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = find().await;
        if !found.is_empty() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not found within 60s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_nothing_left(executor: &DockerExecutor, after: &str) {
    let left = containers_of(executor).await;
    assert!(left.is_empty(), "containers left behind after {after}: {left:?}");
}

/// The suite's behaviours as busybox commands.
struct BusyboxTasks;

impl SuiteTasks for BusyboxTasks {
    fn print(&self, text: &str) -> Task {
        Task::Docker(Box::new(task(&["echo", text])))
    }
    fn print_stderr(&self, text: &str) -> Task {
        Task::Docker(Box::new(task(&["sh", "-c", "echo \"$1\" >&2", "sh", text])))
    }
    fn exit_with(&self, code: i32) -> Task {
        Task::Docker(Box::new(task(&["sh", "-c", &format!("exit {code}")])))
    }
    fn sleep(&self, secs: u64) -> Task {
        Task::Docker(Box::new(task(&["sleep", &secs.to_string()])))
    }
    fn print_bytes(&self, n: usize) -> Task {
        Task::Docker(Box::new(task(&["sh", "-c", &format!("head -c {n} /dev/zero | tr '\\0' x")])))
    }
    fn exit_codes(&self) -> Vec<i32> {
        vec![1, 42, 255]
    }
}

#[tokio::test]
async fn the_docker_executor_conforms_and_leaves_no_container() {
    let executor = Arc::new(executor().await);
    executor_suite::run_all(executor.clone(), &BusyboxTasks).await;
    assert_nothing_left(&executor, "the conformance suite (success, failure, timeout, cancel)").await;
}

#[tokio::test]
async fn env_secret_env_workdir_user_and_entrypoint_reach_the_container() {
    let executor = executor().await;
    let mut t = task(&["echo \"$GREETING from $(pwd) as $(id -u) with $TOKEN\""]);
    t.entrypoint = Some(vec!["sh".into(), "-c".into()]);
    t.user = Some("65534:65534".into());
    let mut spec = job(t);
    spec.env.insert("GREETING".into(), "hello".into());
    spec.secret_env.insert("TOKEN".into(), "s3cr3t".into());
    spec.working_dir = Some("/tmp".into());
    let r = run(&executor, spec).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "stderr: {}", r.stderr.text());
    assert_eq!(r.stdout.text().trim(), "hello from /tmp as 65534 with s3cr3t");
}

#[tokio::test]
async fn a_job_allocating_past_its_memory_limit_ends_out_of_memory() {
    let executor = executor().await;
    let mut spec = job(task(&["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"]));
    spec.resources = Resources { cpu_millis: 500, memory_bytes: 32 << 20, ..Resources::default() };
    let r = run(&executor, spec).await;
    assert_eq!(r.status, ExitStatus::OutOfMemory, "stderr: {}", r.stderr.text());
    assert_eq!(r.status.shell_code(), 137);
    // Under the limit the same job succeeds: the limit, not the image, killed it.
    let mut spec = job(task(&["dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"]));
    spec.resources = Resources { cpu_millis: 500, memory_bytes: 32 << 20, ..Resources::default() };
    let r = run(&executor, spec).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "stderr: {}", r.stderr.text());
    assert_nothing_left(&executor, "an OOM kill").await;
}

#[tokio::test]
async fn cpu_memory_pids_limits_and_labels_are_set_on_the_container() {
    let executor = executor().await;
    let mut spec = job(task(&["sleep", "30"]));
    spec.resources = Resources { cpu_millis: 500, memory_bytes: 128 << 20, ..Resources::default() };
    let (ctx, cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
    let attempt = tokio::spawn({
        let executor = executor.clone();
        async move { executor.execute(ctx).await }
    });
    let id = until_found("the attempt's container", || containers_of(&executor)).await.remove(0);
    let inspect = engine().inspect_container(&id, None::<InspectContainerOptions>).await.unwrap();
    let host = inspect.host_config.unwrap();
    assert_eq!(host.nano_cpus, Some(500_000_000), "500m CPU is half a core");
    assert_eq!(host.memory, Some(128 << 20));
    assert_eq!(host.memory_swap, Some(128 << 20), "no swap beyond the limit");
    assert_eq!(host.pids_limit, Some(archon_exec::DEFAULT_PIDS_LIMIT));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    let labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(labels[LABEL_ATTEMPT], SUITE_ATTEMPT.to_string());
    assert_eq!(labels["archon.worker"], "docker-tests");
    cancel.cancel();
    let r = attempt.await.unwrap();
    assert_eq!(r.status, ExitStatus::Cancelled);
    assert_nothing_left(&executor, "a cancel").await;
}

#[tokio::test]
async fn network_none_has_only_loopback_and_bridge_has_an_interface() {
    let executor = executor().await;
    let r = run(&executor, job(task(&["ls", "/sys/class/net"]))).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "stderr: {}", r.stderr.text());
    assert_eq!(r.stdout.text().split_whitespace().collect::<Vec<_>>(), ["lo"]);
    let mut bridged = task(&["ls", "/sys/class/net"]);
    bridged.network = "bridge".into();
    let r = run(&executor, job(bridged)).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "stderr: {}", r.stderr.text());
    assert!(r.stdout.text().contains("eth0"), "a bridged container has eth0: {}", r.stdout.text());
}

#[tokio::test]
async fn a_timeout_stops_and_removes_the_container_even_when_it_ignores_sigterm() {
    let grace = Duration::from_secs(1);
    let executor =
        executor_with(DockerSettings { worker: "docker-tests".into(), kill_grace: grace, ..DockerSettings::default() })
            .await;
    // A shell that ignores SIGTERM needs the SIGKILL after the grace. Each sleeps far
    // past `run`'s 60 s limit, so only the timeout's stop ends it in time; how soon
    // is for benchmarks.
    let timeout = Duration::from_secs(1);
    for command in [&["sleep", "600"][..], &["sh", "-c", "trap '' TERM; sleep 600"]] {
        let mut spec = job(task(command));
        spec.timeout = Some(timeout);
        let started = Instant::now();
        let r = run(&executor, spec).await;
        let took = started.elapsed();
        assert_eq!(r.status, ExitStatus::TimedOut, "{command:?}");
        assert!(took >= timeout, "{command:?} ended after {took:?}, before its timeout");
        assert_nothing_left(&executor, "a timeout").await;
    }
}

#[tokio::test]
async fn orphans_of_a_crashed_worker_are_removed_by_its_successor() {
    let settings = DockerSettings { worker: "docker-tests".into(), ..DockerSettings::default() };
    let crashed = executor_with(settings.clone()).await;
    let (ctx, _cancel) = context(job(task(&["sleep", "300"])), DEFAULT_TAIL_LIMIT, None);
    let attempt = tokio::spawn(async move { crashed.execute(ctx).await });
    let successor = executor_with(settings).await;
    let running = until_found("the attempt's container", || containers_of(&successor)).await;
    // The worker dies without cleaning up: its attempt is simply gone.
    attempt.abort();
    let _ = attempt.await;
    // A negative check, so a fixed moment: nothing marks when a cleanup the dropped
    // attempt might have left running would have removed the container.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(containers_of(&successor).await, running, "the crashed attempt's container still runs");
    let removed = successor.remove_orphans().await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(removed[0].starts_with(&format!("archon-{SUITE_ATTEMPT}-")), "{removed:?}");
    assert_nothing_left(&successor, "remove_orphans").await;
    assert_eq!(cgroups_named(&removed[0]), Vec::<String>::new(), "the orphan's cgroup went with it");
    assert!(successor.remove_orphans().await.unwrap().is_empty(), "a second call finds nothing");
}

#[tokio::test]
async fn pull_policies_use_the_local_image_and_explain_a_failed_pull() {
    let executor = executor().await;
    let mut missing = task(&["true"]);
    missing.image = "archon-test/not-built-anywhere:1".into();
    let r = run(&executor, job(missing.clone())).await;
    let ExitStatus::Failed { reason } = r.status else { panic!("expected a failure, got {:?}", r.status) };
    assert!(reason.contains("not found locally and pull failed: "), "{reason}");
    assert!(reason.contains("docker load"), "{reason}");

    missing.pull = PullPolicy::Never;
    let r = run(&executor, job(missing)).await;
    let ExitStatus::Failed { reason } = r.status else { panic!("expected a failure, got {:?}", r.status) };
    assert!(reason.contains("not found locally and the pull policy is never"), "{reason}");

    let mut local = task(&["true"]);
    local.pull = PullPolicy::Never;
    assert_eq!(run(&executor, job(local.clone())).await.status, ExitStatus::Exited { code: 0 });
    local.pull = PullPolicy::Always;
    let r = run(&executor, job(local)).await;
    let ExitStatus::Failed { reason } = r.status else { panic!("expected a failure, got {:?}", r.status) };
    assert!(reason.contains("pull of image") && reason.contains("pull policy always"), "{reason}");
    assert_nothing_left(&executor, "failed pulls").await;
}

#[tokio::test]
async fn a_missing_program_fails_with_the_engines_reason() {
    let executor = executor().await;
    let r = run(&executor, job(task(&["no-such-program"]))).await;
    assert!(!r.status.is_success(), "{:?}", r.status);
    let said = format!("{:?} {}", r.status, r.stderr.text());
    assert!(said.contains("no-such-program"), "the failure should name the program: {said}");
    assert_nothing_left(&executor, "a missing program").await;
}

#[tokio::test]
async fn bind_mounts_work_where_the_worker_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = task(&["sh", "-c", "echo written > /data/out"]);
    t.mounts = vec![format!("{}:/data", dir.path().display())];
    let refused = run(&executor().await, job(t.clone())).await;
    assert!(matches!(&refused.status, ExitStatus::Failed { reason } if reason.contains("--docker-allow-mounts")));
    let allowing = executor_with(DockerSettings {
        worker: "docker-tests".into(),
        allow_mounts: true,
        ..DockerSettings::default()
    })
    .await;
    let r = run(&allowing, job(t)).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "stderr: {}", r.stderr.text());
    assert_eq!(std::fs::read_to_string(dir.path().join("out")).unwrap(), "written\n");
}

/// A unix socket that forwards to the engine's until [`EngineProxy::cut`]: the
/// engine, as far as an executor connected through it can tell, goes away.
struct EngineProxy {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl EngineProxy {
    fn start() -> EngineProxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let server = tokio::spawn({
            let links = links.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let link = tokio::spawn(async move {
                        let mut upstream =
                            tokio::net::UnixStream::connect(archon_exec::DEFAULT_DOCKER_SOCKET).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        EngineProxy { path, _dir: dir, server, links }
    }

    /// Stops accepting and drops every forwarded connection.
    fn cut(&self) {
        self.server.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

#[tokio::test]
async fn an_engine_lost_mid_attempt_fails_it_with_a_clear_reason_not_a_hang() {
    let proxy = EngineProxy::start();
    let settings = DockerSettings {
        worker: "docker-tests".into(),
        socket: proxy.path.display().to_string(),
        ..DockerSettings::default()
    };
    let through_proxy = executor_with(settings.clone()).await;
    let sink = Arc::new(CollectingSink::new());
    let (ctx, _cancel) =
        context(job(task(&["sh", "-c", "echo up; sleep 300"])), DEFAULT_TAIL_LIMIT, Some(sink.clone()));
    let attempt = tokio::spawn({
        let executor = through_proxy.clone();
        async move { executor.execute(ctx).await }
    });
    let direct = executor_with(DockerSettings { socket: archon_exec::DEFAULT_DOCKER_SOCKET.into(), ..settings }).await;
    // Started and streaming through the proxy: the cut falls while it waits.
    eventually("the container's first line reaches the executor", async || {
        sink.bytes(archon_core::model::OutputStream::Stdout).starts_with(b"up")
    })
    .await;
    proxy.cut();
    // The container sleeps 300 s: ending well before that is noticing the cut.
    let r = tokio::time::timeout(Duration::from_secs(60), attempt).await.expect("the attempt hung").unwrap();
    let ExitStatus::Failed { reason } = &r.status else { panic!("expected a failure, got {:?}", r.status) };
    assert!(reason.contains("Docker engine") && reason.contains("unreachable"), "{reason}");
    // The container outlived its executor's engine link; the worker's next start
    // (or here, the direct client) removes it.
    assert_eq!(direct.remove_orphans().await.unwrap().len(), 1);
}

/// Allocates and touches 100 MiB (dd's buffer), then burns about 0.5 s of CPU in a
/// shell loop.
const BURN: &str = "dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null; \
                    i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done";

/// Runs `spec` as attempt `attempt` (not the suite's, so its cgroup can be told
/// apart from those of tests running at the same time).
async fn run_as(executor: &DockerExecutor, attempt: AttemptId, spec: JobSpec) -> AttemptResult {
    let (mut ctx, _cancel) = context(spec, DEFAULT_TAIL_LIMIT, None);
    ctx.attempt = attempt;
    tokio::time::timeout(Duration::from_secs(60), executor.execute(ctx)).await.expect("the attempt hung")
}

/// `task` with room for the 100 MiB it allocates and a whole core (the default
/// request is smaller than either).
fn roomy(task: DockerTask) -> JobSpec {
    let mut spec = job(task);
    spec.resources = Resources { cpu_millis: 1000, memory_bytes: 512 << 20, ..Resources::default() };
    spec
}

fn peak_mb(usage: &ResourceUsage) -> f64 {
    usage.peak_memory_bytes as f64 / 1e6
}

#[tokio::test]
async fn a_container_reports_the_cpu_time_and_peak_memory_it_used() {
    let executor = executor().await;
    let attempt = AttemptId(7_100);
    let r = run_as(&executor, attempt, roomy(task(&["sh", "-c", BURN]))).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "stderr: {}", r.stderr.text());
    let usage = r.usage.expect("a container that ran reports its usage");
    let cpu = usage.cpu().as_secs_f64();
    // The loop takes a quarter to half a second of CPU depending on the host: the
    // bound only says the container's CPU was counted, not a speed.
    assert!((0.05..=3.0).contains(&cpu), "cpu {cpu:.3}s is outside [0.05s, 3s]: {usage:?}");
    assert!((90.0..=400.0).contains(&peak_mb(&usage)), "peak outside [90, 400] MB: {usage:?}");
    assert!(usage.wall_us + 20_000 >= usage.cpu_us(), "more CPU than wall time: {usage:?}");
    assert!(usage.wall() < Duration::from_secs(30), "wall time {:?}", usage.wall());
    assert_nothing_left(&executor, "a measured run").await;
    assert_eq!(cgroups_named(&format!("archon-{attempt}-")), Vec::<String>::new(), "its cgroup was removed");
}

#[tokio::test]
async fn without_cgroups_a_container_reports_the_peak_its_stats_showed() {
    let settings = DockerSettings { worker: "docker-tests".into(), cgroup_usage: false, ..DockerSettings::default() };
    let executor = executor_with(settings).await;
    // Stats come about once a second: the job outlives its peak by a few.
    let command = "dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null; sleep 3";
    let r = run_as(&executor, AttemptId(7_200), roomy(task(&["sh", "-c", command]))).await;
    assert_eq!(r.status, ExitStatus::Exited { code: 0 }, "stderr: {}", r.stderr.text());
    let usage = r.usage.expect("a container that ran reports its usage");
    assert!((90.0..=400.0).contains(&peak_mb(&usage)), "peak outside [90, 400] MB: {usage:?}");
    assert!(usage.cpu_us() > 0, "dd's CPU time was sampled: {usage:?}");
    assert!(usage.wall() >= Duration::from_secs(3), "wall time {:?} is shorter than the sleep", usage.wall());
}

#[tokio::test]
async fn a_container_that_never_started_reports_no_usage() {
    let executor = executor().await;
    let mut missing = task(&["true"]);
    missing.image = "archon-test/not-built-anywhere:1".into();
    missing.pull = PullPolicy::Never;
    let r = run_as(&executor, AttemptId(7_300), job(missing)).await;
    assert!(matches!(r.status, ExitStatus::Failed { .. }), "{:?}", r.status);
    assert_eq!(r.usage, None);
    let left = cgroups_named(&format!("archon-{}-", AttemptId(7_300)));
    assert_eq!(left, Vec::<String>::new(), "the cgroup made for it was removed");
}
