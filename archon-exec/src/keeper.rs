//! The lease keeper: a small process beside the worker that kills the worker's
//! jobs when its lease ends, even while the worker itself is frozen (SIGSTOP, a
//! long pause, a debugger) and its own timers cannot fire. Without it a frozen
//! worker's jobs run on while the cluster, having declared the worker lost,
//! runs them again elsewhere.
//!
//! The worker writes its lease's end to a file in its [`ProcessLedger`]'s
//! directory as an instant of `CLOCK_BOOTTIME` (shared by every process of the
//! host, and running through suspend), each time the lease is renewed. The
//! keeper sleeps until that instant, reads the file again, and if the end has
//! not moved, SIGKILLs every process group the ledger notes — including one
//! being spawned at that moment, found among the worker's children — except
//! those noted under a lease that ends later (written after the keeper read
//! the file: the worker renewed and started them meanwhile). It exits once the
//! worker is gone and nothing it noted is left.
//!
//! The keeper is the worker's own executable started with [`KEEPER_ARG`]: a
//! binary that hosts workers calls [`main_if_asked`] first thing in `main`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use archon_core::worker::LeaseView;
use nix::time::{ClockId, clock_gettime};
use tokio::sync::watch;

use crate::ledger::ProcessLedger;

/// The argument that makes a worker's executable run as its lease keeper.
pub const KEEPER_ARG: &str = "__archon-lease-keeper";

/// The lease file, in the ledger's directory (a dot file: not a note).
const LEASE_FILE: &str = ".lease";

/// The longest the keeper sleeps before looking at the lease and the worker again.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A running lease keeper. Dropping it stops the keeper.
#[derive(Debug)]
pub struct LeaseKeeper {
    child: std::process::Child,
    file: PathBuf,
    /// The ledger's record of the end last written, for its notes.
    written: Arc<AtomicU64>,
}

