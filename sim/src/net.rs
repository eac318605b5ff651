//! Archon's gRPC over turmoil's simulated TCP: [`SimConnect`] is the
//! [`Connect`] every dialer in the simulation uses (API client, worker
//! transport, Raft peers), and [`incoming`] the stream of connections a
//! manager's server takes from a turmoil listener. Every connection can be
//! reset by a fault ([`reset_between`]), on both ends at once.
//!
//! The one thing to know: turmoil resolves host names itself, so addresses are
//! `HOSTNAME:PORT` (`manager-1:50051`) and nothing here touches the OS network.
//! turmoil's TCP never retransmits: a segment it drops leaves its connection
//! stalled forever, which real TCP never does. So message loss is simulated as
//! real TCP turns it into — delay while the loss lasts ([`turmoil::Sim::hold`]),
//! then, when it lasted longer than TCP keeps trying, a reset connection.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

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
            let stream = Resettable::new(TcpStream::connect((host.as_str(), port)).await?)?;
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
    stream: Resettable,
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
                match Resettable::new(stream) {
                    Ok(stream) => Some((Ok(SimConn { stream, peer }), Some(listener))),
                    Err(e) => Some((Err(e), Some(listener))),
                }
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Where `host` serves, for logs.
pub fn address_of(host: &str) -> SocketAddr {
    SocketAddr::new(turmoil::lookup(host), MANAGER_PORT)
}

thread_local! {
    /// The open connections of the simulation stepping on this thread (turmoil
    /// runs every host on the thread that steps it), by the hosts they join.
    static OPEN: RefCell<Vec<Registered>> = const { RefCell::new(Vec::new()) };
}

struct Registered {
    hosts: (IpAddr, IpAddr),
    fuse: Weak<Mutex<Fuse>>,
}

/// Whether a connection was reset, and who waits on it.
#[derive(Debug, Default)]
struct Fuse {
    blown: bool,
    waiting: Vec<Waker>,
}

fn ordered(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

/// Resets every open connection between hosts `a` and `b`: from now on each
/// read and write on either end fails with `ConnectionReset`. Returns how many.
pub fn reset_between(a: IpAddr, b: IpAddr) -> usize {
    let hosts = ordered(a, b);
    OPEN.with_borrow_mut(|open| {
        open.retain(|r| r.fuse.strong_count() > 0);
        let mut reset = 0;
        for fuse in open.iter().filter(|r| r.hosts == hosts).filter_map(|r| r.fuse.upgrade()) {
            let mut fuse = fuse.lock().unwrap_or_else(PoisonError::into_inner);
            if !fuse.blown {
                fuse.blown = true;
                reset += 1;
                fuse.waiting.drain(..).for_each(Waker::wake);
            }
        }
        reset
    })
}

/// Forgets the connections of an earlier simulation on this thread.
pub fn forget_connections() {
    OPEN.with_borrow_mut(Vec::clear);
}

/// A turmoil TCP stream that [`reset_between`] can reset.
#[derive(Debug)]
pub struct Resettable {
    stream: TcpStream,
    fuse: Arc<Mutex<Fuse>>,
}

impl Resettable {
    fn new(stream: TcpStream) -> io::Result<Resettable> {
        let hosts = ordered(stream.local_addr()?.ip(), stream.peer_addr()?.ip());
        let fuse = Arc::new(Mutex::new(Fuse::default()));
        OPEN.with_borrow_mut(|open| open.push(Registered { hosts, fuse: Arc::downgrade(&fuse) }));
        Ok(Resettable { stream, fuse })
    }

    /// `Err` once reset; else remembers who polls, to wake it on a reset.
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        let mut fuse = self.fuse.lock().unwrap_or_else(PoisonError::into_inner);
        if fuse.blown {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset by a simulated fault"));
        }
        if !fuse.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            fuse.waiting.push(cx.waker().clone());
        }
        Ok(())
    }
}

impl AsyncRead for Resettable {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resettable {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
