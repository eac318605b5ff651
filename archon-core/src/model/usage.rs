//! What an attempt used: CPU time, peak memory and wall time, as its executor
//! measured them. Each executor says in its docs where its figures come from; a
//! figure it could not measure is 0, and an attempt it could not measure at all
//! carries no usage.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What an attempt used, as its executor measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ResourceUsage {
    /// CPU time spent in user mode, in microseconds.
    #[serde(default)]
    pub cpu_user_us: u64,
    /// CPU time spent in kernel mode, in microseconds.
    #[serde(default)]
    pub cpu_system_us: u64,
    /// The memory high-water mark in bytes: of the process tree's resident set,
    /// or of the attempt's cgroup or container (see the executor's docs).
    #[serde(default)]
    pub peak_memory_bytes: u64,
    /// Time from start to exit, in microseconds.
    #[serde(default)]
    pub wall_us: u64,
}

impl ResourceUsage {
    /// CPU time in both modes, in microseconds.
    pub fn cpu_us(&self) -> u64 {
        self.cpu_user_us.saturating_add(self.cpu_system_us)
    }

    /// CPU time in both modes.
    pub fn cpu(&self) -> Duration {
        Duration::from_micros(self.cpu_us())
    }

    /// Time from start to exit.
    pub fn wall(&self) -> Duration {
        Duration::from_micros(self.wall_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_adds_both_modes_without_overflowing() {
        let u = ResourceUsage { cpu_user_us: 500_000, cpu_system_us: 20_000, ..ResourceUsage::default() };
        assert_eq!(u.cpu_us(), 520_000);
        assert_eq!(u.cpu(), Duration::from_millis(520));
        let huge = ResourceUsage { cpu_user_us: u64::MAX, cpu_system_us: 1, ..ResourceUsage::default() };
        assert_eq!(huge.cpu_us(), u64::MAX);
    }

    #[test]
    fn missing_fields_read_as_zero() {
        let u: ResourceUsage = serde_json::from_str(r#"{"wall_us": 7}"#).unwrap();
        assert_eq!(u, ResourceUsage { wall_us: 7, ..ResourceUsage::default() });
    }
}
