//! The log file's records, segments, recovery and crash behaviour. The crash
//! property test prints its seed; `ARCHON_TEST_SEED=<seed> cargo nextest run -p
//! archon-raft wal::tests` replays one exactly.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use redb::StorageBackend;

use super::{HEADER, Record, SegmentDir, SegmentFiles, Wal};

/// One file's bytes: what reads see, what survives a crash, and the writes in
/// between.
#[derive(Debug, Default, Clone)]
struct Image {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Writes (offset, bytes) since the last sync, in order.
    pending: Vec<(usize, Vec<u8>)>,
}

/// Segment files in memory that lose what was not synced when they crash.
/// A crash may keep the first bytes of the newest file's unsynced writes, in
/// the order they were made (a torn write), as a disk may.
#[derive(Debug, Default, Clone)]
struct MemFiles {
    files: Arc<Mutex<BTreeMap<u64, Image>>>,
    /// Whether each file exists durably (the directory's own sync).
    durable_names: Arc<Mutex<Vec<u64>>>,
}

impl MemFiles {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Image>> {
        self.files.lock().unwrap()
    }

    /// Every unsynced change is lost, except `torn` bytes of the newest
    /// file's unsynced tail.
    fn crash(&self, torn: usize) {
        let names = self.durable_names.lock().unwrap().clone();
        let mut files = self.lock();
        files.retain(|n, _| names.contains(n));
        let newest = files.keys().last().copied();
        for (number, image) in files.iter_mut() {
            let mut survived = image.durable.clone();
            if Some(*number) == newest {
                let mut left = torn;
                for (offset, data) in &image.pending {
                    let kept = &data[..left.min(data.len())];
                    write_at(&mut survived, *offset, kept);
                    left -= kept.len();
                }
            }
            image.current = survived.clone();
            image.durable = survived;
            image.pending.clear();
        }
    }

    fn bytes(&self, number: u64) -> Vec<u8> {
        self.lock()[&number].current.clone()
    }

    fn set_bytes(&self, number: u64, bytes: Vec<u8>) {
        let mut files = self.lock();
        let image = files.get_mut(&number).unwrap();
        image.current = bytes.clone();
        image.durable = bytes;
        image.pending.clear();
    }
}

/// Writes `data` at `offset` of `bytes`, growing them with zeros if needed.
fn write_at(bytes: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if bytes.len() < offset + data.len() {
        bytes.resize(offset + data.len(), 0);
    }
    bytes[offset..offset + data.len()].copy_from_slice(data);
}

impl SegmentFiles for MemFiles {
    fn list(&self) -> io::Result<Vec<u64>> {
        Ok(self.lock().keys().copied().collect())
    }

    fn open(&self, number: u64) -> io::Result<Box<dyn StorageBackend>> {
        self.lock().entry(number).or_default();
        Ok(Box::new(MemFile { files: self.clone(), number }))
    }

    fn remove(&self, number: u64) -> io::Result<()> {
        self.lock().remove(&number);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        *self.durable_names.lock().unwrap() = self.lock().keys().copied().collect();
        Ok(())
    }
}

#[derive(Debug)]
struct MemFile {
    files: MemFiles,
    number: u64,
}

impl MemFile {
    fn with<T>(&self, f: impl FnOnce(&mut Image) -> T) -> io::Result<T> {
        let mut files = self.files.lock();
        let image = files.get_mut(&self.number).ok_or_else(|| io::Error::other("removed"))?;
        Ok(f(image))
    }
}

