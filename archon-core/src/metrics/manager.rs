//! What the leading manager's driver records as it proposes and routes
//! outcomes: dispatches, run completions, how long runs waited to start and how
//! long they ran (by task kind), how late cron fires were, and which worker
//! reports it refused.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::model::{ResourceUsage, RunState, TaskKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Waits to start: 5 ms to about 11 minutes.
fn start_latency() -> Histogram {
    Histogram::new(super::buckets(0.005, 2.0, 18))
}

/// Run times: 10 ms to about 3 hours.
fn run_duration() -> Histogram {
    Histogram::new(super::buckets(0.01, 4.0, 11))
}

/// The manager's counters and histograms.
pub(crate) struct ManagerMetrics {
    dispatches: Family<KindLabels, Counter>,
    completions: Family<StateLabels, Counter>,
    start_latency: Family<KindLabels, Histogram, fn() -> Histogram>,
    run_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    cron_lateness: Histogram,
    cron_missed: Counter,
    cpu: Family<KindLabels, Counter<f64>>,
    peak_memory: Family<KindLabels, Histogram, fn() -> Histogram>,
    reports_refused: Family<ReasonLabels, Counter>,
    fenced: Counter,
    lease_rounds: Counter,
}

/// Peak memory of attempts: 1 MiB to 64 GiB.
fn peak_memory() -> Histogram {
    Histogram::new(super::buckets(1_048_576.0, 4.0, 9))
}

impl ManagerMetrics {
    pub(super) fn registered(registry: &mut Registry) -> ManagerMetrics {
        let m = ManagerMetrics {
            dispatches: Family::default(),
            completions: Family::default(),
            start_latency: Family::new_with_constructor(start_latency as fn() -> Histogram),
            run_duration: Family::new_with_constructor(run_duration as fn() -> Histogram),
            // 10 ms to about 45 minutes.
            cron_lateness: Histogram::new(super::buckets(0.01, 4.0, 10)),
            cron_missed: Counter::default(),
            cpu: Family::default(),
            peak_memory: Family::new_with_constructor(peak_memory as fn() -> Histogram),
            reports_refused: Family::default(),
            fenced: Counter::default(),
            lease_rounds: Counter::default(),
        };
        registry.register("archon_dispatches", "Attempts assigned to workers, by task kind", m.dispatches.clone());
        registry.register(
            "archon_run_completions",
            "Runs that reached a terminal state, by that state",
            m.completions.clone(),
        );
        registry.register_with_unit(
            "archon_run_start_latency",
            "Time from a run's creation (submit, fire or release) to its first attempt starting, by task kind",
            Unit::Seconds,
            m.start_latency.clone(),
        );
        registry.register_with_unit(
            "archon_run_duration",
            "Time from an attempt's start to its reported end, by task kind",
            Unit::Seconds,
            m.run_duration.clone(),
        );
        registry.register_with_unit(
            "archon_cron_fire_lateness",
            "How long after it was due (its instant plus jitter) a cron fire was proposed",
            Unit::Seconds,
            m.cron_lateness.clone(),
        );
        registry.register(
            "archon_cron_missed_fires",
            "Cron fires not run because they were older than their schedule's catch-up window",
            m.cron_missed.clone(),
        );
        registry.register_with_unit(
            "archon_attempt_cpu",
            "CPU time (user plus system) ended attempts used, as their executors measured it, by task kind",
            Unit::Seconds,
            m.cpu.clone(),
        );
        registry.register_with_unit(
            "archon_attempt_peak_memory",
            "Peak resident memory of ended attempts, as their executors measured it, by task kind",
            Unit::Bytes,
            m.peak_memory.clone(),
        );
        registry.register(
            "archon_worker_reports_refused",
            "Worker reports about attempts refused before being proposed, by reason (not_assigned, \
             unknown_attempt, lost_status)",
            m.reports_refused.clone(),
        );
        registry.register(
            "archon_attempts_fenced",
            "Attempts workers killed because their lease lapsed (no leader heard from for a lease), requeued",
            m.fenced.clone(),
        );
        registry.register(
            "archon_lease_rounds",
            "Leadership confirmations that renewed worker leases",
            m.lease_rounds.clone(),
        );
        m
    }

    /// An attempt of a `kind` task was assigned to a worker.
    pub(crate) fn dispatched(&self, kind: TaskKind) {
        self.dispatches.get_or_create(&KindLabels { kind: kind.as_str() }).inc();
    }

    /// A run reached the terminal `state`.
    pub(crate) fn completed(&self, state: RunState) {
        self.completions.get_or_create(&StateLabels { state: state.as_str() }).inc();
    }

    /// A run's first attempt started `waited` after the run was created.
    pub(crate) fn started(&self, kind: TaskKind, waited: Duration) {
        self.start_latency.get_or_create(&KindLabels { kind: kind.as_str() }).observe(waited.as_secs_f64());
    }

    /// An attempt ended, having run for `ran`.
    pub(crate) fn ran(&self, kind: TaskKind, ran: Duration) {
        self.run_duration.get_or_create(&KindLabels { kind: kind.as_str() }).observe(ran.as_secs_f64());
    }

    /// An attempt of a `kind` task ended having used `usage`.
    pub(crate) fn used(&self, kind: TaskKind, usage: &ResourceUsage) {
        let labels = KindLabels { kind: kind.as_str() };
        self.cpu.get_or_create(&labels).inc_by(usage.cpu_us() as f64 / 1e6);
        self.peak_memory.get_or_create(&labels).observe(usage.peak_memory_bytes as f64);
    }

    /// A cron fire was proposed `late` after it was due.
    pub(crate) fn fired(&self, late: Duration) {
        self.cron_lateness.observe(late.as_secs_f64());
    }

    /// A worker's report was refused for `reason`.
    pub(crate) fn refused_report(&self, reason: &'static str) {
        self.reports_refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A worker reported an attempt it fenced.
    pub(crate) fn fenced(&self) {
        self.fenced.inc();
    }

    /// A confirmation round renewed worker leases.
    pub(crate) fn lease_round(&self) {
        self.lease_rounds.inc();
    }

    /// `count` cron fires were missed.
    pub(crate) fn missed(&self, count: u64) {
        self.cron_missed.inc_by(count);
    }
}
