//! What jobs record about their own execution, and reading it back.
//!
//! Every job of the load marks, on the boot clock (`CLOCK_BOOTTIME`, in
//! microseconds), when its attempt started, a tick every [`TICK`] while it
//! executes, and its end — also when terminated (SIGTERM). Each attempt appends
//! to its own file `DIR/<run>_<attempt>` in the marks directory every worker
//! container has bind-mounted. The containers share the host's kernel, so one
//! boot clock orders marks made in different containers, and the orchestrator's
//! fault instants with them. A line is `KIND MICROS HOST` (the container's host
//! name: which worker executed it). An attempt SIGKILLed (by a lease keeper, or with
//! its container) leaves no end mark: it executed at most until a little after
//! its last tick, or until the kill, whichever is known.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::time::{ClockId, clock_gettime};

/// How often a job marks that it is executing.
pub(crate) const TICK: Duration = Duration::from_millis(20);

/// Now on the boot clock, in microseconds: comparable across containers.
pub(crate) fn boot_micros() -> u64 {
    // CLOCK_BOOTTIME cannot fail on Linux; 0 would only make a mark look early.
    clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(0, |t| {
        let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
        secs * 1_000_000 + nanos / 1_000
    })
}

/// What a mark says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The attempt began executing.
    Start,
    /// It is still executing.
    Tick,
    /// It is done (or was terminated and is exiting).
    End,
}

impl std::str::FromStr for Kind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Kind> {
        match s {
            "start" => Ok(Kind::Start),
            "tick" => Ok(Kind::Tick),
            "end" => Ok(Kind::End),
            other => bail!("KIND: {other:?} is not a mark (start, tick or end)"),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Start => "start",
            Kind::Tick => "tick",
            Kind::End => "end",
        })
    }
}

/// An id as Archon prints it (`run-12`, `att-40`): letters, digits and dashes,
/// so it is safe in a file name.
fn check_id(what: &str, id: &str) -> anyhow::Result<()> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        bail!("{what}: {id:?} is not an id like run-12 or att-40 (is ARCHON_RUN_ID set?)");
    }
    Ok(())
}

/// Appends one mark for `attempt` of `run` to its file in `dir`, in one write.
pub(crate) fn append(dir: &Path, run: &str, attempt: &str, kind: Kind) -> anyhow::Result<()> {
    check_id("RUN_ID", run)?;
    check_id("ATTEMPT_ID", attempt)?;
    let at = boot_micros();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let host = if host.is_empty() || host.contains(char::is_whitespace) { "?" } else { host };
    let path = dir.join(format!("{run}_{attempt}"));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(format!("{kind} {at} {host}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A job's whole body in one process (what process jobs run): marks its start,
/// a tick every [`TICK`] for `ticks` ticks and its end; on SIGTERM it marks its
/// end and exits 143. The ids come from the worker's `ARCHON_RUN_ID` and
/// `ARCHON_ATTEMPT_ID`.
pub(crate) fn work(dir: &Path, ticks: u32) -> anyhow::Result<std::process::ExitCode> {
    let run = std::env::var("ARCHON_RUN_ID").unwrap_or_default();
    let attempt = std::env::var("ARCHON_ATTEMPT_ID").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        append(dir, &run, &attempt, Kind::Start)?;
        let mut every = tokio::time::interval(TICK);
        every.tick().await;
        for _ in 0..ticks {
            tokio::select! {
                _ = every.tick() => append(dir, &run, &attempt, Kind::Tick)?,
                _ = term.recv() => {
                    append(dir, &run, &attempt, Kind::End)?;
                    return Ok(std::process::ExitCode::from(143));
                }
            }
        }
        append(dir, &run, &attempt, Kind::End)?;
        Ok(std::process::ExitCode::SUCCESS)
    })
}

/// The shell text of a job that marks like [`work`] with the `mark` subcommand:
/// a `sh` loop (for shell and script jobs).
pub(crate) fn shell_body(dir: &str, ticks: u32) -> String {
    let tick = TICK.as_secs_f64();
    format!(
        "m() {{ archon-chaos mark {dir} \"$ARCHON_RUN_ID\" \"$ARCHON_ATTEMPT_ID\" \"$1\"; }}; \
         trap 'm end; exit 143' TERM; m start; i=0; \
         while [ $i -lt {ticks} ]; do sleep {tick}; m tick; i=$((i+1)); done; m end"
    )
}

/// One attempt's marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marks {
    /// The host name of the container it executed in.
    pub(crate) host: String,
    /// Its earliest mark (µs).
    pub(crate) first: u64,
    /// Its latest mark (µs).
    pub(crate) last: u64,
    /// It marked its start.
    pub(crate) started: bool,
    /// It marked its end.
    pub(crate) ended: bool,
    /// The longest gap between two of its marks (µs): how late a tick can come.
    pub(crate) widest_gap: u64,
}

