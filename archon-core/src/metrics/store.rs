//! What every [`Store`](crate::store::Store) records of its commits: how many
//! commands a batch held and how long it took to become durable and applied.
//! A batch is one Raft log entry, or one PostgreSQL transaction (a group commit
//! of the proposals that queued meanwhile).

use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// `archon_store_batch_commands` and `archon_store_commit_duration_seconds`.
#[derive(Debug)]
pub struct StoreMetrics {
    batch: Histogram,
    commit: Histogram,
}

impl StoreMetrics {
    pub(super) fn registered(registry: &mut Registry) -> StoreMetrics {
        // 1 to 16,384 commands; 0.25 ms to about 8 s.
        let m = StoreMetrics {
            batch: Histogram::new(super::buckets(1.0, 2.0, 15)),
            commit: Histogram::new(super::buckets(0.000_25, 2.0, 16)),
        };
        registry.register("archon_store_batch_commands", "Commands per committed store batch", m.batch.clone());
        registry.register_with_unit(
            "archon_store_commit_duration",
            "How long a store batch took to commit (durable and applied)",
            Unit::Seconds,
            m.commit.clone(),
        );
        m
    }

    /// Records one committed batch of `commands` that took `elapsed`.
    pub fn committed(&self, commands: usize, elapsed: Duration) {
        self.batch.observe(commands as f64);
        self.commit.observe(elapsed.as_secs_f64());
    }
}
