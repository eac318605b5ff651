//! `archon-manager`: parses its configuration (file, then `ARCHON_*` env, then
//! flags) and runs [`archon_cli::daemon::manager::run`]; `archon-manager verify-data`
//! checks a stopped manager's files instead ([`archon_raft::storage::verify`]).

// The flags' doc comments are their `--help` text, written for a terminal
// (`USER[:PASSWORD]`, `<name>`), not Markdown: rustdoc is told not to read them as links or tags.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use archon_cli::daemon::manager::{ManagerDaemonConfig, ManagerFile};
use clap::{Parser, Subcommand};

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
    /// This manager's Raft node id (unique in the group, never reused).
    #[arg(long, env = "ARCHON_NODE_ID")]
    node_id: Option<u64>,
    /// Where the manager keeps its durable state [default: ~/.local/share/archon/manager-<node id>].
    #[arg(long, env = "ARCHON_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Bootstrap a group of these managers, e.g. 1=10.0.0.1:50051,2=10.0.0.2:50051,3=10.0.0.3:50051
    /// (start each with the same list and its own --node-id).
    #[arg(long, env = "ARCHON_PEERS")]
    peers: Option<String>,
    /// Join an existing group through one of its managers (HOST:PORT).
    #[arg(long, env = "ARCHON_JOIN")]
    join: Option<String>,
    /// Keep state in PostgreSQL instead of the embedded Raft store:
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE. Managers given the same
    /// database form one group (leader by advisory lock); --peers and --join do not apply.
    #[arg(long, env = "ARCHON_STORE", value_name = "URL", hide_env_values = true)]
    store: Option<String>,
    /// History retention, idempotency window, kept output and input limits.
    #[command(flatten)]
    keeping: archon_cli::daemon::keeping::KeepingFlags,
    /// TLS: --tls-ca, --tls-cert, --tls-key (see `archon certs`), or --insecure.
    #[command(flatten)]
    tls: archon_cli::security::TlsFlags,
    /// Serve /metrics without a token (TLS and client certificates still apply).
    #[arg(long)]
    open_metrics: bool,
    /// Let browsers without a client certificate reach the dashboard and REST API,
    /// signing in with a token (gRPC calls still need a certificate).
    #[arg(long)]
    browser_login: bool,
    /// How it logs: --log-format text|json, --log-filter DIRECTIVES.
    #[command(flatten)]
    log: archon_cli::logging::LogOptions,
    /// More logging (-v, -vv).
    #[arg(long, short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Instead of running the manager: an operator command.
    #[command(subcommand)]
    command: Option<Operation>,
}

/// What an operator runs against a stopped manager's data.
#[derive(Debug, Subcommand)]
enum Operation {
    /// Check a stopped manager's data dir and print a JSON report: the log is
    /// contiguous, its terms never decrease, every entry and the snapshot decode,
    /// and replaying them rebuilds a state (its digest compares replicas). Exits 1
    /// when it finds a problem. A data dir left by a killed manager is recovered
    /// first, as its next start would.
    VerifyData {
        /// The manager's data dir (or the raft.redb in it).
        #[arg(long, env = "ARCHON_DATA_DIR")]
        data_dir: PathBuf,
        /// Rebuild the state through this log index [default: the committed index the files record].
        #[arg(long, value_name = "INDEX")]
        through: Option<u64>,
    },
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    if let Some(Operation::VerifyData { data_dir, through }) = &flags.command {
        return verify_data(data_dir, *through);
    }
    archon_cli::daemon::main(flags.log.clone(), flags.verbose, || configure(flags), archon_cli::daemon::manager::run)
}

/// Prints [`archon_raft::storage::verify`]'s report: exit 0 when the data is
/// sound, 1 when it has problems, 2 when it cannot be read.
fn verify_data(data_dir: &Path, through: Option<u64>) -> ExitCode {
    let report = archon_raft::storage::verify(data_dir, through)
        .map_err(anyhow::Error::from)
        .and_then(|report| Ok((serde_json::to_string_pretty(&report)?, report.is_clean())));
    match report {
        Ok((json, clean)) => {
            println!("{json}");
            if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(archon_cli::EXIT_BAD_INPUT)
        }
    }
}

fn configure(flags: Flags) -> anyhow::Result<ManagerDaemonConfig> {
    let mut config = ManagerDaemonConfig::default();
    config.apply(archon_cli::daemon::load_file::<ManagerFile>(flags.config.as_deref())?)?;
    config.apply(ManagerFile {
        listen: flags.listen,
        advertise: flags.advertise,
        heartbeat_interval: flags.heartbeat_interval,
        worker_timeout: flags.worker_timeout,
        placement: flags.placement,
        node_id: flags.node_id,
        data_dir: flags.data_dir,
        peers: flags.peers,
        join: flags.join,
        store: flags.store,
        // The log flags go to `daemon::main` as they are: they win over RUST_LOG, which wins over the file.
        log_format: None,
        log_filter: None,
        keeping: flags.keeping,
        tls: flags.tls,
        open_metrics: flags.open_metrics.then_some(true),
        browser_login: flags.browser_login.then_some(true),
        unknown: Default::default(),
    })?;
    Ok(config)
}