/// Every attempt's marks in `dir`, by run and attempt.
pub(crate) fn read_all(dir: &Path) -> anyhow::Result<BTreeMap<String, BTreeMap<String, Marks>>> {
    let mut runs: BTreeMap<String, BTreeMap<String, Marks>> = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(runs),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((run, attempt)) = name.split_once('_') else { continue };
        let text = std::fs::read_to_string(entry.path())?;
        if let Some(marks) = parse(&text).with_context(|| format!("in {}", entry.path().display()))? {
            runs.entry(run.to_owned()).or_default().insert(attempt.to_owned(), marks);
        }
    }
    Ok(runs)
}

/// The marks of one file's `KIND MICROS HOST` lines (none when it holds none).
fn parse(text: &str) -> anyhow::Result<Option<Marks>> {
    let mut times = Vec::new();
    let (mut started, mut ended, mut host) = (false, false, String::new());
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        let [kind, at, on] = words[..] else { bail!("a torn mark line: {line:?}") };
        let kind: Kind = kind.parse()?;
        let at: u64 = at.parse().with_context(|| format!("a torn mark line: {line:?}"))?;
        on.clone_into(&mut host);
        started |= kind == Kind::Start;
        ended |= kind == Kind::End;
        times.push(at);
    }
    times.sort_unstable();
    let (Some(first), Some(last)) = (times.first().copied(), times.last().copied()) else { return Ok(None) };
    let widest_gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Ok(Some(Marks { host, first, last, started, ended, widest_gap }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_appended_and_read_back_per_attempt() {
        let dir = std::env::temp_dir().join(format!("archon-chaos-marks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        append(&dir, "run-1", "att-1", Kind::Start).unwrap();
        append(&dir, "run-1", "att-1", Kind::Tick).unwrap();
        append(&dir, "run-1", "att-2", Kind::Start).unwrap();
        append(&dir, "run-1", "att-2", Kind::End).unwrap();
        let all = read_all(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let one = &all["run-1"]["att-1"];
        assert!(one.started && !one.ended && one.first <= one.last);
        assert!(!one.host.is_empty());
        let two = &all["run-1"]["att-2"];
        assert!(two.started && two.ended && one.first <= two.first);
    }

    #[test]
    fn ids_that_are_not_archon_ids_are_refused() {
        let dir = std::env::temp_dir();
        assert!(append(&dir, "../x", "att-1", Kind::Start).is_err());
        assert!(append(&dir, "run-1", "", Kind::Start).is_err());
        assert!("later".parse::<Kind>().is_err());
    }

    #[test]
    fn the_widest_gap_is_measured_and_torn_lines_refused() {
        let m = parse("start 100 w1\ntick 150 w1\ntick 400 w1\nend 420 w1\n").unwrap().unwrap();
        assert_eq!((m.first, m.last, m.widest_gap, m.ended, m.host.as_str()), (100, 420, 250, true, "w1"));
        assert!(parse("tick 1 w1\ntic").is_err());
        assert_eq!(parse("").unwrap(), None);
    }
}
