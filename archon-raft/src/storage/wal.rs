//! The Raft log as a file of Archon's own: records appended to segment files,
//! one write and one `fdatasync` per group of changes, instead of a redb
//! transaction (a dozen and more page writes before the same `fdatasync`).
//!
//! A segment starts with a header and holds records, each
//! `[len u32][crc32 u32][kind u8][body]` (little-endian; the CRC covers kind and
//! body): an entry (its index and stored bytes), the vote, the committed log
//! id, the last purged log id, or a truncation. The log is what replaying every
//! record in order gives: an entry replaces any at or after its index, a
//! truncation removes those from its index on, a purge those up to its index,
//! and the last vote, committed id and purge win.
//!
//! Small groups find space written ahead of them: a group that passes the end of
//! the file carries zeros after its records, room for many more groups its size,
//! so most small groups overwrite blocks the file already has and their
//! `fdatasync` flushes data only, with no change of the file's size to journal
//! (about 40 % less time and CPU per sync on ext4 here; RESULTS.md). Large groups
//! carry none: they already spread one size change over many bytes, and zeros
//! ahead of them would double what reaches the disk. A zero record header ends a
//! segment's records; the zeros after it are that space.
//!
//! The one thing to know: records are only ever appended, and a segment is
//! removed only when everything it holds is purged and a newer segment exists.
//! Each segment starts with the vote, committed id and purge as they stood when
//! it was created, so removing older segments never loses them. A crash can tear
//! only the end of the newest segment (a segment is synced before the next one
//! starts): opening cuts a torn or damaged tail there and nowhere else — damage
//! in an older segment is an error, not something to skip.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::StorageBackend;

use super::{Dropped, Failure};

/// What a segment file starts with: magic and format version.
const HEADER: &[u8; 16] = b"ARCHONWAL\0\0\0\x01\0\0\0";

/// Bytes before a record's body: length, CRC, kind.
const RECORD_HEAD: usize = 9;

/// A segment is closed and a new one started once it passes this size, so
/// purged entries leave the disk a segment at a time.
pub(super) const SEGMENT_BYTES: u64 = 64 << 20;

/// A group smaller than this that passes the end of its segment's file carries
/// zeros after it, room for [`GROUPS_AHEAD`] more groups its size (at most
/// [`AHEAD_BYTES`], and not past [`SEGMENT_BYTES`]).
const SMALL_GROUP: u64 = 64 << 10;
const GROUPS_AHEAD: u64 = 64;
const AHEAD_BYTES: u64 = 4 << 20;

/// Where the log's segment files live: a directory on disk, or (for a
/// simulation or a test) memory.
pub trait SegmentFiles: Send + Sync + Debug + 'static {
    /// The numbers of the segments there are, in any order.
    fn list(&self) -> io::Result<Vec<u64>>;
    /// Opens segment `number`, creating it empty if missing.
    fn open(&self, number: u64) -> io::Result<Box<dyn StorageBackend>>;
    /// Removes segment `number`.
    fn remove(&self, number: u64) -> io::Result<()>;
    /// Makes the segments' creation and removal durable (the directory's fsync).
    fn sync(&self) -> io::Result<()>;
}

/// Segment files in a directory, named by number (`00000000000000000001.wal`).
/// One process at a time: the directory's `LOCK` file is locked while a handle
/// on it lives.
#[derive(Debug, Clone)]
pub struct SegmentDir {
    dir: PathBuf,
    _lock: Arc<std::fs::File>,
}

impl SegmentDir {
    /// The segments in `dir` (created when missing). Fails with
    /// [`io::ErrorKind::WouldBlock`] while another handle (in this process or
    /// another) holds it.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<SegmentDir> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let lock = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(dir.join("LOCK"))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io::Error::new(io::ErrorKind::WouldBlock, "the log is in use"),
            std::fs::TryLockError::Error(e) => e,
        })?;
        Ok(SegmentDir { dir, _lock: Arc::new(lock) })
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:020}.wal"))
    }
}

