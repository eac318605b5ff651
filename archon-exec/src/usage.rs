//! What a process attempt used, read from Linux's `/proc` (no cgroup, no root).
//!
//! - **CPU time** is read from `/proc/<pid>/stat` of the main child once it has
//!   exited but before it is reaped (`waitid(WEXITED | WNOWAIT)`, woken by
//!   SIGCHLD): the one moment its totals are final and still readable. They are
//!   its own user and system time plus `cutime`/`cstime`, into which the kernel
//!   adds every child it waited for (and what those waited for), so `sh -c 'a; b'`
//!   counts `a` and `b`. Processes nobody in the tree waited for (background jobs
//!   killed with the group, daemons that left it) are not counted. Resolution is
//!   the kernel's clock tick (10 ms).
//! - **Peak memory** is sampled: each sample walks the main child's process tree
//!   (`/proc/<pid>/task/<tid>/children`) and keeps the larger of the tree's summed
//!   resident set (`VmRSS`; shared pages count once per process) and any one
//!   process's own high-water mark (`VmHWM`, which the kernel keeps between
//!   samples). Samples come every 25 ms at first, backing off to 500 ms; a peak a
//!   process reaches after the last sample before it exits is missed.
//! - **Wall time**, spawn to exit, is always known.
//!
//! Where `/proc` cannot be read the figures it would give are 0.

use std::time::Duration;

use archon_core::model::ResourceUsage;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::{Pid, SysconfVar, sysconf};
use tokio::time::Instant;

/// The first sampling interval; it doubles after each sample.
const FIRST_INTERVAL: Duration = Duration::from_millis(25);

/// The longest sampling interval.
const MAX_INTERVAL: Duration = Duration::from_millis(500);

/// The most processes one sample looks at (a fork bomb is not walked whole).
const MAX_TREE: usize = 4096;

/// Measures one attempt's process tree, from spawn to the main child's exit.
#[derive(Debug)]
pub(crate) struct TreeMeter {
    /// The main child (its process group's leader).
    pid: Pid,
    started: Instant,
    /// The highest memory figure seen so far, in bytes.
    peak_memory: u64,
    interval: Duration,
    next_sample: Instant,
    /// Set once the main child has exited and been measured.
    measured: Option<ResourceUsage>,
}

impl TreeMeter {
    /// Starts measuring the child `pid`, spawned at `started`.
    pub(crate) fn new(pid: u32, started: Instant) -> Option<TreeMeter> {
        let pid = Pid::from_raw(i32::try_from(pid).ok()?);
        Some(TreeMeter {
            pid,
            started,
            peak_memory: 0,
            interval: FIRST_INTERVAL,
            next_sample: Instant::now() + FIRST_INTERVAL,
            measured: None,
        })
    }

    /// When the next memory sample is due.
    pub(crate) fn next_sample(&self) -> Instant {
        self.next_sample
    }

    /// Samples the tree's memory now and schedules the next sample.
    pub(crate) fn sample(&mut self) {
        let memory = tree_memory(self.pid.as_raw());
        self.peak_memory = self.peak_memory.max(memory);
        self.interval = (self.interval * 2).min(MAX_INTERVAL);
        self.next_sample = Instant::now() + self.interval;
    }

    /// Whether the main child has exited. When it has (and is not reaped yet),
    /// reads its final CPU times: call this before reaping it.
    pub(crate) fn exited(&mut self) -> bool {
        if self.measured.is_some() {
            return true;
        }
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(self.pid), flags) {
            Ok(WaitStatus::StillAlive) => false,
            Ok(_) => {
                self.measured = Some(self.usage(zombie_cpu(self.pid.as_raw())));
                true
            }
            // Reaped already (or not ours): the CPU times are gone.
            Err(e) => {
                tracing::debug!(pid = self.pid.as_raw(), error = %e, "cannot wait for the child without reaping it");
                self.measured = Some(self.usage(None));
                true
            }
        }
    }

    /// What the tree used: as measured at the main child's exit, or (when it was
    /// not) memory and wall time until now, without CPU time.
    pub(crate) fn finish(&self) -> ResourceUsage {
        self.measured.unwrap_or_else(|| self.usage(None))
    }

    fn usage(&self, cpu: Option<CpuTimes>) -> ResourceUsage {
        let cpu = cpu.unwrap_or_default();
        ResourceUsage {
            cpu_user_us: cpu.user_us,
            cpu_system_us: cpu.system_us,
            peak_memory_bytes: self.peak_memory,
            wall_us: micros(self.started.elapsed()),
        }
    }
}

