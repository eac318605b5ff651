//! One worker session's stream, manager side: reports go to the driver, live
//! output of the worker's own attempts to the output hub, numbered heartbeats to
//! the lease granter ([`super::leases`]), and every message refreshes the
//! worker's liveness.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Shared;
use super::driver::Input;
use crate::model::WorkerId;
use crate::transport::{ManagerMessage, WorkerMessage};

/// Reads one worker's stream: reports go to the driver, output of the worker's
/// own attempts to the hub, everything refreshes the worker's liveness.
pub(super) async fn read_session(
    shared: Arc<Shared>,
    worker: WorkerId,
    session: u64,
    tx: Option<mpsc::WeakUnboundedSender<ManagerMessage>>,
    mut incoming: BoxStream<'static, WorkerMessage>,
) {
    let mut output = super::reports::OutputCheck::new(worker);
    while let Some(msg) = incoming.next().await {
        let now = shared.clock.now();
        if let Some(l) = shared.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&worker) {
            l.last_seen = now;
            l.heard = Instant::now();
            l.connected = true;
        }
        let input = match msg {
            WorkerMessage::Heartbeat { seq, .. } => {
                if seq > 0
                    && let Some(tx) = &tx
                {
                    shared.leases.heard(worker, seq, tx.clone());
                }
                continue;
            }
            WorkerMessage::Output(chunk) => {
                if !output.accepts(&shared, chunk.run, chunk.attempt) {
                    continue;
                }
                let limit = shared.config.limits.max_output_chunk;
                if chunk.data.len() > limit {
                    tracing::warn!(%worker, run = %chunk.run, bytes = chunk.data.len(), limit,
                        "live output chunk larger than max_output_chunk; dropped (its attempt's result keeps the output)");
                } else {
                    shared.hub.push(chunk);
                }
                continue;
            }
            WorkerMessage::Started { run, attempt } => Input::Started { worker, run, attempt },
            WorkerMessage::Finished { run, attempt, result } => Input::Finished { worker, run, attempt, result },
            WorkerMessage::Fenced { run, attempt } => Input::Fenced { worker, run, attempt },
            WorkerMessage::Draining => Input::Draining { worker },
            WorkerMessage::Leaving => Input::Leaving { worker },
        };
        if shared.inputs.send(input).await.is_err() {
            return;
        }
    }
    let _ = shared.inputs.send(Input::Detached { worker, session }).await;
}
