//! Ranking: which worker with room a run goes to. [`RankTree`] keeps each worker's
//! free resources as a vector of integers (CPU, memory, network, then one entry per
//! requested device kind) at the leaves of a tournament tree whose nodes summarise
//! their subtree: the most free in each dimension, which shapes have an eligible
//! worker, and the extremes of the score terms. [`RankTree::best`] descends only into
//! subtrees that could hold an eligible worker with room for the run and a better
//! score than the best found so far, so a run usually touches a few root-to-leaf paths
//! instead of every worker. Leaves are sorted by capacity, which keeps alike workers
//! in the same subtrees and their bounds tight.
//!
//! The one thing to know: a node's bound is the leaf score formula applied to its
//! subtree's extremes, and float addition and multiplication are monotone, so a bound
//! never undercuts a score below it. Pruning therefore never changes the answer: it is
//! the first worker, in view order, with the highest score among eligible workers with
//! room, exactly what a search of every worker would find.

use super::feasible::ShapeId;
use super::{PendingRun, WorkerSlot};
use crate::model::{PlacementPolicy, Resources};

const CPU: usize = 0;
const MEMORY: usize = 1;
const NETWORK: usize = 2;
const FIRST_DEVICE: usize = 3;

/// How amounts of [`Resources`] are laid out as integer vectors during a pass: CPU,
/// memory, network, then each device kind some pending run requests (other kinds
/// cannot matter).
#[derive(Debug)]
pub(super) struct Dimensions<'a> {
    devices: Vec<&'a str>,
}

impl<'a> Dimensions<'a> {
    /// The dimensions needed to place `pending`.
    pub(super) fn of(pending: &[PendingRun<'a>]) -> Dimensions<'a> {
        let mut devices: Vec<&'a str> =
            pending.iter().flat_map(|p| p.spec.resources.devices.keys()).map(String::as_str).collect();
        devices.sort_unstable();
        devices.dedup();
        Dimensions { devices }
    }

    /// The length of a vector.
    pub(super) fn len(&self) -> usize {
        FIRST_DEVICE + self.devices.len()
    }

    /// Writes `amount` into `out` (of length [`Dimensions::len`]).
    pub(super) fn write(&self, amount: &Resources, out: &mut [u64]) {
        out[CPU] = amount.cpu_millis;
        out[MEMORY] = amount.memory_bytes;
        out[NETWORK] = amount.network_mbps;
        for (slot, kind) in out[FIRST_DEVICE..].iter_mut().zip(&self.devices) {
            *slot = amount.devices.get(*kind).map_or(0, |n| u64::from(*n));
        }
    }
}

/// The smallest and largest value of a score term in a subtree.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    min: f64,
    max: f64,
}

impl Span {
    /// The span of no values (the identity of [`Span::join`]).
    const EMPTY: Span = Span { min: f64::INFINITY, max: f64::NEG_INFINITY };

    fn point(v: f64) -> Span {
        Span { min: v, max: v }
    }

    fn join(self, other: Span) -> Span {
        Span { min: self.min.min(other.min), max: self.max.max(other.max) }
    }
}

/// The terms of a worker's score: utilization now (the mean fraction of CPU and memory
/// in use) and the weight of a requested millicore and byte (1 / (2 × capacity)).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Terms {
    util: Span,
    cpu_weight: Span,
    memory_weight: Span,
}

impl Terms {
    const EMPTY: Terms = Terms { util: Span::EMPTY, cpu_weight: Span::EMPTY, memory_weight: Span::EMPTY };

    fn join(self, other: Terms) -> Terms {
        Terms {
            util: self.util.join(other.util),
            cpu_weight: self.cpu_weight.join(other.cpu_weight),
            memory_weight: self.memory_weight.join(other.memory_weight),
        }
    }

    /// The best score `request` could get in this subtree under `policy` (at a leaf:
    /// the score). Binpack prefers the fullest worker after placing, spread the emptiest.
    fn bound(&self, policy: PlacementPolicy, request: &[u64]) -> f64 {
        let after =
            |util: f64, cpu: f64, memory: f64| util + request[CPU] as f64 * cpu + request[MEMORY] as f64 * memory;
        match policy {
            PlacementPolicy::Binpack => after(self.util.max, self.cpu_weight.max, self.memory_weight.max),
            PlacementPolicy::Spread => -after(self.util.min, self.cpu_weight.min, self.memory_weight.min),
        }
    }
}

