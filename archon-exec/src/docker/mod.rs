//! [`DockerExecutor`]: runs [`Task::Docker`] jobs as containers on the worker's
//! Docker engine, through its API socket (bollard).
//!
//! One attempt is one container, created with the job's limits and labels (see
//! [`spec`]), attached before it starts so no output is missed, and removed
//! whatever the end: success, failure, timeout, cancel or worker shutdown. A
//! timeout or cancel sends SIGTERM, then SIGKILL after the grace period; with
//! docker-init as PID 1 (the default) the signal reaches the job itself.
//!
//! Every container carries the label `archon.owner` with the worker's identity
//! (its state dir). A worker restarted after a crash calls
//! [`DockerExecutor::remove_orphans`] before taking work: the containers its
//! previous life left running belong to attempts whose runs were requeued.
//!
//! An engine lost mid-attempt ends it as failed with a reason naming the engine;
//! nothing waits on it forever.
//!
//! An attempt whose container started reports its usage: exactly, through a cgroup
//! parent of its own, where the engine and this process allow it; otherwise as the
//! engine's stats last sampled it (see [`usage`]).

mod image;
mod spec;
mod usage;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use archon_core::executor::{ExecContext, Executor};
use archon_core::model::{
    AttemptResult, DockerTask, ExitStatus, OutputStream, PullPolicy, ResourceUsage, Task, TaskKind,
};
use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, SystemInfoCgroupDriverEnum, SystemInfoCgroupVersionEnum};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures::StreamExt;
use tokio::time::Instant;

pub use spec::{LABEL_ATTEMPT, LABEL_JOB, LABEL_MANAGED, LABEL_OWNER, LABEL_RUN, LABEL_WORKER};

use crate::child::{DEFAULT_KILL_GRACE, sleep_until};
use crate::error::ExecError;
use crate::usage::micros;
use usage::{AttemptCgroup, CGROUP_ROOT, StatsSampler};

/// The engine's socket when neither the settings nor `DOCKER_HOST` name one.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The pids limit a container gets unless the worker sets another.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// How long one request to the engine may take to answer (a pull's progress and an
/// attempt's output stream may last longer).
const REQUEST_TIMEOUT_SECS: u64 = 30;

/// How long output is still read after the container exited.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// How long after SIGKILL the engine may take to confirm the container stopped
/// before the attempt is given up as lost with the engine.
const STOP_CONFIRM_LIMIT: Duration = Duration::from_secs(15);

/// How a worker uses its Docker engine.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// The engine's API socket: a path, or `unix://PATH`.
    pub socket: String,
    /// The worker's name, put on every container as `archon.worker`.
    pub worker: String,
    /// The worker instance's identity, put on every container as `archon.owner`;
    /// [`DockerExecutor::remove_orphans`] removes the containers carrying it. Use
    /// something unique to the worker on its host and stable across its restarts,
    /// such as its state dir.
    pub owner: String,
    /// Whether jobs may bind-mount host paths (`mounts`). Off by default: a bind
    /// mount reaches the worker's file system.
    pub allow_mounts: bool,
    /// The most processes a container may hold; `None` for the engine's default.
    pub pids_limit: Option<i64>,
    /// Time between SIGTERM and SIGKILL on timeout or cancel.
    pub kill_grace: Duration,
    /// Run docker-init as the container's PID 1, so signals reach the job.
    pub init: bool,
    /// Give each container a cgroup parent of its own (`/archon/<container>`) so
    /// its usage can be read exactly after it exits. Takes effect only when the
    /// engine uses the cgroupfs driver with cgroup v1 and this process may create
    /// cgroups; otherwise, or when off, usage is sampled from the engine's stats.
    pub cgroup_usage: bool,
}

