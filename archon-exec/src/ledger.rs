//! [`ProcessLedger`]: a directory where the process executors note the process
//! group of every attempt while it runs, so a worker restarted after a crash
//! (`kill -9`, power loss of the worker process alone) can kill the groups its
//! previous life left running. Without it, an orphaned job would finish on its
//! own while the manager, having requeued its run, starts it again elsewhere.
//!
//! One file per attempt (`att-N`), holding the group id and its leader's start
//! time, so a recycled pid is never mistaken for an orphan. A group whose leader
//! has exited but whose members remain is still killed: Linux does not reuse a
//! pid while it names a live process group.
//!
//! The note is written just before the spawn (group `0` and the time in clock
//! ticks since boot) and names the group right after, so the lease keeper
//! ([`crate::LeaseKeeper`]), which kills the ledger's groups when the worker's
//! lease ends, also finds a job caught between the two: among the worker's
//! children, a group leader started since the note. A note ending in `keep`
//! (the job's `on_disconnect = keep`) is spared by the keeper. Files whose names
//! start with a dot (the lock, the lease) are not notes.

use std::path::{Path, PathBuf};

use archon_core::model::AttemptId;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Where running attempts' process groups are noted. See the module docs.
#[derive(Debug)]
pub struct ProcessLedger {
    dir: PathBuf,
    /// Held (locked) while the ledger is open: one worker per ledger.
    _lock: std::fs::File,
}

/// The lock file in the ledger's directory.
const LOCK: &str = ".lock";

impl ProcessLedger {
    /// Opens (creating it if missing) the ledger in `dir`. Fails if another live
    /// worker holds it: two workers sharing one would kill each other's jobs.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<ProcessLedger> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!("{} is in use by another worker; give each worker its own state dir", dir.display()),
            ),
            std::fs::TryLockError::Error(e) => e,
        })?;
        Ok(ProcessLedger { dir, _lock: lock })
    }

    /// The directory it keeps.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Notes that `attempt` is about to spawn its process group, so a lease
    /// keeper that must kill the worker's jobs finds it even before
    /// [`LedgerEntry::spawned`] names it; the note goes when the returned entry
    /// is dropped.
    /// With `keep` (the job's `on_disconnect = keep`), the lease keeper leaves
    /// it alone; a restarted worker still kills it.
    pub(crate) fn spawning(&self, attempt: AttemptId, keep: bool) -> std::io::Result<LedgerEntry<'_>> {
        let path = self.dir.join(attempt.to_string());
        let keep = if keep { " keep" } else { "" };
        std::fs::write(&path, format!("0 {}{keep}\n", ticks_now()))?;
        Ok(LedgerEntry { path, keep, _ledger: self })
    }

    /// Kills (SIGKILL) every process group a previous run of this worker left
    /// noted, and clears the notes. Returns the attempts whose groups were found
    /// alive. Call it before the worker starts taking work.
    pub fn kill_orphans(&self) -> std::io::Result<Vec<String>> {
        kill_noted(&self.dir, None, true)
    }
}

/// Kills every process group noted in the ledger at `dir` (files whose names
/// start with a dot are not notes); with `remove`, clears the notes. With
/// `parent` (the lease keeper), notes marked `keep` are spared. A note of
/// an attempt still being spawned (group 0) names no group yet: with `parent`,
/// the groups its children lead that started since the note are killed.
/// Returns the attempts whose groups were found alive.
pub(crate) fn kill_noted(dir: &Path, parent: Option<u32>, remove: bool) -> std::io::Result<Vec<String>> {
    let mut killed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        if name.starts_with('.') {
            continue;
        }
        let note = std::fs::read_to_string(&path).unwrap_or_default();
        // The lease keeper (which knows the worker) spares `keep` jobs.
        if parent.is_some() && note.split_whitespace().nth(2) == Some("keep") {
            continue;
        }
        let mut fields = note.split_whitespace().map(str::parse::<u64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(0)), Some(Ok(since))) => {
                if let Some(parent) = parent {
                    for pgid in children_leading_groups(parent, since) {
                        if killpg(Pid::from_raw(pgid), Signal::SIGKILL).is_ok() {
                            tracing::warn!(attempt = %name, pgid, "killed a process group being spawned");
                            killed.push(name.clone());
                        }
                    }
                }
            }
            (Some(Ok(pgid)), Some(Ok(started))) => {
                if let Ok(pgid) = i32::try_from(pgid) {
                    let same_leader = match start_time(pgid.unsigned_abs()) {
                        Some(now) => now == started,
                        // The leader is gone; members may remain, and the group id
                        // cannot have been reused while they do.
                        None => true,
                    };
                    if same_leader && pgid > 1 && killpg(Pid::from_raw(pgid), Signal::SIGKILL) != Err(Errno::ESRCH) {
                        tracing::warn!(attempt = %name, pgid, "killed a noted process group");
                        killed.push(name.clone());
                    }
                }
            }
            _ => {}
        }
        if remove {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(killed)
}

/// The groups led by children of `parent` that started at or after `since`
/// (clock ticks since boot).
fn children_leading_groups(parent: u32, since: u64) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // After the name: state, ppid, pgrp, …, starttime (the 20th).
            let ppid: u32 = fields.get(1)?.parse().ok()?;
            let pgrp: u32 = fields.get(2)?.parse().ok()?;
            let started: u64 = fields.get(19)?.parse().ok()?;
            (ppid == parent && pgrp == pid && started >= since).then(|| i32::try_from(pid).ok()).flatten()
        })
        .collect()
}

/// Now, in clock ticks since boot (the unit of a process's start time), less
/// one tick: a child spawned from now on started at or after it.
fn ticks_now() -> u64 {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let seconds: f64 = uptime.split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    ((seconds * per_second as f64) as u64).saturating_sub(1)
}

/// A running attempt's note in the ledger; removed on drop.
#[derive(Debug)]
pub(crate) struct LedgerEntry<'a> {
    path: PathBuf,
    /// The note's suffix: " keep" or nothing.
    keep: &'static str,
    _ledger: &'a ProcessLedger,
}

impl LedgerEntry<'_> {
    /// Notes the process group the attempt runs as.
    pub(crate) fn spawned(&self, pgid: u32) -> std::io::Result<()> {
        let started = start_time(pgid).unwrap_or_default();
        std::fs::write(&self.path, format!("{pgid} {started}{}\n", self.keep))
    }
}

impl Drop for LedgerEntry<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The start time (clock ticks since boot) of process `pid`, from `/proc`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `starttime` is field 22 of the line, the 20th after the command name.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_is_used_by_one_worker_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProcessLedger::open(dir.path()).unwrap();
        let err = ProcessLedger::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use by another worker"), "{err}");
        drop(first);
        ProcessLedger::open(dir.path()).unwrap();
    }

    #[test]
    fn our_own_start_time_is_read() {
        assert!(start_time(std::process::id()).is_some_and(|t| t > 0));
        assert_eq!(start_time(u32::MAX), None);
    }
}
