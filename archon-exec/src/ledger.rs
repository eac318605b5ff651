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

    /// Notes that `attempt` runs as process group `pgid`; the note goes when the
    /// returned entry is dropped.
    pub(crate) fn record(&self, attempt: AttemptId, pgid: u32) -> std::io::Result<LedgerEntry<'_>> {
        let started = start_time(pgid).unwrap_or_default();
        let path = self.dir.join(attempt.to_string());
        std::fs::write(&path, format!("{pgid} {started}\n"))?;
        Ok(LedgerEntry { path, _ledger: self })
    }

    /// Kills (SIGKILL) every process group a previous run of this worker left
    /// noted, and clears the notes. Returns the attempts whose groups were found
    /// alive. Call it before the worker starts taking work.
    pub fn kill_orphans(&self) -> std::io::Result<Vec<String>> {
        let mut killed = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n == LOCK) {
                continue;
            }
            let note = std::fs::read_to_string(&path).unwrap_or_default();
            let mut fields = note.split_whitespace().map(str::parse::<u64>);
            if let (Some(Ok(pgid)), Some(Ok(started))) = (fields.next(), fields.next())
                && let Ok(pgid) = i32::try_from(pgid)
            {
                let same_leader = match start_time(pgid.unsigned_abs()) {
                    Some(now) => now == started,
                    // The leader is gone; members may remain, and the group id cannot
                    // have been reused while they do.
                    None => true,
                };
                if same_leader && pgid > 1 && killpg(Pid::from_raw(pgid), Signal::SIGKILL) != Err(Errno::ESRCH) {
                    let attempt = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    tracing::warn!(%attempt, pgid, "killed a process group left running by a previous worker");
                    killed.push(attempt);
                }
            }
            std::fs::remove_file(&path)?;
        }
        Ok(killed)
    }
}

/// A running attempt's note in the ledger; removed on drop.
#[derive(Debug)]
pub(crate) struct LedgerEntry<'a> {
    path: PathBuf,
    _ledger: &'a ProcessLedger,
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
