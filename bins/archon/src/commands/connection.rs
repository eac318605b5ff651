//! Where the CLI's calls go and how: the managers, plaintext or TLS with a
//! client certificate, and the token — from flags and `ARCHON_*` variables,
//! then the settings file ([`crate::settings`]), then the default
//! (`http://127.0.0.1:50051`, plaintext). The file's CA, certificate and token
//! go only to the file's server: `--server` naming another cluster does not
//! take them along.

use std::sync::{Arc, OnceLock};

use archon_core::api::Api;
use archon_core::auth::Role;
use archon_net::GrpcClient;
use archon_net::tls::{Dialer, TlsFiles};

use crate::cli::Cli;

/// The default manager address.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// How this invocation dials, set once by [`resolve`].
static DIALER: OnceLock<Dialer> = OnceLock::new();

/// The managers to call, with how to reach them set for [`connect`].
pub(crate) fn resolve(cli: &Cli) -> anyhow::Result<String> {
    let mut settings = crate::settings::load(&crate::settings::path())?;
    let given = cli.server.clone().filter(|s| !s.trim().is_empty());
    if given.is_some() && given != settings.server {
        settings = crate::settings::Settings::default();
    }
    let server = given.or(settings.server).unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let path = |p: &Option<std::path::PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    let ca = path(&cli.ca).or(settings.ca);
    let cert = path(&cli.cert).or(settings.cert);
    let key = path(&cli.key).or(settings.key);
    let token = cli.token.clone().filter(|t| !t.trim().is_empty()).or(settings.token);
    let mut dialer = match (ca, cert, key) {
        (None, None, None) => Dialer::plain(),
        (Some(ca), Some(cert), Some(key)) => {
            Dialer::tls(crate::security::client_tls(TlsFiles { ca, cert, key }, Role::Client)?)
        }
        _ => anyhow::bail!(super::bad("--ca, --cert and --key: give all three (or none, for plaintext)")),
    };
    if let Some(token) = token {
        dialer = dialer.with_token(&token)?;
    }
    let _ = DIALER.set(dialer);
    Ok(server)
}

/// How calls dial: as [`resolve`] set it, else plaintext.
pub(crate) fn dialer() -> Dialer {
    DIALER.get().cloned().unwrap_or_default()
}

/// Connects to the managers `server` lists (comma-separated); calls follow the leader.
pub(crate) async fn connect(server: &str) -> anyhow::Result<Arc<dyn Api>> {
    Ok(Arc::new(GrpcClient::connect_with(&split_servers(server), dialer()).await?))
}

/// The addresses of a comma-separated list.
pub(crate) fn split_servers(server: &str) -> Vec<String> {
    server.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}
