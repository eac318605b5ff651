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
//! children, a group leader started since the note. A worker restarted after
//! dying between the two finds it by the attempt id in its environment
//! (`ARCHON_ATTEMPT_ID`), among the processes started since the note. A note marked `keep`
//! (the job's `on_disconnect = keep`) is spared by the keeper, and so is one
//! whose `lease=NS` (the end last written for the keeper when the note was made) is still
//! ahead. Files whose names start with a dot (the lock, the lease) are not notes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// The lease's end its keeper was last told (boot clock, ns; 0: none),
    /// set by [`crate::LeaseKeeper::follow`] after each write of the lease file.
    lease: Arc<AtomicU64>,
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
        Ok(ProcessLedger { dir, _lock: lock, lease: Arc::default() })
    }

    /// The directory it keeps.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the keeper's follower records the lease's end it wrote.
    pub(crate) fn lease(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.lease)
    }

    /// Notes that `attempt` is about to spawn its process group, so a lease
    /// keeper that must kill the worker's jobs finds it even before
    /// [`LedgerEntry::spawned`] names it; the note goes when the returned entry
    /// is dropped.
    /// With `keep` (the job's `on_disconnect = keep`), the lease keeper leaves
    /// it alone; a restarted worker still kills it.
    ///
    /// The note also holds the end of the lease it is made under, as last
    /// written to the lease file: a keeper whose pass began before that lease was written
    /// (it read the one that had ended) spares it rather than kill a job the
    /// worker started under a lease the keeper has not seen yet.
    pub(crate) fn spawning(&self, attempt: AttemptId, keep: bool) -> std::io::Result<LedgerEntry<'_>> {
        let path = self.dir.join(attempt.to_string());
        let mut suffix = String::new();
        if keep {
            suffix.push_str(" keep");
        }
        let lease = self.lease.load(Ordering::Acquire);
        if lease > 0 {
            suffix.push_str(&format!(" lease={lease}"));
        }
        std::fs::write(&path, format!("0 {}{suffix}\n", ticks_now()))?;
        Ok(LedgerEntry { path, suffix, _ledger: self })
    }

    /// Kills (SIGKILL) every process group a previous run of this worker left
    /// noted, and clears the notes. Returns the attempts whose groups were found
    /// alive. Call it before the worker starts taking work.
    pub fn kill_orphans(&self) -> std::io::Result<Vec<String>> {
        Ok(kill_noted(&self.dir, None, 0, true)?.killed)
    }
}

/// What one pass over the ledger found.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    /// The attempts whose groups had a live (not zombie) member, now killed.
    pub(crate) killed: Vec<String>,
    /// Whether a note was of an attempt still being spawned (no group yet).
    pub(crate) spawning: bool,
}

/// Kills every process group noted in the ledger at `dir` (files whose names
/// start with a dot are not notes); with `remove`, clears the notes. With
/// `parent` (the lease keeper), notes marked `keep` are spared, and so are
/// notes made under a lease that ends after `now` (boot clock, ns): their job
/// started under a lease written after the one the keeper saw end. A note of
/// an attempt still being spawned (group 0) names no group yet: with `parent`,
/// the groups its children lead that started since the note are killed.
/// A group whose members are all zombies (killed already, not yet reaped by a
/// frozen worker) is signalled but not counted.
pub(crate) fn kill_noted(dir: &Path, parent: Option<u32>, now: u64, remove: bool) -> std::io::Result<Sweep> {
    let mut sweep = Sweep::default();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        if name.starts_with('.') {
            continue;
        }
        let note = std::fs::read_to_string(&path).unwrap_or_default();
        // The lease keeper (which knows the worker) spares `keep` jobs, and jobs
        // started under a lease still running.
        if parent.is_some() && spared_by_keeper(&note, now) {
            continue;
        }
        let mut fields = note.split_whitespace().map(str::parse::<u64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(0)), Some(Ok(since))) => {
                sweep.spawning = true;
                // The lease keeper knows the worker: its children. A restarted
                // worker does not (they were reparented when it died): the
                // processes started since that carry the attempt's id.
                let groups = match parent {
                    Some(parent) => children_leading_groups(parent, since),
                    None => groups_of_attempt(&name, since),
                };
                for pgid in groups {
                    let live = group_has_live_member(pgid);
                    if killpg(Pid::from_raw(pgid), Signal::SIGKILL).is_ok() && live {
                        tracing::warn!(attempt = %name, pgid, "killed a process group being spawned");
                        sweep.killed.push(name.clone());
                    }
                }
                sweep.killed.dedup();
            }
            (Some(Ok(pgid)), Some(Ok(started))) => {
                if let Ok(pgid) = i32::try_from(pgid) {
                    let same_leader = match proc_stat(pgid.unsigned_abs()) {
                        Some(stat) => stat.started == started,
                        // The leader is gone; members may remain, and the group id
                        // cannot have been reused while they do.
                        None => true,
                    };
                    if same_leader && pgid > 1 {
                        let live = group_has_live_member(pgid);
                        if killpg(Pid::from_raw(pgid), Signal::SIGKILL) != Err(Errno::ESRCH) && live {
                            tracing::warn!(attempt = %name, pgid, "killed a noted process group");
                            sweep.killed.push(name.clone());
                        }
                    }
                }
            }
            _ => {}
        }
        if remove {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(sweep)
}

