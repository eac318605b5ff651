//! Live output of running runs, held in memory on the manager (never in the
//! consensus log): a bounded buffer per run for late followers plus a broadcast for
//! live ones, created only when someone follows. The driver opens a run's entry
//! when it assigns an attempt (recording which attempt may write) and closes it
//! when the run ends; followers then drain and stop.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::model::{AttemptId, OutputChunk, RunId};

#[derive(Default)]
struct Live {
    /// The attempt whose output is accepted; chunks from any other are stale.
    attempt: Option<AttemptId>,
    buffer: VecDeque<OutputChunk>,
    bytes: usize,
    /// Created by the first follower.
    tx: Option<broadcast::Sender<OutputChunk>>,
}

/// Output of running runs, for `logs -f`.
pub(crate) struct OutputHub {
    runs: Mutex<HashMap<RunId, Live>>,
    limit: usize,
}

/// What a follower gets: what is buffered so far, then live chunks.
pub(crate) struct Subscription {
    pub(crate) buffered: Vec<OutputChunk>,
    pub(crate) live: broadcast::Receiver<OutputChunk>,
}

impl OutputHub {
    pub(crate) fn new(limit: usize) -> OutputHub {
        OutputHub { runs: Mutex::new(HashMap::new()), limit }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Live>> {
        self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Accepts output of these (run, attempt) pairs from now on (called by the
    /// driver after the assignments are applied).
    pub(crate) fn open(&self, assigned: impl IntoIterator<Item = (RunId, AttemptId)>) {
        let mut runs = self.lock();
        for (run, attempt) in assigned {
            runs.entry(run).or_default().attempt = Some(attempt);
        }
    }

    /// Records a chunk of the run's current attempt and hands it to live followers;
    /// chunks of any other attempt (stale, or of an ended run) are dropped.
    pub(crate) fn push(&self, chunk: OutputChunk) {
        let mut runs = self.lock();
        let Some(live) = runs.get_mut(&chunk.run) else { return };
        if live.attempt != Some(chunk.attempt) {
            return;
        }
        if let Some(tx) = &live.tx {
            let _ = tx.send(chunk.clone());
        }
        live.bytes += chunk.data.len();
        live.buffer.push_back(chunk);
        while live.bytes > self.limit {
            match live.buffer.pop_front() {
                Some(old) => live.bytes -= old.data.len(),
                None => break,
            }
        }
    }

    /// Subscribes to `run` if `is_live` (checked under the hub's lock, so a run that
    /// ends concurrently is either seen as ended or its entry closes after this).
    pub(crate) fn subscribe(&self, run: RunId, is_live: impl FnOnce() -> bool) -> Option<Subscription> {
        let mut runs = self.lock();
        if !is_live() {
            return None;
        }
        let live = runs.entry(run).or_default();
        let tx = live.tx.get_or_insert_with(|| broadcast::channel(4096).0);
        Some(Subscription { buffered: live.buffer.iter().cloned().collect(), live: tx.subscribe() })
    }

    /// Closes the entries of ended runs (call after their end is applied).
    pub(crate) fn close(&self, ended: &[RunId]) {
        let mut runs = self.lock();
        for run in ended {
            runs.remove(run);
        }
    }
}
