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
    /// The sum of the requests of its live attempts that run, or start as soon
    /// as they reach it (everything live but the [`queued`](Worker::queued)).
    pub allocated: Resources,
    /// Task kinds (and `function:NAME`s) it can run.
    pub capabilities: BTreeSet<String>,
    /// Where it is in its life.
    pub state: WorkerState,
    /// When it (last) registered.
    pub registered_at: Timestamp,
    /// Its live attempts (queued ones included).
    pub running: BTreeSet<AttemptId>,
    /// How many attempts it holds queued beyond what fits it (0: none): an
    /// attempt placed there waits on the worker and starts the moment the
    /// attempts ahead of it free its resources, instead of after a round trip
    /// to the manager.
    #[serde(default)]
    pub queue: u32,
    /// Its live attempts placed beyond its free resources, in the order they
    /// were placed: they start on it one by one, first in first out, as the
    /// resources free up, and count in [`allocated`](Worker::allocated) from
    /// their start on. While any waits here, nothing placed later starts before
    /// it, so new placements queue too.
    #[serde(default)]
    pub queued: BTreeSet<AttemptId>,
}

impl Worker {
    /// Capacity not yet allocated.
    pub fn free(&self) -> Resources {
        self.capacity.minus(&self.allocated)
    }

    /// How many more attempts its queue takes.
    pub fn queue_room(&self) -> u32 {
        self.queue.saturating_sub(u32::try_from(self.queued.len()).unwrap_or(u32::MAX))
    }

    /// Whether an attempt placed now would start at once: nothing is queued
    /// ahead of it and its request fits what is free.
    pub fn starts_now(&self, request: &Resources) -> bool {
        self.queued.is_empty() && request.fits_in(&self.free())
    }

    /// Whether new attempts may be placed on it.
    pub fn accepts_work(&self) -> bool {
        self.state == WorkerState::Ready
    }
}
