//! Command-line arguments. Values with units are parsed here so a bad one is
//! refused before anything is sent, with the flag and the accepted form named.

// The flags' doc comments are their `--help` text, written for a terminal
// (`USER[:PASSWORD]`, `<name>`), not Markdown: rustdoc is told not to read them as links or tags.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Archon: a distributed, fault-tolerant job scheduler.
#[derive(Debug, Parser)]
#[command(name = "archon", version, about, propagate_version = true)]
pub struct Cli {
    /// The manager(s) to talk to, comma-separated; calls follow the leader
    /// [default: the settings file's, else http://127.0.0.1:50051].
    #[arg(long, global = true, env = "ARCHON_SERVER")]
    pub server: Option<String>,
    /// The cluster CA's certificate, to reach managers over TLS [default: the settings file's].
    #[arg(long, global = true, env = "ARCHON_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A client certificate of the cluster CA [default: the settings file's].
    #[arg(long, global = true, env = "ARCHON_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Its private key [default: the settings file's].
    #[arg(long, global = true, env = "ARCHON_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The API token (archon_…) [default: the settings file's].
    #[arg(long, global = true, env = "ARCHON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How read commands print: human tables or JSON.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// More logging (-v, -vv).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// How the CLI and `archon dev` log.
    #[command(flatten)]
    pub log: crate::logging::LogOptions,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format of read commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// JSON, one document.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a single-process cluster: manager, one local worker and the API.
    Dev(Box<DevArgs>),
    /// Submit a job from flags: --command, --script FILE, or -- ARGV...
    Submit(Box<SubmitArgs>),
    /// Submit the job(s) described in a TOML spec file.
    Run(RunArgs),
    /// Cluster health: managers, workers, jobs and runs.
    Status,
    /// List jobs, newest first.
    Jobs(JobsArgs),
    /// List runs, newest first.
    Runs(RunsArgs),
    /// List workflows, live and finished, newest first.
    Workflows(WorkflowsArgs),
    /// Show a job (job-N), a run (run-N) with its output and exit code, or a
    /// workflow (wf-N) as a tree of its jobs.
    Get {
        /// job-N, run-N or wf-N.
        id: String,
    },
    /// Print a run's output; with -f, follow it live until the run ends.
    Logs {
        /// Keep streaming until the run ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// run-N.
        run: String,
    },
    /// Cancel a job (all its runs), one run, or a workflow's unfinished jobs;
    /// running attempts are killed.
    Cancel {
        /// job-N, run-N or wf-N.
        id: String,
    },
    /// List workers with their state, load and capacity.
    Workers,
    /// Stop placing new jobs on a worker (w-N or its name); running jobs finish.
    Drain {
        /// w-N or the worker's name.
        worker: String,
    },
    /// Let a drained worker take jobs again.
    Undrain {
        /// w-N or the worker's name.
        worker: String,
    },
    /// The managers' Raft group: list its members, remove one.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Cron schedules: pause, resume, trigger, backfill, preview.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Certificates: a cluster CA and the certificates of its managers, workers and clients.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// API tokens: create (shown once), list, revoke. Needs the admin scope.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `archon token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once, keep it.
    Create {
        /// What it is for (e.g. ci-deploy).
        #[arg(long)]
        name: String,
        /// What it may do, comma-separated: read, submit, operate, admin.
        #[arg(long = "scope", value_delimiter = ',', required = true, value_parser = parse_scope)]
        scopes: Vec<archon_core::auth::Scope>,
        /// How long it lasts, e.g. 30d or 12h [default: until revoked].
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// List tokens: id, name, scopes, expiry (never secrets).
    List,
    /// Revoke a token; every manager refuses it once the revoke commits.
    Revoke {
        /// Its id, as `archon token list` shows it (or the whole token).
        id: String,
    },
}

fn parse_role(s: &str) -> Result<crate::certs::Role, String> {
    s.trim().parse()
}

fn parse_scope(s: &str) -> Result<archon_core::auth::Scope, String> {
    s.trim().parse()
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    archon_core::model::units::parse_duration(s).map_err(|e| e.to_string())
}

/// `archon certs …`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a cluster CA: ca.pem and ca.key (0600) in --dir.
    Init {
        /// Where the certificates live.
        #[arg(long, default_value = "certs", env = "ARCHON_CERTS_DIR")]
        dir: PathBuf,
        /// The cluster's name, in the CA's subject.
        #[arg(long, default_value = "archon")]
        name: String,
        /// How long the CA lasts, in days.
        #[arg(long, default_value_t = crate::certs::CA_DAYS)]
        days: u32,
        /// Replace an existing CA (every certificate it issued stops being trusted).
        #[arg(long)]
        force: bool,
    },
    /// Issue NAME a certificate of a role: NAME.pem and NAME.key (0600) in --dir.
    Issue {
        /// manager, worker or client.
        #[arg(value_parser = parse_role)]
        role: crate::certs::Role,
        /// The member's name (a manager's host name; a worker's --name).
        name: String,
        /// More host names or IP addresses it is reached at (repeat the flag).
        #[arg(long = "san", value_name = "HOST|IP")]
        sans: Vec<String>,
        /// Where the CA and certificates live.
        #[arg(long, default_value = "certs", env = "ARCHON_CERTS_DIR")]
        dir: PathBuf,
        /// How long it lasts, in days.
        #[arg(long, default_value_t = crate::certs::LEAF_DAYS)]
        days: u32,
        /// Replace an existing certificate and key (to renew it).
        #[arg(long)]
        force: bool,
    },
    /// Print a certificate's subject, role, names and validity.
    Show {
        /// A PEM certificate.
        file: PathBuf,
    },
}