impl SegmentFiles for SegmentDir {
    fn list(&self) -> io::Result<Vec<u64>> {
        let mut numbers = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else { continue };
            if stem.len() == 20
                && let Ok(number) = stem.parse()
            {
                numbers.push(number);
            }
        }
        Ok(numbers)
    }

    fn open(&self, number: u64) -> io::Result<Box<dyn StorageBackend>> {
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(self.path(number))?;
        // redb's file backend: positioned reads and writes, and a lock on the file.
        let file = redb::backends::FileBackend::new(file).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                io::Error::new(io::ErrorKind::WouldBlock, "the segment is in use")
            }
            e => io::Error::other(e),
        })?;
        Ok(Box::new(file))
    }

    fn remove(&self, number: u64) -> io::Result<()> {
        std::fs::remove_file(self.path(number))
    }

    fn sync(&self) -> io::Result<()> {
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

/// One change to the log, as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    /// An entry at `index`, as stored.
    Entry { index: u64, bytes: Vec<u8> },
    /// The vote, as stored.
    Vote(Vec<u8>),
    /// The committed log id, as stored (empty: none).
    Committed(Vec<u8>),
    /// Entries up to `index` are gone; `bytes` is the last purged log id as stored.
    Purged { index: u64, bytes: Vec<u8> },
    /// Entries from `from` on are gone.
    Truncate { from: u64 },
}

impl Record {
    fn kind(&self) -> u8 {
        match self {
            Record::Entry { .. } => 1,
            Record::Vote(_) => 2,
            Record::Committed(_) => 3,
            Record::Purged { .. } => 4,
            Record::Truncate { .. } => 5,
        }
    }

    /// Appends the record's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; RECORD_HEAD]);
        out[start + 8] = self.kind();
        match self {
            Record::Entry { index, bytes } | Record::Purged { index, bytes } => {
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Record::Vote(bytes) | Record::Committed(bytes) => out.extend_from_slice(bytes),
            Record::Truncate { from } => out.extend_from_slice(&from.to_le_bytes()),
        }
        let body = &out[start + 8..];
        let (len, crc) = (u32::try_from(body.len()).unwrap_or(u32::MAX), crc32fast::hash(body));
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads a record from `kind` and `body`; `None` if it makes no sense.
    fn decode(kind: u8, body: &[u8]) -> Option<Record> {
        let index = || body.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        Some(match kind {
            1 => Record::Entry { index: index()?, bytes: body[8..].to_vec() },
            2 => Record::Vote(body.to_vec()),
            3 => Record::Committed(body.to_vec()),
            4 => Record::Purged { index: index()?, bytes: body[8..].to_vec() },
            5 if body.len() == 8 => Record::Truncate { from: index()? },
            _ => return None,
        })
    }
}

/// Where an entry's stored bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    segment: u64,
    offset: u64,
    len: usize,
}

struct Segment {
    file: Box<dyn StorageBackend>,
    /// Where its records end.
    len: u64,
    /// The file's length: zeros from `len` on.
    allocated: u64,
    /// The highest entry index written to it, stale or not.
    max_index: Option<u64>,
}

/// The log: its segments and, in memory, where each entry is and the last
/// vote, committed id and purge. Not synchronised: its owner serialises writes.
pub(super) struct Wal {
    files: Box<dyn SegmentFiles>,
    segments: BTreeMap<u64, Segment>,
    entries: BTreeMap<u64, Location>,
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
    /// When a segment counts as full ([`SEGMENT_BYTES`] unless a test says).
    segment_bytes: u64,
    /// Whether opening cut a torn tail.
    cut: bool,
}

impl Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("segments", &self.segments.len()).field("entries", &self.entries.len()).finish()
    }
}

impl Wal {
    /// Opens the log in `files`, replaying its records; a torn or damaged tail
    /// of the newest segment is cut (and the cut synced).
    pub(super) fn open(files: Box<dyn SegmentFiles>) -> Result<Wal, Failure> {
        Wal::open_sized(files, SEGMENT_BYTES)
    }

