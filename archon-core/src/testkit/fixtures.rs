//! Small, fixed commands for tests that need a plausible piece of cluster
//! history (storage, log verification, snapshots) rather than a random one
//! ([`super::commands`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::model::{JobSpec, Resources, RunId, Task, Timestamp, WorkerId};
use crate::state::Command;

/// Registers worker `name` at instant 1,000 ms: 8 CPUs, 8 GiB, the `shell`
/// capability, nothing running.
pub fn register_worker(name: &str) -> Command {
    Command::RegisterWorker {
        at: Timestamp(1_000),
        name: name.to_owned(),
        address: format!("{name}.local:7001"),
        labels: BTreeMap::new(),
        capacity: Resources { cpu_millis: 8_000, memory_bytes: 8 << 30, ..Resources::default() },
        capabilities: BTreeSet::from(["shell".to_owned()]),
        running: Vec::new(),
        queue: 0,
    }
}

/// Submits a shell job `name` running `true`, at `at` (ms).
pub fn submit_job(name: &str, at: i64) -> Command {
    Command::submit(Timestamp(at), Arc::new(JobSpec::new(name, Task::Shell { command: "true".into() })))
}

/// Assigns run `run` to worker `worker` at `at` (ms).
pub fn assign(run: u64, worker: u64, at: i64) -> Command {
    Command::AssignAttempt { at: Timestamp(at), run: RunId(run), worker: WorkerId(worker) }
}
