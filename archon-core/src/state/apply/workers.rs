//! Worker registration, loss, leave and drain.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{AttemptId, Resources, Timestamp, Worker, WorkerId, WorkerState};
use crate::state::{ClusterState, Event, Outcome, Rejection};

impl ClusterState {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::state) fn apply_register_worker(
        &mut self,
        at: Timestamp,
        name: &str,
        address: &str,
        labels: &BTreeMap<String, String>,
        capacity: &Resources,
        capabilities: &BTreeSet<String>,
        running: &[AttemptId],
        queue: u32,
    ) -> Outcome {
        if name.trim().is_empty() {
            return reject("name", "must not be empty");
        }
        if capacity.cpu_millis == 0 || capacity.memory_bytes == 0 {
            return reject(
                "capacity",
                format!("announces no room to run anything ({capacity}); give it CPU and memory"),
            );
        }
        if capabilities.is_empty() {
            return reject("capabilities", "announces no task kinds it can run");
        }
        let mut events = Vec::new();
        let id = match self.worker_names.get(name) {
            Some(id) => *id,
            None => {
                self.next_worker += 1;
                let id = WorkerId(self.next_worker);
                self.worker_names.insert(name.to_owned(), id);
                id
            }
        };
        let announced: BTreeSet<AttemptId> = running.iter().copied().collect();
        // Attempts the state holds live on this worker that the worker no longer
        // runs (it restarted, or never received them) are lost and requeued.
        let forgotten: Vec<AttemptId> = self
            .workers
            .get(&id)
            .map(|w| w.running.iter().filter(|a| !announced.contains(a)).copied().collect())
            .unwrap_or_default();
        for attempt in forgotten {
            self.lose_attempt(at, attempt, &mut events);
        }
        // Attempts the worker runs that are not its live attempts any more are stale.
        let mut stale: Vec<AttemptId> = announced
            .iter()
            .filter(|a| self.attempts.get(a).is_none_or(|att| att.worker != id || !att.state.is_live()))
            .copied()
            .collect();
        let previous = self.workers.get(&id).map(|w| w.state);
        let state = match previous {
            Some(WorkerState::Draining) => WorkerState::Draining,
            _ => WorkerState::Ready,
        };
        let worker = self.workers.entry(id).or_insert_with(|| Worker {
            id,
            name: name.to_owned(),
            address: String::new(),
            labels: BTreeMap::new(),
            capacity: Resources::default(),
            allocated: Resources::default(),
            capabilities: BTreeSet::new(),
            state,
            registered_at: at,
            running: BTreeSet::new(),
            queue: 0,
            queued: BTreeSet::new(),
        });
        worker.address = address.to_owned();
        worker.labels = labels.clone();
        worker.capacity = capacity.clone();
        worker.capabilities = capabilities.clone();
        worker.state = state;
        worker.registered_at = at;
        worker.queue = queue;
        // Queued attempts it announces have started there (their start report
        // did not reach us): they hold their requests now.
        let started: Vec<AttemptId> = worker.queued.intersection(&announced).copied().collect();
        for attempt in started {
            if let Some(run) = self.attempts.get(&attempt).map(|a| a.run) {
                self.dequeue_started(id, run, attempt);
            }
        }
        // A worker back with less capacity than its live attempts hold keeps the
        // oldest that fit; the newest are stale (killed there) and requeued.
        while let Some(worker) = self.workers.get(&id)
            && !worker.allocated.fits_in(&worker.capacity)
            && let Some(newest) = worker.running.last().copied()
        {
            self.lose_attempt(at, newest, &mut events);
            stale.push(newest);
        }
        events.push(Event::WorkerRegistered { worker: id, stale });
        if previous != Some(state) {
            events.push(Event::WorkerStateChanged { worker: id, state });
        }
        Outcome::Applied(events)
    }

    pub(in crate::state) fn apply_worker_lost(&mut self, at: Timestamp, worker: WorkerId) -> Outcome {
        self.remove_worker(at, worker, WorkerState::Lost)
    }

    pub(in crate::state) fn apply_worker_left(&mut self, at: Timestamp, worker: WorkerId) -> Outcome {
        self.remove_worker(at, worker, WorkerState::Left)
    }

    fn remove_worker(&mut self, at: Timestamp, id: WorkerId, state: WorkerState) -> Outcome {
        let Some(worker) = self.workers.get(&id) else {
            return Outcome::Rejected(Rejection::UnknownWorker(id));
        };
        if matches!(worker.state, WorkerState::Lost | WorkerState::Left) {
            return Outcome::Rejected(Rejection::WorkerUnavailable { worker: id, state: worker.state });
        }
        let mut events = Vec::new();
        let running: Vec<AttemptId> = worker.running.iter().copied().collect();
        for attempt in running {
            self.lose_attempt(at, attempt, &mut events);
        }
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.state = state;
            worker.allocated = Resources::default();
            worker.queued.clear();
        }
        events.push(Event::WorkerStateChanged { worker: id, state });
        Outcome::Applied(events)
    }

    pub(in crate::state) fn apply_set_draining(&mut self, _at: Timestamp, id: WorkerId, draining: bool) -> Outcome {
        let Some(worker) = self.workers.get_mut(&id) else {
            return Outcome::Rejected(Rejection::UnknownWorker(id));
        };
        let target = if draining { WorkerState::Draining } else { WorkerState::Ready };
        match worker.state {
            WorkerState::Ready | WorkerState::Draining => {
                let changed = worker.state != target;
                worker.state = target;
                let events =
                    if changed { vec![Event::WorkerStateChanged { worker: id, state: target }] } else { Vec::new() };
                Outcome::Applied(events)
            }
            other => Outcome::Rejected(Rejection::WorkerUnavailable { worker: id, state: other }),
        }
    }
}

fn reject(field: &str, message: impl Into<String>) -> Outcome {
    Outcome::Rejected(Rejection::InvalidWorker { field: field.to_owned(), message: message.into() })
}
