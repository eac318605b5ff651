//! What a container used. The engine forgets a container's figures when it exits
//! (runc deletes its cgroup before the wait for it returns, and the stats API then
//! answers zeros), so they are kept one of two ways:
//!
//! - **A cgroup parent of the attempt's own** (exact): when the engine uses the
//!   `cgroupfs` driver with cgroup v1 and this process can create cgroups, the
//!   executor creates `archon/<container name>` in the `memory` and `cpuacct`
//!   hierarchies and makes it the container's `cgroup_parent`. The parent's
//!   counters include the container's and outlive it: after the exit it reads
//!   `cpuacct.usage_user` / `cpuacct.usage_sys` and `memory.max_usage_in_bytes`
//!   (the cgroup's high-water mark, page cache included), then removes the
//!   directories from every hierarchy. Those of a crashed worker's attempts go
//!   when its successor removes their containers.
//! - **The engine's stats stream** (anywhere else: cgroup v2, the systemd driver,
//!   an engine whose cgroups this process cannot see): sampled about once a second
//!   while the container runs, so the CPU time of its last second or so is
//!   missed; the peak is the highest `max_usage` (cgroup v1) or `usage` seen.
//!
//! Wall time (start to exit, as the engine reported it) is always known.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use archon_core::model::ResourceUsage;
use bollard::Docker;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use futures::StreamExt;
use tokio::task::JoinHandle;

/// Where the cgroup v1 hierarchies are mounted.
pub(super) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The directory, in each hierarchy, holding the attempts' cgroup parents.
const PARENT_DIR: &str = "archon";

/// An attempt's own cgroup parent in the v1 `memory` and `cpuacct` hierarchies
/// (the engine creates it in the others). Dropping it removes it everywhere.
#[derive(Debug)]
pub(super) struct AttemptCgroup {
    root: PathBuf,
    name: String,
}

impl AttemptCgroup {
    /// Creates `archon/<name>` under `root`'s `memory` and `cpuacct` hierarchies;
    /// `None` when it cannot (no v1 hierarchies, no permission), or when memory is
    /// not accounted hierarchically there (the parent would not see the container).
    pub(super) fn create(root: &Path, name: &str) -> Option<AttemptCgroup> {
        let cgroup = AttemptCgroup { root: root.to_owned(), name: name.to_owned() };
        for hierarchy in ["memory", "cpuacct"] {
            let dir = cgroup.dir(hierarchy);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot create the attempt's cgroup; using engine stats");
                return None;
            }
        }
        let hierarchical = std::fs::read_to_string(cgroup.dir("memory").join("memory.use_hierarchy"));
        if hierarchical.map(|v| v.trim() == "1").unwrap_or(false) {
            Some(cgroup)
        } else {
            tracing::debug!("memory is not accounted hierarchically; using engine stats");
            None
        }
    }

    /// The container's `cgroup_parent`.
    pub(super) fn parent(&self) -> String {
        format!("/{PARENT_DIR}/{}", self.name)
    }

    fn dir(&self, hierarchy: &str) -> PathBuf {
        self.root.join(hierarchy).join(PARENT_DIR).join(&self.name)
    }

    /// CPU time and peak memory of everything that ran in it; `None` when nothing
    /// was charged to it (the container did not land in it).
    pub(super) fn read(&self) -> Option<ResourceUsage> {
        let number = |hierarchy: &str, file: &str| -> Option<u64> {
            std::fs::read_to_string(self.dir(hierarchy).join(file)).ok()?.trim().parse().ok()
        };
        let peak = number("memory", "memory.max_usage_in_bytes").filter(|&peak| peak > 0)?;
        let ns_to_us = |ns: u64| ns / 1000;
        Some(ResourceUsage {
            cpu_user_us: number("cpuacct", "cpuacct.usage_user").map_or(0, ns_to_us),
            cpu_system_us: number("cpuacct", "cpuacct.usage_sys").map_or(0, ns_to_us),
            peak_memory_bytes: peak,
            wall_us: 0,
        })
    }
}

impl Drop for AttemptCgroup {
    /// Removes it. By now the container's own cgroup inside is gone (runc deletes
    /// it on exit); if the container still runs (an abandoned attempt), the removal
    /// fails and [`remove_cgroup`] is tried again with the orphan's removal.
    fn drop(&mut self) {
        remove_cgroup(&self.root, &self.name);
    }
}

/// Removes the cgroup parent of container `name` from every hierarchy under
/// `root` (the engine created it in all of them); missing ones are fine.
pub(super) fn remove_cgroup(root: &Path, name: &str) {
    let Ok(hierarchies) = std::fs::read_dir(root) else { return };
    for hierarchy in hierarchies.flatten() {
        let dir = hierarchy.path().join(PARENT_DIR).join(name);
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the attempt's cgroup");
            }
            _ => {}
        }
    }
}