impl Default for DockerSettings {
    /// The socket from `DOCKER_HOST` (when it is `unix://…`) or
    /// [`DEFAULT_DOCKER_SOCKET`], a worker named `archon`, an owner unique to this
    /// process, no mounts, [`DEFAULT_PIDS_LIMIT`], [`DEFAULT_KILL_GRACE`], docker-init,
    /// usage through cgroups where possible.
    fn default() -> Self {
        DockerSettings {
            socket: default_socket(),
            worker: "archon".to_owned(),
            owner: format!("pid-{}-{}", std::process::id(), nonce()),
            allow_mounts: false,
            pids_limit: Some(DEFAULT_PIDS_LIMIT),
            kill_grace: DEFAULT_KILL_GRACE,
            init: true,
            cgroup_usage: true,
        }
    }
}

impl DockerSettings {
    /// The defaults, with `worker` as the worker's name and `state_dir` as its
    /// identity (see [`DockerSettings::owner`]).
    pub fn for_worker(worker: impl Into<String>, state_dir: &Path) -> DockerSettings {
        let owner = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
        DockerSettings { worker: worker.into(), owner: owner.display().to_string(), ..DockerSettings::default() }
    }
}

/// The engine's socket path named by `DOCKER_HOST`, if it names a unix socket, or
/// the default.
fn default_socket() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => host,
        _ => DEFAULT_DOCKER_SOCKET.to_owned(),
    }
}

/// Runs `docker` tasks. Build it with [`DockerExecutor::connect`], which fails
/// when no engine answers; a worker that cannot connect does not advertise the
/// `docker` capability.
#[derive(Debug, Clone)]
pub struct DockerExecutor {
    docker: Docker,
    settings: DockerSettings,
    /// The engine, as named in errors.
    engine: String,
    /// Whether the engine puts containers in cgroup v1 hierarchies under the
    /// parent it is given (cgroupfs driver), so attempts can have their own.
    cgroupfs_v1: bool,
}

