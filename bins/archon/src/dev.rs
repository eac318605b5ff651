//! `archon dev`: a whole cluster in one process — a manager on a durable
//! single-node Raft store in the data dir, one local worker running shell, script,
//! process and (when the machine has a Docker engine) Docker jobs, composed by
//! [`archon::Builder`] as an embedding program does, and the gRPC API. On shutdown the worker kills what it runs
//! before the manager stops; after a crash, a restart finds every acknowledged job.
//!
//! Secure by default: on first start it makes a cluster CA and certificates in
//! `DATA_DIR/certs` (the manager's again at every start, for the address it
//! listens on), serves TLS 1.3 with client certificates and tokens, creates an
//! admin token, and writes the CLI's settings file ([`crate::settings`]) so
//! `archon` finds the server, CA, client certificate and token with no flags.
//! `--insecure` serves plaintext without tokens instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use archon_core::api::Api;
use archon_core::executor::ExecutorRegistry;
use archon_core::manager::{Manager, ManagerConfig};
use archon_core::metrics::Metrics;
use archon_core::model::Resources;
use tokio_util::sync::CancellationToken;

/// What `archon dev` runs.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// Where the gRPC API listens.
    pub listen: SocketAddr,
    /// The local worker's name.
    pub worker_name: String,
    /// What the local worker offers.
    pub capacity: Resources,
    /// The local worker's labels.
    pub labels: BTreeMap<String, String>,
    /// How many assigned jobs the local worker holds queued beyond what fits.
    pub queue: u32,
    /// Where the cluster's state lives (and the worker's, whatever the store).
    pub data_dir: std::path::PathBuf,
    /// `postgres://…` keeps the state in PostgreSQL instead of a Raft log in the data dir.
    pub store: Option<String>,
    /// History retention, idempotency window, kept output and input limits.
    pub keeping: crate::daemon::keeping::Keeping,
    /// Plaintext without tokens.
    pub insecure: bool,
    /// Where to write the CLI's settings (default [`crate::settings::path`]).
    pub cli_config: Option<std::path::PathBuf>,
}

impl DevConfig {
    /// Defaults: 127.0.0.1:50051, the whole machine for the worker.
    pub fn new(listen: SocketAddr) -> DevConfig {
        DevConfig {
            listen,
            worker_name: format!("dev-{}", crate::host::hostname()),
            capacity: crate::host::capacity(),
            labels: BTreeMap::new(),
            queue: archon_core::worker::DEFAULT_QUEUE,
            data_dir: crate::replicated::default_data_dir("dev"),
            store: None,
            keeping: crate::daemon::keeping::Keeping::default(),
            insecure: false,
            cli_config: None,
        }
    }
}

