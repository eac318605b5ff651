//! What a worker runs: shell, script and process jobs (their process groups noted
//! in the worker's ledger), the built-in functions, and Docker jobs when a Docker
//! engine answers at start. Shared by [`crate::Builder`] (so `archon dev`) and
//! `archon-worker`.
//!
//! At start a worker clears what a crashed previous life left behind: the process
//! groups in its ledger and the containers labelled with its state dir. Their runs
//! were requeued by the manager; left alone they would run twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use archon_core::executor::ExecutorRegistry;
use archon_core::worker::WorkerRuntime;
use archon_exec::{DockerExecutor, DockerSettings, FunctionExecutor, ProcessLedger};

use crate::Error;

/// The dev worker's executors without a ledger or Docker: shell, script and process
/// jobs, plus the built-in functions `noop` (returns `null`) and `echo` (returns its
/// input), handy for trying things out and for benchmarks.
pub fn local() -> ExecutorRegistry {
    local_with(None)
}

/// [`local`], noting process groups in `ledger` when given.
pub fn local_with(ledger: Option<Arc<ProcessLedger>>) -> ExecutorRegistry {
    let mut registry = processes(ledger);
    registry.register(Arc::new(builtins()));
    registry
}

/// The built-in functions: `noop` (returns `null`) and `echo` (returns its input).
pub fn builtins() -> FunctionExecutor {
    FunctionExecutor::new()
        .register("noop", |_| async { Ok(serde_json::Value::Null) })
        .register("echo", |input| async move { Ok(input) })
}

/// Shell, script and process jobs, noting their process groups in `ledger` when given.
pub fn processes(ledger: Option<Arc<ProcessLedger>>) -> ExecutorRegistry {
    match ledger {
        Some(ledger) => archon_exec::local_registry_with_ledger(ledger),
        None => archon_exec::local_registry(),
    }
}

/// How a worker uses the machine's Docker engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOptions {
    /// Run Docker jobs when an engine answers at start (on by default).
    pub enabled: bool,
    /// The engine's socket; default `$DOCKER_HOST` (`unix://…`) or `/var/run/docker.sock`.
    pub socket: Option<String>,
    /// Let jobs bind-mount host paths.
    pub allow_mounts: bool,
    /// The most processes per container (0: the engine's default, unlimited).
    pub pids_limit: i64,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions { enabled: true, socket: None, allow_mounts: false, pids_limit: archon_exec::DEFAULT_PIDS_LIMIT }
    }
}

/// What the worker `name` with state in `state_dir` runs besides functions:
/// [`processes`] noting them in its ledger, and Docker when `docker` allows it and
/// an engine answers. Clears what a crashed predecessor left running first. Fails
/// only when the state dir cannot be used (e.g. another worker holds it); a
/// missing engine is reported and skipped.
pub async fn for_worker(
    name: &str,
    state_dir: &Path,
    docker: &DockerOptions,
) -> Result<(ExecutorRegistry, Arc<ProcessLedger>), Error> {
    let ledger = open_ledger(state_dir.join("processes"))?;
    let mut registry = processes(Some(ledger.clone()));
    if docker.enabled {
        let mut settings = DockerSettings::for_worker(name, state_dir);
        if let Some(socket) = &docker.socket {
            settings.socket = socket.clone();
        }
        settings.allow_mounts = docker.allow_mounts;
        settings.pids_limit = (docker.pids_limit > 0).then_some(docker.pids_limit);
        if let Some(executor) = connect_docker(settings).await {
            registry.register(Arc::new(executor));
        }
    } else {
        println!("Docker jobs are off on this worker (--no-docker)");
    }
    Ok((registry, ledger))
}

/// Starts the lease keeper of `worker`'s jobs noted in `ledger` (see
/// [`archon_exec::LeaseKeeper`]): it kills them when the worker's lease ends,
/// even if the worker process is frozen. Abort the returned task to stop it.
pub fn keep_lease(ledger: &ProcessLedger, worker: &Arc<WorkerRuntime>) -> Result<tokio::task::JoinHandle<()>, Error> {
    let keeper = archon_exec::LeaseKeeper::spawn(ledger).map_err(|source| Error::Path {
        what: "cannot start the lease keeper of the process ledger there",
        path: ledger.dir().to_owned(),
        source,
    })?;
    worker.attach_lease_keeper();
    let lease = worker.lease();
    let worker = Arc::downgrade(worker);
    Ok(tokio::spawn(async move {
        keeper
            .follow(lease, |until| {
                if let Some(worker) = worker.upgrade() {
                    worker.lease_kept(until);
                }
            })
            .await;
    }))
}

/// Connects to the engine and removes the containers a crashed predecessor left;
/// `None` (with a note saying why) when the engine does not answer.
async fn connect_docker(settings: DockerSettings) -> Option<DockerExecutor> {
    let executor = match DockerExecutor::connect(settings).await {
        Ok(executor) => executor,
        Err(e) => {
            println!("Docker jobs will not run here: {e}");
            return None;
        }
    };
    match executor.remove_orphans().await {
        Ok(removed) if !removed.is_empty() => {
            println!("removed {} container(s) left running by a crashed worker: {}", removed.len(), removed.join(", "));
        }
        Ok(_) => {}
        Err(e) => println!("cannot look for containers a crashed worker left: {e}"),
    }
    println!("Docker jobs run on the engine at {}", executor.settings().socket.trim_start_matches("unix://"));
    Some(executor)
}

/// Opens the process ledger in `dir` and kills the process groups a previous,
/// crashed run of this worker left behind (their runs were requeued).
pub fn open_ledger(dir: PathBuf) -> Result<Arc<ProcessLedger>, Error> {
    let ledger = ProcessLedger::open(&dir).map_err(|source| Error::Path {
        what: "cannot hold the worker's process ledger",
        path: dir.clone(),
        source,
    })?;
    let killed = ledger.kill_orphans().map_err(|source| Error::Path {
        what: "cannot read the process ledger there",
        path: dir.clone(),
        source,
    })?;
    if !killed.is_empty() {
        println!(
            "killed {} job process group(s) left running by a crashed worker: {}",
            killed.len(),
            killed.join(", ")
        );
    }
    Ok(Arc::new(ledger))
}
