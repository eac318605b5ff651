//! `archon-worker`: parses its configuration (file, then `ARCHON_*` env, then
//! flags) and runs [`archon_cli::daemon::worker::run`].

// The flags' doc comments are their `--help` text, written for a terminal
// (`USER[:PASSWORD]`, `<name>`), not Markdown: rustdoc is told not to read them as links or tags.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use archon_cli::daemon::worker::{WorkerDaemonConfig, WorkerFile};
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Archon worker: runs shell, script, process and Docker jobs for the managers.
#[derive(Debug, Parser)]
#[command(name = "archon-worker", version, about)]
struct Flags {
    /// A TOML config file (keys as the long flags, with underscores).
    #[arg(long, env = "ARCHON_CONFIG")]
    config: Option<PathBuf>,
    /// A manager address (repeatable; comma-separated in ARCHON_MANAGERS).
    #[arg(long = "manager", env = "ARCHON_MANAGERS", value_delimiter = ',')]
    managers: Vec<String>,
    /// Unique worker name (default: the host name).
    #[arg(long, env = "ARCHON_WORKER_NAME")]
    name: Option<String>,
    /// A label key=value for placement constraints (repeatable).
    #[arg(long = "label", value_parser = archon_cli::cli::parse_key_value)]
    labels: Vec<(String, String)>,
    /// CPU offered (default: all cores), e.g. 4 or 3500m.
    #[arg(long, env = "ARCHON_CPU")]
    cpu: Option<String>,
    /// Memory offered (default: all memory), e.g. 8GiB.
    #[arg(long, env = "ARCHON_MEMORY")]
    memory: Option<String>,
    /// Network bandwidth offered in Mbit/s (default: the fastest link).
    #[arg(long, env = "ARCHON_NETWORK")]
    network: Option<u64>,
    /// A device kind=count offered, e.g. gpu=2 (repeatable).
    #[arg(long = "device", value_parser = key_count)]
    devices: Vec<(String, u32)>,
    /// First reconnect delay ceiling, e.g. 200ms.
    #[arg(long, env = "ARCHON_RECONNECT_BASE")]
    reconnect_base: Option<String>,
    /// Largest reconnect delay, e.g. 10s.
    #[arg(long, env = "ARCHON_RECONNECT_CAP")]
    reconnect_cap: Option<String>,
    /// On SIGTERM, how long running jobs may take to finish, e.g. 30s.
    #[arg(long, env = "ARCHON_DRAIN_GRACE")]
    drain_grace: Option<String>,
    /// How many assigned jobs to hold queued beyond what fits, each started the
    /// moment resources free up; 0 for none (workers of long jobs) [default: 8].
    #[arg(long, env = "ARCHON_QUEUE", value_name = "N")]
    queue: Option<u32>,
    /// Where the worker keeps what must survive a crash: the process groups of
    /// running jobs, killed on the next start [default: ~/.local/share/archon/worker-<name>].
    #[arg(long, env = "ARCHON_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// How the worker uses Docker.
    #[command(flatten)]
    docker: archon_cli::cli::DockerFlags,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 0.0.0.0:9464 (default: off).
    #[arg(long, env = "ARCHON_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// The cluster CA's certificate, to reach the managers over TLS.
    #[arg(long, env = "ARCHON_TLS_CA", value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// This worker's certificate (`archon certs issue worker NAME`; NAME is the worker's name).
    #[arg(long, env = "ARCHON_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// Its private key.
    #[arg(long, env = "ARCHON_TLS_KEY", value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,
    /// How it logs: --log-format text|json, --log-filter DIRECTIVES.
    #[command(flatten)]
    log: archon_cli::logging::LogOptions,
    /// More logging (-v, -vv).
    #[arg(long, short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
}

fn key_count(s: &str) -> Result<(String, u32), String> {
    let (k, v) = archon_cli::cli::parse_key_value(s)?;
    let n = v.parse().map_err(|_| format!("{s:?} is not kind=count (e.g. gpu=2)"))?;
    Ok((k, n))
}

fn main() -> ExitCode {
    // Started by a worker of this process as its lease keeper: nothing else.
    if let Some(code) = archon_exec::lease_keeper_main_if_asked() {
        return code;
    }
    let flags = Flags::parse();
    archon_cli::daemon::main(flags.log.clone(), flags.verbose, || configure(flags), archon_cli::daemon::worker::run)
}

fn configure(flags: Flags) -> anyhow::Result<WorkerDaemonConfig> {
    let mut config = WorkerDaemonConfig::default();
    config.apply(archon_cli::daemon::load_file::<WorkerFile>(flags.config.as_deref())?)?;
    let labels: BTreeMap<String, String> = flags.labels.into_iter().collect();
    let devices: BTreeMap<String, u32> = flags.devices.into_iter().collect();
    config.apply(WorkerFile {
        managers: (!flags.managers.is_empty()).then_some(flags.managers),
        name: flags.name,
        labels: (!labels.is_empty()).then_some(labels),
        cpu: flags.cpu,
        memory: flags.memory,
        network: flags.network,
        devices: (!devices.is_empty()).then_some(devices),
        reconnect_base: flags.reconnect_base,
        reconnect_cap: flags.reconnect_cap,
        drain_grace: flags.drain_grace,
        queue: flags.queue,
        state_dir: flags.state_dir,
        docker: flags.docker.no_docker.then_some(false),
        docker_socket: flags.docker.docker_socket,
        docker_allow_mounts: flags.docker.docker_allow_mounts.then_some(true),
        docker_pids_limit: flags.docker.docker_pids_limit,
        metrics_listen: flags.metrics_listen,
        tls_ca: flags.tls_ca,
        tls_cert: flags.tls_cert,
        tls_key: flags.tls_key,
        // The log flags go to `daemon::main` as they are: they win over RUST_LOG, which wins over the file.
        log_format: None,
        log_filter: None,
    })?;
    Ok(config)
}