/// Runs the single-process cluster until `shutdown` fires. `executors` are what
/// the local worker can run besides the built-in functions (see
/// [`crate::executors`]); with the `ledger` they note process groups in, a lease
/// keeper kills them if the process freezes.
pub async fn run(
    config: DevConfig,
    executors: ExecutorRegistry,
    ledger: Option<Arc<archon_exec::ProcessLedger>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if config.insecure {
        crate::security::check_exposure(config.listen, false, true, "--listen")?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {}", config.listen))?;
    let address = listener.local_addr().context("listener address")?;
    let serving = if config.insecure {
        crate::security::Serving::default()
    } else {
        let files = dev_certificates(&config.data_dir.join("certs"), address)?;
        crate::security::Serving::secured(files, true, &shutdown)?
    };

    let advertised = format!("{}://{address}", serving.scheme());
    // One registry for the whole process: manager, store, worker and servers.
    let metrics = Metrics::new();
    let mut builder = archon::Archon::embedded()
        .address(advertised.clone())
        .dialer(serving.dialer.clone())
        .metrics(metrics.clone())
        .manager_config(config.keeping.configure(ManagerConfig::default()))
        .worker_name(config.worker_name.clone())
        .capacity(config.capacity.clone())
        .queue(config.queue)
        .executors(executors)
        .functions(crate::executors::builtins())
        .stop_on(shutdown.clone());
    for (key, value) in &config.labels {
        builder = builder.label(key, value);
    }
    if let Some(ledger) = ledger {
        builder = builder.ledger(ledger);
    }
    builder = match &config.store {
        Some(url) => builder.postgres(url),
        None => {
            println!("Archon dev keeps its state in {}", config.data_dir.display());
            let mut options = crate::replicated::StoreOptions::new(config.data_dir.clone());
            options.max_entry_bytes = config.keeping.max_entry_bytes;
            options.heartbeat = config.keeping.raft_heartbeat;
            options.election_timeout = config.keeping.election_timeout;
            builder.raft(options)
        }
    };
    let archon = match builder.start().await {
        Ok(archon) => archon,
        Err(archon::Error::Stopped) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let manager = archon.manager().clone();

    println!("Archon dev cluster: manager + worker {:?} ({})", config.worker_name, config.capacity);
    let scheme = serving.scheme();
    if serving.secure() {
        let settings = config.cli_config.clone().unwrap_or_else(crate::settings::path);
        admin_settings(&manager, &settings, &advertised, &config.data_dir.join("certs")).await?;
        println!(
            "secured: TLS 1.3 with client certificates (CA {}), tokens required; the CLI's settings and admin \
             token are in {}",
            config.data_dir.join("certs").join("ca.pem").display(),
            settings.display()
        );
        println!(
            "in a browser, trust or accept the dev CA, then sign in with the token from that file (or make one: \
             archon token create --name me --scope operate)"
        );
    } else {
        println!("insecure: plaintext, no tokens (--insecure)");
    }
    println!("gRPC API listening on {scheme}://{address}");
    println!("{}", crate::serving::describe_with(address, scheme));
    println!("Try: archon submit --wait --command 'echo hello from archon'");

    // The same server as archon-manager: the API and worker sessions on one port,
    // so `archon-worker --manager <this address>` can join a dev cluster too.
    let mut routes = archon_net::manager_routes(manager.clone(), &shutdown);
    if let Some(raft) = archon.raft() {
        routes = routes.add_service(archon_raft::service::raft_service(raft.raft().clone()));
    }
    let routes = crate::serving::secured(routes, manager, Some(metrics), &serving, &shutdown);
    let served =
        archon_net::serve_routes_tls(listener, serving.tls.clone(), routes, shutdown.clone(), "the gRPC and REST APIs")
            .await;

    // The worker first: it kills running attempts (whole process trees).
    archon.shutdown().await?;
    served.context("gRPC server")?;
    println!("Archon dev cluster stopped.");
    Ok(())
}

/// The dev cluster's certificates in `dir`: the CA and the `dev-admin` client
/// certificate made once; the manager's (`dev-manager`) made again at every
/// start, for `localhost`, the loopback addresses and the address it listens on.
fn dev_certificates(dir: &std::path::Path, listen: SocketAddr) -> anyhow::Result<archon_net::tls::TlsFiles> {
    use crate::certs::{self, Role};
    if !dir.join("ca.pem").exists() {
        certs::init(dir, "archon-dev", certs::CA_DAYS, false)?;
    }
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if !listen.ip().is_unspecified() {
        sans.push(listen.ip().to_string());
    }
    certs::issue(dir, Role::Manager, "dev-manager", &sans, certs::LEAF_DAYS, true)?;
    if !dir.join("dev-admin.pem").exists() {
        certs::issue(dir, Role::Client, "dev-admin", &[], certs::LEAF_DAYS, false)?;
    }
    Ok(archon_net::tls::TlsFiles::in_dir(dir, "dev-manager"))
}

/// Makes sure the CLI's settings at `path` reach this cluster: its address, CA
/// and client certificate, and an admin token that works — a new one when the
/// file has none this cluster accepts.
async fn admin_settings(
    manager: &Manager,
    path: &std::path::Path,
    address: &str,
    certs: &std::path::Path,
) -> anyhow::Result<()> {
    use archon_core::auth::{Authenticator, Scope, TokenSpec};
    let mut settings = crate::settings::load(path).unwrap_or_default();
    let works = settings.token.as_deref().is_some_and(|t| manager.authenticate(t).is_ok());
    if !works {
        let spec = TokenSpec {
            name: "archon dev admin".into(),
            scopes: std::collections::BTreeSet::from([Scope::Admin]),
            ttl: None,
        };
        settings.token = Some(manager.create_token(spec).await?.token);
    }
    settings.server = Some(address.to_owned());
    settings.ca = Some(certs.join("ca.pem"));
    settings.cert = Some(certs.join("dev-admin.pem"));
    settings.key = Some(certs.join("dev-admin.key"));
    crate::settings::save(path, &settings)
}
