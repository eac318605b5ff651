//! # archon-exec
//!
//! Executors for Archon workers: [`ShellExecutor`] (`sh -c`), [`ScriptExecutor`]
//! (an inline script run by an interpreter), [`ProcessExecutor`] (argv, no shell)
//! [`FunctionExecutor`] (Rust functions registered by name) and [`DockerExecutor`]
//! (containers on the worker's Docker engine).
//!
//! Every process an executor starts leads its own process group; timeouts and
//! cancels SIGTERM the whole group, then SIGKILL it after a grace period, and the
//! group is SIGKILLed when the main process exits, so no grandchild outlives its
//! attempt.
//!
//! Every attempt that ran reports its [`ResourceUsage`](archon_core::model::ResourceUsage):
//! CPU time, peak memory and wall time, read from `/proc` for processes and from
//! the container's cgroup (or the engine's stats) for Docker.
//!
//! ```no_run
//! use std::sync::Arc;
//! use archon_exec::{FunctionExecutor, local_registry};
//!
//! let mut executors = local_registry();
//! executors.register(Arc::new(
//!     FunctionExecutor::new().register("double", |input: serde_json::Value| async move {
//!         let n = input.as_i64().ok_or("input must be an integer")?;
//!         Ok(serde_json::json!(n * 2))
//!     }),
//! ));
//! ```

mod child;
mod docker;
mod error;
mod function;
mod keeper;
mod ledger;
mod process;
mod script;
mod shell;
mod typed;
mod usage;

use std::sync::Arc;

use archon_core::executor::ExecutorRegistry;

pub use child::DEFAULT_KILL_GRACE;
pub use docker::{
    DEFAULT_DOCKER_SOCKET, DEFAULT_PIDS_LIMIT, DockerExecutor, DockerSettings, LABEL_ATTEMPT, LABEL_JOB, LABEL_MANAGED,
    LABEL_OWNER, LABEL_RUN, LABEL_WORKER,
};
pub use error::ExecError as Error;
pub use function::FunctionExecutor;
pub use keeper::{KEEPER_ARG, LeaseKeeper, main_if_asked as lease_keeper_main_if_asked};
pub use ledger::ProcessLedger;
pub use process::ProcessExecutor;
pub use script::ScriptExecutor;
pub use shell::ShellExecutor;
pub use typed::TypedFunction;

/// A registry with the executors that need nothing but the local machine: shell,
/// script and process.
pub fn local_registry() -> ExecutorRegistry {
    ExecutorRegistry::new()
        .with(Arc::new(ShellExecutor::new()))
        .with(Arc::new(ScriptExecutor::new()))
        .with(Arc::new(ProcessExecutor::new()))
}

/// [`local_registry`] with every attempt's process group noted in `ledger`, so a
/// worker restarted after a crash can kill what it left running
/// ([`ProcessLedger::kill_orphans`]).
pub fn local_registry_with_ledger(ledger: Arc<ProcessLedger>) -> ExecutorRegistry {
    ExecutorRegistry::new()
        .with(Arc::new(ShellExecutor::new().with_ledger(ledger.clone())))
        .with(Arc::new(ScriptExecutor::new().with_ledger(ledger.clone())))
        .with(Arc::new(ProcessExecutor::new().with_ledger(ledger)))
}
