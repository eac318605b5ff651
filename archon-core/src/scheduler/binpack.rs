//! [`BinPack`]: the default scheduler. The placement pipeline is built here, in one
//! place; each stage lives in its own module:
//!
//! 1. **Feasibility** ([`super::feasible`]): a run's shape (task capability and label
//!    constraints) decides which workers may take it at all; computed once per shape.
//! 2. **Room** ([`super::rank`]): the worker must have the run's request free in every
//!    dimension: CPU, memory, network and each device kind alike.
//! 3. **Scoring and choice** ([`super::rank`]): among the rest, the job's placement
//!    policy picks the worker (binpack: fullest after placing; spread: emptiest), the
//!    first in view order on ties. The chosen worker is charged before the next run.
//!
//! 4. **Queues** ([`super::queue`]): what fits nowhere now goes to the queue of a
//!    worker it fits whole, the one with the most queue room; it starts there as
//!    soon as what runs ahead of it ends.
//!
//! Runs go in priority order (highest first, otherwise as given), so when capacity is
//! short it is the lower-priority runs that wait. A run that fits nowhere is skipped
//! and later, smaller runs are still tried.

use std::cmp::Reverse;

use super::feasible::Shapes;
use super::queue::Queues;
use super::rank::{Dimensions, Query, RankTree};
use super::{ClusterView, PendingRun, Placement, Scheduler};

/// Feasibility, then scoring by policy; never over-commits.
#[derive(Debug, Clone, Copy, Default)]
pub struct BinPack;

impl Scheduler for BinPack {
    fn place(&self, view: &ClusterView<'_>, pending: &[PendingRun<'_>]) -> Vec<Placement> {
        let mut order: Vec<&PendingRun<'_>> = pending.iter().collect();
        order.sort_by_key(|p| Reverse(p.spec.priority));

        let dimensions = Dimensions::of(pending);
        let mut shapes = Shapes::new(&view.workers);
        let mut tree = RankTree::new(&view.workers, &dimensions);
        let mut request = vec![0; dimensions.len()];
        let mut placements = Vec::with_capacity(pending.len().min(1024));
        let mut queues = Queues::new(&view.workers);
        let mut waiting = Vec::new();
        for p in order {
            dimensions.write(&p.spec.resources, &mut request);
            let (shape, new) = shapes.intern(p.spec);
            if new {
                tree.add_shape(shape, shapes.eligible(shape));
            }
            let policy = p.spec.placement.unwrap_or(view.default_policy);
            let query = Query { request: &request, shape, eligible: shapes.eligible(shape), policy };
            if let Some(worker) = tree.best(&query) {
                tree.charge(worker, &request);
                placements.push(Placement { run: p.run, worker: view.workers[worker].worker.id });
            } else if queues.has_room() {
                waiting.push(p);
            }
        }
        for p in waiting {
            let Some(worker) = queues.take(p.spec) else { break };
            placements.push(Placement { run: p.run, worker });
        }
        placements
    }
}