/// `archon schedule …`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Stop firing a cron job until resumed.
    Pause {
        /// job-N.
        job: String,
        /// Why (shown by archon get).
        #[arg(long)]
        note: Option<String>,
    },
    /// Fire a paused cron job again, from now (fires that fell in the pause do not run).
    Resume {
        /// job-N.
        job: String,
    },
    /// One fire now, under the job's overlap policy.
    Trigger {
        /// job-N.
        job: String,
    },
    /// Run the fires of a past range, oldest first, under the overlap policy.
    Backfill {
        /// job-N.
        job: String,
        /// The range's start: a date (2026-12-01T00:00:00Z) or a time ago (3h).
        #[arg(long)]
        from: String,
        /// The range's end (default: now).
        #[arg(long)]
        to: Option<String>,
        /// An overlap policy for these fires instead of the job's (e.g. buffer-all).
        #[arg(long, value_name = "POLICY")]
        overlap: Option<String>,
    },
    /// The next fire instants of an expression (no server needed).
    Preview {
        /// The cron expression, e.g. '30 2 * * *'.
        expr: String,
        /// The IANA time zone it is read in.
        #[arg(long, default_value = "UTC", value_name = "ZONE")]
        tz: String,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 5)]
        count: usize,
    },
}

/// `archon cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every manager of the group with its role, term and last applied index.
    Members,
    /// Take a manager out of the group (by node id), e.g. before retiring its machine.
    Remove {
        /// The manager's node id (see archon cluster members).
        node_id: u64,
    },
}

/// `archon dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the gRPC API listens.
    #[arg(long, default_value = "127.0.0.1:50051", env = "ARCHON_LISTEN")]
    pub listen: SocketAddr,
    /// Plaintext without tokens (no CA, certificates or admin token are made);
    /// needed, with a warning, to serve a non-loopback address that way.
    #[arg(long)]
    pub insecure: bool,
    /// Where `archon dev` writes the CLI's settings (server, CA, client
    /// certificate, admin token) [default: ~/.config/archon/cli.toml, or $ARCHON_CLI_CONFIG].
    #[arg(long, value_name = "FILE")]
    pub cli_config: Option<PathBuf>,
    /// Where the cluster keeps its durable state [default: ~/.local/share/archon/dev].
    #[arg(long, env = "ARCHON_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Keep the cluster's state in PostgreSQL instead of the data dir:
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
    #[arg(long, env = "ARCHON_STORE", value_name = "URL", hide_env_values = true, value_parser = parse_store)]
    pub store: Option<String>,
    /// The local worker's name (default: dev-<hostname>).
    #[arg(long)]
    pub worker_name: Option<String>,
    /// CPU the local worker offers (default: all cores), e.g. 4 or 1500m.
    #[arg(long, value_parser = parse_cpu)]
    pub cpu: Option<u64>,
    /// Memory the local worker offers (default: all memory), e.g. 8GiB.
    #[arg(long, value_parser = parse_bytes)]
    pub memory: Option<u64>,
    /// Labels of the local worker, key=value (repeatable).
    #[arg(long = "label", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// How many assigned jobs the local worker holds queued beyond what fits,
    /// each started the moment resources free up; 0 for none [default: 8].
    #[arg(long, value_name = "N")]
    pub queue: Option<u32>,
    /// How the local worker uses Docker.
    #[command(flatten)]
    pub docker: DockerFlags,
    /// History retention, idempotency window, kept output and input limits.
    #[command(flatten)]
    pub keeping: crate::daemon::keeping::KeepingFlags,
}

