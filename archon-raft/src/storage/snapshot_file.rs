//! [`SnapshotFile`]: a snapshot's data as openraft reads and writes it — a file,
//! streamed in chunks to a peer that installs it. Building the file for a peer
//! means dumping the history tables, so a snapshot handed out for reading is
//! built lazily, on its first read or seek: openraft also asks for the current
//! snapshot at start, for its metadata only, and that must stay cheap.
//!
//! The one thing to know: the data is a temporary file in the data dir, or —
//! for a node whose databases are off disk ([`Scratch::Memory`], a
//! simulation) — a buffer in memory; and it is built on a blocking thread, or
//! inline when storage work runs inline ([`BlockingWork::Inline`]), so a
//! simulated node never waits on another thread.

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

use super::BlockingWork;

/// Where a node makes its snapshot files.
#[derive(Debug, Clone)]
pub enum Scratch {
    /// Temporary files in this directory (the data dir), gone when closed.
    Dir(PathBuf),
    /// Buffers in memory: for a node whose databases are off disk.
    Memory,
}

impl Scratch {
    /// A new, empty body to write a snapshot into.
    pub fn create(&self) -> io::Result<Body> {
        Ok(match self {
            Scratch::Dir(dir) => Body::File(tempfile::tempfile_in(dir)?),
            Scratch::Memory => Body::Memory(Cursor::new(Vec::new())),
        })
    }
}

/// A snapshot's bytes, read and written with std's blocking I/O.
#[derive(Debug)]
pub enum Body {
    /// A temporary file.
    File(std::fs::File),
    /// A buffer in memory.
    Memory(Cursor<Vec<u8>>),
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::File(f) => f.read(buf),
            Body::Memory(m) => m.read(buf),
        }
    }
}

impl Write for Body {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Body::File(f) => f.write(buf),
            Body::Memory(m) => m.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Body::File(f) => f.flush(),
            Body::Memory(m) => m.flush(),
        }
    }
}

impl Seek for Body {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        match self {
            Body::File(f) => f.seek(position),
            Body::Memory(m) => m.seek(position),
        }
    }
}

/// A body as the async world reads and writes it.
enum Open {
    File(tokio::fs::File),
    Memory(Cursor<Vec<u8>>),
}

/// What [`Open`] is, whichever it is.
trait Data: AsyncRead + AsyncWrite + AsyncSeek + Unpin {}

impl<T: AsyncRead + AsyncWrite + AsyncSeek + Unpin> Data for T {}

impl Open {
    fn of(body: Body) -> Open {
        match body {
            Body::File(f) => Open::File(tokio::fs::File::from_std(f)),
            Body::Memory(m) => Open::Memory(m),
        }
    }

    fn data(&mut self) -> Pin<&mut dyn Data> {
        match self {
            Open::File(f) => Pin::new(f),
            Open::Memory(m) => Pin::new(m),
        }
    }

    async fn into_body(self) -> Body {
        match self {
            Open::File(f) => Body::File(f.into_std().await),
            Open::Memory(m) => Body::Memory(m),
        }
    }
}

type Build = Box<dyn FnOnce() -> io::Result<Body> + Send + 'static>;

enum Inner {
    /// Not built yet: what builds it, and where.
    Pending(Option<Build>, BlockingWork),
    /// Being built on a blocking thread.
    Building(JoinHandle<io::Result<Body>>),
    /// Built (or received).
    Ready(Open),
    /// Building failed; every use reports it.
    Failed(io::ErrorKind, String),
}

/// A snapshot's data: a temporary file or a buffer, built on first use when it
/// is the dump of a node's state and history.
pub struct SnapshotFile {
    inner: Inner,
    /// A seek asked for before the file was ready.
    seek: Option<SeekFrom>,
}

impl std::fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.inner {
            Inner::Pending(..) => "pending",
            Inner::Building(_) => "building",
            Inner::Ready(_) => "ready",
            Inner::Failed(..) => "failed",
        };
        f.debug_struct("SnapshotFile").field("state", &state).finish_non_exhaustive()
    }
}

impl SnapshotFile {
    /// Data `build` writes when first read or sought: on a blocking thread, or
    /// inline, as `blocking` says.
    pub fn lazy(blocking: BlockingWork, build: impl FnOnce() -> io::Result<Body> + Send + 'static) -> SnapshotFile {
        SnapshotFile { inner: Inner::Pending(Some(Box::new(build)), blocking), seek: None }
    }

    /// Data already there, e.g. an empty body to receive a snapshot into.
    pub fn ready(body: Body) -> SnapshotFile {
        SnapshotFile { inner: Inner::Ready(Open::of(body)), seek: None }
    }

