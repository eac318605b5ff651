//! Resource amounts: what a job requests and what a worker offers. Placement never
//! lets the sum of requests on a worker exceed its capacity, in any dimension.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::units::{format_bytes, format_cpu};

/// An amount of each schedulable resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in millicores (1000 = one core).
    #[serde(default)]
    pub cpu_millis: u64,
    /// Memory in bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Network bandwidth in Mbit/s.
    #[serde(default)]
    pub network_mbps: u64,
    /// Named devices by kind (`gpu` → 2).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub devices: BTreeMap<String, u32>,
}

impl Resources {
    /// The request a job gets when it says nothing: 100 millicores and 64 MiB.
    pub fn default_request() -> Resources {
        Resources { cpu_millis: 100, memory_bytes: 64 << 20, network_mbps: 0, devices: BTreeMap::new() }
    }

    /// Whether this request fits inside `free` in every dimension.
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.cpu_millis <= free.cpu_millis
            && self.memory_bytes <= free.memory_bytes
            && self.network_mbps <= free.network_mbps
            && self.devices.iter().all(|(kind, n)| free.devices.get(kind).copied().unwrap_or(0) >= *n)
    }

    /// Adds `other` to this amount (saturating).
    pub fn add(&mut self, other: &Resources) {
        self.cpu_millis = self.cpu_millis.saturating_add(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.network_mbps = self.network_mbps.saturating_add(other.network_mbps);
        for (kind, n) in &other.devices {
            let slot = self.devices.entry(kind.clone()).or_insert(0);
            *slot = slot.saturating_add(*n);
        }
    }

    /// Takes `other` away from this amount (saturating at zero).
    pub fn sub(&mut self, other: &Resources) {
        self.cpu_millis = self.cpu_millis.saturating_sub(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_sub(other.memory_bytes);
        self.network_mbps = self.network_mbps.saturating_sub(other.network_mbps);
        for (kind, n) in &other.devices {
            if let Some(slot) = self.devices.get_mut(kind) {
                *slot = slot.saturating_sub(*n);
                if *slot == 0 {
                    self.devices.remove(kind);
                }
            }
        }
    }

    /// `self - other`, saturating at zero.
    pub fn minus(&self, other: &Resources) -> Resources {
        let mut r = self.clone();
        r.sub(other);
        r
    }

    /// Whether every dimension is zero.
    pub fn is_zero(&self) -> bool {
        self.cpu_millis == 0
            && self.memory_bytes == 0
            && self.network_mbps == 0
            && self.devices.values().all(|n| *n == 0)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu {} mem {}", format_cpu(self.cpu_millis), format_bytes(self.memory_bytes))?;
        if self.network_mbps > 0 {
            write!(f, " net {}Mbit/s", self.network_mbps)?;
        }
        for (kind, n) in &self.devices {
            write!(f, " {kind}×{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_checks_every_dimension() {
        let free =
            Resources { cpu_millis: 1000, memory_bytes: 100, network_mbps: 10, devices: [("gpu".into(), 1)].into() };
        let mut req = Resources { cpu_millis: 1000, memory_bytes: 100, network_mbps: 10, devices: BTreeMap::new() };
        assert!(req.fits_in(&free));
        req.devices.insert("gpu".into(), 2);
        assert!(!req.fits_in(&free));
        req.devices.clear();
        req.memory_bytes = 101;
        assert!(!req.fits_in(&free));
    }
}
