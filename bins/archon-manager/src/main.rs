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
    keeping: archon::daemon::keeping::KeepingFlags,
    /// TLS: --tls-ca, --tls-cert, --tls-key (see `archon certs`), or --insecure.
    #[command(flatten)]
    tls: archon::security::TlsFlags,
    /// Serve /metrics without a token (TLS and client certificates still apply).
    #[arg(long)]
    open_metrics: bool,
    /// Let browsers without a client certificate reach the dashboard and REST API,
    /// signing in with a token (gRPC calls still need a certificate).
    #[arg(long)]
    browser_login: bool,
    /// How it logs: --log-format text|json, --log-filter DIRECTIVES.
    #[command(flatten)]
    log: archon::logging::LogOptions,
    /// More logging (-v, -vv).
    #[arg(long, short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    archon::daemon::main(flags.log.clone(), flags.verbose, || configure(flags), archon::daemon::manager::run)
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
