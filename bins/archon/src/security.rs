//! How the daemons and the CLI are secured: the TLS files they are given
//! ([`TlsFlags`]), the rule that nothing listens beyond loopback without TLS
//! and tokens unless told `--insecure` ([`check_exposure`]), and a manager's
//! serving set-up ([`Serving`]): mutual TLS on its port, every gRPC call and
//! HTTP route checked, the certificates reloaded on SIGHUP or change.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use archon_core::auth::{Authenticator, Role};
use archon_net::tls::{ClientCerts, ClientTls, Dialer, ServerTls, TlsFiles};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// A daemon's TLS settings as given (flags, environment or config file keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Deserialize)]
#[serde(default)]
pub struct TlsFlags {
    /// The cluster CA's certificate (ca.pem, from `archon certs init`).
    #[arg(long, env = "ARCHON_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This member's certificate (`archon certs issue manager|worker NAME`).
    #[arg(long, env = "ARCHON_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// This member's private key.
    #[arg(long, env = "ARCHON_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve plaintext without tokens on a non-loopback address: anyone who can
    /// reach the port can run commands on the workers. Logged on every start.
    #[arg(long)]
    #[serde(default)]
    pub insecure: bool,
}

impl TlsFlags {
    /// Later settings (flags) over earlier ones (the file).
    pub fn apply(&mut self, later: &TlsFlags) {
        if later.tls_ca.is_some() {
            self.tls_ca.clone_from(&later.tls_ca);
        }
        if later.tls_cert.is_some() {
            self.tls_cert.clone_from(&later.tls_cert);
        }
        if later.tls_key.is_some() {
            self.tls_key.clone_from(&later.tls_key);
        }
        self.insecure |= later.insecure;
    }

    /// The files, when all three are given; an error naming what is missing
    /// when only some are, or when `--insecure` comes with them.
    pub fn files(&self) -> anyhow::Result<Option<TlsFiles>> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => {
                if self.insecure {
                    anyhow::bail!("insecure: not with tls_ca, tls_cert and tls_key; TLS is either on or off");
                }
                Ok(Some(TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() }))
            }
            _ => anyhow::bail!(
                "tls_ca, tls_cert and tls_key: give all three (from `archon certs`), or none for plaintext on loopback"
            ),
        }
    }
}

/// Refuses plaintext on a non-loopback address unless `insecure`; with
/// `insecure`, warns (on every start, on any address) that the port is open.
pub fn check_exposure(listen: SocketAddr, tls: bool, insecure: bool, flag: &str) -> anyhow::Result<()> {
    if tls {
        return Ok(());
    }
    if insecure {
        // Through the log alone, so a JSON log stays JSON line by line.
        tracing::warn!("--insecure: {listen} serves plaintext without tokens; anyone who reaches it can run jobs");
        return Ok(());
    }
    if listen.ip().is_loopback() {
        return Ok(());
    }
    anyhow::bail!(
        "{flag}: {listen} is reachable beyond this machine, and without TLS and tokens anyone who reaches it can run \
         commands on the workers; give --tls-ca, --tls-cert and --tls-key (see `archon certs`), or --insecure to \
         serve it open anyway"
    )
}

/// A manager's port, secured or not.
#[derive(Debug, Clone, Default)]
pub struct Serving {
    /// The listener's TLS, when on.
    pub tls: Option<ServerTls>,
    /// How this manager dials its peers (Raft) and itself.
    pub dialer: Dialer,
    /// Paths served without a token (e.g. `/metrics`), by explicit config.
    pub open_paths: Vec<String>,
}

impl Serving {
    /// TLS from `files` (the manager's certificate must state the manager role),
    /// reloaded on SIGHUP or change until `shutdown`. `browsers` lets a
    /// connection without a client certificate reach the HTTP routes (with a
    /// token); gRPC always needs one.
    pub fn secured(files: TlsFiles, browsers: bool, shutdown: &CancellationToken) -> anyhow::Result<Serving> {
        let policy = if browsers { ClientCerts::OptionalForBrowsers } else { ClientCerts::Required };
        let tls = ServerTls::load(files.clone(), policy).map_err(|e| anyhow::anyhow!("{e}"))?;
        let client = ClientTls::load(files, Role::Manager).map_err(|e| anyhow::anyhow!("{e}"))?;
        tls.reloading().watch(shutdown.clone());
        client.reloading().watch(shutdown.clone());
        Ok(Serving { tls: Some(tls), dialer: Dialer::tls(client), open_paths: Vec::new() })
    }

    /// Whether TLS and tokens are on.
    pub fn secure(&self) -> bool {
        self.tls.is_some()
    }

    /// The scheme of this port's address.
    pub fn scheme(&self) -> &'static str {
        if self.secure() { "https" } else { "http" }
    }

    /// `routes` guarded, when secured: every gRPC call checked against
    /// `authenticator` (see [`archon_net::guard_routes`]).
    pub fn guard(
        &self,
        routes: tonic::service::Routes,
        authenticator: Arc<dyn Authenticator>,
    ) -> tonic::service::Routes {
        if self.secure() { archon_net::guard_routes(routes, authenticator) } else { routes }
    }

    /// The HTTP routes' authorization, when secured.
    pub fn http_auth(&self, authenticator: Arc<dyn Authenticator>) -> Option<archon_http::HttpAuth> {
        self.secure().then(|| archon_http::HttpAuth { authenticator, open_paths: self.open_paths.clone() })
    }
}

/// The client TLS of a worker or the CLI from `files`.
pub fn client_tls(files: TlsFiles, role: Role) -> anyhow::Result<ClientTls> {
    ClientTls::load(files, role).map_err(|e| anyhow::anyhow!("{e}")).context("TLS")
}