/// The weight of one unit of a dimension with capacity `capacity` in a utilization
/// that averages two dimensions (0 when there is no capacity: it cannot be requested).
fn weight(capacity: u64) -> f64 {
    if capacity == 0 { 0.0 } else { 0.5 / capacity as f64 }
}

/// What one search looks for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Query<'q> {
    /// The run's request, laid out by [`Dimensions`].
    pub(super) request: &'q [u64],
    /// The run's shape.
    pub(super) shape: ShapeId,
    /// Per worker: whether the shape may run there.
    pub(super) eligible: &'q [bool],
    /// How to score.
    pub(super) policy: PlacementPolicy,
}

/// Workers' free resources and scores under a tournament tree (see the module docs).
/// Node 1 is the root and node `n`'s children are `2n` and `2n + 1`; leaves hold the
/// workers sorted by capacity, then padding with no room and no shapes.
#[derive(Debug)]
pub(super) struct RankTree {
    dims: usize,
    leaves: usize,
    /// Per worker (view index): its leaf.
    leaf: Vec<usize>,
    /// Per worker: CPU and memory capacity, for recomputing utilization.
    capacity: Vec<[u64; 2]>,
    /// `dims` values per node: the most free of each dimension in the subtree.
    room: Vec<u64>,
    /// Per node: the extremes of the score terms in the subtree.
    terms: Vec<Terms>,
    /// Per node: bit `s` is set when shape `s` has an eligible worker in the subtree.
    /// Shapes from [`RankTree::SHARED_BIT`] on share the last bit, set on every worker.
    shapes: Vec<u64>,
    /// Per node: the first worker (view index) in the subtree, for breaking ties.
    first: Vec<usize>,
}

/// The best worker found so far in a search.
#[derive(Debug, Clone, Copy)]
struct Best {
    score: f64,
    worker: usize,
}

impl RankTree {
    /// The bit that shapes numbered this or higher share.
    const SHARED_BIT: ShapeId = 63;