/// Whether the lease keeper leaves a job with `note` alone at `now` (boot
/// clock, ns): it is marked `keep`, or its lease ends after `now`.
fn spared_by_keeper(note: &str, now: u64) -> bool {
    note.split_whitespace().skip(2).any(|field| {
        field == "keep"
            || field.strip_prefix("lease=").and_then(|ns| ns.parse::<u64>().ok()).is_some_and(|end| end > now)
    })
}

/// A process's line in `/proc/PID/stat`, the fields used here.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    /// `R`, `S`, `Z` (zombie), …
    state: char,
    ppid: u32,
    pgrp: u32,
    /// Clock ticks since boot.
    started: u64,
}

/// Process `pid`'s stat, from `/proc`.
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces:
    // state, ppid, pgrp, …, starttime (the 20th).
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
}

/// Every process of the host with its stat.
fn processes() -> impl Iterator<Item = (u32, ProcStat)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, proc_stat(pid)?)))
}

/// The groups led by children of `parent` that started at or after `since`
/// (clock ticks since boot).
fn children_leading_groups(parent: u32, since: u64) -> Vec<i32> {
    processes()
        .filter(|(pid, s)| s.ppid == parent && s.pgrp == *pid && s.started >= since)
        .filter_map(|(pid, _)| i32::try_from(pid).ok())
        .collect()
}

