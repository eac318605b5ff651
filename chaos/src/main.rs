//! `archon-chaos`: chaos on a cluster of containers (`scripts/chaos` builds the
//! image and runs it).
//!
//! - `archon-chaos run` starts three managers and four workers in containers,
//!   submits a seeded load while injecting seeded faults, heals, collects and
//!   checks, and removes every container it made ([`run`]).
//! - `archon-chaos check --out DIR` checks a kept run again ([`check`]).
//! - `archon-chaos mark` and `archon-chaos work` are what the load's jobs run
//!   inside the workers: they record the jobs' execution ([`marks`]).

mod check;
mod cluster;
mod collect;
mod docker;
mod faults;
mod history;
mod load;
mod marks;
mod rng;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Chaos testing of an Archon cluster in Docker containers.
#[derive(Debug, Parser)]
#[command(name = "archon-chaos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a cluster in containers, load it and inject faults, then check
    /// the history; removes every container it made.
    Run {
        /// Seeds the load and the faults [default: from the clock; printed].
        #[arg(long)]
        seed: Option<u64>,
        /// How long the load and the faults last, e.g. 300s or 5m.
        #[arg(long, default_value = "5m", value_parser = duration)]
        duration: Duration,
        /// The image of the nodes (scripts/chaos builds it).
        #[arg(long)]
        image: String,
        /// Where the run keeps its history, marks, data and logs (replaced if
        /// an earlier run's).
        #[arg(long)]
        out: PathBuf,
        /// Where the host's `archon` and `archon-manager` are [default: next to this binary].
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Check a run's out dir again (the cluster is not needed).
    Check {
        /// The run's out dir.
        #[arg(long)]
        out: PathBuf,
    },
    /// Append one mark (KIND: start, tick or end) for an attempt: what jobs call.
    Mark {
        /// The marks directory.
        dir: PathBuf,
        /// The run (ARCHON_RUN_ID).
        run_id: String,
        /// The attempt (ARCHON_ATTEMPT_ID).
        attempt_id: String,
        /// start, tick or end.
        kind: marks::Kind,
    },
    /// A whole job: mark the start, TICKS ticks 20 ms apart and the end (the
    /// end also on SIGTERM, then exit 143).
    Work {
        /// The marks directory.
        dir: PathBuf,
        /// How many ticks.
        #[arg(long, default_value_t = 50)]
        ticks: u32,
    },
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration (try 300s or 5m): {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mark { dir, run_id, attempt_id, kind } => {
            marks::append(&dir, &run_id, &attempt_id, kind).map(|()| ExitCode::SUCCESS)
        }
        Command::Work { dir, ticks } => marks::work(&dir, ticks),
        Command::Check { out } => check::check(&out, None).map(|ok| ExitCode::from(if ok { 0 } else { 1 })),
        Command::Run { seed, duration, image, out, bin_dir } => {
            let seed = seed.unwrap_or_else(|| marks::boot_micros() ^ u64::from(std::process::id()));
            eprintln!("archon-chaos: seed {seed}");
            start(seed, duration, image, out, bin_dir)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("archon-chaos: {e:#}");
        ExitCode::from(2)
    })
}

/// `run`, with SIGINT and SIGTERM stopping it cleanly.
fn start(
    seed: u64,
    duration: Duration,
    image: String,
    out: PathBuf,
    bin_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let bin_dir = match bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?.parent().context("this binary has no directory")?.to_owned(),
    };
    let bin_dir = std::fs::canonicalize(&bin_dir).with_context(|| format!("--bin-dir: {}", bin_dir.display()))?;
    let config = run::RunConfig { seed, duration, image, out, bin_dir };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        let watch = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            for n in 0.. {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if n > 0 {
                    // The next run sweeps what this one leaves (its pid will be gone).
                    eprintln!("archon-chaos: stopping now, without cleaning up");
                    std::process::exit(130);
                }
                eprintln!("archon-chaos: stopping: healing and removing what the run made (again to quit at once)");
                watch.cancel();
            }
        });
        Ok(match run::run(config, stop).await? {
            run::Outcome::Passed => ExitCode::SUCCESS,
            run::Outcome::Failed => ExitCode::from(1),
            run::Outcome::Interrupted => ExitCode::from(130),
        })
    })
}
