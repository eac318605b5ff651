//! The [`Scheduler`] plug point: pure placement. Given a view of the workers and
//! the runs waiting, it proposes placements; it does no I/O and keeps no state, so
//! it is tested like a function. The state machine re-checks every placement, so a
//! buggy scheduler can waste a proposal but never over-commit a worker.
//!
//! [`BinPack`] is the default: feasibility by shape (`feasible.rs`), then a tree over
//! the workers' free resources and scores (`rank.rs`), then the workers' queues
//! for what fits nowhere now (`queue.rs`), wired in `binpack.rs`.

mod binpack;
mod feasible;
mod queue;
mod rank;
#[cfg(test)]
mod tests;

pub use binpack::BinPack;

use crate::model::{JobSpec, PlacementPolicy, Resources, RunId, Timestamp, Worker, WorkerId};
use crate::state::ClusterState;

/// A worker as placement sees it: its record and what is free on it.
#[derive(Debug, Clone)]
pub struct WorkerSlot<'a> {
    /// The worker.
    pub worker: &'a Worker,
    /// Capacity not yet allocated.
    pub free: Resources,
    /// How many more attempts its queue takes ([`Worker::queue`]).
    pub queue_room: u32,
}

/// The workers that accept work, and the cluster's default policy.
#[derive(Debug, Clone)]
pub struct ClusterView<'a> {
    /// Workers that accept new attempts.
    pub workers: Vec<WorkerSlot<'a>>,
    /// Policy for jobs that do not choose one.
    pub default_policy: PlacementPolicy,
}

impl<'a> ClusterView<'a> {
    /// The view of `state`'s workers that accept work.
    pub fn of(state: &'a ClusterState, default_policy: PlacementPolicy) -> ClusterView<'a> {
        let workers = state
            .workers()
            .values()
            .filter(|w| w.accepts_work())
            .map(|w| WorkerSlot { worker: w, free: w.free(), queue_room: w.queue_room() })
            .collect();
        ClusterView { workers, default_policy }
    }
}

impl ClusterView<'_> {
    /// How many runs could be placed at most, when that is known: when every
    /// worker in view has attempts queued, new runs can only join queues, so
    /// the answer is their room; otherwise `None` (it depends on the runs).
    pub fn queue_bound(&self) -> Option<usize> {
        let mut room = 0usize;
        for slot in &self.workers {
            if slot.worker.queued.is_empty() {
                return None;
            }
            room += slot.queue_room as usize;
        }
        Some(room)
    }
}

/// A run waiting for a worker.
#[derive(Debug, Clone, Copy)]
pub struct PendingRun<'a> {
    /// The run.
    pub run: RunId,
    /// Its job's definition.
    pub spec: &'a JobSpec,
}

/// The runs of `state` that may be placed at `now`, highest priority first, at most `limit`.
pub fn pending_runs(state: &ClusterState, now: Timestamp, limit: usize) -> Vec<PendingRun<'_>> {
    let mut runs: Vec<PendingRun<'_>> = state
        .placeable_runs(now, limit)
        .into_iter()
        .filter_map(|id| {
            let run = state.run(id)?;
            let job = state.job(run.job)?;
            Some(PendingRun { run: id, spec: &job.spec })
        })
        .collect();
    runs.sort_by_key(|p| std::cmp::Reverse(p.spec.priority));
    runs
}

/// A proposed placement of a run on a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The run.
    pub run: RunId,
    /// The worker.
    pub worker: WorkerId,
}

/// Pure placement of pending runs onto workers.
pub trait Scheduler: Send + Sync + 'static {
    /// Proposes placements for `pending` (in the order given, which is priority
    /// order). Must not place more on a worker than its free resources allow,
    /// plus as many as its queue room, each of which fits the worker whole; and
    /// while a worker has attempts queued ([`Worker::queued`]), a placement
    /// there takes queue room whatever is free (it starts after them).
    fn place(&self, view: &ClusterView<'_>, pending: &[PendingRun<'_>]) -> Vec<Placement>;
}
