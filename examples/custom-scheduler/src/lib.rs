//! A placement policy of your own: [`LabelAffinity`] sends runs to the workers
//! that carry a label (say `tier=fast`) while they have room, and spreads the rest
//! over the other workers by free CPU. Plug it in with
//! `archon::Archon::embedded().scheduler(Arc::new(LabelAffinity::new("tier", "fast")))`.
//!
//! The one thing to know: a [`Scheduler`] is a pure function from a
//! [`ClusterView`] (the workers that accept work and what is free on each) and the
//! pending runs to proposed [`Placement`]s. It does no I/O and keeps no state; the
//! state machine re-checks every placement, so a mistake here wastes a proposal but
//! never over-commits a worker. Copy this file and change [`LabelAffinity::place`].

use std::cmp::Reverse;

mod extra_worker;

pub use extra_worker::ExtraWorker;

use archon_core::model::{JobSpec, Resources, Worker};
use archon_core::scheduler::{ClusterView, PendingRun, Placement, Scheduler, WorkerSlot};

/// Prefers workers labelled `key=value`; among them, or among all workers when
/// none of them fits a run, takes the one with the most free CPU (ties: the
/// first in the view, the earliest registered). A job's own placement policy
/// (binpack or spread) is ignored, and worker queues are not used: a run that
/// fits nowhere now waits for a later pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelAffinity {
    key: String,
    value: String,
}

impl LabelAffinity {
    /// Prefers the workers whose label `key` is `value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> LabelAffinity {
        LabelAffinity { key: key.into(), value: value.into() }
    }

    /// Whether `worker` carries the preferred label.
    fn prefers(&self, worker: &Worker) -> bool {
        worker.labels.get(&self.key) == Some(&self.value)
    }
}

impl Scheduler for LabelAffinity {
    fn place(&self, view: &ClusterView<'_>, pending: &[PendingRun<'_>]) -> Vec<Placement> {
        // What is free on each worker (in view order), charged as runs are placed.
        let mut free: Vec<Resources> = view.workers.iter().map(|slot| slot.free.clone()).collect();
        let mut placements = Vec::new();
        // `pending` comes highest priority first: when room is short, the last ones wait.
        for run in pending {
            let fits = |i: &usize| fits_now(&view.workers[*i], run.spec, &free[*i]);
            let all = 0..view.workers.len();
            let preferred = all.clone().filter(fits).filter(|i| self.prefers(view.workers[*i].worker));
            let Some(chosen) = most_free_cpu(preferred, &free).or_else(|| most_free_cpu(all.filter(fits), &free))
            else {
                continue; // fits nowhere now; later, smaller runs may still fit
            };
            free[chosen].sub(&run.spec.resources);
            placements.push(Placement { run: run.run, worker: view.workers[chosen].worker.id });
        }
        placements
    }
}

/// Whether `spec` may start on `slot` now, given what is still `free` there:
/// nothing is queued on the worker (that would start first) and
/// [`Worker::fits_now`] holds — it can run the task, satisfies the job's label
/// constraints and has the requested resources free. `fits_now` is the rule the
/// state machine applies to every placement.
fn fits_now(slot: &WorkerSlot<'_>, spec: &JobSpec, free: &Resources) -> bool {
    let worker = slot.worker;
    worker.accepts_work() && worker.queued.is_empty() && worker.fits_now(spec, free).is_ok()
}

