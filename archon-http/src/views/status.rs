//! Workers as JSON (the cluster's status is the client API's own type).

use std::collections::BTreeMap;

use archon_core::api::WorkerInfo;
use archon_core::model::WorkerState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{time, time_opt};
use crate::views::ResourcesView;

/// A worker as the cluster records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// Its id (`w-3`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where it can be reached, for display.
    pub address: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// What it offers.
    pub capacity: ResourcesView,
    /// What its live attempts reserve (all but the queued ones).
    pub allocated: ResourcesView,
    /// Task kinds (and `function:NAME`s) it runs.
    pub capabilities: Vec<String>,
    /// Where it is in its life.
    pub state: WorkerState,
    /// When it (last) registered.
    #[schema(format = DateTime)]
    pub registered_at: String,
    /// Its live attempts (queued ones included).
    pub running: Vec<String>,
    /// How many attempts it holds queued beyond what fits it.
    pub queue: u32,
    /// Its live attempts waiting in that queue, in the order they start.
    pub queued: Vec<String>,
    /// Whether it has a session with the answering manager.
    pub connected: bool,
    /// When the manager last heard from it.
    #[schema(format = DateTime)]
    pub last_seen: Option<String>,
}

impl From<&WorkerInfo> for WorkerView {
    fn from(i: &WorkerInfo) -> Self {
        let w = &i.worker;
        WorkerView {
            id: w.id.to_string(),
            name: w.name.clone(),
            address: w.address.clone(),
            labels: w.labels.clone(),
            capacity: ResourcesView::from(&w.capacity),
            allocated: ResourcesView::from(&w.allocated),
            capabilities: w.capabilities.iter().cloned().collect(),
            state: w.state,
            registered_at: time(w.registered_at),
            running: w.running.iter().map(ToString::to_string).collect(),
            queue: w.queue,
            queued: w.queued.iter().map(ToString::to_string).collect(),
            connected: i.connected,
            last_seen: time_opt(i.last_seen),
        }
    }
}

/// All registered workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkersView {
    /// The workers.
    pub items: Vec<WorkerView>,
}
