//! The history of a chaos run, `history.jsonl` in its out dir: one JSON event a
//! line, written (and flushed) as it happens, so even an interrupted run leaves
//! what it did. Instants are boot-clock microseconds (see [`crate::marks`]), the
//! clock the jobs mark with.
//!
//! Submits: every try of every submit with its acknowledgement or its error.
//! Faults: each one's start (when it was in effect) and its healing.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What kind of work a submit asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WorkKind {
    /// `archon submit --command`.
    Shell,
    /// `archon submit --script FILE --interpreter sh`.
    Script,
    /// `archon submit -- archon-chaos work …` (no shell).
    Process,
    /// `archon run -f` of a workflow file.
    Workflow,
    /// `archon submit --cron` (a cron shell job).
    Cron,
    /// `archon run -f` of a workflow file with a schedule.
    CronWorkflow,
}

impl WorkKind {
    /// Whether the cluster answers it with one job that runs once.
    pub(crate) fn runs_once(self) -> bool {
        matches!(self, WorkKind::Shell | WorkKind::Script | WorkKind::Process)
    }
}

/// What the cluster answered to an acknowledged submit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ack {
    /// The job (a single job or a cron job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) job: Option<String>,
    /// Its run (a one-shot job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) run: Option<String>,
    /// The workflow (a one-shot workflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) workflow: Option<String>,
    /// A workflow's jobs, in the order of its nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) jobs: Vec<String>,
    /// The submit repeated an idempotency key the cluster already had.
    #[serde(default)]
    pub(crate) duplicate: bool,
}

/// What kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FaultKind {
    /// `docker kill` of a manager, `docker start` later.
    KillManager,
    /// `docker kill` of a worker, `docker start` later.
    KillWorker,
    /// `docker pause` of a manager (the whole container frozen), `unpause` later.
    PauseManager,
    /// SIGSTOP of the worker process (its jobs and lease keeper run on), SIGCONT later.
    FreezeWorker,
    /// `docker network disconnect` of a manager, `connect` later.
    DisconnectManager,
    /// `docker network disconnect` of a worker, `connect` later.
    DisconnectWorker,
    /// One manager and up to two workers cut off from everyone else (packets
    /// dropped both ways), still reaching each other and the host.
    Partition,
    /// The link between two managers cut; each still reaches the third.
    CutLink,
}

impl FaultKind {
    /// Every kind, in the table's order.
    pub(crate) const ALL: [FaultKind; 8] = [
        FaultKind::KillManager,
        FaultKind::KillWorker,
        FaultKind::PauseManager,
        FaultKind::FreezeWorker,
        FaultKind::DisconnectManager,
        FaultKind::DisconnectWorker,
        FaultKind::Partition,
        FaultKind::CutLink,
    ];

    /// How the table names it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            FaultKind::KillManager => "docker kill + start of a manager",
            FaultKind::KillWorker => "docker kill + start of a worker",
            FaultKind::PauseManager => "docker pause + unpause of a manager",
            FaultKind::FreezeWorker => "SIGSTOP + SIGCONT of a worker process",
            FaultKind::DisconnectManager => "network disconnect of a manager",
            FaultKind::DisconnectWorker => "network disconnect of a worker",
            FaultKind::Partition => "partition: a manager (+ workers) | the rest",
            FaultKind::CutLink => "partition: the link between two managers",
        }
    }
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// The run began.
    Started {
        /// Its seed.
        seed: u64,
        /// How long the load lasts (ms).
        duration_ms: u64,
        /// The image every node runs.
        image: String,
        /// When (µs).
        at: u64,
    },
    /// A phase of the run began (load, heal, drain, collect…).
    Phase {
        /// Its name.
        name: String,
        /// When (µs).
        at: u64,
    },
    /// One try of a submit.
    Submit {
        /// The submit's number (its tries share it).
        seq: u64,
        /// Its try, from 1.
        #[serde(rename = "try")]
        try_no: u32,
        /// What it asked for.
        kind: WorkKind,
        /// Its idempotency key (workflows have none: Archon takes none for them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// When it was sent (µs).
        sent: u64,
        /// When the answer came (µs).
        answered: u64,
        /// The acknowledgement, if it was acknowledged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ack: Option<Ack>,
        /// Why not, if it was not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A fault took effect.
    Fault {
        /// Its number.
        id: u64,
        /// What.
        kind: FaultKind,
        /// On whom (container names as the cluster knows them: m1, w3…).
        targets: Vec<String>,
        /// When the injection began (µs).
        at: u64,
        /// When it was in effect (µs): e.g. the killed container stopped.
        effective: u64,
        /// How long it was planned to last (ms).
        planned_ms: u64,
    },
    /// A fault was healed.
    Healed {
        /// The fault's number.
        id: u64,
        /// When (µs).
        at: u64,
    },
    /// Something worth keeping that is no submit or fault.
    Note {
        /// What.
        text: String,
        /// When (µs).
        at: u64,
    },
}

/// The history file, appended to by every task of a run.
#[derive(Debug, Clone)]
pub(crate) struct History {
    file: Arc<Mutex<std::fs::File>>,
}

impl History {
    /// Creates `path` (replacing an older one).
    pub(crate) fn create(path: &Path) -> anyhow::Result<History> {
        let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(History { file: Arc::new(Mutex::new(file)) })
    }

    /// Appends `event` as one line.
    pub(crate) fn record(&self, event: &Event) {
        let Ok(mut line) = serde_json::to_string(event) else { return };
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!("archon-chaos: cannot write the history: {e}");
        }
    }

    /// A note, now.
    pub(crate) fn note(&self, text: impl Into<String>) {
        self.record(&Event::Note { text: text.into(), at: crate::marks::boot_micros() });
    }

    /// A phase begins, now.
    pub(crate) fn phase(&self, name: &str) {
        eprintln!("archon-chaos: {name}");
        self.record(&Event::Phase { name: name.to_owned(), at: crate::marks::boot_micros() });
    }
}

/// Every event of the history at `path`.
pub(crate) fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_a_line_of_json() {
        let e = Event::Submit {
            seq: 3,
            try_no: 2,
            kind: WorkKind::Process,
            key: Some("chaos-1-3".into()),
            sent: 10,
            answered: 20,
            ack: Some(Ack { job: Some("job-4".into()), run: Some("run-4".into()), ..Ack::default() }),
            error: None,
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains("\"event\":\"submit\"") && line.contains("\"try\":2"), "{line}");
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
    }
}
