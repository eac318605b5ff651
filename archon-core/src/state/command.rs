//! The commands that change cluster state. **Append-only and versioned**: a variant's
//! serialized name and meaning never change once released, because old logs must
//! still apply; new behaviour gets a new variant. Time comes inside the command
//! (`at`, set by the leader when it proposes), never from a clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{AttemptId, AttemptResult, JobId, JobSpec, Resources, RunId, Timestamp, WorkerId};

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
            | Command::CancelRun { at, .. }
            | Command::CancelJob { at, .. } => *at,
        }
    }
}
