//! Worker leases, manager side. A worker numbers its heartbeats; the leader
//! answers heartbeat `n` with [`ManagerMessage::Lease`] `n` only after a round
//! that confirms its leadership *and started after the heartbeat arrived*
//! ([`Store::confirm_leadership`](crate::store::Store::confirm_leadership)).
//! The worker then acts for one lease from when it sent heartbeat `n` and kills
//! what it runs when that lease ends unrenewed (see [`crate::worker`]).
//!
//! Why that is enough for no run to execute in two places at once: a manager
//! declares a worker lost only after a worker timeout of silence measured from
//! the worker's last message, which arrived after it was sent; a new leader
//! measures it from when it gained leadership, which is after any confirmation
//! round of the leader before it (a quorum that confirmed the old leader voted
//! for the new one only afterwards). So every manager's "lost" comes a worker
//! timeout after the heartbeat was sent, and the lease is shorter than that by
//! clock drift and kill time ([`super::ManagerConfig::worker_lease`]). A deposed
//! leader that has not noticed cannot confirm, so it renews nothing.
//!
//! Rounds are batched: heartbeats heard while one round runs wait for the next,
//! so a busy cluster pays one confirmation per round trip, not per heartbeat.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::model::{WorkerId, WorkerState};
use crate::store::StoreExt;
use crate::transport::ManagerMessage;

/// Heartbeats heard and not yet answered, newest per worker.
#[derive(Default)]
pub(crate) struct Leases {
    // Ordered, so renewals go out in one order run after run (the simulation
    // replays a seed to the same trace).
    pending: Mutex<BTreeMap<WorkerId, (u64, mpsc::WeakUnboundedSender<ManagerMessage>)>>,
    heard: Notify,
}

impl Leases {
    /// Notes heartbeat `seq` of `worker`, to be answered on its session `tx`.
    pub(crate) fn heard(&self, worker: WorkerId, seq: u64, tx: mpsc::WeakUnboundedSender<ManagerMessage>) {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = pending.get(&worker).is_none_or(|(known, _)| seq > *known);
        if newer {
            pending.insert(worker, (seq, tx));
        }
        drop(pending);
        self.heard.notify_one();
    }

    fn take(&self) -> BTreeMap<WorkerId, (u64, mpsc::WeakUnboundedSender<ManagerMessage>)> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// Answers heartbeats, one confirmation round at a time, until `shutdown`.
pub(crate) async fn grant(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = shared.leases.heard.notified() => {}
        }
        // Taken before the round starts: every heartbeat answered below arrived
        // before the confirmation began.
        let heard: Vec<_> = shared.leases.take().into_iter().collect();
        if heard.is_empty() {
            continue;
        }
        // Bounded: a round that cannot reach a quorum renews nothing anyway.
        let limit = shared.config.worker_lease().max(std::time::Duration::from_millis(100));
        let confirmed = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(limit, shared.store.confirm_leadership()) => {
                r.unwrap_or_else(|_| Err(crate::Error::Unavailable("no quorum answered in time".into())))
            }
        };
        if let Err(e) = confirmed {
            failures = failures.saturating_add(1);
            if failures == 1 || failures.is_power_of_two() {
                tracing::warn!(error = %e, workers = heard.len(), failures,
                    "cannot confirm leadership; worker leases are not renewed");
            }
            continue;
        }
        failures = 0;
        // A worker the state no longer counts (lost, left) renews nothing: it
        // must register again, which its session's end makes it do.
        let live: Vec<bool> = shared.store.query(|s| {
            heard
                .iter()
                .map(|(id, _)| {
                    s.workers().get(id).is_some_and(|w| matches!(w.state, WorkerState::Ready | WorkerState::Draining))
                })
                .collect()
        });
        for ((_, (seq, tx)), live) in heard.into_iter().zip(live) {
            if let (true, Some(tx)) = (live, tx.upgrade()) {
                let _ = tx.send(ManagerMessage::Lease { seq });
            }
        }
        shared.metrics.manager().lease_round();
    }
}
