//! A manager's disk in memory: [`SimDisk`] holds the bytes of its log's
//! segment files and of its two redb databases (the history's and the
//! snapshot's) across restarts of the host, and loses what was not synced when
//! the host crashes — a segment created or removed since the last directory
//! sync included.
//!
//! The one thing to know: [`SimDisk::crash`] throws away every write since the
//! last `sync_data` and fences the handles opened before it, so whatever the
//! dying store still does (redb writes a clean-shutdown header when dropped)
//! never lands: a crash is not a graceful close. Call it before turmoil's
//! `crash` drops the host's tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use archon_raft::storage::{Backends, SegmentFiles};
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
    /// The log's segments by number, removed ones included until the removal is synced.
    log: BTreeMap<u64, Image>,
    /// The segments that exist as reads see them, and as a crash leaves them.
    segments: BTreeSet<u64>,
    segments_durable: BTreeSet<u64>,
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
        shared.segments = shared.segments_durable.clone();
        let durable = shared.segments_durable.clone();
        shared.log.retain(|number, _| durable.contains(number));
        shared.log.values_mut().for_each(Image::crash);
        shared.history.crash();
        shared.snapshot.crash();
    }

    /// A copy of the log's segments as reads see them now, to open apart from
    /// the store (as if the host had crashed this instant without losing a write).
    pub fn log_copy(&self) -> io::Result<SimSegments> {
        let shared = self.lock();
        let copy = SimDisk::new();
        {
            let mut c = copy.lock();
            for number in &shared.segments {
                let bytes = shared.log.get(number).map(|i| i.current.clone()).unwrap_or_default();
                c.log.insert(*number, Image { current: bytes.clone(), durable: bytes, pending: Vec::new() });
            }
            c.segments = shared.segments.clone();
            c.segments_durable = shared.segments.clone();
        }
        Ok(copy.segments())
    }

    fn segments(&self) -> SimSegments {
        SimSegments { disk: self.clone(), generation: self.lock().generation }
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
    fn log(&self) -> Box<dyn SegmentFiles> {
        Box::new(self.segments())
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
    Segment(u64),
    History,
    Snapshot,
}

/// The log's segment files on a [`SimDisk`], as the store opened between two
/// crashes sees them: fenced by the next crash, as its files are.
#[derive(Debug, Clone)]
pub struct SimSegments {
    disk: SimDisk,
    generation: u64,
}

impl SimSegments {
    /// Runs `f` on the disk; `None` once fenced by a crash.
    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> Option<T> {
        let mut shared = self.disk.lock();
        (shared.generation == self.generation).then(|| f(&mut shared))
    }
}

impl SegmentFiles for SimSegments {
    fn list(&self) -> io::Result<Vec<u64>> {
        Ok(self.with(|s| s.segments.iter().copied().collect()).unwrap_or_default())
    }

    fn open(&self, number: u64) -> io::Result<Box<dyn StorageBackend>> {
        self.with(|s| {
            if s.segments.insert(number) {
                // A new file: empty, whatever a removed one of that number held.
                let image = s.log.entry(number).or_default();
                image.current.clear();
                image.pending.push(Pending::SetLen(0));
            }
        });
        Ok(Box::new(Handle { disk: self.disk.clone(), which: Which::Segment(number), generation: self.generation }))
    }

    fn remove(&self, number: u64) -> io::Result<()> {
        self.with(|s| s.segments.remove(&number));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.with(|s| {
            s.segments_durable = s.segments.clone();
            let kept = s.segments.clone();
            s.log.retain(|number, _| kept.contains(number));
            s.syncs += 1;
        });
        Ok(())
    }
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
            Which::Segment(number) => log.get_mut(&number)?,
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
        let grows = matches!(self.which, Which::Segment(_));
        let written = self.with(|image, _| {
            if offset + data.len() > image.current.len() {
                if !grows {
                    return Err(out_of_range());
                }
                // A segment is a plain file: a write past its end extends it.
                let op = Pending::SetLen(offset + data.len());
                Image::apply(&mut image.current, &op);
                image.pending.push(op);
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
        let log = disk.log().open(1).unwrap();
        disk.log().sync().unwrap();
        log.set_len(4).unwrap();
        log.write(0, b"abcd").unwrap();
        log.sync_data().unwrap();
        log.write(0, b"XY").unwrap();
        disk.crash();
        // The dead incarnation writes nothing more.
        log.write(2, b"ZZ").unwrap();
        let reopened = disk.log().open(1).unwrap();
        let mut out = [0u8; 4];
        reopened.read(0, &mut out).unwrap();
        assert_eq!(&out, b"abcd");
    }

    #[test]
    fn a_segment_created_or_removed_since_the_last_directory_sync_is_undone_by_a_crash() {
        let disk = SimDisk::new();
        let segments = disk.log();
        let one = segments.open(1).unwrap();
        one.set_len(2).unwrap();
        one.write(0, b"ok").unwrap();
        one.sync_data().unwrap();
        segments.sync().unwrap();
        segments.open(2).unwrap().sync_data().unwrap();
        segments.remove(1).unwrap();
        disk.crash();
        let segments = disk.log();
        assert_eq!(segments.list().unwrap(), vec![1], "the removal and the creation were not synced");
        let mut out = [0u8; 2];
        segments.open(1).unwrap().read(0, &mut out).unwrap();
        assert_eq!(&out, b"ok");
    }
}