/// The groups (not this process's own) of the processes that started at or
/// after `since` (clock ticks since boot) with `ARCHON_ATTEMPT_ID=<attempt>` in
/// their environment, as the executors start every job.
fn groups_of_attempt(attempt: &str, since: u64) -> Vec<i32> {
    let wanted = format!("ARCHON_ATTEMPT_ID={attempt}");
    let own = nix::unistd::getpgrp().as_raw();
    let mut groups: Vec<i32> = processes()
        .filter(|(_, s)| s.started >= since)
        .filter(|(pid, _)| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .filter_map(|(_, s)| i32::try_from(s.pgrp).ok())
        .filter(|pgid| *pgid > 1 && *pgid != own)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// Whether group `pgid` has a member that is not a zombie.
fn group_has_live_member(pgid: i32) -> bool {
    processes().any(|(_, s)| i64::from(s.pgrp) == i64::from(pgid) && !matches!(s.state, 'Z' | 'X' | 'x'))
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
    /// What the note says after the group: ` keep`, the lease's ` lease=NS`.
    suffix: String,
    _ledger: &'a ProcessLedger,
}

impl LedgerEntry<'_> {
    /// Notes the process group the attempt runs as.
    pub(crate) fn spawned(&self, pgid: u32) -> std::io::Result<()> {
        let started = proc_stat(pgid).map_or(0, |s| s.started);
        std::fs::write(&self.path, format!("{pgid} {started}{}\n", self.suffix))
    }
}

impl Drop for LedgerEntry<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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
        assert!(proc_stat(std::process::id()).is_some_and(|s| s.started > 0));
        assert!(proc_stat(u32::MAX).is_none());
    }

    /// A `sleep` leading its own group, as the process executors spawn jobs.
    fn job() -> std::process::Child {
        let mut command = std::process::Command::new("sleep");
        command.arg("600");
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.spawn().unwrap()
    }

    fn alive(child: &mut std::process::Child) -> bool {
        child.try_wait().unwrap().is_none()
    }

    #[test]
    fn the_keeper_kills_noted_groups_and_spawning_jobs_but_spares_keep_jobs_and_counts_no_zombie() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ProcessLedger::open(dir.path()).unwrap();
        let (mut killed, mut kept) = (job(), job());
        let killed_note = ledger.spawning(AttemptId(1), false).unwrap();
        killed_note.spawned(killed.id()).unwrap();
        let kept_note = ledger.spawning(AttemptId(2), true).unwrap();
        kept_note.spawned(kept.id()).unwrap();
        let me = Some(std::process::id());

        let sweep = kill_noted(dir.path(), me, u64::MAX, false).unwrap();
        assert_eq!(sweep.killed, vec!["att-1".to_owned()]);
        assert!(!sweep.spawning);
        assert!(alive(&mut kept), "the keeper killed an on_disconnect = keep job");
        // Killed but not reaped: a zombie, as under a frozen worker. Signalled
        // again on the next pass, it is not counted again.
        let zombie = |pid: u32| proc_stat(pid).is_some_and(|s| s.state == 'Z');
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !zombie(killed.id()) {
            assert!(std::time::Instant::now() < deadline, "the killed job never exited");
            std::thread::yield_now();
        }
        assert!(kill_noted(dir.path(), me, u64::MAX, false).unwrap().killed.is_empty());
        assert!(!alive(&mut killed));

        // A restarted worker (no keeper) kills keep jobs too, and clears the notes.
        drop((killed_note, kept_note));
        let note = ledger.spawning(AttemptId(2), true).unwrap();
        note.spawned(kept.id()).unwrap();
        std::mem::forget(note);
        assert_eq!(ledger.kill_orphans().unwrap(), vec!["att-2".to_owned()]);
        kept.wait().unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| { !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.') })
                .count(),
            0
        );

        // A job caught between fork and note is found among the worker's
        // children. (In the same test: it kills any child of this process
        // leading a group, which would include other tests' jobs under `cargo test`.)
        let note = ledger.spawning(AttemptId(3), false).unwrap();
        let mut child = job();
        let sweep = kill_noted(dir.path(), Some(std::process::id()), u64::MAX, false).unwrap();
        assert!(sweep.spawning);
        assert_eq!(sweep.killed, vec!["att-3".to_owned()]);
        child.wait().unwrap();
        drop(note);
    }

    /// The keeper decided the lease had ended from the file it read; before it
    /// killed, the worker wrote a new lease and started a job under it. That
    /// job is spared until its own lease ends.
    #[test]
    fn the_keeper_spares_a_job_started_under_a_lease_written_after_the_one_it_saw_end() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ProcessLedger::open(dir.path()).unwrap();
        let ends = 7_000_000_000_000u64;
        ledger.lease.store(ends, Ordering::Release);
        let mut job = job();
        let note = ledger.spawning(AttemptId(5), false).unwrap();
        note.spawned(job.id()).unwrap();
        let me = Some(std::process::id());

        let sweep = kill_noted(dir.path(), me, ends - 1, false).unwrap();
        assert!(sweep.killed.is_empty(), "{:?}", sweep.killed);
        assert!(alive(&mut job), "killed under a lease not yet ended");
        assert_eq!(kill_noted(dir.path(), me, ends, false).unwrap().killed, vec!["att-5".to_owned()]);
        job.wait().unwrap();
        drop(note);
    }

    /// A worker that died between spawning a job and naming its group in the
    /// ledger left a note with no group: restarted, it finds the job by the
    /// attempt id in its environment.
    #[test]
    fn a_restarted_worker_kills_a_job_whose_group_was_never_noted() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ProcessLedger::open(dir.path()).unwrap();
        // An attempt id no other test's job carries: the sweep looks at the
        // whole machine's processes.
        let attempt = AttemptId(u64::MAX - 7);
        let note = ledger.spawning(attempt, false).unwrap();
        let mut command = std::process::Command::new("sleep");
        command.arg("600").env("ARCHON_ATTEMPT_ID", attempt.to_string());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut orphan = command.spawn().unwrap();
        let mut bystander = job();
        std::mem::forget(note);
        assert_eq!(ledger.kill_orphans().unwrap(), vec![attempt.to_string()]);
        orphan.wait().unwrap();
        assert!(alive(&mut bystander), "a job of no attempt is left alone");
        bystander.kill().unwrap();
        bystander.wait().unwrap();
    }
}
