//! What this machine offers a worker by default: all its cores and its memory.

use archon_core::model::Resources;

/// The host's CPU (all available cores), total memory, network bandwidth (the
/// fastest non-loopback interface, 1000 Mbit/s when unknown) and GPUs (`gpu`, one
/// per `/dev/nvidiaN`).
pub fn capacity() -> Resources {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mut devices = std::collections::BTreeMap::new();
    let gpus = gpu_count();
    if gpus > 0 {
        devices.insert("gpu".to_owned(), gpus);
    }
    Resources {
        cpu_millis: cores * 1000,
        memory_bytes: total_memory().unwrap_or(1 << 30),
        network_mbps: network_speed().unwrap_or(1000),
        devices,
    }
}

/// The fastest link speed of a non-loopback interface, in Mbit/s.
fn network_speed() -> Option<u64> {
    std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "lo")
        .filter_map(|e| std::fs::read_to_string(e.path().join("speed")).ok()?.trim().parse::<i64>().ok())
        .filter(|s| *s > 0)
        .max()
        .and_then(|s| u64::try_from(s).ok())
}

/// How many NVIDIA GPUs the host shows.
fn gpu_count() -> u32 {
    let Ok(dir) = std::fs::read_dir("/dev") else { return 0 };
    let n = dir
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix("nvidia").is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Total memory from /proc/meminfo, when readable.
fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This machine's host name, for default worker names.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
