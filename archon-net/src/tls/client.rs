//! The dialer's side: [`ClientTls`] (this member's certificate, and the CA the
//! manager's must come from) and [`Dialer`], how every gRPC client here opens
//! its connections and says who it is. A dialer opens TCP connections unless
//! given a [`Connect`] of the embedder's own (a simulated network).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use archon_core::auth::Role;
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Reloading, TlsError, TlsFiles, identity_of, provider};

/// A member's client TLS: its certificate (of `role`) and the cluster CA,
/// reloaded when the files change (see [`Reloading::watch`]).
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<Reloading<ClientConfig>>,
}

impl ClientTls {
    /// Loads the files of a member whose certificate states `role` (a client may
    /// also use a manager's certificate: an operator on a manager's host).
    pub fn load(files: TlsFiles, role: Role) -> Result<ClientTls, TlsError> {
        let build = match role {
            Role::Manager => build_as_manager,
            Role::Worker => build_as_worker,
            Role::Client => build_as_client,
        };
        Ok(ClientTls { config: Arc::new(Reloading::new(files, build, "client")?) })
    }

    /// The reloadable configuration (to [`Reloading::watch`] or reload it).
    pub fn reloading(&self) -> &Arc<Reloading<ClientConfig>> {
        &self.config
    }
}

fn build_as_manager(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    build(files, Role::Manager)
}

fn build_as_worker(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    build(files, Role::Worker)
}

fn build_as_client(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    build(files, Role::Client)
}

fn build(files: &TlsFiles, role: Role) -> Result<ClientConfig, TlsError> {
    let roles: &[Role] = match role {
        Role::Client => &[Role::Client, Role::Manager],
        Role::Manager => &[Role::Manager],
        Role::Worker => &[Role::Worker],
    };
    let material = files.load(roles)?;
    let provider = provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(material.roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Config(format!("server certificate verifier: {e}")))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ManagerOnly { webpki }))
        .with_client_auth_cert(material.chain, material.key)
        .map_err(|e| TlsError::file("key", &files.key, format!("does not go with the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The web PKI's checks (chain to the cluster CA, validity, the host name or
/// address dialled), and then that the certificate is a manager's: a worker or
/// client certificate of the same CA cannot pose as a manager.
#[derive(Debug)]
struct ManagerOnly {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ManagerOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        match identity_of(end_entity) {
            Some(identity) if identity.role == Role::Manager => Ok(verified),
            Some(identity) => Err(rustls::Error::General(format!(
                "the server's certificate is a {} certificate ({}), not a manager's",
                identity.role, identity.name
            ))),
            None => Err(rustls::Error::General("the server's certificate states no role".into())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A byte stream a connection runs over, when it is not a TCP stream of the OS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// What a [`Connect`] returns: the stream once it is open.
pub type Connecting = Pin<Box<dyn Future<Output = io::Result<Box<dyn Io>>> + Send>>;

/// Opens connections for a [`Dialer`] instead of the OS's TCP: a simulation
/// gives one over its own network (turmoil's `TcpStream`). TLS, when the dialer
/// has it, runs over what this opens.
pub trait Connect: Send + Sync + std::fmt::Debug + 'static {
    /// Opens a stream to `host`:`port`.
    fn connect(&self, host: &str, port: u16) -> Connecting;
}

/// How a gRPC client reaches managers: plaintext or [`ClientTls`], the bearer
/// token it sends with every call, if any, and over what it connects (TCP
/// unless [`Dialer::with_connector`]). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    tls: Option<ClientTls>,
    token: Option<MetadataValue<Ascii>>,
    connect: Option<Arc<dyn Connect>>,
}

impl Dialer {
    /// Plaintext, no token: for a cluster without TLS (loopback, tests).
    pub fn plain() -> Dialer {
        Dialer::default()
    }

    /// Over `tls`.
    pub fn tls(tls: ClientTls) -> Dialer {
        Dialer { tls: Some(tls), token: None, connect: None }
    }

    /// Opens its connections with `connect` instead of the OS's TCP.
    pub fn with_connector(mut self, connect: Arc<dyn Connect>) -> Dialer {
        self.connect = Some(connect);
        self
    }

    /// Sends `token` (`archon_…`) as the bearer of every call.
    pub fn with_token(mut self, token: &str) -> Result<Dialer, archon_core::Error> {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| archon_core::Error::invalid("token", "is not a token (archon_<id>_<secret>)"))?;
        self.token = Some(value);
        Ok(self)
    }

    /// Whether it speaks TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Its client TLS, if any.
    pub fn client_tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// The tonic endpoint of `address` (`HOST:PORT`, `http://HOST:PORT` or
    /// `https://HOST:PORT`; TLS is this dialer's choice, not the scheme's).
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, archon_core::Error> {
        let trimmed = address.trim();
        let bare = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://")).unwrap_or(trimmed);
        Endpoint::from_shared(format!("http://{bare}")).map_err(|e| {
            archon_core::Error::invalid(
                "endpoint",
                format!("{address:?} is not an address (try 127.0.0.1:50051 or https://manager-1:50051): {e}"),
            )
        })
    }

    /// Connects `endpoint` now.
    pub async fn connect(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        endpoint.connect_with_connector(self.connector()).await
    }

    /// A channel to `endpoint` that connects on first use (and again after a break).
    pub fn connect_lazy(&self, endpoint: Endpoint) -> Channel {
        endpoint.connect_with_connector_lazy(self.connector())
    }

    /// What adds the bearer token to each call.
    pub fn bearer(&self) -> Bearer {
        Bearer { token: self.token.clone() }
    }

    fn connector(&self) -> Connector {
        Connector { tls: self.tls.clone(), connect: self.connect.clone() }
    }
}

/// Adds `authorization: Bearer …` to each call when a token is set.
#[derive(Debug, Clone, Default)]
pub struct Bearer {
    token: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.token {
            request.metadata_mut().insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// Opens TCP connections (or the given [`Connect`]'s), and TLS over them when configured.
#[derive(Debug, Clone)]
struct Connector {
    tls: Option<ClientTls>,
    connect: Option<Arc<dyn Connect>>,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<ClientIo>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.tls.as_ref().map(|t| t.config.current());
        let connect = self.connect.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(80);
            if let Some(connect) = connect {
                let stream = connect.connect(&host, port).await?;
                let Some(config) = config else { return Ok(TokioIo::new(ClientIo::Other(stream))) };
                let tls = tokio_rustls::TlsConnector::from(config).connect(server_name(&host)?, stream).await?;
                return Ok(TokioIo::new(ClientIo::Other(Box::new(tls))));
            }
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let Some(config) = config else { return Ok(TokioIo::new(ClientIo::Plain(tcp))) };
            let tls = tokio_rustls::TlsConnector::from(config).connect(server_name(&host)?, tcp).await?;
            Ok(TokioIo::new(ClientIo::Tls(Box::new(tls))))
        })
    }
}

/// The name a server's certificate must show for `host`.
fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))
}

/// A dialled connection.
#[derive(Debug)]
pub enum ClientIo {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Opened by a [`Connect`] (with TLS inside it when the dialer has TLS).
    Other(Box<dyn Io>),
}

impl std::fmt::Debug for dyn Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Io")
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientIo::Other(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientIo::Other(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientIo::Other(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            ClientIo::Other(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
