//! [`SnapshotFile`]: a snapshot's data as openraft reads and writes it — a file,
//! streamed in chunks to a peer that installs it. Building the file for a peer
//! means dumping the history tables, so a snapshot handed out for reading is
//! built lazily, on its first read or seek: openraft also asks for the current
//! snapshot at start, for its metadata only, and that must stay cheap.

use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;

type Build = Box<dyn FnOnce() -> io::Result<std::fs::File> + Send + 'static>;

enum Inner {
    /// Not built yet: what builds it.
    Pending(Option<Build>),
    /// Being built on a blocking thread.
    Building(JoinHandle<io::Result<std::fs::File>>),
    /// Built (or received).
    Ready(tokio::fs::File),
    /// Building failed; every use reports it.
    Failed(io::ErrorKind, String),
}

/// A snapshot's data: a temporary file, built on first use when it is the
/// dump of a node's state and history.
pub struct SnapshotFile {
    inner: Inner,
    /// A seek asked for before the file was ready.
    seek: Option<SeekFrom>,
}

impl std::fmt::Debug for SnapshotFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.inner {
            Inner::Pending(_) => "pending",
            Inner::Building(_) => "building",
            Inner::Ready(_) => "ready",
            Inner::Failed(..) => "failed",
        };
        f.debug_struct("SnapshotFile").field("state", &state).finish_non_exhaustive()
    }
}

impl SnapshotFile {
    /// A file `build` writes (on a blocking thread) when first read or sought.
    pub fn lazy(build: impl FnOnce() -> io::Result<std::fs::File> + Send + 'static) -> SnapshotFile {
        SnapshotFile { inner: Inner::Pending(Some(Box::new(build))), seek: None }
    }

    /// An open file, e.g. an empty one to receive a snapshot into.
    pub fn ready(file: std::fs::File) -> SnapshotFile {
        SnapshotFile { inner: Inner::Ready(tokio::fs::File::from_std(file)), seek: None }
    }

    /// The file, built if it was not yet, positioned at its start.
    pub async fn into_std(mut self) -> io::Result<std::fs::File> {
        std::future::poll_fn(|cx| self.poll_file(cx).map_ok(|_| ())).await?;
        let Inner::Ready(file) = self.inner else {
            return Err(io::Error::other("the snapshot file is not ready after building"));
        };
        let mut file = file.into_std().await;
        io::Seek::seek(&mut file, SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Drives building to its end; the ready file.
    fn poll_file(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut tokio::fs::File>> {
        loop {
            let next = match &mut self.inner {
                Inner::Pending(build) => match build.take() {
                    Some(build) => Inner::Building(tokio::task::spawn_blocking(build)),
                    None => Inner::Failed(io::ErrorKind::Other, "snapshot build lost".into()),
                },
                Inner::Building(task) => match ready!(Pin::new(task).poll(cx)) {
                    Ok(Ok(file)) => Inner::Ready(tokio::fs::File::from_std(file)),
                    Ok(Err(e)) => Inner::Failed(e.kind(), e.to_string()),
                    Err(e) => Inner::Failed(io::ErrorKind::Other, format!("snapshot build task: {e}")),
                },
                Inner::Ready(_) | Inner::Failed(..) => break,
            };
            self.inner = next;
        }
        match &mut self.inner {
            Inner::Ready(file) => Poll::Ready(Ok(file)),
            Inner::Failed(kind, message) => Poll::Ready(Err(io::Error::new(*kind, message.clone()))),
            Inner::Pending(_) | Inner::Building(_) => Poll::Ready(Err(io::Error::other("snapshot file not built"))),
        }
    }
}

use std::future::Future as _;

impl AsyncRead for SnapshotFile {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let file = ready!(this.poll_file(cx))?;
        Pin::new(file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let file = ready!(this.poll_file(cx))?;
        Pin::new(file).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let file = ready!(this.poll_file(cx))?;
        Pin::new(file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let file = ready!(this.poll_file(cx))?;
        Pin::new(file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Ready(file) => Pin::new(file).start_seek(position),
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
        let file = match this.poll_file(cx) {
            Poll::Ready(file) => file?,
            Poll::Pending => {
                this.seek = seek;
                return Poll::Pending;
            }
        };
        if let Some(position) = seek {
            Pin::new(&mut *file).start_seek(position)?;
        }
        Pin::new(file).poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_lazy_file_is_built_on_first_use_then_reads_and_seeks() {
        let built = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = built.clone();
        let mut file = SnapshotFile::lazy(move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            let mut f = tempfile::tempfile()?;
            io::Write::write_all(&mut f, b"hello snapshot")?;
            Ok(f)
        });
        assert!(!built.load(std::sync::atomic::Ordering::SeqCst), "not built before use");
        assert_eq!(file.seek(SeekFrom::End(0)).await.unwrap(), 14);
        assert!(built.load(std::sync::atomic::Ordering::SeqCst));
        file.seek(SeekFrom::Start(6)).await.unwrap();
        let mut rest = String::new();
        file.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "snapshot");

        let mut received = SnapshotFile::ready(tempfile::tempfile().unwrap());
        received.write_all(b"abc").await.unwrap();
        received.seek(SeekFrom::Start(1)).await.unwrap();
        received.write_all(b"Z").await.unwrap();
        received.flush().await.unwrap();
        let mut std_file = received.into_std().await.unwrap();
        let mut all = String::new();
        io::Read::read_to_string(&mut std_file, &mut all).unwrap();
        assert_eq!(all, "aZc");
    }

    #[tokio::test]
    async fn a_failed_build_is_reported_on_every_use() {
        let mut file = SnapshotFile::lazy(|| Err(io::Error::other("disk on fire")));
        let first = file.seek(SeekFrom::End(0)).await.unwrap_err();
        assert!(first.to_string().contains("disk on fire"), "{first}");
        let mut buf = [0u8; 4];
        assert!(file.read(&mut buf).await.unwrap_err().to_string().contains("disk on fire"));
    }
}