impl LeaseKeeper {
    /// Starts this executable as the keeper of `ledger` (see the module docs).
    /// The lease starts ended: nothing may run until the worker holds one.
    ///
    /// The executable must call [`main_if_asked`] first thing in `main` (the
    /// `archon` and `archon-worker` binaries do); otherwise this starts a second
    /// copy of the program instead of a keeper.
    pub fn spawn(ledger: &ProcessLedger) -> std::io::Result<LeaseKeeper> {
        let file = ledger.dir().join(LEASE_FILE);
        write_lease(&file, Some(0))?;
        let exe = std::env::current_exe()?;
        let mut command = std::process::Command::new(exe);
        command
            .arg(KEEPER_ARG)
            .arg(ledger.dir())
            .arg(std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        // Its own group: a terminal's Ctrl-C reaches the worker, which then
        // stops it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn()?;
        Ok(LeaseKeeper { child, file, written: ledger.lease() })
    }

    /// Writes every change of `lease` to the lease file until it closes, and
    /// after each write tells `kept` the end the keeper now enforces, or a
    /// little before it, so the worker's count always ends first.
    pub async fn follow(&self, mut lease: watch::Receiver<LeaseView>, kept: impl Fn(Option<tokio::time::Instant>)) {
        loop {
            let view = *lease.borrow_and_update();
            let ends = view.until.map(|until| {
                let before = tokio::time::Instant::now();
                let boot = boot_now();
                let after = tokio::time::Instant::now();
                lease_ends(until, before, boot, after)
            });
            let written = ends.map(|(written, _)| written);
            match write_lease(&self.file, written) {
                Ok(()) => {
                    self.written.store(written.unwrap_or(0), Ordering::Release);
                    kept(ends.map(|(_, counted)| counted));
                }
                Err(e) => tracing::error!(error = %e, file = %self.file.display(),
                    "cannot write the lease for the keeper; it will kill the jobs when the last written lease ends"),
            }
            if lease.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs as the lease keeper when the process was started with [`KEEPER_ARG`]
/// (by [`LeaseKeeper::spawn`]), returning its exit code; `None` otherwise. Call
/// it first thing in `main`, before any runtime starts.
pub fn main_if_asked() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_none_or(|a| a != KEEPER_ARG) {
        return None;
    }
    let dir = args.next().map(PathBuf::from);
    let worker = args.next().and_then(|p| p.to_str()?.parse::<u32>().ok());
    let (Some(dir), Some(worker)) = (dir, worker) else {
        eprintln!("usage: {KEEPER_ARG} LEDGER_DIR WORKER_PID (started by the worker itself)");
        return Some(std::process::ExitCode::from(2));
    };
    keep(&dir, worker);
    Some(std::process::ExitCode::SUCCESS)
}

/// How soon the keeper looks again after an ended lease's pass: at once while a
/// job may be between fork and note (its group appears any moment), then less
/// and less often while the passes find nothing new, up to [`LOOK_EVERY`].
const AGAIN_FIRST: Duration = Duration::from_millis(10);

/// The keeper's loop: until the worker is gone and the lease has ended with
/// nothing left to kill.
fn keep(dir: &Path, worker: u32) {
    let file = dir.join(LEASE_FILE);
    // Told once each: a frozen worker cannot reap what was killed, so its notes
    // stay until it wakes.
    let mut told = std::collections::HashSet::new();
    let mut again = AGAIN_FIRST;
    loop {
        let worker_alive = nix::unistd::getppid().as_raw().unsigned_abs() == worker;
        let now = boot_now();
        // Unreadable: the worker is gone and its directory with it, or it never
        // wrote one; either way nothing renews the lease.
        let until = read_lease(&file).unwrap_or(Some(0));
        match until {
            Some(until) if until <= now => {
                match crate::ledger::kill_noted(dir, Some(worker), now, false) {
                    Ok(sweep) if sweep.killed.is_empty() && !worker_alive => return,
                    Ok(sweep) => {
                        let mut killed = sweep.killed;
                        killed.retain(|attempt| told.insert(attempt.clone()));
                        if !killed.is_empty() {
                            // When, on the boot clock, so what a job marked can be compared.
                            let at = Duration::from_nanos(boot_now()).as_secs_f64();
                            // One write, so the worker's own log lines (the same
                            // stderr) cannot split it.
                            let line = format!(
                                "archon lease keeper: the worker's lease ended; by {at:.6}s (boot clock) killed the \
                                 process groups of {}\n",
                                killed.join(" ")
                            );
                            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
                        }
                        again = look_again(again, sweep.spawning || !killed.is_empty());
                    }
                    Err(_) if !worker_alive => return,
                    Err(_) => again = AGAIN_FIRST,
                }
                std::thread::sleep(again);
            }
            Some(until) => {
                again = AGAIN_FIRST;
                std::thread::sleep(Duration::from_nanos(until - now).min(LOOK_EVERY));
            }
            // No leases: the worker's manager grants none.
            None if !worker_alive => return,
            None => std::thread::sleep(LOOK_EVERY),
        }
    }
}

/// The wait before the next pass over an ended lease's ledger: [`AGAIN_FIRST`]
/// when the last pass was `busy` (killed something new, or saw a job being
/// spawned), else twice the last wait, at most [`LOOK_EVERY`].
fn look_again(last: Duration, busy: bool) -> Duration {
    if busy { AGAIN_FIRST } else { last.saturating_mul(2).min(LOOK_EVERY) }
}

/// The lease's end `until` as written for the keeper (boot clock, ns) and as
/// the worker counts it, from the boot clock `boot` read between the monotonic
/// readings `before` and `after`. The written end is measured from `after`, so
/// it is never later than `until`; it may be earlier by as much as the time
/// between the readings (the thread preempted, or the worker frozen, in
/// between), so the worker counts that much less, and a millisecond more:
/// otherwise a job the keeper killed could end while the worker still believed
/// in its lease, and be reported as failed rather than fenced.
fn lease_ends(
    until: tokio::time::Instant,
    before: tokio::time::Instant,
    boot: u64,
    after: tokio::time::Instant,
) -> (u64, tokio::time::Instant) {
    let written = boot.saturating_add(duration_ns(until.saturating_duration_since(after)));
    let margin = after.saturating_duration_since(before) + Duration::from_millis(1);
    // Frozen longer than the clock's age: the lease counts as ended already.
    let counted = until.checked_sub(margin).unwrap_or(before);
    (written, counted)
}

/// `CLOCK_BOOTTIME` now, in nanoseconds.
fn boot_now() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0).saturating_mul(1_000_000_000) + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Writes the lease's end (`None`: no leases) atomically.
fn write_lease(file: &Path, until: Option<u64>) -> std::io::Result<()> {
    let text = match until {
        Some(ns) => format!("{ns}\n"),
        None => "none\n".to_owned(),
    };
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file)
}

/// The lease's end as written: `Some(ns)`, `None` for no leases; an error when
/// the file cannot be read or makes no sense.
fn read_lease(file: &Path) -> Result<Option<u64>, ()> {
    let text = std::fs::read_to_string(file).map_err(drop)?;
    match text.trim() {
        "none" => Ok(None),
        ns => ns.parse().map(Some).map_err(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_file_round_trips_and_garbage_reads_as_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(LEASE_FILE);
        assert_eq!(read_lease(&file), Err(()));
        write_lease(&file, Some(42)).unwrap();
        assert_eq!(read_lease(&file), Ok(Some(42)));
        write_lease(&file, None).unwrap();
        assert_eq!(read_lease(&file), Ok(None));
        std::fs::write(&file, "soon").unwrap();
        assert_eq!(read_lease(&file), Err(()));
        assert!(boot_now() > 0);
    }

    #[test]
    fn the_worker_counts_its_lease_to_no_later_than_the_keeper_ends_it_however_long_the_clock_readings_took() {
        let before = tokio::time::Instant::now();
        let until = before + Duration::from_secs(8);
        for gap in [Duration::ZERO, Duration::from_millis(3), Duration::from_secs(2)] {
            // The boot clock was read somewhere between the two monotonic readings.
            let after = before + gap;
            let boot = 5_000_000_000_000;
            let (written, counted) = lease_ends(until, before, boot, after);
            assert_eq!(written - boot, duration_ns(until - after), "measured from the later reading");
            // Read at `before` (the worst case), the keeper's end falls `gap`
            // before `until`: the worker's count ends a millisecond earlier still.
            let keeper_ends = until - gap;
            assert_eq!(counted, keeper_ends - Duration::from_millis(1), "gap {gap:?}");
        }
        let (_, counted) = lease_ends(before, before, 0, before + Duration::from_secs(1));
        assert!(counted <= before);
    }

    #[test]
    fn the_keeper_looks_again_less_often_while_nothing_happens_but_never_rarer_than_look_every() {
        let mut wait = AGAIN_FIRST;
        let mut waits = Vec::new();
        // Far more idle passes than a lapse lasts (the doubling once overflowed).
        for _ in 0..1_000 {
            wait = look_again(wait, false);
            waits.push(wait);
        }
        assert_eq!(waits[..4], [AGAIN_FIRST * 2, AGAIN_FIRST * 4, AGAIN_FIRST * 8, LOOK_EVERY]);
        assert!(waits.iter().all(|w| *w <= LOOK_EVERY));
        assert_eq!(look_again(LOOK_EVERY, true), AGAIN_FIRST);
    }
}
