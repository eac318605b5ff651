//! The facade's one error type: what went wrong composing or running an
//! embedded Archon, naming the setting or the run concerned.

use std::path::PathBuf;

use archon_core::model::{RunId, RunState};

/// Why starting, using or stopping an embedded Archon failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A builder setting is missing or does not fit the others.
    #[error("{field}: {message}")]
    Config {
        /// The setting (`data_dir`, `peers`, …).
        field: &'static str,
        /// What is wrong, and the accepted form.
        message: String,
    },
    /// The durable store's data dir cannot be opened, or its Raft group started.
    #[error("data_dir: cannot open the store in {}: {source}", path.display())]
    DataDir {
        /// The data dir.
        path: PathBuf,
        /// What the store said.
        #[source]
        source: archon_raft::Error,
    },
    /// The embedded Raft store failed while running.
    #[error("raft store: {0}")]
    Raft(#[source] archon_raft::Error),
    /// The PostgreSQL store refused to open (a bad URL, a schema newer than this build).
    #[error("store: {0}")]
    Postgres(#[from] archon_store::Error),
    /// A local path the worker needs (its process ledger, the lease keeper) cannot be used.
    #[error("{}: {what}: {source}", path.display())]
    Path {
        /// What failed there.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The manager refused or failed a call (a rejected job, an unknown id, …).
    #[error(transparent)]
    Core(#[from] archon_core::Error),
    /// A typed function's input could not be written as JSON.
    #[error("input of {function}: {source}")]
    Input {
        /// The function.
        function: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A run did not succeed: its final state and what it wrote to stderr (or
    /// how it ended), e.g. a typed function's error message.
    #[error("{run} ended {state}: {message}")]
    RunFailed {
        /// The run.
        run: RunId,
        /// Its final state.
        state: RunState,
        /// The function's error, the process's stderr, or its exit status.
        message: String,
    },
    /// A run succeeded but its output is not the JSON the caller asked for.
    #[error("{run}: its output is not a {expected}: {source}")]
    Output {
        /// The run.
        run: RunId,
        /// The Rust type asked for.
        expected: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A run's output passed the worker's tail limit, so it cannot be read back whole.
    #[error(
        "{run}: its output passed the worker's tail limit ({dropped} bytes dropped before the end); return less, or write it elsewhere and return where"
    )]
    Truncated {
        /// The run.
        run: RunId,
        /// How many bytes were dropped.
        dropped: u64,
    },
    /// The submitted job has no run to wait for (a cron job's runs come from its schedule).
    #[error("{0}: a cron job has no run of its own to wait for; wait on the runs its schedule fires")]
    NoRun(archon_core::model::JobId),
    /// Stopped (the token given to [`Builder::stop_on`](crate::Builder::stop_on)
    /// fired) before the store answered.
    #[error("stopped before the store answered")]
    Stopped,
}