/// Of the workers `candidates` (indices into the view), the one with the most free
/// CPU; the first of them on ties (`min_by_key` keeps the first minimum).
fn most_free_cpu(candidates: impl Iterator<Item = usize>, free: &[Resources]) -> Option<usize> {
    candidates.min_by_key(|i| Reverse(free[*i].cpu_millis))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use archon_core::model::{AttemptId, PlacementPolicy, RunId, Task, Timestamp, WorkerId, WorkerState};
    use archon_core::scheduler::pending_runs;
    use archon_core::state::{ClusterState, Command};
    use archon_core::testkit::fixtures;

    use super::*;

    fn fast_first() -> LabelAffinity {
        LabelAffinity::new("tier", "fast")
    }

    /// Worker `id` with `millis` of CPU free, 8 GiB of memory, the `shell` capability.
    fn worker(id: u64, millis: u64, labels: &[(&str, &str)]) -> Worker {
        Worker {
            id: WorkerId(id),
            name: format!("w{id}"),
            address: String::new(),
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            capacity: Resources { cpu_millis: millis, memory_bytes: 8 << 30, ..Resources::default() },
            allocated: Resources::default(),
            capabilities: BTreeSet::from(["shell".to_owned()]),
            state: WorkerState::Ready,
            registered_at: Timestamp(0),
            running: BTreeSet::new(),
            queue: 0,
            queued: BTreeSet::new(),
        }
    }

    fn fast(id: u64, millis: u64) -> Worker {
        worker(id, millis, &[("tier", "fast")])
    }

    /// A shell job asking for `millis` of CPU and 64 MiB.
    fn job(millis: u64) -> JobSpec {
        let mut spec = JobSpec::new("job", Task::Shell { command: "true".into() });
        spec.resources.cpu_millis = millis;
        spec
    }

    /// Places `specs` (runs 1, 2, …) on `workers`; the worker id of each run, `None` when not placed.
    fn place(scheduler: &LabelAffinity, workers: &[Worker], specs: &[JobSpec]) -> Vec<Option<u64>> {
        let slots = workers.iter().map(|w| WorkerSlot { worker: w, free: w.free(), queue_room: w.queue_room() });
        let view = ClusterView { workers: slots.collect(), default_policy: PlacementPolicy::Binpack };
        let pending: Vec<PendingRun<'_>> =
            specs.iter().zip(1..).map(|(spec, run)| PendingRun { run: RunId(run), spec }).collect();
        let placements = scheduler.place(&view, &pending);
        let by_run: BTreeMap<RunId, WorkerId> = placements.iter().map(|p| (p.run, p.worker)).collect();
        pending.iter().map(|p| by_run.get(&p.run).map(|w| w.0)).collect()
    }

    #[test]
    fn runs_go_to_the_labelled_worker_while_it_has_room_then_to_the_most_free_cpu() {
        let workers = [worker(1, 4_000, &[]), fast(2, 2_000), worker(3, 8_000, &[])];
        let placed = place(&fast_first(), &workers, &vec![job(1_000); 4]);
        assert_eq!(placed, [Some(2), Some(2), Some(3), Some(3)]);
    }

    #[test]
    fn without_a_labelled_worker_runs_spread_over_all_by_free_cpu() {
        let workers = [worker(1, 2_000, &[]), worker(2, 2_000, &[]), worker(3, 2_000, &[])];
        let placed = place(&fast_first(), &workers, &vec![job(1_000); 6]);
        assert_eq!(placed, [1, 2, 3, 1, 2, 3].map(Some), "ties go to the first worker in the view");
    }

    #[test]
    fn among_labelled_workers_runs_spread_too() {
        let workers = [worker(1, 8_000, &[]), fast(2, 2_000), fast(3, 3_000)];
        let placed = place(&fast_first(), &workers, &vec![job(1_000); 6]);
        assert_eq!(placed, [3, 2, 3, 2, 3, 1].map(Some));
    }

    #[test]
    fn what_is_allocated_or_queued_on_a_worker_counts() {
        let mut busy = fast(1, 4_000);
        busy.allocated.cpu_millis = 3_500;
        let mut queued = fast(2, 4_000);
        queued.queue = 4;
        queued.queued.insert(AttemptId(7));
        let workers = [busy, queued, worker(3, 2_000, &[])];
        assert_eq!(place(&fast_first(), &workers, &[job(1_000)]), [Some(3)]);
    }

    #[test]
    fn capability_constraints_and_memory_decide_where_a_run_may_go() {
        let mut no_shell = fast(1, 8_000);
        no_shell.capabilities.clear();
        assert_eq!(place(&fast_first(), &[no_shell, worker(2, 1_000, &[])], &[job(1_000)]), [Some(2)]);

        let mut not_fast = job(1_000);
        not_fast.constraints.push("tier!=fast".parse().unwrap());
        let mut gpu = job(1_000);
        gpu.constraints.push("gpu".parse().unwrap());
        let workers = [fast(1, 8_000), worker(2, 1_000, &[])];
        assert_eq!(place(&fast_first(), &workers, &[not_fast, gpu]), [Some(2), None]);

        let mut big_memory = job(1_000);
        big_memory.resources.memory_bytes = 16 << 30;
        assert_eq!(place(&fast_first(), &workers, &[big_memory]), [None], "no worker has 16 GiB");
    }

    #[test]
    fn never_places_more_than_is_free_and_still_tries_smaller_runs() {
        let workers = [fast(1, 1_000), worker(2, 1_500, &[])];
        let specs = [job(1_000), job(1_000), job(1_000), job(4_000), job(500)];
        // The third run fits nowhere (500m is left); neither does the fourth; the last one does.
        assert_eq!(place(&fast_first(), &workers, &specs), [Some(1), Some(2), None, None, Some(2)]);
    }

    #[test]
    fn placements_on_real_cluster_state_pass_the_state_machines_checks() {
        let mut state = ClusterState::new();
        for name in ["plain-1", "fast-1", "plain-2"] {
            // 8 CPUs and 8 GiB each, running shell jobs.
            let mut register = fixtures::register_worker(name);
            if let Command::RegisterWorker { labels, .. } = &mut register
                && name.starts_with("fast")
            {
                labels.insert("tier".into(), "fast".into());
            }
            assert_eq!(state.apply(&register).rejection(), None);
        }
        // 100 jobs of the default request (100m CPU, 64 MiB): 80 fill the fast worker's CPU.
        for i in 0..100 {
            assert_eq!(state.apply(&fixtures::submit_job(&format!("job-{i}"), 2_000)).rejection(), None);
        }
        let now = Timestamp(3_000);
        let placements = {
            let view = ClusterView::of(&state, PlacementPolicy::Binpack);
            fast_first().place(&view, &pending_runs(&state, now, 1_000))
        };
        assert_eq!(placements.len(), 100);
        for p in &placements {
            let outcome = state.apply(&Command::AssignAttempt { at: now, run: p.run, worker: p.worker });
            assert_eq!(outcome.rejection(), None, "{p:?} was refused");
        }
        let count = |name: &str| {
            let id = state.worker_by_name(name).unwrap().id;
            placements.iter().filter(|p| p.worker == id).count()
        };
        assert_eq!([count("fast-1"), count("plain-1"), count("plain-2")], [80, 10, 10]);
    }
}
