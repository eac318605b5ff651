//! Workers as the cluster records them. Liveness (last seen) is leader-local soft
//! state and lives in the manager, not here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ids::{AttemptId, WorkerId};
use super::resources::Resources;
use super::time::Timestamp;

/// Where a worker is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Accepting work.
    Ready,
    /// Finishing what it runs; no new placements.
    Draining,
    /// Stopped heartbeating; its attempts were requeued.
    Lost,
    /// Left the cluster cleanly.
    Left,
}

impl WorkerState {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
            WorkerState::Lost => "lost",
            WorkerState::Left => "left",
        }
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A worker registered with the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// Its id, stable across reconnects of the same name.
    pub id: WorkerId,
    /// The name it registered with (unique among live workers).
    pub name: String,
    /// Where it can be reached, for display.
    pub address: String,
    /// Labels that constraints match.
    pub labels: BTreeMap<String, String>,
    /// What it offers.
    pub capacity: Resources,
    /// The sum of its live attempts' requests.
    pub allocated: Resources,
    /// Task kinds (and `function:NAME`s) it can run.
    pub capabilities: BTreeSet<String>,
    /// Where it is in its life.
    pub state: WorkerState,
    /// When it (last) registered.
    pub registered_at: Timestamp,
    /// Its live attempts.
    pub running: BTreeSet<AttemptId>,
}

impl Worker {
    /// Capacity not yet allocated.
    pub fn free(&self) -> Resources {
        self.capacity.minus(&self.allocated)
    }

    /// Whether new attempts may be placed on it.
    pub fn accepts_work(&self) -> bool {
        self.state == WorkerState::Ready
    }
}