    /// [`Wal::open`] with segments full at `segment_bytes`.
    pub(super) fn open_sized(files: Box<dyn SegmentFiles>, segment_bytes: u64) -> Result<Wal, Failure> {
        let mut numbers = files.list()?;
        numbers.sort_unstable();
        let mut wal = Wal {
            files,
            segments: BTreeMap::new(),
            entries: BTreeMap::new(),
            vote: None,
            committed: None,
            purged: None,
            segment_bytes,
            cut: false,
        };
        let newest = numbers.last().copied();
        for number in numbers {
            wal.replay(number, Some(number) == newest)?;
        }
        if wal.segments.is_empty() {
            wal.start_segment(1)?;
        }
        Ok(wal)
    }

    /// Reads segment `number`'s records into the log.
    fn replay(&mut self, number: u64, newest: bool) -> Result<(), Failure> {
        let file = self.files.open(number)?;
        let len = file.len()?;
        let damaged = |offset: u64, why: &str| {
            Failure::Format(format!("the log's segment {number:020}.wal is damaged at byte {offset}: {why}"))
        };
        let mut header = [0u8; HEADER.len()];
        if len < HEADER.len() as u64 || {
            file.read(0, &mut header)?;
            header != *HEADER
        } {
            if newest && len <= HEADER.len() as u64 {
                // Created but its header never made it to disk: start it afresh.
                file.set_len(0)?;
                file.write(0, HEADER)?;
                file.sync_data()?;
                let len = HEADER.len() as u64;
                self.segments.insert(number, Segment { file, len, allocated: len, max_index: None });
                return Ok(());
            }
            return Err(damaged(0, "not a segment of this format (bad header)"));
        }
        let mut segment = Segment { file, len: HEADER.len() as u64, allocated: len, max_index: None };
        let mut offset = segment.len;
        while offset < len {
            match read_record(segment.file.as_ref(), offset, len)? {
                Ok(Some((record, size))) => {
                    self.note(number, &mut segment, offset, record);
                    offset += size;
                }
                Ok(None) => break,
                Err(why) if newest => {
                    self.cut = true;
                    tracing::warn!(segment = number, offset, why, "cutting the log's torn tail (a crash mid-write)");
                    segment.file.set_len(offset)?;
                    segment.file.sync_data()?;
                    segment.allocated = offset;
                    break;
                }
                Err(why) => return Err(damaged(offset, why)),
            }
        }
        segment.len = offset;
        self.segments.insert(number, segment);
        Ok(())
    }

    /// Takes `record`, written at `offset` of `segment`, into the in-memory view.
    fn note(&mut self, number: u64, segment: &mut Segment, offset: u64, record: Record) {
        match record {
            Record::Entry { index, bytes } => {
                self.entries.split_off(&index);
                let location = Location { segment: number, offset: offset + RECORD_HEAD as u64 + 8, len: bytes.len() };
                self.entries.insert(index, location);
                segment.max_index = Some(segment.max_index.map_or(index, |m| m.max(index)));
            }
            Record::Vote(bytes) => self.vote = Some(bytes),
            Record::Committed(bytes) => self.committed = (!bytes.is_empty()).then_some(bytes),
            Record::Purged { index, bytes } => {
                self.entries = self.entries.split_off(&index.saturating_add(1));
                self.purged = Some((index, bytes));
            }
            Record::Truncate { from } => {
                self.entries.split_off(&from);
            }
        }
    }

    /// Starts segment `number` with the vote, committed id and purge as they
    /// stand, synced (and its creation made durable).
    fn start_segment(&mut self, number: u64) -> Result<(), Failure> {
        let file = self.files.open(number)?;
        file.set_len(0)?;
        let mut bytes = HEADER.to_vec();
        for record in self.checkpoint() {
            record.encode(&mut bytes);
        }
        file.write(0, &bytes)?;
        file.sync_data()?;
        self.files.sync()?;
        let len = bytes.len() as u64;
        self.segments.insert(number, Segment { file, len, allocated: len, max_index: None });
        Ok(())
    }

