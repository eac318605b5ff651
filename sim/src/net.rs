//! Archon's gRPC over turmoil's simulated TCP: [`SimConnect`] is the
//! [`Connect`] every dialer in the simulation uses (API client, worker
//! transport, Raft peers), and [`incoming`] the stream of connections a
//! manager's server takes from a turmoil listener.
//!
//! The one thing to know: turmoil resolves host names itself, so addresses are
//! `HOSTNAME:PORT` (`manager-1:50051`) and nothing here touches the OS network.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use archon_core::auth::Peer;
use archon_net::tls::{Connect, Connecting, Io};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use turmoil::net::{TcpListener, TcpStream};

/// The port every manager serves on.
pub const MANAGER_PORT: u16 = 50051;

/// Opens connections over turmoil's network.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimConnect;

impl Connect for SimConnect {
    fn connect(&self, host: &str, port: u16) -> Connecting {
        let host = host.to_owned();
        Box::pin(async move {
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    }
}

/// Binds a manager's listener on this host.
pub async fn bind() -> io::Result<TcpListener> {
    TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), MANAGER_PORT)).await
}

/// An accepted connection, with the peer address the server's requests carry.
#[derive(Debug)]
pub struct SimConn {
    stream: TcpStream,
    peer: Peer,
}

impl Connected for SimConn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for SimConn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The connections `listener` accepts, as tonic serves them. Ends at the first
/// accept error (the host is going down).
pub fn incoming(listener: TcpListener) -> impl Stream<Item = io::Result<SimConn>> + Send + 'static {
    futures::stream::unfold(Some(listener), |listener| async move {
        let listener = listener?;
        match listener.accept().await {
            Ok((stream, addr)) => {
                let peer = Peer { addr: Some(addr), identity: None, tls: false };
                Some((Ok(SimConn { stream, peer }), Some(listener)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Where `host` serves, for logs.
pub fn address_of(host: &str) -> SocketAddr {
    SocketAddr::new(turmoil::lookup(host), MANAGER_PORT)
}
