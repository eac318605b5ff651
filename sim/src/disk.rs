//! A manager's disk in memory: [`SimDisk`] holds the bytes of its three redb
//! databases (the log's, the history's and the snapshot's) across restarts of the host, and
//! loses what was not synced when the host crashes.
//!
//! The one thing to know: [`SimDisk::crash`] throws away every write since the
//! last `sync_data` and fences the handles opened before it, so whatever the
//! dying store still does (redb writes a clean-shutdown header when dropped)
//! never lands: a crash is not a graceful close. Call it before turmoil's
//! `crash` drops the host's tasks.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use archon_raft::storage::Backends;
use redb::StorageBackend;
use redb::backends::InMemoryBackend;

/// One database's bytes: what a read sees now, and what survives a crash.
#[derive(Debug, Default)]
struct Image {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, replayed onto `durable` by the next one.
    pending: Vec<Pending>,
}

#[derive(Debug)]
enum Pending {
    Write(usize, Vec<u8>),
    SetLen(usize),
}

impl Image {
    fn apply(bytes: &mut Vec<u8>, op: &Pending) {
        match op {
            Pending::Write(offset, data) => bytes[*offset..*offset + data.len()].copy_from_slice(data),
            Pending::SetLen(len) => bytes.resize(*len, 0),
        }
    }

    fn sync(&mut self) {
        for op in self.pending.drain(..) {
            Image::apply(&mut self.durable, &op);
        }
    }

    fn crash(&mut self) {
        self.pending.clear();
        self.current = self.durable.clone();
    }
}

#[derive(Debug, Default)]
struct Shared {
    log: Image,
    history: Image,
    snapshot: Image,
    /// Bumped by each crash; a handle opened before one is fenced.
    generation: u64,
    syncs: u64,
}

/// A manager's disk: every database, shared by every incarnation of the host.
/// Cheap to clone; clones are the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    shared: Arc<Mutex<Shared>>,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The host crashed: unsynced writes are lost, and the store that made
    /// them writes nothing more.
    pub fn crash(&self) {
        let mut shared = self.lock();
        shared.generation += 1;
        shared.log.crash();
        shared.history.crash();
        shared.snapshot.crash();
    }

    /// A copy of the log database as reads see it now, to open apart from the
    /// store (as if the host had crashed this instant without losing a write).
    pub fn log_copy(&self) -> io::Result<InMemoryBackend> {
        copy(&self.lock().log.current)
    }

    /// A copy of the snapshot database as reads see it now, like [`SimDisk::log_copy`].
    pub fn snapshot_copy(&self) -> io::Result<InMemoryBackend> {
        copy(&self.lock().snapshot.current)
    }

    /// How many syncs (fsyncs) the disk has seen.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    fn handle(&self, which: Which) -> Box<dyn StorageBackend> {
        let generation = self.lock().generation;
        Box::new(Handle { disk: self.clone(), which, generation })
    }
}

impl Backends for SimDisk {
    fn log(&self) -> Box<dyn StorageBackend> {
        self.handle(Which::Log)
    }

    fn history(&self) -> Box<dyn StorageBackend> {
        self.handle(Which::History)
    }

    fn snapshot(&self) -> Box<dyn StorageBackend> {
        self.handle(Which::Snapshot)
    }
}

/// An in-memory database holding `bytes`.
fn copy(bytes: &[u8]) -> io::Result<InMemoryBackend> {
    let copy = InMemoryBackend::new();
    copy.set_len(bytes.len() as u64)?;
    copy.write(0, bytes)?;
    Ok(copy)
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Log,
    History,
    Snapshot,
}

/// One database, as the store opened between two crashes sees it.
#[derive(Debug)]
struct Handle {
    disk: SimDisk,
    which: Which,
    generation: u64,
}

impl Handle {
    /// Runs `f` on the image; `None` once this handle is fenced.
    fn with<T>(&self, f: impl FnOnce(&mut Image, &mut u64) -> T) -> Option<T> {
        let mut shared = self.disk.lock();
        if shared.generation != self.generation {
            return None;
        }
        let Shared { log, history, snapshot, syncs, .. } = &mut *shared;
        let image = match self.which {
            Which::Log => log,
            Which::History => history,
            Which::Snapshot => snapshot,
        };
        Some(f(image, syncs))
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "read or write past the end of the simulated disk")
}

fn usize_of(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| out_of_range())
}

impl StorageBackend for Handle {
    fn len(&self) -> io::Result<u64> {
        Ok(self.with(|image, _| image.current.len() as u64).unwrap_or(0))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let offset = usize_of(offset)?;
        let read = self.with(|image, _| {
            let bytes = image.current.get(offset..offset + out.len()).ok_or_else(out_of_range)?;
            out.copy_from_slice(bytes);
            Ok(())
        });
        read.unwrap_or_else(|| Err(io::Error::other("the simulated host crashed")))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let op = Pending::SetLen(usize_of(len)?);
        self.with(|image, _| {
            Image::apply(&mut image.current, &op);
            image.pending.push(op);
        });
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|image, syncs| {
            image.sync();
            *syncs += 1;
        });
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let offset = usize_of(offset)?;
        let written = self.with(|image, _| {
            if offset + data.len() > image.current.len() {
                return Err(out_of_range());
            }
            let op = Pending::Write(offset, data.to_vec());
            Image::apply(&mut image.current, &op);
            image.pending.push(op);
            Ok(())
        });
        written.unwrap_or(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_what_was_synced_and_drops_the_rest() {
        let disk = SimDisk::new();
        let log = disk.log();
        log.set_len(4).unwrap();
        log.write(0, b"abcd").unwrap();
        log.sync_data().unwrap();
        log.write(0, b"XY").unwrap();
        disk.crash();
        // The dead incarnation writes nothing more.
        log.write(2, b"ZZ").unwrap();
        let reopened = disk.log();
        let mut out = [0u8; 4];
        reopened.read(0, &mut out).unwrap();
        assert_eq!(&out, b"abcd");
    }
}