    /// The records that restore the vote, committed id and purge.
    fn checkpoint(&self) -> Vec<Record> {
        let mut records = Vec::new();
        if let Some(vote) = &self.vote {
            records.push(Record::Vote(vote.clone()));
        }
        if let Some(committed) = &self.committed {
            records.push(Record::Committed(committed.clone()));
        }
        if let Some((index, bytes)) = &self.purged {
            records.push(Record::Purged { index: *index, bytes: bytes.clone() });
        }
        records
    }

    /// Appends `records` with one write (a new segment first if the current one
    /// is full), and syncs them if `sync`.
    pub(super) fn append(&mut self, records: Vec<Record>, sync: bool) -> Result<(), Failure> {
        if records.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        let mut starts = Vec::with_capacity(records.len());
        for record in &records {
            starts.push(bytes.len() as u64);
            record.encode(&mut bytes);
        }
        let (mut number, mut len) = self.active();
        if len > HEADER.len() as u64 && len + bytes.len() as u64 > self.segment_bytes {
            // The full segment loses its unused space and is synced before the
            // next starts, so only the newest can ever have a torn tail.
            let full = self.segment(number)?;
            if full.allocated > len {
                full.file.set_len(len)?;
            }
            full.file.sync_data()?;
            number += 1;
            self.start_segment(number)?;
            len = self.active().1;
        }
        let mut segment = self.segments.remove(&number).ok_or_else(|| missing(number))?;
        let end = len + bytes.len() as u64;
        let allocated = segment.allocated;
        let group = bytes.len() as u64;
        if end > allocated && group < SMALL_GROUP {
            // Past the written space: zeros after the records, so the groups
            // after this one overwrite blocks the file has.
            let target = end.max(self.segment_bytes.min(end + (group * GROUPS_AHEAD).min(AHEAD_BYTES)));
            bytes.resize(bytes.len() + usize::try_from(target - end).unwrap_or(0), 0);
        }
        let written =
            segment.file.write(len, &bytes).and_then(|()| if sync { segment.file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            self.segments.insert(number, segment);
            return Err(e.into());
        }
        segment.len = end;
        segment.allocated = allocated.max(len + bytes.len() as u64);
        for (record, start) in records.into_iter().zip(starts) {
            self.note(number, &mut segment, len + start, record);
        }
        self.segments.insert(number, segment);
        Ok(())
    }

    /// Syncs the newest segment.
    pub(super) fn sync(&self) -> Result<(), Failure> {
        Ok(self.segment(self.active().0)?.file.sync_data()?)
    }

    /// Removes the segments that hold nothing but purged entries (never the
    /// newest). Call once the purge is durable.
    pub(super) fn remove_purged(&mut self) -> Result<usize, Failure> {
        let Some(purged) = self.purged.as_ref().map(|p| p.0) else { return Ok(0) };
        let newest = self.active().0;
        let removable: Vec<u64> = self
            .segments
            .iter()
            .take_while(|(number, s)| **number != newest && s.max_index.is_none_or(|m| m <= purged))
            .map(|(number, _)| *number)
            .collect();
        for number in &removable {
            self.segments.remove(number);
            self.files.remove(*number)?;
        }
        if !removable.is_empty() {
            self.files.sync()?;
        }
        Ok(removable.len())
    }

    fn active(&self) -> (u64, u64) {
        self.segments.last_key_value().map_or((1, 0), |(number, s)| (*number, s.len))
    }

    fn segment(&self, number: u64) -> Result<&Segment, Failure> {
        self.segments.get(&number).ok_or_else(|| missing(number))
    }

    /// The stored bytes of the entries in `range`, in order, stopping before the
    /// first that would take the total past `max_bytes` (the first is always read).
    pub(super) fn read<R: RangeBounds<u64>>(&self, range: R, max_bytes: usize) -> Result<Vec<(u64, Vec<u8>)>, Failure> {
        let (mut out, mut total) = (Vec::new(), 0usize);
        for (index, location) in self.entries.range(range) {
            total = total.saturating_add(location.len);
            if !out.is_empty() && total > max_bytes {
                break;
            }
            let mut bytes = vec![0u8; location.len];
            self.segment(location.segment)?.file.read(location.offset, &mut bytes)?;
            out.push((*index, bytes));
        }
        Ok(out)
    }

    /// The last entry's index and stored bytes.
    pub(super) fn last(&self) -> Result<Option<(u64, Vec<u8>)>, Failure> {
        match self.entries.last_key_value() {
            Some((index, _)) => Ok(self.read(*index..=*index, usize::MAX)?.pop()),
            None => Ok(None),
        }
    }

    /// The vote, as stored.
    pub(super) fn vote(&self) -> Option<&[u8]> {
        self.vote.as_deref()
    }

    /// The committed log id, as stored.
    pub(super) fn committed(&self) -> Option<&[u8]> {
        self.committed.as_deref()
    }

    /// The last purged log id, as stored.
    pub(super) fn purged(&self) -> Option<&[u8]> {
        self.purged.as_ref().map(|p| p.1.as_slice())
    }

    /// Whether opening found a torn tail (a crash mid-write) and cut it.
    pub(super) fn cut_torn_tail(&self) -> bool {
        self.cut
    }
}

/// The record at `offset` of a segment `len` bytes long and its size, `None`
/// where the records end (zeros to the end of the file, its unused space), or
/// why there is none there (a torn or damaged tail).
fn read_record(
    file: &dyn StorageBackend,
    offset: u64,
    len: u64,
) -> io::Result<Result<Option<(Record, u64)>, &'static str>> {
    let mut head = [0u8; 8];
    let head_len = usize::try_from(len - offset).map_or(head.len(), |l| l.min(head.len()));
    file.read(offset, &mut head[..head_len])?;
    if head == [0; 8] && zeros(file, offset + 8, len)? {
        return Ok(Ok(None));
    }
    if len - offset < RECORD_HEAD as u64 {
        return Ok(Err("a partial record header"));
    }
    let body_len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if body_len == 0 || offset + 8 + body_len > len {
        return Ok(Err("a record longer than what the file holds"));
    }
    let mut body = vec![0u8; usize::try_from(body_len).unwrap_or(usize::MAX)];
    file.read(offset + 8, &mut body)?;
    if crc32fast::hash(&body) != crc {
        return Ok(Err("a record whose checksum does not match"));
    }
    Ok(Record::decode(body[0], &body[1..]).map(|r| Some((r, 8 + body_len))).ok_or("a record of an unknown kind"))
}

/// Whether the file holds only zeros from `from` to `len`.
fn zeros(file: &dyn StorageBackend, from: u64, len: u64) -> io::Result<bool> {
    let mut chunk = vec![0u8; 64 << 10];
    let mut at = from;
    while at < len {
        let n = usize::try_from(len - at).map_or(chunk.len(), |n| n.min(chunk.len()));
        file.read(at, &mut chunk[..n])?;
        if chunk[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// The log of a running node, shared by its store's handles; says when it is
/// closed (every handle gone), so the node can be reopened in the same process.
pub(super) struct LogFile {
    wal: Mutex<Wal>,
    /// Declared after the log: set once the log (and its files) went.
    _dropped: Dropped,
}

impl LogFile {
    /// The log, and the flag set when it is closed.
    pub(super) fn new(wal: Wal) -> (LogFile, Arc<super::ClosedFlag>) {
        let (dropped, flag) = Dropped::new();
        (LogFile { wal: Mutex::new(wal), _dropped: dropped }, flag)
    }

    /// The log, to read or write.
    pub(super) fn lock(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn missing(number: u64) -> Failure {
    Failure::Format(format!("the log's segment {number} is not open"))
}

#[cfg(test)]
mod tests;