/// Samples a running container's figures from the engine's stats stream, in a
/// task of its own that ends with the stream (or when this is dropped).
#[derive(Debug)]
pub(super) struct StatsSampler {
    latest: Arc<Mutex<ResourceUsage>>,
    task: JoinHandle<()>,
}

impl StatsSampler {
    /// Starts sampling container `id`.
    pub(super) fn start(docker: &Docker, id: &str) -> StatsSampler {
        let latest = Arc::new(Mutex::new(ResourceUsage::default()));
        let options = StatsOptionsBuilder::new().stream(true).one_shot(false).build();
        let mut stats = docker.stats(id, Some(options));
        let into = latest.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(frame)) = stats.next().await {
                let mut kept = into.lock().unwrap_or_else(PoisonError::into_inner);
                *kept = merge(*kept, &frame);
            }
        });
        StatsSampler { latest, task }
    }

    /// The figures as of the last sample.
    pub(super) fn latest(&self) -> ResourceUsage {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for StatsSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `kept` updated with one stats frame. Every figure only grows: a frame sent as
/// the container stops carries zeros.
fn merge(kept: ResourceUsage, frame: &ContainerStatsResponse) -> ResourceUsage {
    let cpu = frame.cpu_stats.as_ref().and_then(|c| c.cpu_usage.as_ref());
    let ns_to_us = |ns: Option<u64>| ns.unwrap_or(0) / 1000;
    let memory = frame.memory_stats.as_ref();
    let peak = memory.map_or(0, |m| m.max_usage.unwrap_or(0).max(m.usage.unwrap_or(0)));
    ResourceUsage {
        cpu_user_us: kept.cpu_user_us.max(ns_to_us(cpu.and_then(|c| c.usage_in_usermode))),
        cpu_system_us: kept.cpu_system_us.max(ns_to_us(cpu.and_then(|c| c.usage_in_kernelmode))),
        peak_memory_bytes: kept.peak_memory_bytes.max(peak),
        wall_us: 0,
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats};

    use super::*;

    fn frame(user_ns: u64, kernel_ns: u64, usage: u64, max_usage: Option<u64>) -> ContainerStatsResponse {
        ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    usage_in_usermode: Some(user_ns),
                    usage_in_kernelmode: Some(kernel_ns),
                    ..ContainerCpuUsage::default()
                }),
                ..ContainerCpuStats::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(usage),
                max_usage,
                ..ContainerMemoryStats::default()
            }),
            ..ContainerStatsResponse::default()
        }
    }

    #[test]
    fn stats_frames_keep_the_highest_figures_and_ignore_the_closing_zeros() {
        let mut kept = ResourceUsage::default();
        kept = merge(kept, &frame(300_000_000, 10_000_000, 5 << 20, Some(100 << 20)));
        kept = merge(kept, &frame(500_000_000, 20_000_000, 200 << 20, None));
        kept = merge(kept, &frame(0, 0, 0, Some(0)));
        assert_eq!(
            kept,
            ResourceUsage { cpu_user_us: 500_000, cpu_system_us: 20_000, peak_memory_bytes: 200 << 20, wall_us: 0 }
        );
    }

    #[test]
    fn an_attempt_cgroup_is_created_read_and_removed_under_its_root() {
        let root = tempfile::tempdir().unwrap();
        // Not a cgroup hierarchy: memory is not accounted hierarchically there.
        assert!(AttemptCgroup::create(root.path(), "archon-1-x").is_none());
        std::fs::create_dir_all(root.path().join("memory/archon")).unwrap();

        let cgroup = AttemptCgroup { root: root.path().to_owned(), name: "archon-2-y".into() };
        assert_eq!(cgroup.parent(), "/archon/archon-2-y");
        for (hierarchy, file, value) in [
            ("memory", "memory.max_usage_in_bytes", "104857600\n"),
            ("cpuacct", "cpuacct.usage_user", "500000000\n"),
            ("cpuacct", "cpuacct.usage_sys", "20000000\n"),
        ] {
            std::fs::create_dir_all(cgroup.dir(hierarchy)).unwrap();
            std::fs::write(cgroup.dir(hierarchy).join(file), value).unwrap();
        }
        let read = cgroup.read().unwrap();
        assert_eq!(
            read,
            ResourceUsage { cpu_user_us: 500_000, cpu_system_us: 20_000, peak_memory_bytes: 100 << 20, wall_us: 0 }
        );
        // The real cgroupfs removes a cgroup's files with its directory; here they go first.
        for hierarchy in ["memory", "cpuacct"] {
            for file in std::fs::read_dir(cgroup.dir(hierarchy)).unwrap() {
                std::fs::remove_file(file.unwrap().path()).unwrap();
            }
        }
        drop(cgroup);
        assert!(!root.path().join("memory/archon/archon-2-y").exists());
        assert!(!root.path().join("cpuacct/archon/archon-2-y").exists());
        assert!(root.path().join("memory/archon").exists(), "the shared parent stays");
    }
}