impl DockerExecutor {
    /// Connects to the engine at `settings.socket`, checks it answers, and settles
    /// on the API version both sides speak.
    pub async fn connect(settings: DockerSettings) -> Result<DockerExecutor, crate::Error> {
        let engine = settings.socket.trim_start_matches("unix://").to_owned();
        let unreachable =
            |e: DockerError| ExecError::DockerUnreachable { engine: engine.clone(), message: e.to_string() };
        let path = format!("unix://{engine}");
        let docker = Docker::connect_with_unix(&path, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        let cgroupfs_v1 = match docker.info().await {
            Ok(info) => {
                info.cgroup_driver == Some(SystemInfoCgroupDriverEnum::CGROUPFS)
                    && info.cgroup_version == Some(SystemInfoCgroupVersionEnum::_1)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the engine's cgroup setup; usage comes from its stats");
                false
            }
        };
        Ok(DockerExecutor { docker, settings, engine, cgroupfs_v1 })
    }

    /// The settings it runs containers with.
    pub fn settings(&self) -> &DockerSettings {
        &self.settings
    }

    /// Removes (forcibly, killing them if running) every container labelled with
    /// this worker's owner identity, and returns their names. A worker calls it at
    /// start, before taking work: such containers belong to attempts of a previous
    /// life that crashed, whose runs the manager has requeued.
    pub async fn remove_orphans(&self) -> Result<Vec<String>, crate::Error> {
        let filters = HashMap::from([("label", vec![format!("{LABEL_OWNER}={}", self.settings.owner)])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let found = self.docker.list_containers(Some(options)).await.map_err(|e| self.lost(e))?;
        let mut removed = Vec::new();
        for container in found {
            let Some(id) = container.id else { continue };
            self.remove(&id).await.map_err(|e| self.lost(e))?;
            let name = container.names.and_then(|n| n.into_iter().next()).unwrap_or(id);
            let name = name.trim_start_matches('/').to_owned();
            if self.cgroupfs_v1 {
                usage::remove_cgroup(Path::new(CGROUP_ROOT), &name);
            }
            removed.push(name);
        }
        Ok(removed)
    }

    /// The error for a request the engine did not serve.
    fn lost(&self, e: DockerError) -> ExecError {
        ExecError::DockerUnreachable { engine: self.engine.clone(), message: e.to_string() }
    }

    async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Err(DockerError::DockerResponseServerError { status_code: 404, .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends `signal` to the container's PID 1; a container that already stopped
    /// is not an error.
    async fn signal(&self, id: &str, signal: &str) {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        match self.docker.kill_container(id, Some(options)).await {
            Ok(()) | Err(DockerError::DockerResponseServerError { status_code: 404 | 409, .. }) => {}
            Err(e) => tracing::warn!(container = id, signal, error = %e, "cannot signal the container"),
        }
    }

    /// Runs the created container `id` to its end and says how it ended.
    async fn supervise(&self, id: &str, ctx: &mut Attempt) -> Result<ExitStatus, ExecError> {
        // Attached before the start, so the stream alone carries everything. No `logs`:
        // the engine subscribes the stream before it answers the attach and replays
        // the log file only after, so a line written between our start and that replay
        // would come twice.
        let attach = AttachContainerOptionsBuilder::new().stream(true).stdout(true).stderr(true).logs(false).build();
        let attached = self.docker.attach_container(id, Some(attach)).await.map_err(|e| self.lost(e))?;
        let mut logs = Some(attached.output);
        if ctx.cancel.is_cancelled() {
            return Ok(ExitStatus::Cancelled);
        }
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| ExecError::ContainerStart { image: ctx.image.clone(), message: engine_message(e) })?;
        ctx.started = Some(Instant::now());
        ctx.output.spawned();
        if ctx.cgroup.is_none() {
            ctx.sampler = Some(StatsSampler::start(&self.docker, id));
        }
        let mut wait = Box::pin(self.docker.wait_container(id, None));

        let mut ending: Option<ExitStatus> = None;
        let mut sigkill_at: Option<Instant> = None;
        let mut give_up_at: Option<Instant> = None;
        let mut drain_until: Option<Instant> = None;
        let mut exit: Option<Result<i64, ExecError>> = None;
        loop {
            if exit.is_some() && logs.is_none() {
                break;
            }
            tokio::select! {
                item = next_output(&mut logs), if logs.is_some() => {
                    if let Some((stream, data)) = item {
                        ctx.output.write(stream, data).await;
                    }
                }
                waited = wait.next(), if exit.is_none() => {
                    ctx.exited = Some(Instant::now());
                    exit = Some(match waited {
                        Some(Ok(response)) => Ok(response.status_code),
                        Some(Err(DockerError::DockerContainerWaitError { code, error })) if error.is_empty() => Ok(code),
                        Some(Err(e)) => Err(self.lost(e)),
                        None => Err(ExecError::DockerUnreachable {
                            engine: self.engine.clone(),
                            message: "the wait for the container ended without its exit code".to_owned(),
                        }),
                    });
                    drain_until = Some(Instant::now() + OUTPUT_DRAIN_LIMIT);
                }
                () = sleep_until(ctx.deadline), if ending.is_none() && exit.is_none() => {
                    tracing::debug!(container = id, "timeout expired; stopping the container");
                    ending = Some(ExitStatus::TimedOut);
                    self.signal(id, "SIGTERM").await;
                    sigkill_at = Some(Instant::now() + self.settings.kill_grace);
                }
                () = ctx.cancel.cancelled(), if ending.is_none() && exit.is_none() => {
                    tracing::debug!(container = id, "cancelled; stopping the container");
                    ending = Some(ExitStatus::Cancelled);
                    self.signal(id, "SIGTERM").await;
                    sigkill_at = Some(Instant::now() + self.settings.kill_grace);
                }
                () = sleep_until(sigkill_at), if exit.is_none() => {
                    tracing::debug!(container = id, "grace period over; killing the container");
                    self.signal(id, "SIGKILL").await;
                    sigkill_at = None;
                    give_up_at = Some(Instant::now() + STOP_CONFIRM_LIMIT);
                }
                () = sleep_until(give_up_at), if exit.is_none() => {
                    exit = Some(Err(ExecError::DockerUnreachable {
                        engine: self.engine.clone(),
                        message: format!("the engine did not confirm the container stopped {STOP_CONFIRM_LIMIT:?} after SIGKILL"),
                    }));
                }
                () = sleep_until(drain_until), if logs.is_some() => {
                    tracing::debug!(container = id, "output still open after the container exited");
                    break;
                }
            }
        }
        let code = match exit {
            Some(Ok(code)) => code,
            Some(Err(e)) => return Err(e),
            None => unreachable_exit(),
        };
        if let Some(ending) = ending {
            return Ok(ending);
        }
        if code != 0 && self.oom_killed(id, code).await {
            return Ok(ExitStatus::OutOfMemory);
        }
        Ok(ExitStatus::Exited { code: i32::try_from(code).unwrap_or(i32::MAX) })
    }

    /// Whether the engine saw the container's memory cgroup kill a process.
    /// The engine records the OOM event apart from the exit, and now and then
    /// after it — on a busy host more than half a second after (seen under the
    /// whole test suite on 2 cores): a SIGKILL exit (137) that is not marked yet
    /// is asked about again every 100 ms for up to 2 s before it counts as a
    /// plain exit. Only SIGKILL exits pay that wait.
    async fn oom_killed(&self, id: &str, code: i64) -> bool {
        let tries = if code == 137 { 21 } else { 1 };
        for i in 0..tries {
            if i > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            match self.docker.inspect_container(id, None).await {
                Ok(inspect) if inspect.state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false) => return true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(container = id, error = %e, "cannot inspect the container for an OOM kill");
                    return false;
                }
            }
        }
        false
    }
}

/// Why a container was not created.
enum Created {
    /// The image is not on the engine.
    NoImage,
    /// Anything else.
    Failed(ExecError),
}

impl DockerExecutor {
    /// Creates the container `name`; its id.
    async fn create(&self, name: &str, task: &DockerTask, body: ContainerCreateBody) -> Result<String, Created> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => Ok(created.id),
            Err(DockerError::DockerResponseServerError { status_code: 404, message })
                if message.contains("No such image") =>
            {
                Err(Created::NoImage)
            }
            Err(e @ DockerError::DockerResponseServerError { .. }) => {
                Err(Created::Failed(ExecError::ContainerCreate {
                    image: task.image.clone(),
                    message: engine_message(e),
                }))
            }
            Err(e) => Err(Created::Failed(self.lost(e))),
        }
    }