impl StorageBackend for MemFile {
    fn len(&self) -> io::Result<u64> {
        self.with(|i| i.current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.with(|i| {
            let start = usize::try_from(offset).unwrap();
            out.copy_from_slice(&i.current[start..start + out.len()]);
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        // Only ever called just before a sync here: not torn.
        self.with(|i| i.current.resize(usize::try_from(len).unwrap(), 0))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|i| {
            i.durable = i.current.clone();
            i.pending.clear();
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with(|i| {
            let start = usize::try_from(offset).unwrap();
            write_at(&mut i.current, start, data);
            i.pending.push((start, data.to_vec()));
        })
    }
}

fn entry(index: u64) -> Record {
    Record::Entry {
        index,
        bytes: format!("entry {index}").repeat(usize::try_from(index % 7 + 1).unwrap()).into_bytes(),
    }
}

/// The log as a reader sees it: entries, vote, committed id, purge.
type View = (Vec<(u64, Vec<u8>)>, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

fn view(wal: &Wal) -> View {
    (
        wal.read(.., usize::MAX).unwrap(),
        wal.vote().map(<[u8]>::to_vec),
        wal.committed().map(<[u8]>::to_vec),
        wal.purged().map(<[u8]>::to_vec),
    )
}

#[test]
fn records_read_back_after_a_reopen_as_written() {
    let files = MemFiles::default();
    let mut wal = Wal::open(Box::new(files.clone())).unwrap();
    wal.append((1..=5).map(entry).collect(), true).unwrap();
    wal.append(vec![Record::Vote(b"v1".to_vec()), Record::Committed(b"c3".to_vec())], true).unwrap();
    assert_eq!(wal.read(2..4, usize::MAX).unwrap().len(), 2);
    assert_eq!(wal.read(1.., 1).unwrap().len(), 1, "the first entry is read even past the byte limit");
    assert_eq!(wal.last().unwrap().map(|(i, _)| i), Some(5));
    let before = view(&wal);
    drop(wal);
    let wal = Wal::open(Box::new(files)).unwrap();
    assert_eq!(view(&wal), before);
    assert_eq!(wal.read(.., usize::MAX).unwrap().len(), 5);
    assert_eq!(wal.vote(), Some(&b"v1"[..]));
}

#[test]
fn a_truncation_and_a_purge_hold_across_a_reopen() {
    let files = MemFiles::default();
    let mut wal = Wal::open(Box::new(files.clone())).unwrap();
    wal.append((1..=10).map(entry).collect(), true).unwrap();
    wal.append(vec![Record::Truncate { from: 8 }], true).unwrap();
    wal.append(vec![Record::Entry { index: 8, bytes: b"new 8".to_vec() }], true).unwrap();
    wal.append(vec![Record::Purged { index: 3, bytes: b"p3".to_vec() }], true).unwrap();
    let indexes = |wal: &Wal| wal.read(.., usize::MAX).unwrap().into_iter().map(|(i, _)| i).collect::<Vec<_>>();
    assert_eq!(indexes(&wal), vec![4, 5, 6, 7, 8]);
    assert_eq!(wal.last().unwrap(), Some((8, b"new 8".to_vec())));
    drop(wal);
    let wal = Wal::open(Box::new(files)).unwrap();
    assert_eq!(indexes(&wal), vec![4, 5, 6, 7, 8]);
    assert_eq!(wal.purged(), Some(&b"p3"[..]));
    // An entry appended at an index held replaces it and everything after.
    let mut wal = wal;
    wal.append(vec![Record::Entry { index: 6, bytes: b"new 6".to_vec() }], true).unwrap();
    assert_eq!(indexes(&wal), vec![4, 5, 6]);
}

#[test]
fn purged_segments_leave_the_disk_and_the_vote_survives_them() {
    let files = MemFiles::default();
    let mut wal = Wal::open_sized(Box::new(files.clone()), 256).unwrap();
    wal.append(vec![Record::Vote(b"vote of term 3".to_vec())], true).unwrap();
    for index in 1..=40 {
        wal.append(vec![entry(index)], false).unwrap();
    }
    wal.sync().unwrap();
    let segments = files.list().unwrap().len();
    assert!(segments > 3, "small segments roll over ({segments})");
    wal.append(vec![Record::Purged { index: 35, bytes: b"p35".to_vec() }], true).unwrap();
    let removed = wal.remove_purged().unwrap();
    assert!(removed >= segments - 3, "removed {removed} of {segments}");
    assert_eq!(files.list().unwrap().len(), segments - removed);
    drop(wal);
    let wal = Wal::open_sized(Box::new(files), 256).unwrap();
    assert_eq!(wal.vote(), Some(&b"vote of term 3"[..]), "the newest segments restate the vote");
    assert_eq!(
        wal.read(.., usize::MAX).unwrap().into_iter().map(|(i, _)| i).collect::<Vec<_>>(),
        (36..=40).collect::<Vec<_>>()
    );
}

#[test]
fn a_torn_tail_of_the_newest_segment_is_cut_and_damage_elsewhere_is_an_error() {
    let files = MemFiles::default();
    let mut wal = Wal::open_sized(Box::new(files.clone()), 256).unwrap();
    for index in 1..=20 {
        wal.append(vec![entry(index)], true).unwrap();
    }
    drop(wal);
    let numbers = {
        let mut n = files.list().unwrap();
        n.sort_unstable();
        n
    };
    let newest = *numbers.last().unwrap();
    // A half-written record where the newest segment's records end, in its
    // space written ahead.
    let wal = Wal::open_sized(Box::new(files.clone()), 256).unwrap();
    let good = usize::try_from(wal.active().1).unwrap();
    drop(wal);
    let mut bytes = files.bytes(newest);
    assert!(bytes.len() > good && bytes[good..].iter().all(|b| *b == 0), "space is written ahead, as zeros");
    let mut record = Vec::new();
    entry(21).encode(&mut record);
    write_at(&mut bytes, good, &record[..record.len() / 2]);
    files.set_bytes(newest, bytes);
    let wal = Wal::open_sized(Box::new(files.clone()), 256).unwrap();
    assert!(wal.cut_torn_tail());
    assert_eq!(wal.last().unwrap().map(|(i, _)| i), Some(20));
    assert_eq!(files.bytes(newest).len(), good, "the torn record is cut");
    drop(wal);
    // A flipped byte in an older segment is damage, named.
    let mut bytes = files.bytes(numbers[0]);
    let at = HEADER.len() + 12;
    bytes[at] ^= 0xff;
    files.set_bytes(numbers[0], bytes);
    let error = Wal::open_sized(Box::new(files), 256).unwrap_err().to_string();
    assert!(error.contains(&format!("{:020}.wal is damaged at byte {}", numbers[0], HEADER.len())), "{error}");
}

#[test]
fn segments_on_disk_are_listed_by_number_and_ignore_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = SegmentDir::new(dir.path().join("raft.wal")).unwrap();
    let mut wal = Wal::open_sized(Box::new(files.clone()), 128).unwrap();
    for index in 1..=10 {
        wal.append(vec![entry(index)], true).unwrap();
    }
    std::fs::write(dir.path().join("raft.wal").join("notes.txt"), "not a segment").unwrap();
    let before = view(&wal);
    drop(wal);
    let wal = Wal::open_sized(Box::new(files.clone()), 128).unwrap();
    assert_eq!(view(&wal), before);
    assert!(files.list().unwrap().len() > 2);
}

/// One step of the crash property test.
#[derive(Debug, Clone)]
enum Step {
    Append { count: u64, sync: bool },
    Vote(u8),
    Committed(u8),
    Truncate(u64),
    Purge(u64),
    Crash { torn: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1..4u64, any::<bool>()).prop_map(|(count, sync)| Step::Append { count, sync }),
        1 => any::<u8>().prop_map(Step::Vote),
        1 => any::<u8>().prop_map(Step::Committed),
        1 => (0..6u64).prop_map(Step::Truncate),
        1 => (0..10u64).prop_map(Step::Purge),
        1 => (0..200usize).prop_map(|torn| Step::Crash { torn }),
    ]
}

fn seed() -> u64 {
    let seed = std::env::var("ARCHON_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "log file crash property test seed: {seed} (replay with ARCHON_TEST_SEED={seed} cargo nextest run -p archon-raft \
         wal::tests)"
    );
    seed
}

/// Every synced change survives a crash; an unsynced one may or may not, but
/// what reopens is always the log as it stood after some prefix of the steps
/// since the last sync — never a mix, never a damaged log.
#[test]
fn a_crash_keeps_every_synced_change_and_leaves_a_prefix_of_the_rest() {
    let mut runner = TestRunner::new(Config {
        cases: 200,
        rng_seed: RngSeed::Fixed(seed()),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(step(), 1..60), |steps| {
            let files = MemFiles::default();
            let mut wal = Wal::open_sized(Box::new(files.clone()), 300).unwrap();
            // The views the log may reopen as: since the last sync, one per step.
            let mut possible = vec![view(&wal)];
            for step in steps {
                match step {
                    Step::Crash { torn } => {
                        drop(wal);
                        files.crash(torn);
                        wal = Wal::open_sized(Box::new(files.clone()), 300).unwrap();
                        let now = view(&wal);
                        prop_assert!(possible.contains(&now), "reopened as {now:?}, not one of {possible:?}");
                        possible = vec![now];
                        continue;
                    }
                    Step::Append { count, sync } => {
                        let last =
                            wal.last().unwrap().map(|(i, _)| i).or(wal.purged.as_ref().map(|p| p.0)).unwrap_or(0);
                        wal.append((last + 1..=last + count).map(entry).collect(), sync).unwrap();
                        if sync {
                            possible.clear();
                        } else {
                            // A torn write may keep some of the group's records.
                            for kept in last + 1..last + count {
                                let mut partial = view(&wal);
                                partial.0.retain(|(i, _)| *i <= kept);
                                possible.push(partial);
                            }
                        }
                    }
                    Step::Vote(v) => {
                        wal.append(vec![Record::Vote(vec![v])], true).unwrap();
                        possible.clear();
                    }
                    Step::Committed(c) => wal.append(vec![Record::Committed(vec![c])], false).unwrap(),
                    Step::Truncate(back) => {
                        let Some((last, _)) = wal.last().unwrap() else { continue };
                        wal.append(vec![Record::Truncate { from: last.saturating_sub(back).max(1) }], true).unwrap();
                        possible.clear();
                    }
                    Step::Purge(ahead) => {
                        let first = wal.read(.., 1).unwrap().first().map(|(i, _)| *i).unwrap_or(1);
                        let index = first + ahead;
                        wal.append(vec![Record::Purged { index, bytes: index.to_le_bytes().to_vec() }], true).unwrap();
                        wal.remove_purged().unwrap();
                        possible.clear();
                    }
                }
                possible.push(view(&wal));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn space_is_written_ahead_kept_across_a_clean_reopen_and_cut_from_a_full_segment() {
    let files = MemFiles::default();
    let mut wal = Wal::open(Box::new(files.clone())).unwrap();
    wal.append((1..=3).map(entry).collect(), true).unwrap();
    let allocated = files.bytes(1).len();
    let end = wal.active().1;
    assert!(allocated as u64 > end + 10 * (end - HEADER.len() as u64), "room ahead for more groups this size");
    assert!(files.bytes(1)[usize::try_from(end).unwrap()..].iter().all(|b| *b == 0));
    drop(wal);
    let mut wal = Wal::open(Box::new(files.clone())).unwrap();
    assert!(!wal.cut_torn_tail(), "the space ahead is not a torn tail");
    assert_eq!(wal.active().1, end);
    wal.append((4..=6).map(entry).collect(), true).unwrap();
    assert_eq!(files.bytes(1).len(), allocated, "later groups overwrite the space, the file keeps its length");
    assert_eq!(wal.read(.., usize::MAX).unwrap().len(), 6);
    // A large group carries no zeros: the file ends where its records do.
    wal.append(vec![Record::Entry { index: 7, bytes: vec![7; usize::try_from(super::SMALL_GROUP).unwrap()] }], true)
        .unwrap();
    assert_eq!(files.bytes(1).len() as u64, wal.active().1);
    drop(wal);

    // Small segments: each full one is cut to its records before the next starts.
    let files = MemFiles::default();
    let mut wal = Wal::open_sized(Box::new(files.clone()), 256).unwrap();
    for index in 1..=20 {
        wal.append(vec![entry(index)], true).unwrap();
    }
    let newest = wal.active().0;
    assert!(newest > 2);
    for number in 1..newest {
        assert_ne!(files.bytes(number).last(), Some(&0), "segment {number} ends with its last record");
    }
    assert!(files.bytes(newest).len() as u64 > wal.active().1, "the newest has space ahead");
    drop(wal);
    let wal = Wal::open_sized(Box::new(files), 256).unwrap();
    assert!(!wal.cut_torn_tail());
    assert_eq!(wal.read(.., usize::MAX).unwrap().len(), 20);
}