/// How a worker uses the machine's Docker engine (`archon dev`, `archon-worker`).
#[derive(Debug, Clone, Default, Args)]
pub struct DockerFlags {
    /// Do not run Docker jobs, even when a Docker engine answers.
    #[arg(long)]
    pub no_docker: bool,
    /// The Docker engine's API socket [default: $DOCKER_HOST if unix://, else /var/run/docker.sock].
    #[arg(long, value_name = "PATH")]
    pub docker_socket: Option<String>,
    /// Let Docker jobs bind-mount host paths (`--mount`, `mounts`); off by default.
    #[arg(long)]
    pub docker_allow_mounts: bool,
    /// The most processes a job's container may hold; 0 for no limit [default: 4096].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub docker_pids_limit: Option<i64>,
}

impl DockerFlags {
    /// The options these flags give, over the defaults.
    pub fn options(&self) -> crate::executors::DockerOptions {
        let defaults = crate::executors::DockerOptions::default();
        crate::executors::DockerOptions {
            enabled: !self.no_docker,
            socket: self.docker_socket.clone(),
            allow_mounts: self.docker_allow_mounts,
            pids_limit: self.docker_pids_limit.unwrap_or(defaults.pids_limit),
        }
    }
}

/// `archon submit`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("task").args(["command", "script", "function", "argv", "docker", "executor"]).required(true).multiple(true)))]
#[command(group(clap::ArgGroup::new("takes_input").args(["function", "executor"]).multiple(true)))]
pub struct SubmitArgs {
    /// A shell command line, run with `sh -c`.
    #[arg(long, short = 'c')]
    pub command: Option<String>,
    /// A script file whose text is sent with the job and run by --interpreter.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// The interpreter of --script.
    #[arg(long, default_value = "sh", requires = "script")]
    pub interpreter: String,
    /// A function registered on the workers (`archon dev` has `noop` and `echo`).
    #[arg(long)]
    pub function: Option<String>,
    /// A task of a kind of your own: the name of the executor registered for it
    /// on the workers (capability `custom:NAME`); --input is its input.
    #[arg(long, value_name = "NAME")]
    pub executor: Option<String>,
    /// The function's or custom task's input, as JSON.
    #[arg(long, requires = "takes_input", value_name = "JSON")]
    pub input: Option<String>,
    /// A program and its arguments, run directly (no shell), after `--`; with
    /// --docker, the container's command.
    #[arg(last = true, value_name = "ARGV")]
    pub argv: Vec<String>,
    /// Run a container of this image on the worker's Docker engine; --cpu and
    /// --memory become its limits.
    #[arg(long, value_name = "IMAGE")]
    pub docker: Option<String>,
    /// The container's network: none (default), bridge, host or a network's name.
    #[arg(long, requires = "docker", value_name = "MODE")]
    pub network: Option<String>,
    /// When the worker pulls the image: if-not-present (default), always or never.
    #[arg(long, requires = "docker", value_name = "POLICY")]
    pub pull: Option<String>,
    /// The user inside the container, e.g. 65534:65534.
    #[arg(long, requires = "docker")]
    pub user: Option<String>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long, requires = "docker", value_name = "PROGRAM")]
    pub entrypoint: Option<String>,
    /// Bind-mount /host/path:/container/path[:ro] (repeatable; the worker must allow it).
    #[arg(long = "mount", requires = "docker", value_name = "MOUNT")]
    pub mounts: Vec<String>,
    /// The job's name (default: derived from the command).
    #[arg(long)]
    pub name: Option<String>,
    /// Kill an attempt after this long, e.g. 30s, 5m.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Retry a failed run this many times.
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// Delay before the first retry (doubles each time), e.g. 1s.
    #[arg(long)]
    pub retry_backoff: Option<String>,
    /// CPU reserved while it runs, e.g. 500m or 2.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory reserved while it runs, e.g. 256MiB.
    #[arg(long)]
    pub memory: Option<String>,
    /// Network bandwidth reserved, in Mbit/s.
    #[arg(long, value_name = "MBPS")]
    pub bandwidth: Option<u64>,
    /// Environment variable NAME=value (repeatable).
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// Secret environment variable NAME=value, or NAME to send this shell's
    /// $NAME (repeatable): passed to the job like --env, shown as *** by every
    /// read of the job.
    #[arg(long = "secret-env", value_name = "NAME[=VALUE]")]
    pub secret_env: Vec<String>,
    /// Working directory on the worker.
    #[arg(long)]
    pub workdir: Option<String>,
    /// Worker label constraint key=value, key!=value or key (repeatable).
    #[arg(long = "constraint")]
    pub constraints: Vec<String>,
    /// Higher runs first when capacity is short.
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i32>,
    /// Placement policy: binpack or spread.
    #[arg(long)]
    pub placement: Option<String>,
    /// A key that makes a retried submit return the first job, not a second
    /// (honoured for the cluster's idempotency window, 24h by default).
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// How long the finished run stays in the history, e.g. 1h (the cluster's
    /// --history-retention applies when shorter).
    #[arg(long)]
    pub retention: Option<String>,
    /// Keep at most this many of the job's finished runs.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Output kept per stream of each attempt, e.g. 256KiB (default: the manager's, 1MiB).
    #[arg(long, value_name = "SIZE")]
    pub output_limit: Option<String>,
    /// What the worker does with a running attempt once it has heard from no
    /// leader for longer than its lease: kill (default: the run never executes
    /// twice at once) or keep (rides out a short outage, but if the worker is
    /// declared lost the run starts again elsewhere and may execute twice at once).
    #[arg(long, value_name = "kill|keep")]
    pub on_disconnect: Option<String>,
    /// Run on a cron schedule instead of once now: 5 fields (minute hour day
    /// month weekday), 6 with seconds first, or @hourly, @daily, @weekly, ...
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// The IANA time zone --cron is read in (default UTC), e.g. Europe/Berlin.
    #[arg(long, requires = "cron", value_name = "ZONE")]
    pub tz: Option<String>,
    /// When a fire comes while the last run goes: skip (default), buffer-one,
    /// buffer-all, cancel-other or allow-all.
    #[arg(long, requires = "cron", value_name = "POLICY")]
    pub overlap: Option<String>,
    /// Fires missed while the cluster was down run if this recent (default 1h; 0: none).
    #[arg(long, requires = "cron", value_name = "DURATION")]
    pub catch_up: Option<String>,
    /// Start each fire up to this late (fixed per fire), to spread load.
    #[arg(long, requires = "cron", value_name = "DURATION")]
    pub jitter: Option<String>,
    /// Wait for the run to end, streaming its output; exit with its exit code.
    #[arg(long, short = 'w')]
    pub wait: bool,
}