    /// Runs `work` (a pull: it may take a while) under the attempt's timeout and
    /// cancel; the status the attempt ends with if either fires or `work` fails.
    async fn bounded(
        &self,
        ctx: &Attempt,
        work: impl Future<Output = Result<(), ExecError>>,
    ) -> Result<(), ExitStatus> {
        tokio::select! {
            done = work => done.map_err(ExecError::into_status),
            () = sleep_until(ctx.deadline) => Err(ExitStatus::TimedOut),
            () = ctx.cancel.cancelled() => Err(ExitStatus::Cancelled),
        }
    }
}

/// The loop above only ends once `exit` is set.
fn unreachable_exit() -> i64 {
    tracing::error!("container supervision ended without an exit; reporting a failure code");
    -1
}

/// One attempt's state while its container runs.
struct Attempt {
    image: String,
    output: archon_core::executor::OutputWriter,
    cancel: tokio_util::sync::CancellationToken,
    deadline: Option<Instant>,
    /// The container's own cgroup parent, when it has one.
    cgroup: Option<AttemptCgroup>,
    /// Samples the engine's stats while a container without a cgroup of its own runs.
    sampler: Option<StatsSampler>,
    /// When the container started.
    started: Option<Instant>,
    /// When the engine reported its exit.
    exited: Option<Instant>,
}

impl Attempt {
    /// What the container used, if it started: from its cgroup, or as last sampled.
    fn usage(&self) -> Option<ResourceUsage> {
        let started = self.started?;
        let wall = self.exited.unwrap_or_else(Instant::now).saturating_duration_since(started);
        let measured = match (&self.cgroup, &self.sampler) {
            (Some(cgroup), _) => cgroup.read(),
            (None, Some(sampler)) => Some(sampler.latest()),
            (None, None) => None,
        };
        Some(ResourceUsage { wall_us: micros(wall), ..measured.unwrap_or_default() })
    }
}

