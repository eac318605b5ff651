//! A TCP proxy between a PgStore and PostgreSQL that can cut connections at the
//! worst moment for a writer: right after it has forwarded a `COMMIT`, before
//! the server's answer reaches the client (or, for contrast, just before it
//! would forward the `COMMIT`).
//!
//! Client→server bytes are read as PostgreSQL's frontend protocol (one untagged
//! startup packet, then messages of a type byte and a big-endian length that
//! counts itself) and forwarded a whole message at a time; server→client bytes
//! pass through untouched. One task serves both directions of a connection, so
//! once it has forwarded the `COMMIT` nothing more goes either way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does with the next `COMMIT` it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Forward it like anything else.
    Forward,
    /// Close that connection (both sides), after forwarding the `COMMIT` or
    /// instead of it.
    CutThatConnection {
        /// Whether the server gets the `COMMIT` first.
        forward: bool,
    },
    /// Forward it, then close every connection and refuse new ones until
    /// [`Proxy::heal`]: the database looks unreachable.
    GoDown,
}

struct Shared {
    upstream: u16,
    plan: Mutex<Plan>,
    refusing: AtomicBool,
    /// Cancelled to close every open connection; replaced after.
    close_all: Mutex<CancellationToken>,
    /// How many connections were cut after a `COMMIT`.
    cuts: watch::Sender<u32>,
}

/// A proxy on a loopback port of its own, to the PostgreSQL server on `upstream`.
pub(crate) struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub(crate) async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port for the proxy");
        let port = listener.local_addr().expect("its address").port();
        let shared = Arc::new(Shared {
            upstream,
            plan: Mutex::new(Plan::Forward),
            refusing: AtomicBool::new(false),
            close_all: Mutex::new(CancellationToken::new()),
            cuts: watch::Sender::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, shared.clone(), stop.clone()));
        Proxy { port, shared, stop }
    }

    /// The URL of `database` on the server, through the proxy.
    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The next `COMMIT` is forwarded and then its connection closed, both ways.
    pub(crate) fn cut_after_next_commit(&self) {
        *self.shared.plan.lock().unwrap() = Plan::CutThatConnection { forward: true };
    }

    /// The connection that sends the next `COMMIT` is closed, both ways, before
    /// the `COMMIT` is forwarded.
    pub(crate) fn cut_before_next_commit(&self) {
        *self.shared.plan.lock().unwrap() = Plan::CutThatConnection { forward: false };
    }

    /// At the next `COMMIT` (forwarded), every connection is closed and new ones
    /// are refused until [`Proxy::heal`].
    pub(crate) fn go_down_at_next_commit(&self) {
        *self.shared.plan.lock().unwrap() = Plan::GoDown;
    }

    /// Accepts connections again.
    pub(crate) fn heal(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
    }

    /// How many connections were cut after a `COMMIT` so far.
    pub(crate) fn cuts(&self) -> u32 {
        *self.shared.cuts.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.shared.close_all.lock().unwrap().cancel();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let client = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(e) => panic!("the proxy cannot accept: {e}"),
            },
        };
        if shared.refusing.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let close = shared.close_all.lock().unwrap().clone();
        tokio::spawn(relay(client, shared.clone(), close));
    }
}

/// Serves one connection until either side closes, `close` is cancelled or a
/// planned cut.
async fn relay(mut client: TcpStream, shared: Arc<Shared>, close: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", shared.upstream)).await else { return };
    // Small protocol messages must not wait on Nagle's algorithm.
    if client.set_nodelay(true).is_err() || server.set_nodelay(true).is_err() {
        return;
    }
    let mut frames = Frames::default();
    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        tokio::select! {
            () = close.cancelled() => return,
            read = client.read(&mut up) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                frames.push(&up[..n]);
                // Whole messages in one write, up to a COMMIT that is to be cut.
                let mut whole = Vec::new();
                let mut cut = None;
                while let Some(message) = frames.next_message() {
                    cut = is_commit(&message).then(|| shared.cut_at_commit()).flatten();
                    if cut != Some(false) {
                        whole.extend_from_slice(&message);
                    }
                    if cut.is_some() {
                        break;
                    }
                }
                if server.write_all(&whole).await.is_err() || cut.is_some() {
                    // When cut, both sockets close here: the client never gets
                    // an answer to its COMMIT.
                    return;
                }
            }
            read = server.read(&mut down) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                if client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Shared {
    /// Applies the plan to a `COMMIT` about to be forwarded: `None` to carry on,
    /// or to close the connection, after forwarding the `COMMIT` (`true`) or
    /// instead (`false`).
    fn cut_at_commit(&self) -> Option<bool> {
        let plan = std::mem::replace(&mut *self.plan.lock().unwrap(), Plan::Forward);
        let forward = match plan {
            Plan::Forward => return None,
            Plan::CutThatConnection { forward } => forward,
            Plan::GoDown => {
                self.refusing.store(true, Ordering::SeqCst);
                let old = std::mem::replace(&mut *self.close_all.lock().unwrap(), CancellationToken::new());
                old.cancel();
                true
            }
        };
        self.cuts.send_modify(|n| *n += 1);
        Some(forward)
    }
}

/// Whether `message` is the simple query `COMMIT` (how diesel-async commits).
fn is_commit(message: &[u8]) -> bool {
    message.first() == Some(&b'Q') && message.get(5..).is_some_and(|sql| sql.eq_ignore_ascii_case(b"COMMIT\0"))
}

/// The client→server byte stream, cut into whole protocol messages.
#[derive(Default)]
struct Frames {
    buffer: Vec<u8>,
    /// Past the startup packet: messages are tagged from here on.
    started: bool,
}

impl Frames {
    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    fn next_message(&mut self) -> Option<Vec<u8>> {
        let tag = usize::from(self.started);
        let length = self.buffer.get(tag..tag + 4)?;
        let length = u32::from_be_bytes(length.try_into().ok()?) as usize;
        let total = tag + length.max(4);
        if self.buffer.len() < total {
            return None;
        }
        let message: Vec<u8> = self.buffer.drain(..total).collect();
        if !self.started {
            // An SSL or GSS encryption request comes before the startup packet,
            // untagged like it.
            const SSL_REQUEST: u32 = 80_877_103;
            const GSS_REQUEST: u32 = 80_877_104;
            let code = message.get(4..8).and_then(|c| c.try_into().ok()).map(u32::from_be_bytes);
            self.started = !matches!(code, Some(SSL_REQUEST | GSS_REQUEST));
        }
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::{Frames, is_commit};

    #[test]
    fn frames_follow_the_startup_packet_then_tagged_messages() {
        let mut frames = Frames::default();
        let startup = [&9u32.to_be_bytes()[..], &[0, 3, 0, 0, 0]].concat();
        let commit = [&b"Q"[..], &11u32.to_be_bytes(), b"COMMIT\0"].concat();
        let sync = [&b"S"[..], &4u32.to_be_bytes()].concat();
        let stream = [startup.clone(), commit.clone(), sync.clone()].concat();
        frames.push(&stream[..7]);
        assert_eq!(frames.next_message(), None, "half a startup packet");
        frames.push(&stream[7..]);
        assert_eq!(frames.next_message(), Some(startup));
        let first = frames.next_message().unwrap();
        assert!(is_commit(&first));
        assert_eq!(frames.next_message(), Some(sync.clone()));
        assert!(!is_commit(&sync));
        assert_eq!(frames.next_message(), None);
    }
}
