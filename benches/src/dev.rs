//! `archon dev` as a child process, the way a user runs it: secured by default
//! (it makes its CA and certificates, serves TLS 1.3 with client certificates,
//! creates an admin token and writes the CLI's settings file, which is where the
//! clients here find the CA, a client certificate and the token), or
//! `--insecure`; on its embedded Raft store or on PostgreSQL (`--store`). What to
//! know: its data dir is a fresh temporary one, removed with the handle, and the
//! process is killed when the handle is dropped.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use archon_core::api::Api;
use archon_core::auth::Role;
use archon_net::GrpcClient;
use archon_net::tls::{ClientTls, Dialer, TlsFiles};

use crate::Daemon;

/// How to start it.
#[derive(Debug, Clone, Default)]
pub struct DevOptions {
    /// `--insecure`: plaintext, no tokens.
    pub insecure: bool,
    /// `--store URL`: PostgreSQL instead of the Raft log in the data dir.
    pub store: Option<String>,
}

/// A running `archon dev` and how to reach it.
pub struct Dev {
    /// The process, with the address it printed (`https://127.0.0.1:PORT`).
    pub daemon: Daemon,
    /// How its clients dial: TLS with the settings file's client certificate and
    /// token, or plaintext.
    pub dialer: Dialer,
    /// The settings file it wrote (`server`, `ca`, `cert`, `key`, `token`).
    pub settings: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Dev {
    /// Starts `bin dev` (the `archon` binary) on a loopback port with a worker
    /// offering a huge capacity, and reads its settings file when secured.
    pub async fn start(bin: &Path, options: &DevOptions) -> anyhow::Result<Dev> {
        let dir = tempfile::Builder::new().prefix("archon-dev-").tempdir()?;
        let settings = dir.path().join("cli.toml");
        let mut args: Vec<String> = ["dev", "--listen", "127.0.0.1:0", "--no-docker", "--cpu", "1000000", "--memory"]
            .into_iter()
            .map(String::from)
            .collect();
        args.push("1TiB".into());
        args.extend(["--data-dir".into(), dir.path().join("data").display().to_string()]);
        args.extend(["--cli-config".into(), settings.display().to_string()]);
        if options.insecure {
            args.push("--insecure".into());
        }
        if let Some(url) = &options.store {
            args.extend(["--store".into(), url.clone()]);
        }
        let daemon = Daemon::spawn(bin, &args, "gRPC API listening on ").await?;
        let dialer = if options.insecure { Dialer::plain() } else { dialer_from_settings(&settings)? };
        Ok(Dev { daemon, dialer, settings, dir })
    }

    /// A new connection to it (a client of its own).
    pub async fn client(&self) -> anyhow::Result<Arc<dyn Api>> {
        Ok(Arc::new(self.grpc().await?))
    }

    /// [`Dev::client`] as the concrete gRPC client.
    pub async fn grpc(&self) -> anyhow::Result<GrpcClient> {
        let server = std::slice::from_ref(&self.daemon.address);
        Ok(GrpcClient::connect_with(server, self.dialer.clone()).await?)
    }

    /// Kills it and waits until it is gone, then removes its directory (which
    /// dropping the handle does too, without waiting for the process).
    pub async fn stop(mut self) {
        let _ = self.daemon.kill().await;
    }

    /// Its data dir (on the file system its Raft log syncs to).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
}

/// A client's dialer from the CLI settings `archon dev` wrote: TLS with its CA
/// and client certificate, and its admin token.
pub fn dialer_from_settings(path: &Path) -> anyhow::Result<Dialer> {
    let s = archon_cli::settings::load(path)?;
    let files = TlsFiles {
        ca: s.ca.context("no ca in the settings")?,
        cert: s.cert.context("no cert in the settings")?,
        key: s.key.context("no key in the settings")?,
    };
    let tls = ClientTls::load(files, Role::Client)?;
    Ok(Dialer::tls(tls).with_token(&s.token.context("no token in the settings")?)?)
}
