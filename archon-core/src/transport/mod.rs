//! The [`Transport`] plug point, worker side: one session per worker, a
//! bidirectional stream carrying [`Hello`] and then [`WorkerMessage`]s up
//! (heartbeats, started, output, finished) and [`ManagerMessage`]s down (assign,
//! cancel). Clients reach the manager through [`crate::api::Api`], which the same
//! transport families implement (in process here, gRPC in archon-net).

mod inproc;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use inproc::InProcTransport;

use crate::error::Error;
use crate::model::{AttemptId, AttemptResult, JobId, JobSpec, OutputChunk, Resources, RunId, WorkerId};

/// The worker session protocol this build speaks. A manager refuses a worker
/// that speaks a newer one, and a worker a manager that does (0: Archon 0.1,
/// which did not say; 1: no leases; 2: numbered heartbeats, [`ManagerMessage::Lease`]
/// and [`WorkerMessage::Fenced`]).
pub const PROTOCOL: u32 = 2;

/// What a worker says when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The session protocol it speaks ([`PROTOCOL`]).
    pub protocol: u32,
    /// Its unique name.
    pub name: String,
    /// Where it can be reached, for display.
    pub address: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// What it offers.
    pub capacity: Resources,
    /// What it can run.
    pub capabilities: BTreeSet<String>,
    /// Attempts it is running right now (after a reconnect).
    pub running: Vec<AttemptId>,
    /// How many assigned attempts it holds queued beyond what fits it
    /// ([`WorkerConfig::queue`](crate::worker::WorkerConfig::queue)).
    pub queue: u32,
}

/// The manager's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The id the cluster knows the worker by.
    pub worker: WorkerId,
    /// Announced attempts that are no longer the worker's: kill them.
    pub stale: Vec<AttemptId>,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
    /// The session protocol the manager speaks ([`PROTOCOL`]).
    pub protocol: u32,
    /// Output the manager keeps per stream of an attempt whose job does not say.
    pub output_limit: u64,
    /// The largest live output chunk the manager takes.
    pub max_output_chunk: usize,
    /// How long the worker may act on one acknowledged heartbeat: it kills what
    /// it runs once this long has passed since it sent the last heartbeat a
    /// confirmed leader acknowledged ([`ManagerMessage::Lease`]), which is before
    /// any manager can declare it lost. Zero: no leases (a manager of protocol 1).
    pub lease: Duration,
}

/// Worker → manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerMessage {
    /// Still alive; how many attempts it runs.
    Heartbeat {
        /// Attempts running.
        running: u32,
        /// Its number, for the manager's [`ManagerMessage::Lease`] to name (0:
        /// no lease asked).
        seq: u64,
    },
    /// An attempt started.
    Started {
        /// The run.
        run: RunId,
        /// The attempt.
        attempt: AttemptId,
    },
    /// Live output of an attempt.
    Output(OutputChunk),
    /// An attempt ended.
    Finished {
        /// The run.
        run: RunId,
        /// The attempt.
        attempt: AttemptId,
        /// How.
        result: AttemptResult,
    },
    /// The worker killed an attempt because its lease lapsed; the manager
    /// requeues the run (as for a lost worker, no retry is spent).
    Fenced {
        /// The run.
        run: RunId,
        /// The attempt.
        attempt: AttemptId,
    },
    /// The worker is shutting down: place nothing new on it; it finishes what it
    /// runs (within its grace) and then sends [`WorkerMessage::Leaving`].
    Draining,
    /// The worker is leaving; requeue whatever it still had.
    Leaving,
}

/// One attempt to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The job.
    pub job: JobId,
    /// The run.
    pub run: RunId,
    /// The attempt (fencing token for every report about it).
    pub attempt: AttemptId,
    /// What to run.
    pub spec: Arc<JobSpec>,
}

/// Manager → worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerMessage {
    /// Run these attempts.
    Assign(Vec<Assignment>),
    /// Kill this attempt (cancelled, or stale).
    Cancel {
        /// The run.
        run: RunId,
        /// The attempt.
        attempt: AttemptId,
    },
    /// The leader heard heartbeat `seq` and confirmed its leadership after
    /// hearing it: the worker's lease now runs from when it sent that heartbeat.
    Lease {
        /// The heartbeat's number.
        seq: u64,
    },
}

/// An open worker session.
#[derive(Debug)]
pub struct Session {
    /// The manager's answer.
    pub welcome: Welcome,
    /// Messages to the manager.
    pub outbound: mpsc::Sender<WorkerMessage>,
    /// Messages from the manager; closes when the session ends.
    pub inbound: mpsc::UnboundedReceiver<ManagerMessage>,
}

/// Opens worker sessions to a manager.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Connects and introduces the worker; fails if the manager refuses it.
    async fn connect(&self, hello: Hello) -> Result<Session, Error>;
}