/// A container's attached output.
type OutputStreamOf = std::pin::Pin<Box<dyn futures::Stream<Item = Result<LogOutput, DockerError>> + Send>>;

/// The next piece of output, or `None` when the stream ended (which closes it).
async fn next_output(logs: &mut Option<OutputStreamOf>) -> Option<(OutputStream, bytes::Bytes)> {
    let stream = logs.as_mut()?;
    loop {
        match stream.next().await {
            Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) if !message.is_empty() => {
                return Some((OutputStream::Stdout, message));
            }
            Some(Ok(LogOutput::StdErr { message })) if !message.is_empty() => {
                return Some((OutputStream::Stderr, message));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "the container's output stream failed; closing it");
                *logs = None;
                return None;
            }
            None => {
                *logs = None;
                return None;
            }
        }
    }
}

/// The engine's own message for a refused request (it names the problem, e.g. a
/// missing executable), or the error's text.
fn engine_message(e: DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    }
}

/// A short value that differs between calls and processes, for container names.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mixed = (t ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    format!("{:08x}", mixed >> 32)
}

#[async_trait]
impl Executor for DockerExecutor {
    fn capabilities(&self) -> Vec<String> {
        vec![TaskKind::Docker.as_str().to_owned()]
    }

    async fn execute(&self, ctx: ExecContext) -> AttemptResult {
        let ExecContext { job, run, attempt, spec, output, cancel } = ctx;
        let Task::Docker(task) = &spec.task else {
            let wrong = ExecError::WrongKind { executor: TaskKind::Docker, task: spec.task.kind() };
            return output.finish(wrong.into_status());
        };
        let mut ctx = Attempt {
            image: task.image.clone(),
            output,
            cancel,
            deadline: spec.timeout.map(|t| Instant::now() + t),
            cgroup: None,
            sampler: None,
            started: None,
            exited: None,
        };
        let ids = spec::AttemptIds { job, run, attempt };
        let mut body = match spec::container_body(task, &spec, ids, &self.settings) {
            Ok(body) => body,
            Err(e) => return ctx.output.finish(e.into_status()),
        };
        if task.pull == PullPolicy::Always
            && let Err(status) = self.bounded(&ctx, self.pull(task, true)).await
        {
            return ctx.output.finish(status);
        }
        if ctx.cancel.is_cancelled() {
            return ctx.output.finish(ExitStatus::Cancelled);
        }
        let name = format!("archon-{attempt}-{}", nonce());
        if self.cgroupfs_v1 && self.settings.cgroup_usage {
            ctx.cgroup = AttemptCgroup::create(Path::new(CGROUP_ROOT), &name);
            if let (Some(cgroup), Some(host)) = (&ctx.cgroup, body.host_config.as_mut()) {
                host.cgroup_parent = Some(cgroup.parent());
            }
        }
        // Create first: the image is usually there, and asking would cost a round trip.
        let created = match self.create(&name, task, body.clone()).await {
            Err(Created::NoImage) => {
                if let Err(status) = self.bounded(&ctx, self.pull(task, false)).await {
                    return ctx.output.finish(status);
                }
                self.create(&name, task, body).await
            }
            other => other,
        };
        let created = match created {
            Ok(id) => id,
            Err(Created::NoImage) => {
                let gone = ExecError::ContainerCreate { image: task.image.clone(), message: "no such image".into() };
                return ctx.output.finish(gone.into_status());
            }
            Err(Created::Failed(e)) => return ctx.output.finish(e.into_status()),
        };
        let status = match self.supervise(&created, &mut ctx).await {
            Ok(status) => status,
            Err(e) => e.into_status(),
        };
        // Read before the removal; the attempt's cgroup goes when `ctx` is dropped, after it.
        let usage = ctx.usage();
        if let Err(e) = self.remove(&created).await {
            tracing::warn!(container = name, error = %e, "cannot remove the container; the worker's next start will");
        }
        let mut result = ctx.output.finish(status);
        result.usage = usage;
        result
    }
}
