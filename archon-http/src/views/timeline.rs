//! The last hour of the cluster as JSON, for the dashboard's charts: totals per
//! sample, and each asked-for worker's load as series aligned with them.

use std::collections::BTreeMap;

use archon_core::manager::{Timeline, TimelineSample};
use archon_core::model::WorkerId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::time;

/// The cluster at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SampleView {
    /// When it was taken.
    #[schema(format = DateTime)]
    pub at: String,
    /// Runs that have ended so far, in any terminal state (never decreases:
    /// the difference of two samples is the runs that ended between them).
    pub ended: u64,
    /// Of those, runs that failed or timed out.
    pub failed: u64,
    /// Runs waiting for placement (pending or retrying).
    pub queued: u64,
    /// Runs placed on a worker (scheduled or running).
    pub running: u64,
    /// CPU reserved by attempts, in millicores, over workers that take work.
    pub cpu_allocated_millis: u64,
    /// CPU offered by workers that take work (ready or draining).
    pub cpu_capacity_millis: u64,
    /// Memory reserved by attempts, in bytes.
    pub memory_allocated_bytes: u64,
    /// Memory offered by workers that take work, in bytes.
    pub memory_capacity_bytes: u64,
}

impl From<&TimelineSample> for SampleView {
    fn from(s: &TimelineSample) -> Self {
        SampleView {
            at: time(s.at),
            ended: s.ended,
            failed: s.failed,
            queued: s.queued,
            running: s.running,
            cpu_allocated_millis: s.cpu_allocated_millis,
            cpu_capacity_millis: s.cpu_capacity_millis,
            memory_allocated_bytes: s.memory_allocated_bytes,
            memory_capacity_bytes: s.memory_capacity_bytes,
        }
    }
}

/// One worker's load over the samples, per mille of its capacity; `null`
/// where the worker was not taking work (not yet registered, lost, gone).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct WorkerSeriesView {
    /// CPU reserved, per mille of its CPU, one value per sample.
    pub cpu_permille: Vec<Option<u16>>,
    /// Memory reserved, per mille of its memory, one value per sample.
    pub memory_permille: Vec<Option<u16>>,
}

/// The samples of the last hour, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TimelineView {
    /// Seconds between samples.
    pub every_seconds: f64,
    /// The samples, oldest first.
    pub samples: Vec<SampleView>,
    /// The asked-for workers' series, by worker id (`w-3`).
    pub workers: BTreeMap<String, WorkerSeriesView>,
}

impl TimelineView {
    /// `timeline`, with a series for each worker whose loads it holds.
    pub fn new(timeline: &Timeline) -> Self {
        let n = timeline.samples.len();
        let mut workers: BTreeMap<WorkerId, WorkerSeriesView> = BTreeMap::new();
        for (i, sample) in timeline.samples.iter().enumerate() {
            for load in &sample.workers {
                let series = workers.entry(load.worker).or_insert_with(|| WorkerSeriesView {
                    cpu_permille: vec![None; n],
                    memory_permille: vec![None; n],
                });
                series.cpu_permille[i] = Some(load.cpu_permille);
                series.memory_permille[i] = Some(load.memory_permille);
            }
        }
        TimelineView {
            every_seconds: timeline.every.as_secs_f64(),
            samples: timeline.samples.iter().map(SampleView::from).collect(),
            workers: workers.into_iter().map(|(id, s)| (id.to_string(), s)).collect(),
        }
    }
}
