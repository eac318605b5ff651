//! The workers' queues as placement sees them: runs that fit no worker's free
//! resources now may wait in the queue of a worker that could run them, and
//! start there as soon as the attempts ahead of them end — without a round trip
//! to the manager. A run goes to the eligible worker with the most queue room
//! (the first in view order on ties), so queued work spreads over the workers.

use super::WorkerSlot;
use crate::model::{JobSpec, WorkerId};

/// The queue room left per worker during one pass.
#[derive(Debug)]
pub(super) struct Queues<'v> {
    workers: &'v [WorkerSlot<'v>],
    /// Per worker, in view order.
    room: Vec<u32>,
    /// The sum of `room`: the pass stops looking once it is zero.
    total: u64,
}

impl<'v> Queues<'v> {
    /// The queue room of `workers` that accept work.
    pub(super) fn new(workers: &'v [WorkerSlot<'v>]) -> Queues<'v> {
        let room: Vec<u32> = workers.iter().map(|s| if s.worker.accepts_work() { s.queue_room } else { 0 }).collect();
        let total = room.iter().map(|&r| u64::from(r)).sum();
        Queues { workers, room, total }
    }

    /// Whether any queue has room left.
    pub(super) fn has_room(&self) -> bool {
        self.total > 0
    }

    /// Takes a place in the queue of the worker with the most room among those
    /// that could run `spec`, if any.
    pub(super) fn take(&mut self, spec: &JobSpec) -> Option<WorkerId> {
        if self.total == 0 {
            return None;
        }
        let mut best: Option<usize> = None;
        for (i, slot) in self.workers.iter().enumerate() {
            let room = self.room[i];
            if room == 0 || best.is_some_and(|b| self.room[b] >= room) {
                continue;
            }
            if slot.worker.could_run(spec).is_ok() {
                best = Some(i);
            }
        }
        let i = best?;
        self.room[i] -= 1;
        self.total -= 1;
        Some(self.workers[i].worker.id)
    }
}
