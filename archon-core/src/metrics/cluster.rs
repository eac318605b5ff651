//! Gauges read from the live cluster state at each scrape, rather than kept up
//! to date on every change: runs by state, the queues, workers by state, what
//! each live worker offers and has allocated, and how long ago each was heard
//! from. The manager hands in a sampler; a scrape calls it once and encodes what
//! it returns. Heartbeat ages are the leader's soft state: a follower has none.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::model::{RunState, WorkerState};

/// The cluster as one scrape sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterSample {
    /// Whether this manager leads (dispatches, reaps, fires schedules).
    pub(crate) leading: bool,
    /// Runs by state: the live ones and those the history keeps.
    pub(crate) runs: BTreeMap<RunState, u64>,
    /// Every worker the state knows.
    pub(crate) workers: Vec<WorkerSample>,
}

/// One worker, as a scrape sees it.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSample {
    pub(crate) name: String,
    pub(crate) state: WorkerState,
    pub(crate) cpu_capacity_millis: u64,
    pub(crate) cpu_allocated_millis: u64,
    pub(crate) memory_capacity_bytes: u64,
    pub(crate) memory_allocated_bytes: u64,
    /// Attempts waiting in its queue.
    pub(crate) queued: u64,
    /// Since the leader last heard from it, when this manager leads and knows.
    pub(crate) heartbeat_age: Option<Duration>,
}

impl WorkerSample {
    /// Ready or draining: its per-worker series are reported. Lost and left
    /// workers are only counted, so their series do not pile up.
    fn is_live(&self) -> bool {
        matches!(self.state, WorkerState::Ready | WorkerState::Draining)
    }
}

type Sampler = Box<dyn Fn() -> Option<ClusterSample> + Send + Sync>;

/// The collector registered once per registry; the manager sets its sampler.
#[derive(Default)]
pub(super) struct ClusterCollector {
    source: Mutex<Option<Sampler>>,
}

impl std::fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCollector").finish_non_exhaustive()
    }
}

impl ClusterCollector {
    pub(super) fn set_source(&self, sampler: Sampler) {
        *self.source.lock().unwrap_or_else(PoisonError::into_inner) = Some(sampler);
    }
}

const WORKER_STATES: [WorkerState; 4] =
    [WorkerState::Ready, WorkerState::Draining, WorkerState::Lost, WorkerState::Left];

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = match self.source.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(sampler) => sampler(),
            None => None,
        };
        let Some(sample) = sample else { return Ok(()) };

        let leading = encoder.encode_descriptor(
            "archon_manager_leading",
            "1 while this manager leads, else 0.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(u64::from(sample.leading)).encode(leading)?;

        let mut runs = encoder.encode_descriptor(
            "archon_runs",
            "Runs by state: live ones and finished ones the history keeps.",
            None,
            MetricType::Gauge,
        )?;
        for state in RunState::ALL {
            let n = sample.runs.get(&state).copied().unwrap_or(0);
            ConstGauge::new(n).encode(runs.encode_family(&[("state", state.as_str())])?)?;
        }

        let mut queues = encoder.encode_descriptor(
            "archon_queue_depth",
            "Runs waiting to be placed (pending), to be retried (retrying) or for their dependencies (waiting).",
            None,
            MetricType::Gauge,
        )?;
        for (queue, state) in
            [("pending", RunState::Pending), ("retrying", RunState::Retrying), ("waiting", RunState::Waiting)]
        {
            let n = sample.runs.get(&state).copied().unwrap_or(0);
            ConstGauge::new(n).encode(queues.encode_family(&[("queue", queue)])?)?;
        }

        let mut workers = encoder.encode_descriptor("archon_workers", "Workers by state.", None, MetricType::Gauge)?;
        for state in WORKER_STATES {
            let n = sample.workers.iter().filter(|w| w.state == state).count() as u64;
            ConstGauge::new(n).encode(workers.encode_family(&[("state", state.as_str())])?)?;
        }

        let live: Vec<&WorkerSample> = sample.workers.iter().filter(|w| w.is_live()).collect();
        per_worker(&mut encoder, "archon_worker_cpu_capacity_cores", "CPU each live worker offers.", &live, |w| {
            Some(cores(w.cpu_capacity_millis))
        })?;
        per_worker(
            &mut encoder,
            "archon_worker_cpu_allocated_cores",
            "CPU the attempts on each live worker requested.",
            &live,
            |w| Some(cores(w.cpu_allocated_millis)),
        )?;
        per_worker(
            &mut encoder,
            "archon_worker_memory_capacity_bytes",
            "Memory each live worker offers.",
            &live,
            |w| Some(w.memory_capacity_bytes as f64),
        )?;
        per_worker(
            &mut encoder,
            "archon_worker_memory_allocated_bytes",
            "Memory the attempts on each live worker requested.",
            &live,
            |w| Some(w.memory_allocated_bytes as f64),
        )?;
        per_worker(
            &mut encoder,
            "archon_worker_queued_attempts",
            "Attempts placed on each live worker beyond what fits it, waiting in its queue to start.",
            &live,
            |w| Some(w.queued as f64),
        )?;
        per_worker(
            &mut encoder,
            "archon_worker_heartbeat_age_seconds",
            "Time since the leader last heard from each live worker.",
            &live,
            |w| w.heartbeat_age.map(|age| age.as_secs_f64()),
        )?;
        Ok(())
    }
}

fn cores(millis: u64) -> f64 {
    millis as f64 / 1000.0
}

/// One gauge family with a series per worker (by name) that `value` gives one for.
fn per_worker(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    workers: &[&WorkerSample],
    value: impl Fn(&WorkerSample) -> Option<f64>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for w in workers {
        if let Some(v) = value(w) {
            ConstGauge::new(v).encode(family.encode_family(&[("worker", w.name.as_str())])?)?;
        }
    }
    Ok(())
}
