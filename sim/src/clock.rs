//! [`SimClock`]: a host's wall clock in the simulation, read off its tokio
//! runtime's paused (virtual) time, with a skew of the host's own.
//!
//! The one thing to know: turmoil does not virtualise `SystemTime`, so nothing
//! in the simulation may read it; the manager takes this clock through
//! archon-core's [`Clock`] trait. Each incarnation of a host makes a new one,
//! anchored at turmoil's virtual time since the simulation's fixed epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use archon_core::clock::Clock;
use archon_core::model::Timestamp;
use tokio::time::Instant;

/// A host's skew: milliseconds added to its clock's reading. Shared, so a
/// fault can step it while the host runs.
#[derive(Debug, Clone, Default)]
pub struct Skew(Arc<AtomicI64>);

impl Skew {
    /// Sets the skew to `millis` (negative: behind).
    pub fn set(&self, millis: i64) {
        self.0.store(millis, Ordering::Relaxed);
    }

    /// The skew now, in milliseconds.
    pub fn millis(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The wall clock of one incarnation of a host. Create it inside the host's
/// software (it reads the host's runtime).
#[derive(Debug, Clone)]
pub struct SimClock {
    anchor: Timestamp,
    started: Instant,
    skew: Skew,
}

impl SimClock {
    /// A clock reading turmoil's virtual time since its epoch, plus `skew`.
    pub fn new(skew: Skew) -> SimClock {
        let since_epoch = turmoil::since_epoch().unwrap_or(Duration::ZERO);
        let anchor = Timestamp(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX));
        SimClock { anchor, started: Instant::now(), skew }
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.anchor.0.saturating_add(elapsed).saturating_add(self.skew.millis()))
    }
}
