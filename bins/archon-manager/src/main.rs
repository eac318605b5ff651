//! `archon-manager`: parses its configuration (file, then `ARCHON_*` env, then
//! flags) and runs [`archon::daemon::manager::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use archon::daemon::manager::{ManagerDaemonConfig, ManagerFile};
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Archon manager: client API, worker sessions, placement, failure detection.
#[derive(Debug, Parser)]
#[command(name = "archon-manager", version, about)]
struct Flags {
    /// A TOML config file (keys as the long flags, with underscores).
    #[arg(long, env = "ARCHON_CONFIG")]
    config: Option<PathBuf>,
    /// Where the gRPC port listens (API and worker sessions).
    #[arg(long, env = "ARCHON_LISTEN")]
    listen: Option<SocketAddr>,
    /// The address clients and workers should use, if not the listen address.
    #[arg(long, env = "ARCHON_ADVERTISE")]
    advertise: Option<String>,
    /// How often workers heartbeat, e.g. 2s.
    #[arg(long, env = "ARCHON_HEARTBEAT_INTERVAL")]
    heartbeat_interval: Option<String>,
    /// A worker silent longer than this is lost and its runs requeued, e.g. 10s.
    #[arg(long, env = "ARCHON_WORKER_TIMEOUT")]
    worker_timeout: Option<String>,
    /// Default placement policy: binpack or spread.
    #[arg(long, env = "ARCHON_PLACEMENT")]
    placement: Option<String>,
    /// More logging (-v, -vv).
    #[arg(long, short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    archon::daemon::main(flags.verbose, || configure(flags), archon::daemon::manager::run)
}

fn configure(flags: Flags) -> anyhow::Result<ManagerDaemonConfig> {
    let mut config = ManagerDaemonConfig::default();
    config.apply(archon::daemon::load_file::<ManagerFile>(flags.config.as_deref())?)?;
    config.apply(ManagerFile {
        listen: flags.listen,
        advertise: flags.advertise,
        heartbeat_interval: flags.heartbeat_interval,
        worker_timeout: flags.worker_timeout,
        placement: flags.placement,
    })?;
    Ok(config)
}