    /// A tree over `workers` with their free resources (capped at capacity).
    pub(super) fn new(workers: &[WorkerSlot<'_>], dimensions: &Dimensions<'_>) -> RankTree {
        let dims = dimensions.len();
        let leaves = workers.len().next_power_of_two();
        let nodes = 2 * leaves;
        let mut capacity = vec![0; workers.len() * dims];
        for (i, slot) in workers.iter().enumerate() {
            dimensions.write(&slot.worker.capacity, &mut capacity[i * dims..(i + 1) * dims]);
        }
        let mut order: Vec<usize> = (0..workers.len()).collect();
        order.sort_by_key(|&i| (&capacity[i * dims..(i + 1) * dims], i));
        let mut tree = RankTree {
            dims,
            leaves,
            leaf: vec![0; workers.len()],
            capacity: Vec::with_capacity(workers.len()),
            room: vec![0; nodes * dims],
            terms: vec![Terms::EMPTY; nodes],
            shapes: vec![0; nodes],
            first: vec![usize::MAX; nodes],
        };
        for (position, &worker) in order.iter().enumerate() {
            tree.leaf[worker] = leaves + position;
        }
        for (i, slot) in workers.iter().enumerate() {
            let (leaf, capacity) = (tree.leaf[i], &capacity[i * dims..(i + 1) * dims]);
            let room = &mut tree.room[leaf * dims..(leaf + 1) * dims];
            dimensions.write(&slot.free, room);
            for (free, cap) in room.iter_mut().zip(capacity) {
                *free = (*free).min(*cap);
            }
            tree.capacity.push([capacity[CPU], capacity[MEMORY]]);
            tree.terms[leaf] = Terms {
                util: Span::EMPTY,
                cpu_weight: Span::point(weight(capacity[CPU])),
                memory_weight: Span::point(weight(capacity[MEMORY])),
            };
            tree.refresh_util(i);
            tree.shapes[leaf] = 1 << Self::SHARED_BIT;
            tree.first[leaf] = i;
        }
        for node in (1..leaves).rev() {
            tree.pull(node);
        }
        tree
    }

    /// Records which workers may take `shape`, so searches for it skip subtrees
    /// without one. Call once per shape, when it is first seen.
    pub(super) fn add_shape(&mut self, shape: ShapeId, eligible: &[bool]) {
        if shape >= Self::SHARED_BIT {
            return;
        }
        for (worker, _) in eligible.iter().enumerate().filter(|(_, e)| **e) {
            self.shapes[self.leaf[worker]] |= 1 << shape;
        }
        for node in (1..self.leaves).rev() {
            self.shapes[node] = self.shapes[2 * node] | self.shapes[2 * node + 1];
        }
    }

    /// The worker (view index) the query's run should go to: among eligible workers
    /// with room for the request, the highest score, the first in view order on ties.
    pub(super) fn best(&self, query: &Query<'_>) -> Option<usize> {
        let shape_bit = 1 << query.shape.min(Self::SHARED_BIT);
        let mut best = None;
        if let Some(bound) = self.bound(1, query, shape_bit) {
            self.search(1, bound, query, shape_bit, &mut best);
        }
        best.map(|b: Best| b.worker)
    }

    /// The best score `query` could get under `node`, or `None` when no worker there
    /// is eligible with room.
    fn bound(&self, node: usize, query: &Query<'_>, shape_bit: u64) -> Option<f64> {
        (self.shapes[node] & shape_bit != 0 && self.has_room(node, query.request))
            .then(|| self.terms[node].bound(query.policy, query.request))
    }

    /// Depth-first, the child with the better bound first, skipping subtrees whose
    /// bound cannot beat `best` (higher score, or equal score and earlier in view order).
    fn search(&self, node: usize, bound: f64, query: &Query<'_>, shape_bit: u64, best: &mut Option<Best>) {
        if best.is_some_and(|b| bound < b.score || (bound == b.score && self.first[node] > b.worker)) {
            return;
        }
        if node >= self.leaves {
            let worker = self.first[node];
            if query.eligible[worker] {
                *best = Some(Best { score: bound, worker });
            }
            return;
        }
        let (left, right) = (2 * node, 2 * node + 1);
        let mut children = [(left, self.bound(left, query, shape_bit)), (right, self.bound(right, query, shape_bit))];
        if children[1].1 > children[0].1 {
            children.swap(0, 1);
        }
        for (child, bound) in children {
            if let Some(bound) = bound {
                self.search(child, bound, query, shape_bit, best);
            }
        }
    }

    /// Whether some worker under `node` has at least `request` free in every dimension.
    fn has_room(&self, node: usize, request: &[u64]) -> bool {
        let room = &self.room[node * self.dims..(node + 1) * self.dims];
        room.iter().zip(request).all(|(free, wanted)| free >= wanted)
    }

    /// Takes `request` from `worker`'s free resources (the caller checked it fits).
    pub(super) fn charge(&mut self, worker: usize, request: &[u64]) {
        let leaf = self.leaf[worker];
        debug_assert!(self.has_room(leaf, request), "charging worker {worker} beyond its free resources");
        for (free, wanted) in self.room[leaf * self.dims..(leaf + 1) * self.dims].iter_mut().zip(request) {
            *free = free.saturating_sub(*wanted);
        }
        self.refresh_util(worker);
        let mut node = leaf / 2;
        while node >= 1 && self.pull(node) {
            node /= 2;
        }
    }

    /// Recomputes `worker`'s utilization from its capacity and free resources.
    fn refresh_util(&mut self, worker: usize) {
        let leaf = self.leaf[worker];
        let [cpu, memory] = self.capacity[worker];
        let used_cpu = cpu - self.room[leaf * self.dims + CPU];
        let used_memory = memory - self.room[leaf * self.dims + MEMORY];
        let terms = &mut self.terms[leaf];
        // A leaf's spans are single values.
        terms.util = Span::point(used_cpu as f64 * terms.cpu_weight.max + used_memory as f64 * terms.memory_weight.max);
    }

    /// Recomputes `node`'s summary from its children; whether it changed (when it did
    /// not, neither do its ancestors').
    fn pull(&mut self, node: usize) -> bool {
        let (left, right) = (2 * node, 2 * node + 1);
        let mut changed = false;
        for d in 0..self.dims {
            let most = self.room[left * self.dims + d].max(self.room[right * self.dims + d]);
            changed |= std::mem::replace(&mut self.room[node * self.dims + d], most) != most;
        }
        let terms = self.terms[left].join(self.terms[right]);
        changed |= std::mem::replace(&mut self.terms[node], terms) != terms;
        self.shapes[node] = self.shapes[left] | self.shapes[right];
        self.first[node] = self.first[left].min(self.first[right]);
        changed
    }
}
