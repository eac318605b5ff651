//! Static feasibility: whether a worker could take a run at all, whatever is free on
//! it. That depends only on the run's *shape* (the capability its task needs and its
//! label constraints) and the worker's record, and a pass holds few distinct shapes,
//! so each shape is checked against every worker once per pass instead of once per run.

use std::collections::HashMap;

use super::WorkerSlot;
use crate::model::{Constraint, JobSpec, Task, TaskKind};

/// Identifies a shape within one pass.
pub(super) type ShapeId = usize;

/// What a run needs of a worker apart from resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Shape<'a> {
    capability: Capability<'a>,
    constraints: &'a [Constraint],
}

/// The capability a task needs (the borrowed form of [`Task::capability`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Capability<'a> {
    Kind(TaskKind),
    Function(&'a str),
    Custom(&'a str),
}

impl<'a> Shape<'a> {
    fn of(spec: &'a JobSpec) -> Shape<'a> {
        let capability = match &spec.task {
            Task::Function { name, .. } => Capability::Function(name),
            Task::Custom { executor, .. } => Capability::Custom(executor),
            task => Capability::Kind(task.kind()),
        };
        Shape { capability, constraints: &spec.constraints }
    }
}

/// The shapes seen so far in a pass and, for each, which workers are eligible.
#[derive(Debug)]
pub(super) struct Shapes<'v, 'a> {
    workers: &'v [WorkerSlot<'v>],
    ids: HashMap<Shape<'a>, ShapeId>,
    /// The last shape interned: consecutive runs often share one (runs of one job).
    last: Option<(Shape<'a>, ShapeId)>,
    eligible: Vec<Vec<bool>>,
}

impl<'v, 'a> Shapes<'v, 'a> {
    /// No shapes yet, over `workers`.
    pub(super) fn new(workers: &'v [WorkerSlot<'v>]) -> Self {
        Shapes { workers, ids: HashMap::new(), last: None, eligible: Vec::new() }
    }

    /// The id of `spec`'s shape, and whether it is new (its eligibility was just computed).
    pub(super) fn intern(&mut self, spec: &'a JobSpec) -> (ShapeId, bool) {
        let shape = Shape::of(spec);
        if let Some((last, id)) = &self.last
            && *last == shape
        {
            return (*id, false);
        }
        let next = self.eligible.len();
        let id = *self.ids.entry(shape.clone()).or_insert(next);
        if id == next {
            self.eligible.push(self.workers.iter().map(|slot| is_eligible(slot, spec)).collect());
        }
        self.last = Some((shape, id));
        (id, id == next)
    }

    /// Per worker (in view order): whether `shape` may run there.
    pub(super) fn eligible(&self, shape: ShapeId) -> &[bool] {
        &self.eligible[shape]
    }
}

/// Whether `spec` may start on `slot` at once given enough free resources: the
/// worker accepts work, has nothing queued (which would start first), can run the
/// task and satisfies every constraint (as [`crate::model::Worker::could_run`]).
fn is_eligible(slot: &WorkerSlot<'_>, spec: &JobSpec) -> bool {
    let worker = slot.worker;
    worker.accepts_work()
        && worker.queued.is_empty()
        && spec.task.runs_on(&worker.capabilities)
        && spec.constraints.iter().all(|c| c.holds(&worker.labels))
}
