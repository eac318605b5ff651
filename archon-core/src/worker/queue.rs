//! The worker's queue: assignments it holds but has not started, first in first
//! out. The manager places up to [`WorkerConfig::queue`](super::WorkerConfig::queue)
//! attempts beyond the worker's free resources (and a placement behind queued ones
//! queues too), so the worker starts each the moment the ones ahead of it free
//! what it asks for — no round trip — and never runs more than its capacity.
//! While the lease has lapsed nothing starts: the assignments are held until it
//! is renewed. The queue is dropped when the session ends, and the next hello
//! does not announce what was in it, so the manager requeues those runs.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Running, Shared, attempt};
use crate::model::{AttemptId, AttemptResult, ExitStatus};
use crate::transport::{Assignment, WorkerMessage};

impl Shared {
    pub(super) fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<Assignment>> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues assignments behind those waiting (an attempt already here is
    /// ignored) and starts what may start.
    pub(super) fn assigned(self: &Arc<Self>, batch: Vec<Assignment>) {
        {
            let mut waiting = self.waiting();
            let running = self.running();
            for a in batch {
                if running.contains_key(&a.attempt) {
                    tracing::debug!(run = %a.run, attempt = %a.attempt, "assignment of a live attempt ignored");
                    continue;
                }
                tracing::error_span!("attempt", run = %a.run, attempt = %a.attempt, job = %a.job)
                    .in_scope(|| tracing::debug!(ahead = waiting.len(), "assignment received"));
                waiting.push_back(a);
            }
        }
        self.start_ready();
    }

    /// Starts the waiting assignments, first in first out, while the lease
    /// holds and the next one's request fits what the running ones leave free
    /// (or nothing runs: a worker always takes one attempt it could run).
    pub(super) fn start_ready(self: &Arc<Self>) {
        loop {
            if self.leaving.is_cancelled() {
                return;
            }
            let Some(generation) = self.lease.valid() else {
                let held = self.waiting().len();
                if held > 0 && !self.held_logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    // Started now, they could outlive the lease the cluster counts on.
                    tracing::info!(held, "the lease has lapsed; assignments held until it is renewed");
                }
                return;
            };
            self.held_logged.store(false, std::sync::atomic::Ordering::Relaxed);
            let (a, cancel) = {
                let mut waiting = self.waiting();
                let Some(next) = waiting.front() else { return };
                let mut running = self.running();
                if !running.is_empty() && !next.spec.resources.fits_in(&self.config.capacity.minus(&running.used)) {
                    return;
                }
                let Some(a) = waiting.pop_front() else { return };
                let cancel = CancellationToken::new();
                let keep = a.spec.on_disconnect == crate::model::OnDisconnect::Keep;
                let resources = a.spec.resources.clone();
                running.insert(a.attempt, Running { run: a.run, resources, cancel: cancel.clone(), generation, keep });
                (a, cancel)
            };
            // Error level, so the ids reach every event of the attempt whatever
            // the filter lets through; inside the session's span (the worker id).
            let span = tracing::error_span!("attempt", run = %a.run, attempt = %a.attempt, job = %a.job);
            span.in_scope(|| tracing::debug!("resources free; starting"));
            let attempt: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
                Box::pin(attempt::run_attempt(self.clone(), a, cancel));
            tokio::spawn(attempt.instrument(span));
        }
    }

    /// Drops a waiting assignment the manager cancelled, reporting it cancelled;
    /// false when it is not waiting here.
    pub(super) fn cancel_waiting(self: &Arc<Self>, attempt: AttemptId, why: &str) -> bool {
        let mut waiting = self.waiting();
        let Some(pos) = waiting.iter().position(|a| a.attempt == attempt) else { return false };
        let dropped = waiting.remove(pos);
        drop(waiting);
        if let Some(a) = dropped {
            tracing::info!(%attempt, run = %a.run, why, "dropping an assignment not started");
            let result = AttemptResult::status(ExitStatus::Cancelled);
            let _ = self.reports.try_send(WorkerMessage::Finished { run: a.run, attempt, result });
        }
        // It may have been the head that did not fit yet.
        self.start_ready();
        true
    }
}
