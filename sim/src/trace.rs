//! The event trace of one simulation: what every host did, in the order it
//! did it, stamped with virtual time. The invariants are checked on it, and
//! its hash tells whether two runs of one seed were the same run.
//!
//! The one thing to know: only what is deterministic goes in — ids, names,
//! states, virtual milliseconds — never a wall-clock time, an address port
//! chosen by the OS, or anything iterated out of a `HashMap`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use archon_core::model::{AttemptId, JobId, RunId, RunState, WorkflowId};
use sha2::{Digest, Sha256};

/// Something a host did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A manager's view of its leadership changed (as the manager sees it:
    /// it leads once an entry of its own term is applied).
    Leadership {
        /// The manager's node id.
        node: u64,
        /// Its term.
        term: u64,
        /// Whether it may propose.
        leader: bool,
    },
    /// The client sent a submit with this idempotency key.
    Submitting {
        /// The key.
        key: String,
    },
    /// The client's submit was acknowledged.
    Acked {
        /// The key.
        key: String,
        /// The job.
        job: JobId,
        /// Its run.
        run: RunId,
        /// Whether the key matched an earlier submit.
        duplicate: bool,
    },
    /// A leader's proposal committed this: a run reached a terminal state.
    RunFinished {
        /// The leader that proposed it.
        node: u64,
        /// The run.
        run: RunId,
        /// Its terminal state.
        state: RunState,
    },
    /// A leader's proposal committed this: an attempt was placed.
    AttemptAssigned {
        /// The leader that proposed it.
        node: u64,
        /// The run.
        run: RunId,
        /// The attempt.
        attempt: AttemptId,
    },
    /// A worker's executor started an attempt.
    AttemptStarted {
        /// The worker.
        worker: String,
        /// The run.
        run: RunId,
        /// The attempt.
        attempt: AttemptId,
    },
    /// A worker's executor stopped an attempt: it completed, was cancelled,
    /// or was dropped with its host.
    AttemptStopped {
        /// The worker.
        worker: String,
        /// The run.
        run: RunId,
        /// The attempt.
        attempt: AttemptId,
        /// Whether it ran to its end (else cancelled or dropped).
        completed: bool,
    },
    /// The client saw a run terminal.
    Terminal {
        /// The submit's key.
        key: String,
        /// The run.
        run: RunId,
        /// Its state.
        state: RunState,
    },
    /// The client found an acknowledged run unknown to the cluster.
    Lost {
        /// The submit's key.
        key: String,
        /// The run.
        run: RunId,
    },
    /// The client's cron job was acknowledged.
    CronAcked {
        /// The cron job.
        job: JobId,
    },
    /// A leader's proposal committed this: a cron job's schedule fired at
    /// `instant` (milliseconds since the Unix epoch) and started `run`.
    Fired {
        /// The leader that proposed it.
        node: u64,
        /// The cron job.
        job: JobId,
        /// The fire instant.
        instant: i64,
        /// The run it started.
        run: RunId,
    },
    /// The client paused its cron job and saw every run of it end.
    CronSettled {
        /// The cron job.
        job: JobId,
        /// How many runs it had.
        runs: u64,
    },
    /// The client's workflow was acknowledged.
    WorkflowAcked {
        /// The workflow.
        workflow: WorkflowId,
    },
    /// The client saw its workflow end.
    WorkflowEnded {
        /// The workflow.
        workflow: WorkflowId,
        /// How it ended.
        state: String,
    },
    /// The harness injected a fault.
    Fault {
        /// What, e.g. `crash manager-2`.
        what: String,
    },
    /// Every replica applied the same state.
    Converged {
        /// The last log index every replica applied.
        index: Option<u64>,
        /// The replicas' common state digest.
        digest: String,
    },
}

/// An event with the virtual time it happened at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Milliseconds of virtual time since the simulation started.
    pub at_ms: u128,
    /// What happened.
    pub event: Event,
}

/// The trace, shared by every host. Cheap to clone; clones are the same trace.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Trace {
        Trace::default()
    }

    /// Appends `event`, stamped with the current virtual time (from inside a host).
    pub fn record(&self, event: Event) {
        self.record_at(turmoil::sim_elapsed().map_or(0, |d| d.as_millis()), event);
    }

    /// Appends `event`, stamped `at_ms` (from the harness, outside every host).
    pub fn record_at(&self, at_ms: u128, event: Event) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).push(Entry { at_ms, event });
    }

    /// Everything recorded so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The trace as text, one event a line.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for entry in self.entries() {
            let _ = writeln!(text, "{:>8} {:?}", entry.at_ms, entry.event);
        }
        text
    }

    /// A SHA-256 of [`Trace::render`], in hex: equal for equal traces.
    pub fn hash(&self) -> String {
        let digest = Sha256::digest(self.render().as_bytes());
        digest.iter().fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
    }
}