    /// The body, built if it was not yet, positioned at its start.
    pub async fn into_body(mut self) -> io::Result<Body> {
        std::future::poll_fn(|cx| self.poll_file(cx).map_ok(|_| ())).await?;
        let Inner::Ready(open) = self.inner else {
            return Err(io::Error::other("the snapshot file is not ready after building"));
        };
        let mut body = open.into_body().await;
        body.seek(SeekFrom::Start(0))?;
        Ok(body)
    }

    /// Drives building to its end; the ready data.
    fn poll_file(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Pin<&mut dyn Data>>> {
        loop {
            let next = match &mut self.inner {
                Inner::Pending(build, blocking) => match (build.take(), *blocking) {
                    (Some(build), BlockingWork::Threads) => Inner::Building(tokio::task::spawn_blocking(build)),
                    (Some(build), BlockingWork::Inline) => match build() {
                        Ok(body) => Inner::Ready(Open::of(body)),
                        Err(e) => Inner::Failed(e.kind(), e.to_string()),
                    },
                    (None, _) => Inner::Failed(io::ErrorKind::Other, "snapshot build lost".into()),
                },
                Inner::Building(task) => match ready!(Pin::new(task).poll(cx)) {
                    Ok(Ok(body)) => Inner::Ready(Open::of(body)),
                    Ok(Err(e)) => Inner::Failed(e.kind(), e.to_string()),
                    Err(e) => Inner::Failed(io::ErrorKind::Other, format!("snapshot build task: {e}")),
                },
                Inner::Ready(_) | Inner::Failed(..) => break,
            };
            self.inner = next;
        }
        match &mut self.inner {
            Inner::Ready(open) => Poll::Ready(Ok(open.data())),
            Inner::Failed(kind, message) => Poll::Ready(Err(io::Error::new(*kind, message.clone()))),
            Inner::Pending(..) | Inner::Building(_) => Poll::Ready(Err(io::Error::other("snapshot file not built"))),
        }
    }
}

use std::future::Future as _;

impl AsyncRead for SnapshotFile {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_file(cx))?.poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_file(cx))?.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_file(cx))?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_file(cx))?.poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Ready(open) => open.data().start_seek(position),
            // Started once the file is there (poll_complete).
            _ => {
                this.seek = Some(position);
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        let seek = this.seek.take();
        let mut data = match this.poll_file(cx) {
            Poll::Ready(data) => data?,
            Poll::Pending => {
                this.seek = seek;
                return Poll::Pending;
            }
        };
        if let Some(position) = seek {
            data.as_mut().start_seek(position)?;
        }
        data.poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    /// A temporary file built on a blocking thread, and a buffer built inline.
    fn kinds() -> [(Scratch, BlockingWork); 2] {
        [(Scratch::Dir(std::env::temp_dir()), BlockingWork::Threads), (Scratch::Memory, BlockingWork::Inline)]
    }

    #[tokio::test]
    async fn a_lazy_file_is_built_on_first_use_then_reads_and_seeks() {
        for (scratch, blocking) in kinds() {
            let built = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = built.clone();
            let made = scratch.clone();
            let mut file = SnapshotFile::lazy(blocking, move || {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                let mut body = made.create()?;
                body.write_all(b"hello snapshot")?;
                Ok(body)
            });
            assert!(!built.load(std::sync::atomic::Ordering::SeqCst), "{scratch:?}: not built before use");
            assert_eq!(file.seek(SeekFrom::End(0)).await.unwrap(), 14, "{scratch:?}");
            assert!(built.load(std::sync::atomic::Ordering::SeqCst));
            file.seek(SeekFrom::Start(6)).await.unwrap();
            let mut rest = String::new();
            file.read_to_string(&mut rest).await.unwrap();
            assert_eq!(rest, "snapshot", "{scratch:?}");

            let mut received = SnapshotFile::ready(scratch.create().unwrap());
            received.write_all(b"abc").await.unwrap();
            received.seek(SeekFrom::Start(1)).await.unwrap();
            received.write_all(b"Z").await.unwrap();
            received.flush().await.unwrap();
            let mut body = received.into_body().await.unwrap();
            let mut all = String::new();
            body.read_to_string(&mut all).unwrap();
            assert_eq!(all, "aZc", "{scratch:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_build_is_reported_on_every_use() {
        for (_, blocking) in kinds() {
            let mut file = SnapshotFile::lazy(blocking, || Err(io::Error::other("disk on fire")));
            let first = file.seek(SeekFrom::End(0)).await.unwrap_err();
            assert!(first.to_string().contains("disk on fire"), "{first}");
            let mut buf = [0u8; 4];
            assert!(file.read(&mut buf).await.unwrap_err().to_string().contains("disk on fire"));
        }
    }
}
