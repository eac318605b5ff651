//! The last hour of the cluster, for the dashboard's charts: every
//! [`ManagerConfig::timeline_every`](super::ManagerConfig) each manager — leader
//! or follower, from its own replica of the state — samples how many runs have
//! ended so far (by outcome), the queue, what is running, and each worker's
//! share of its capacity in use. Rates are differences of the ended counters,
//! which the state machine keeps and never lowers, so a chart read from any
//! manager, or after a failover, counts every run once.
//!
//! Bounded: an hour of samples (360 at the default 10 s), each with a few
//! bytes per worker — about 5.5 MiB with 1,000 workers. Soft state: a
//! restarted manager starts an empty hour.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::model::{RunState, Timestamp, WorkerId, WorkerState};
use crate::state::ClusterState;
use crate::store::StoreExt;

use super::Shared;

/// How far back the timeline reaches.
pub const TIMELINE_SPAN: Duration = Duration::from_secs(3600);

/// One worker's load in a sample, in thousandths of its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLoad {
    /// The worker.
    pub worker: WorkerId,
    /// CPU its attempts reserve, per mille of its CPU.
    pub cpu_permille: u16,
    /// Memory its attempts reserve, per mille of its memory.
    pub memory_permille: u16,
}

/// The cluster at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineSample {
    /// When it was taken.
    pub at: Timestamp,
    /// Runs that have ended so far, in any terminal state.
    pub ended: u64,
    /// Of those, runs that failed or timed out.
    pub failed: u64,
    /// Runs waiting for placement (pending or retrying).
    pub queued: u64,
    /// Runs placed on a worker (scheduled or running).
    pub running: u64,
    /// CPU reserved and offered, in millicores, over workers that take work.
    pub cpu_allocated_millis: u64,
    /// CPU offered by workers that take work (ready or draining).
    pub cpu_capacity_millis: u64,
    /// Memory reserved over workers that take work, in bytes.
    pub memory_allocated_bytes: u64,
    /// Memory offered by workers that take work, in bytes.
    pub memory_capacity_bytes: u64,
    /// Each ready or draining worker's load.
    pub workers: Vec<WorkerLoad>,
}

/// The samples of the last hour, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The time between samples.
    pub every: Duration,
    /// The samples, oldest first.
    pub samples: Vec<TimelineSample>,
}

/// The ring the sampler fills and readers copy.
#[derive(Debug, Default)]
pub(crate) struct TimelineRing(Mutex<VecDeque<TimelineSample>>);

impl TimelineRing {
    fn push(&self, sample: TimelineSample, keep: usize) {
        let mut ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        while ring.len() >= keep.max(1) {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// A copy of the samples, oldest first, with the loads of the workers
    /// `wanted` picks (copying every worker's would cost ≈ 5.5 MiB a read at
    /// 1,000 workers).
    pub(crate) fn read(&self, every: Duration, wanted: &dyn Fn(WorkerId) -> bool) -> Timeline {
        let ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let samples = ring
            .iter()
            .map(|s| TimelineSample { workers: s.workers.iter().filter(|l| wanted(l.worker)).copied().collect(), ..*s })
            .collect();
        Timeline { every, samples }
    }
}

/// How many samples an hour holds at `every`.
fn capacity(every: Duration) -> usize {
    let every = every.max(Duration::from_millis(100));
    usize::try_from(TIMELINE_SPAN.as_millis().div_ceil(every.as_millis())).unwrap_or(usize::MAX).min(36_000)
}

/// Samples the state every `timeline_every` until `shutdown` fires.
pub(super) async fn record(shared: Arc<Shared>, shutdown: CancellationToken) {
    let every = shared.config.timeline_every.max(Duration::from_millis(100));
    let keep = capacity(every);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = shared.clock.now();
        let sample = shared.store.query(|state| sample(state, now));
        shared.timeline.push(sample, keep);
    }
}

/// The state as one sample.
pub(crate) fn sample(state: &ClusterState, at: Timestamp) -> TimelineSample {
    let ended = state.ended_runs();
    let live = state.live_run_counts();
    let count = |s: RunState, m: &std::collections::BTreeMap<RunState, u64>| m.get(&s).copied().unwrap_or(0);
    let mut s = TimelineSample {
        at,
        ended: ended.values().sum(),
        failed: count(RunState::Failed, ended) + count(RunState::TimedOut, ended),
        queued: state.queued_len() as u64,
        running: count(RunState::Scheduled, live) + count(RunState::Running, live),
        cpu_allocated_millis: 0,
        cpu_capacity_millis: 0,
        memory_allocated_bytes: 0,
        memory_capacity_bytes: 0,
        workers: Vec::new(),
    };
    for w in state.workers().values().filter(|w| matches!(w.state, WorkerState::Ready | WorkerState::Draining)) {
        s.cpu_allocated_millis += w.allocated.cpu_millis;
        s.cpu_capacity_millis += w.capacity.cpu_millis;
        s.memory_allocated_bytes += w.allocated.memory_bytes;
        s.memory_capacity_bytes += w.capacity.memory_bytes;
        s.workers.push(WorkerLoad {
            worker: w.id,
            cpu_permille: permille(w.allocated.cpu_millis, w.capacity.cpu_millis),
            memory_permille: permille(w.allocated.memory_bytes, w.capacity.memory_bytes),
        });
    }
    s
}

/// `part` of `whole` in thousandths, at most 1000 (0 of nothing).
fn permille(part: u64, whole: u64) -> u16 {
    if whole == 0 {
        return 0;
    }
    let p = u128::from(part.min(whole)) * 1000 / u128::from(whole);
    u16::try_from(p).unwrap_or(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> TimelineSample {
        sample(&ClusterState::default(), Timestamp(ms))
    }

    #[test]
    fn the_ring_keeps_the_newest_samples_up_to_its_size() {
        let ring = TimelineRing::default();
        for ms in 0..10 {
            ring.push(at(ms), 4);
        }
        let t = ring.read(Duration::from_secs(10), &|_| true);
        assert_eq!(t.samples.iter().map(|s| s.at.0).collect::<Vec<_>>(), vec![6, 7, 8, 9]);
    }

    #[test]
    fn an_hour_is_360_samples_at_ten_seconds_and_bounded_when_the_interval_is_tiny() {
        assert_eq!(capacity(Duration::from_secs(10)), 360);
        assert_eq!(capacity(Duration::from_secs(7)), 515);
        assert_eq!(capacity(Duration::ZERO), 36_000);
    }

    #[test]
    fn permille_is_a_bounded_share() {
        assert_eq!(permille(0, 0), 0);
        assert_eq!(permille(500, 1000), 500);
        assert_eq!(permille(3, 2), 1000);
        assert_eq!(permille(u64::MAX, u64::MAX), 1000);
    }
}
