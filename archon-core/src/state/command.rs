//! The commands that change cluster state. **Append-only and versioned**: a variant's
//! serialized name and meaning never change once released, because old logs must
//! still apply; new behaviour gets a new variant. Time comes inside the command
//! (`at`, set by the leader when it proposes), never from a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use bytes::Bytes;

use crate::model::{
    AttemptId, AttemptResult, JobId, JobSpec, OutputStream, Resources, RunId, RunState, Timestamp, WorkerId,
};

/// A state change, as stored in the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// A worker announces itself (first time or on reconnect).
    RegisterWorker {
        /// When.
        at: Timestamp,
        /// Its unique name.
        name: String,
        /// Where it can be reached.
        address: String,
        /// Its labels.
        labels: BTreeMap<String, String>,
        /// What it offers.
        capacity: Resources,
        /// What task kinds it runs.
        capabilities: BTreeSet<String>,
        /// Attempts it is still running.
        running: Vec<AttemptId>,
    },
    /// The reaper found a worker silent past the threshold.
    WorkerLost {
        /// When.
        at: Timestamp,
        /// Which.
        worker: WorkerId,
    },
    /// A worker left cleanly; whatever it still had is requeued.
    WorkerLeft {
        /// When.
        at: Timestamp,
        /// Which.
        worker: WorkerId,
    },
    /// Stop (or resume) placing new attempts on a worker.
    SetDraining {
        /// When.
        at: Timestamp,
        /// Which.
        worker: WorkerId,
        /// Draining or back to ready.
        draining: bool,
    },
    /// A job is submitted.
    SubmitJob {
        /// When.
        at: Timestamp,
        /// Its definition.
        spec: Arc<JobSpec>,
        /// How the jobs it depends on that have left the live state ended, as the
        /// leader read them from the history when it proposed the submit (the
        /// state machine reads no history). A dependency neither live nor here is
        /// refused as [`Rejection::DependencyNotLive`](super::Rejection::DependencyNotLive).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        finished_deps: Vec<(JobId, RunState)>,
    },
    /// Place a run's next attempt on a worker.
    AssignAttempt {
        /// When.
        at: Timestamp,
        /// Which run.
        run: RunId,
        /// Where.
        worker: WorkerId,
    },
    /// A worker started an attempt.
    StartAttempt {
        /// When.
        at: Timestamp,
        /// The run.
        run: RunId,
        /// The attempt (fencing token).
        attempt: AttemptId,
    },
    /// A worker reports an attempt's end.
    FinishAttempt {
        /// When.
        at: Timestamp,
        /// The run.
        run: RunId,
        /// The attempt (fencing token).
        attempt: AttemptId,
        /// How it ended.
        result: AttemptResult,
    },
    /// Part of an attempt's kept output, proposed before its `FinishAttempt` when
    /// the output is too large to travel inside it. Applying the same chunk twice
    /// changes nothing.
    AttemptOutput {
        /// When.
        at: Timestamp,
        /// The run.
        run: RunId,
        /// The attempt (fencing token).
        attempt: AttemptId,
        /// Which stream.
        stream: OutputStream,
        /// Where in the stream's kept output the bytes start.
        offset: u64,
        /// The bytes.
        #[serde(with = "crate::model::output_bytes")]
        data: Bytes,
    },
    /// The leader's housekeeping: remove finished runs and retired jobs from the
    /// history (the retention policy chose them), and forget idempotency keys
    /// given before `keys_before`.
    Prune {
        /// When.
        at: Timestamp,
        /// Finished runs to remove, with the state each ended in.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        runs: Vec<(RunId, RunState)>,
        /// Retired jobs to remove.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        jobs: Vec<JobId>,
        /// Forget idempotency keys given before this instant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys_before: Option<Timestamp>,
    },
    /// Cancel one run.
    CancelRun {
        /// When.
        at: Timestamp,
        /// Which.
        run: RunId,
    },
    /// Cancel a job: its unfinished runs, and no new ones.
    CancelJob {
        /// When.
        at: Timestamp,
        /// Which.
        job: JobId,
    },
}

impl Command {
    /// The instant the leader stamped on it.
    pub fn at(&self) -> Timestamp {
        match self {
            Command::RegisterWorker { at, .. }
            | Command::WorkerLost { at, .. }
            | Command::WorkerLeft { at, .. }
            | Command::SetDraining { at, .. }
            | Command::SubmitJob { at, .. }
            | Command::AssignAttempt { at, .. }
            | Command::StartAttempt { at, .. }
            | Command::FinishAttempt { at, .. }
            | Command::AttemptOutput { at, .. }
            | Command::Prune { at, .. }
            | Command::CancelRun { at, .. }
            | Command::CancelJob { at, .. } => *at,
        }
    }

    /// A submit with nothing resolved by the leader yet.
    pub fn submit(at: Timestamp, spec: Arc<JobSpec>) -> Command {
        Command::SubmitJob { at, spec, finished_deps: Vec::new() }
    }

    /// About how many bytes the command takes in the log (its JSON), without
    /// encoding it: exact enough to keep log entries under their cap.
    pub fn size_hint(&self) -> usize {
        const BASE: usize = 160;
        match self {
            Command::SubmitJob { spec, finished_deps, .. } => {
                let env: usize = spec.env.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
                let constraints: usize = spec.constraints.iter().map(|c| c.label.len() + c.value.len() + 40).sum();
                BASE * 4
                    + 2 * (spec.name.len() + spec.task.size() + spec.working_dir.as_ref().map_or(0, String::len))
                    + env
                    + constraints
                    + spec.depends_on.len() * 24
                    + finished_deps.len() * 32
                    + spec.idempotency_key.as_ref().map_or(0, String::len)
            }
            Command::FinishAttempt { result, .. } => {
                BASE * 2
                    + crate::model::output_json_len(&result.stdout.data)
                    + crate::model::output_json_len(&result.stderr.data)
                    + match &result.status {
                        crate::model::ExitStatus::Failed { reason } => 2 * reason.len(),
                        _ => 0,
                    }
            }
            Command::AttemptOutput { data, .. } => BASE + crate::model::output_json_len(data),
            Command::RegisterWorker { name, address, labels, capabilities, running, .. } => {
                BASE * 2
                    + name.len()
                    + address.len()
                    + labels.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>()
                    + capabilities.iter().map(|c| c.len() + 4).sum::<usize>()
                    + running.len() * 21
            }
            Command::Prune { runs, jobs, .. } => BASE + runs.len() * 40 + jobs.len() * 21,
            _ => BASE,
        }
    }
}