/// A duration in whole microseconds.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// CPU time in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CpuTimes {
    user_us: u64,
    system_us: u64,
}

/// The CPU times of the exited, unreaped process `pid` with those of the children
/// it waited for.
fn zombie_cpu(pid: i32) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&stat, clock_ticks())
}

/// The kernel's clock ticks per second, the unit of `/proc/<pid>/stat` times.
fn clock_ticks() -> u64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks.unsigned_abs(),
        _ => 100,
    }
}

/// Reads `utime + cutime` and `stime + cstime` out of a `/proc/<pid>/stat` line.
/// The command name (field 2) may hold spaces and parentheses, so fields are
/// counted from its closing parenthesis.
fn parse_stat_cpu(stat: &str, ticks_per_second: u64) -> Option<CpuTimes> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow the name; utime, stime, cutime, cstime are fields 14 to 17.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let to_us = |ticks: u64| ticks.saturating_mul(1_000_000) / ticks_per_second.max(1);
    let user = field(14)?.saturating_add(field(16)?);
    let system = field(15)?.saturating_add(field(17)?);
    Some(CpuTimes { user_us: to_us(user), system_us: to_us(system) })
}

/// The memory figure of the tree rooted at `root`, in bytes: the larger of its
/// summed resident set and any one process's high-water mark. 0 when `/proc`
/// cannot be read.
fn tree_memory(root: i32) -> u64 {
    let mut rss_sum: u64 = 0;
    let mut hwm_max: u64 = 0;
    for pid in tree(root) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let (rss, hwm) = parse_status_memory(&status);
        rss_sum = rss_sum.saturating_add(rss);
        hwm_max = hwm_max.max(hwm);
    }
    rss_sum.max(hwm_max)
}

/// `root` and its descendants, parents before children.
fn tree(root: i32) -> Vec<i32> {
    let mut pids = vec![root];
    let mut next = 0;
    while next < pids.len() && pids.len() < MAX_TREE {
        let pid = pids[next];
        next += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else { continue };
            pids.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
    }
    pids.truncate(MAX_TREE);
    pids
}

/// `VmRSS` and `VmHWM` of a `/proc/<pid>/status`, in bytes (0 when absent, as for
/// a kernel thread or a zombie).
fn parse_status_memory(status: &str) -> (u64, u64) {
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib.saturating_mul(1024))
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_count_from_the_last_parenthesis_and_add_waited_for_children() {
        // A name with a space and a parenthesis; utime 12, stime 3, cutime 40, cstime 5.
        let stat = "4242 (we ird) name) Z 1 4242 4242 0 -1 4227084 100 0 0 0 12 3 40 5 20 0 1 0 99 0 0";
        let cpu = parse_stat_cpu(stat, 100).unwrap();
        assert_eq!(cpu, CpuTimes { user_us: 520_000, system_us: 80_000 });
        assert_eq!(parse_stat_cpu("4242 (sh) Z 1", 100), None);
    }

    #[test]
    fn status_memory_reads_rss_and_high_water_in_bytes() {
        let status = "Name:\tpython3\nVmHWM:\t  104452 kB\nVmRSS:\t   10240 kB\nThreads:\t1\n";
        assert_eq!(parse_status_memory(status), (10240 * 1024, 104_452 * 1024));
        assert_eq!(parse_status_memory("Name:\tsh\nState:\tZ (zombie)\n"), (0, 0));
    }

    #[test]
    fn this_process_tree_has_a_resident_set() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(tree(me).contains(&me));
        assert!(tree_memory(me) > 1 << 20, "a test binary holds more than 1 MiB");
    }
}