/// `archon run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The spec file (TOML).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    /// Wait for the run(s) to end; exit with the first non-zero exit code.
    #[arg(long, short = 'w')]
    pub wait: bool,
}

/// `archon jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs whose name contains this.
    #[arg(long)]
    pub name: Option<String>,
    /// Only jobs whose task is of this kind: shell, script, process, docker or function.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only jobs whose latest run is in this state (pending, running, succeeded, failed, ...).
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only jobs older than this one (paging), job-N.
    #[arg(long)]
    pub before: Option<String>,
}

/// `archon workflows`.
#[derive(Debug, Args)]
pub struct WorkflowsArgs {
    /// Only workflows whose name contains this.
    #[arg(long)]
    pub name: Option<String>,
    /// Only workflows in this state: running, succeeded, failed or cancelled.
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only workflows older than this one (paging), wf-N.
    #[arg(long)]
    pub before: Option<String>,
}

/// `archon runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this job, job-N.
    #[arg(long)]
    pub job: Option<String>,
    /// Only runs in this state (pending, running, succeeded, failed, ...).
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only runs older than this one (paging), run-N.
    #[arg(long)]
    pub before: Option<String>,
    /// Only runs created since then: a time ago (2h, 30m) or a date (2026-12-01T10:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Only runs created before then: a time ago or a date.
    #[arg(long)]
    pub until: Option<String>,
}

fn parse_store(s: &str) -> Result<String, String> {
    crate::postgres::validate(s).map(|()| s.to_owned())
}

fn parse_cpu(s: &str) -> Result<u64, String> {
    archon_core::model::units::parse_cpu(s).map_err(|e| e.to_string())
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    archon_core::model::units::parse_bytes(s).map_err(|e| e.to_string())
}

/// Parses `key=value` (flags such as `--label`); the key must not be empty.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}
