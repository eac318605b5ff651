//! Mutual TLS between every member of a cluster, with rustls and its `ring`
//! provider. **TLS 1.3 only**, and both ends show a certificate of the cluster
//! CA (made by `archon certs`): a manager's server certificate to everyone that
//! connects, and each client's — a manager's, worker's or client's — to the
//! manager, which reads its role from the certificate's URI SAN
//! (`urn:archon:role:worker`) and its name from its common name
//! ([`identity_of`]).
//!
//! - [`ServerTls`] is a listener's side: [`incoming`] accepts connections,
//!   handshakes each in its own task (a slow client holds up no one) and hands
//!   tonic a [`Conn`] whose [`Peer`] every request carries in its extensions.
//! - [`ClientTls`] is a dialer's side, used through a [`Dialer`], which every
//!   gRPC client here (API client, worker transport, Raft peers) connects with;
//!   it also checks that the server's certificate is a manager's. A dialer
//!   connects over TCP unless given a [`Connect`] (a simulated network).
//!
//! Both reload their files on SIGHUP and when a file changes
//! ([`Reloading::watch`]), without a restart: new connections use the new
//! certificate, open ones keep theirs. A reload that fails (a half-written
//! file) keeps the previous configuration and logs why.

mod client;
mod server;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use archon_core::auth::{Identity, Role};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

pub use client::{Bearer, ClientIo, ClientTls, Connect, Connecting, Dialer, Io};
pub use server::{ClientCerts, Conn, HANDSHAKE_TIMEOUT, ServerTls, incoming};

pub use archon_core::auth::Peer;

/// How often a watched certificate's files are checked for a change.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Where a member's TLS material is: the cluster CA's certificate, and its own
/// certificate and private key (PEM files, as `archon certs` writes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA's certificate (`ca.pem`).
    pub ca: PathBuf,
    /// This member's certificate (`NAME.pem`).
    pub cert: PathBuf,
    /// This member's private key (`NAME.key`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files of member `name` in a directory `archon certs` wrote.
    pub fn in_dir(dir: &Path, name: &str) -> TlsFiles {
        TlsFiles { ca: dir.join("ca.pem"), cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) }
    }

    /// When each file last changed, to notice a rotation.
    fn stamps(&self) -> [Option<SystemTime>; 3] {
        [&self.ca, &self.cert, &self.key].map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    }

    /// Reads the three files, checking this member's certificate states one of `roles`.
    fn load(&self, roles: &[Role]) -> Result<Material, TlsError> {
        let ca = read_certs(&self.ca, "ca")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in &ca {
            roots.add(cert.clone()).map_err(|e| TlsError::file("ca", &self.ca, format!("not a usable CA: {e}")))?;
        }
        let chain = read_certs(&self.cert, "cert")?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| TlsError::file("key", &self.key, format!("no private key in it: {e}")))?;
        let own = chain.first().and_then(|c| identity_of(c));
        match own {
            Some(identity) if roles.contains(&identity.role) => {}
            Some(identity) => {
                let wanted: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                return Err(TlsError::file(
                    "cert",
                    &self.cert,
                    format!(
                        "is a {} certificate; this needs a {} certificate (archon certs issue {} NAME)",
                        identity.role,
                        wanted.join(" or "),
                        wanted.first().copied().unwrap_or("client")
                    ),
                ));
            }
            None => {
                return Err(TlsError::file(
                    "cert",
                    &self.cert,
                    "states no role (urn:archon:role:…); issue it with `archon certs issue`",
                ));
            }
        }
        Ok(Material { roots: Arc::new(roots), chain, key })
    }
}

/// What was read from a member's files.
struct Material {
    roots: Arc<rustls::RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn read_certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::file(field, path, format!("cannot read certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::file(field, path, "holds no certificate (PEM, -----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

/// What went wrong setting TLS up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// A file is missing or not what it should be.
    #[error("{field}: {path}: {message}")]
    File {
        /// The setting naming the file (`ca`, `cert`, `key`).
        field: String,
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the material.
    #[error("TLS: {0}")]
    Config(String),
}

impl TlsError {
    fn file(field: &str, path: &Path, message: impl Into<String>) -> TlsError {
        TlsError::File { field: field.into(), path: path.display().to_string(), message: message.into() }
    }
}

impl From<TlsError> for archon_core::Error {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::File { field, path, message } => {
                archon_core::Error::InvalidArgument { field, message: format!("{path}: {message}") }
            }
            TlsError::Config(m) => archon_core::Error::InvalidArgument { field: "tls".into(), message: m },
        }
    }
}

/// The `ring` provider, for TLS 1.3 only (its 1.2 suites would never be used).
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(|s| s.version() == &rustls::version::TLS13);
    Arc::new(provider)
}

/// The identity a certificate states: its role (URI SAN `urn:archon:role:…`)
/// and name (common name). `None` when it states no role or does not parse.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<Identity> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    let sans = parsed.subject_alternative_name().ok()??;
    let role = sans.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(uri) => Role::from_uri(uri),
        _ => None,
    })?;
    Some(Identity { role, name })
}

/// A configuration built from files, rebuilt when they change.
#[derive(Debug)]
pub struct Reloading<C> {
    files: TlsFiles,
    current: RwLock<(Arc<C>, [Option<SystemTime>; 3])>,
    build: fn(&TlsFiles) -> Result<C, TlsError>,
    what: &'static str,
}

impl<C: Send + Sync + 'static> Reloading<C> {
    fn new(files: TlsFiles, build: fn(&TlsFiles) -> Result<C, TlsError>, what: &'static str) -> Result<Self, TlsError> {
        let stamps = files.stamps();
        let config = build(&files)?;
        Ok(Reloading { files, current: RwLock::new((Arc::new(config), stamps)), build, what })
    }

    /// The configuration new connections use.
    pub fn current(&self) -> Arc<C> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).0.clone()
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again; on failure keeps the configuration it had.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = self.files.stamps();
        let config = (self.build)(&self.files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = (Arc::new(config), stamps);
        Ok(())
    }

    fn changed(&self) -> bool {
        self.current.read().unwrap_or_else(PoisonError::into_inner).1 != self.files.stamps()
    }

    /// Reloads on SIGHUP and whenever a file changes (checked every
    /// [`WATCH_EVERY`]), until `stop` fires.
    pub fn watch(self: &Arc<Self>, stop: CancellationToken) {
        let this = self.clone();
        // Registered now, so a SIGHUP right after this returns is caught, not fatal.
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        tokio::spawn(async move {
            loop {
                let hangup = async {
                    match hangups.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let why = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = hangup => "SIGHUP",
                    _ = tokio::time::sleep(WATCH_EVERY) => {
                        if !this.changed() {
                            continue;
                        }
                        "a file changed"
                    }
                };
                match this.reload() {
                    Ok(()) => {
                        tracing::info!(what = this.what, cert = %this.files.cert.display(), why, "TLS certificates reloaded")
                    }
                    Err(e) => {
                        tracing::warn!(what = this.what, error = %e, why, "TLS certificates not reloaded; keeping the previous ones")
                    }
                }
            }
        });
    }
}
