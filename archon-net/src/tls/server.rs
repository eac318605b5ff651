//! The listener's side: [`ServerTls`] (a manager's certificate and the CA its
//! clients' certificates must come from) and [`incoming`], the stream of
//! accepted connections tonic serves.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use archon_core::auth::{Peer, Role};
use futures::Stream;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::{Reloading, TlsError, TlsFiles, identity_of, provider};

/// How long a client may take over its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections accepted but not yet taken by the server.
const BACKLOG: usize = 256;

/// Whether a connection must show a client certificate in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCerts {
    /// Always (the default): nothing without a certificate of the cluster CA
    /// gets past the handshake.
    #[default]
    Required,
    /// A browser may connect without one, to reach the dashboard and REST API
    /// with a token; gRPC still needs a certificate, checked per call. A
    /// certificate shown must still be the cluster CA's.
    OptionalForBrowsers,
}

/// A manager's TLS: its certificate, the cluster CA and the client policy,
/// reloaded when the files change (see [`Reloading::watch`]).
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<Reloading<ServerConfig>>,
}

impl ServerTls {
    /// Loads a manager's files; its certificate must state the manager role.
    pub fn load(files: TlsFiles, client_certs: ClientCerts) -> Result<ServerTls, TlsError> {
        let build = match client_certs {
            ClientCerts::Required => build_required,
            ClientCerts::OptionalForBrowsers => build_optional,
        };
        Ok(ServerTls { config: Arc::new(Reloading::new(files, build, "server")?) })
    }

    /// The reloadable configuration (to [`Reloading::watch`] or reload it).
    pub fn reloading(&self) -> &Arc<Reloading<ServerConfig>> {
        &self.config
    }
}

fn build_required(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    build(files, ClientCerts::Required)
}

fn build_optional(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    build(files, ClientCerts::OptionalForBrowsers)
}

fn build(files: &TlsFiles, client_certs: ClientCerts) -> Result<ServerConfig, TlsError> {
    let material = files.load(&[Role::Manager])?;
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(material.roots, provider.clone());
    let verifier = match client_certs {
        ClientCerts::Required => verifier,
        ClientCerts::OptionalForBrowsers => verifier.allow_unauthenticated(),
    }
    .build()
    .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.chain, material.key)
        .map_err(|e| TlsError::file("key", &files.key, format!("does not go with the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// An accepted connection: TLS, or plaintext where no TLS is configured.
#[derive(Debug)]
pub enum Conn {
    /// Plaintext.
    Plain(TcpStream, Peer),
    /// TLS, handshake done.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, Peer),
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        match self {
            Conn::Plain(_, peer) | Conn::Tls(_, peer) => peer.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s, _) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }
}

/// The connections `listener` accepts, handshaken with `tls` when given. Each
/// handshake runs in its own task with [`HANDSHAKE_TIMEOUT`]; one that fails
/// (plaintext, TLS 1.2, a certificate of another CA or expired, none where one
/// is required) is logged and dropped, and never reaches the server. Ends when
/// the stream is dropped; the receiver returned with it hears once the
/// listener is closed (its port free to bind again).
pub fn incoming(
    listener: TcpListener,
    tls: Option<ServerTls>,
) -> (impl Stream<Item = Result<Conn, io::Error>> + Send + 'static, oneshot::Receiver<()>) {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let (closed_tx, closed) = oneshot::channel();
    tokio::spawn(async move {
        accept(&listener, tls, tx).await;
        // The port is closed before whoever waits on `closed` hears of it.
        drop(listener);
        let _ = closed_tx.send(());
    });
    (ReceiverStream::new(rx), closed)
}

/// Accepts connections on `listener` until the stream's receiver is gone.
async fn accept(listener: &TcpListener, tls: Option<ServerTls>, tx: mpsc::Sender<Result<Conn, io::Error>>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tx.closed() => return,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: pause rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match &tls {
            None => {
                let peer = Peer { addr: Some(addr), identity: None, tls: false };
                if tx.send(Ok(Conn::Plain(stream, peer))).await.is_err() {
                    return;
                }
            }
            Some(tls) => {
                let config = tls.config.current();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(conn) = handshake(stream, addr, config).await {
                        let _ = tx.send(Ok(conn)).await;
                    }
                });
            }
        }
    }
}

async fn handshake(stream: TcpStream, addr: SocketAddr, config: Arc<ServerConfig>) -> Option<Conn> {
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_rustls::TlsAcceptor::from(config).accept(stream));
    match accepted.await {
        Ok(Ok(tls)) => {
            let identity = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(identity_of);
            Some(Conn::Tls(Box::new(tls), Peer { addr: Some(addr), identity, tls: true }))
        }
        Ok(Err(e)) => {
            tracing::info!(peer = %addr, error = %e, "refused a connection in its TLS handshake");
            None
        }
        Err(_) => {
            tracing::info!(peer = %addr, timeout = ?HANDSHAKE_TIMEOUT, "refused a connection: no TLS handshake in time");
            None
        }
    }
}
