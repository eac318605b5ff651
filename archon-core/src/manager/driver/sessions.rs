//! The driver's side of worker sessions: a hello becomes a registered worker
//! with a session (or a refusal), a session's end closes it, and messages go
//! down the session of the worker they are for. One session per worker; the
//! liveness table shows whether it has one.

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{AttachReply, Driver};
use crate::error::Error;
use crate::manager::Liveness;
use crate::model::{Timestamp, WorkerId};
use crate::state::{Event, Outcome};
use crate::store::StoreExt;
use crate::transport::{Hello, ManagerMessage, Welcome, WorkerMessage};
use futures::stream::BoxStream;

/// A hello waiting for its registration to commit.
pub(super) struct PendingAttach {
    pub(super) incoming: BoxStream<'static, WorkerMessage>,
    pub(super) reply: AttachReply,
}

/// The sending end of a worker's session, numbered so that a stale session's
/// end does not close its successor.
pub(super) struct SessionTx {
    pub(super) id: u64,
    pub(super) tx: mpsc::UnboundedSender<ManagerMessage>,
}

impl Driver {
    pub(super) fn duplicate(&self, hello: &Hello) -> Option<String> {
        let id = self.shared.store.query(|s| s.worker_by_name(&hello.name).map(|w| w.id))?;
        self.sessions
            .get(&id)
            .filter(|s| !s.tx.is_closed())
            .map(|_| format!("a worker named {:?} is already connected; give each worker a unique name", hello.name))
    }

    pub(super) fn finish_attach(&mut self, pending: PendingAttach, outcome: Outcome, now: Timestamp) {
        let (worker, stale) = match outcome {
            Outcome::Applied(events) => match events.into_iter().find_map(|e| match e {
                Event::WorkerRegistered { worker, stale } => Some((worker, stale)),
                _ => None,
            }) {
                Some(found) => found,
                None => {
                    let _ = pending.reply.send(Err(Error::Internal("registration produced no worker".into())));
                    return;
                }
            },
            Outcome::Rejected(r) => {
                let _ = pending.reply.send(Err(Error::Rejected(r)));
                return;
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.next_session += 1;
        let session = self.next_session;
        self.sessions.insert(worker, SessionTx { id: session, tx });
        self.shared
            .liveness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(worker, Liveness { last_seen: now, heard: Instant::now(), connected: true });
        let welcome = Welcome {
            worker,
            stale,
            heartbeat_interval: self.shared.config.heartbeat_interval,
            protocol: crate::transport::PROTOCOL,
            output_limit: self.shared.config.limits.output_limit,
            max_output_chunk: self.shared.config.limits.max_output_chunk,
            lease: self.shared.config.worker_lease(),
        };
        if pending.reply.send(Ok((welcome, rx))).is_ok() {
            let tx = self.sessions.get(&worker).map(|s| s.tx.downgrade());
            tokio::spawn(crate::manager::session::read_session(
                self.shared.clone(),
                worker,
                session,
                tx,
                pending.incoming,
            ));
        } else {
            self.sessions.remove(&worker);
        }
    }

    pub(super) fn detach(&mut self, worker: WorkerId, session: u64) {
        if self.sessions.get(&worker).is_some_and(|s| s.id == session) {
            self.close_session(worker);
            tracing::info!(%worker, "worker session closed");
        }
    }

    /// Ends `worker`'s session, if it has one, and shows it disconnected: its
    /// stream's own end finds no session left to close. True if it had one.
    pub(super) fn close_session(&mut self, worker: WorkerId) -> bool {
        let had = self.sessions.remove(&worker).is_some();
        if let Some(l) = self.shared.liveness.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&worker)
        {
            l.connected = false;
        }
        had
    }

    pub(super) fn send_to(&self, worker: WorkerId, msg: ManagerMessage) {
        if let Some(s) = self.sessions.get(&worker) {
            let _ = s.tx.send(msg);
        }
    }
}
