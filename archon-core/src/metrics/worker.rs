//! What a worker records of the attempts it runs: executor starts by task kind,
//! failures by kind and reason, and how long the executor took to get the
//! attempt's process (or container) running.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::model::{ExitStatus, TaskKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
    reason: &'static str,
}

/// Spawn times: 0.25 ms to about 8 s (a container pulled on first use takes longer).
fn spawn_time() -> Histogram {
    Histogram::new(super::buckets(0.000_25, 2.0, 16))
}

/// The worker's counters and histograms.
pub(crate) struct WorkerMetrics {
    starts: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    spawn: Family<KindLabels, Histogram, fn() -> Histogram>,
}

impl WorkerMetrics {
    pub(super) fn registered(registry: &mut Registry) -> WorkerMetrics {
        let m = WorkerMetrics {
            starts: Family::default(),
            failures: Family::default(),
            spawn: Family::new_with_constructor(spawn_time as fn() -> Histogram),
        };
        registry.register("archon_executor_starts", "Attempts handed to an executor, by task kind", m.starts.clone());
        registry.register(
            "archon_executor_failures",
            "Attempts that ended other than with exit code 0 (cancels aside), by task kind and reason",
            m.failures.clone(),
        );
        registry.register_with_unit(
            "archon_executor_spawn_duration",
            "Time from handing an attempt to its executor to its process or container running, by task kind",
            Unit::Seconds,
            m.spawn.clone(),
        );
        m
    }

    /// An attempt of a `kind` task was handed to its executor.
    pub(crate) fn started(&self, kind: TaskKind) {
        self.starts.get_or_create(&KindLabels { kind: kind.as_str() }).inc();
    }

    /// An attempt of a `kind` task ended with `status`: counted when it failed.
    pub(crate) fn ended(&self, kind: TaskKind, status: &ExitStatus) {
        if let Some(reason) = failure_reason(status) {
            self.failures.get_or_create(&FailureLabels { kind: kind.as_str(), reason }).inc();
        }
    }

    /// An attempt's process (or container) ran `took` after its executor got it.
    pub(crate) fn spawned(&self, kind: TaskKind, took: Duration) {
        self.spawn.get_or_create(&KindLabels { kind: kind.as_str() }).observe(took.as_secs_f64());
    }
}

/// Why an attempt failed, as a label; `None` for a success or a cancel.
fn failure_reason(status: &ExitStatus) -> Option<&'static str> {
    match status {
        ExitStatus::Exited { code: 0 } | ExitStatus::Cancelled => None,
        ExitStatus::Exited { .. } => Some("exit_code"),
        ExitStatus::Signaled { .. } => Some("signal"),
        ExitStatus::TimedOut => Some("timeout"),
        ExitStatus::Failed { .. } => Some("failed_to_run"),
        ExitStatus::OutOfMemory => Some("out_of_memory"),
        ExitStatus::Lost => Some("lost"),
    }
}
