//! The log's recent entries, kept decoded in memory from the moment they are
//! written until they are applied, so that apply (and replication to followers
//! in step) reads them without decoding their JSON again.
//!
//! What it holds is always the log's tail: entries are added at the end once
//! their write committed, a truncation removes the same tail from both, and
//! entries leave from the front once applied or past the byte budget. A read
//! it cannot serve whole goes to the file.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Mutex;

use openraft::Entry;

use crate::TypeConfig;

/// The budget, in bytes of the entries' JSON: about twice that in memory.
pub(super) const RECENT_BYTES: usize = 16 << 20;

/// See the module docs.
#[derive(Debug)]
pub(super) struct Recent {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Index → (entry, its JSON length); contiguous.
    entries: BTreeMap<u64, (Entry<TypeConfig>, usize)>,
    bytes: usize,
}

impl Inner {
    fn pop_first(&mut self) {
        if let Some((_, (_, len))) = self.entries.pop_first() {
            self.bytes -= len;
        }
    }
}

impl Recent {
    pub(super) fn new() -> Recent {
        Recent { inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds entries just written to the log's end (with their JSON lengths).
    pub(super) fn appended(&self, entries: Vec<(Entry<TypeConfig>, usize)>) {
        let mut inner = self.lock();
        for (entry, len) in entries {
            let index = entry.log_id.index;
            // Not right after the last one: what is held is no longer the tail.
            if inner.entries.last_key_value().is_some_and(|(last, _)| last.checked_add(1) != Some(index)) {
                inner.entries.clear();
                inner.bytes = 0;
            }
            inner.bytes += len;
            inner.entries.insert(index, (entry, len));
            while inner.bytes > RECENT_BYTES && inner.entries.len() > 1 {
                inner.pop_first();
            }
        }
    }

    /// The entries in `range` if all of them are held (`None`: read the file).
    pub(super) fn get(&self, range: (Bound<u64>, Bound<u64>)) -> Option<Vec<Entry<TypeConfig>>> {
        let inner = self.lock();
        let (&first, _) = inner.entries.first_key_value()?;
        let start = match range.0 {
            Bound::Included(i) => i,
            Bound::Excluded(i) => i.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        if start < first {
            return None;
        }
        // Held entries run to the log's end, so the rest of the range is empty.
        Some(
            inner
                .entries
                .range(start..)
                .map(|(_, (e, _))| e)
                .take_while(|e| range.contains(&e.log_id.index))
                .cloned()
                .collect(),
        )
    }

    /// The entries from `start` (before `end`) while their JSON stays within
    /// `budget` bytes, at least one; `None` if `start` is not held.
    pub(super) fn get_limited(&self, start: u64, end: u64, budget: usize) -> Option<Vec<Entry<TypeConfig>>> {
        let inner = self.lock();
        let (&first, _) = inner.entries.first_key_value()?;
        if start < first {
            return None;
        }
        let mut bytes = 0usize;
        Some(
            inner
                .entries
                .range(start..end.max(start))
                .take_while(|(_, (_, len))| {
                    let first = bytes == 0;
                    bytes = bytes.saturating_add((*len).max(1));
                    first || bytes <= budget
                })
                .map(|(_, (e, _))| e.clone())
                .collect(),
        )
    }

    /// Forgets entries from `index` on (the log was truncated there).
    pub(super) fn truncated(&self, index: u64) {
        let mut inner = self.lock();
        let gone = inner.entries.split_off(&index);
        inner.bytes -= gone.values().map(|(_, len)| len).sum::<usize>();
    }

    /// Forgets entries up to `index` (purged, or applied).
    pub(super) fn through(&self, index: u64) {
        let mut inner = self.lock();
        while inner.entries.first_key_value().is_some_and(|(&i, _)| i <= index) {
            inner.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;

    fn entry(index: u64) -> (Entry<TypeConfig>, usize) {
        (Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }, 10)
    }

    fn indexes(got: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        got.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn serves_only_whole_ranges_of_the_tail() {
        let recent = Recent::new();
        recent.appended((5..=9).map(entry).collect());
        assert_eq!(indexes(recent.get((Bound::Included(6), Bound::Excluded(9)))), Some(vec![6, 7, 8]));
        assert_eq!(indexes(recent.get((Bound::Included(8), Bound::Unbounded))), Some(vec![8, 9]));
        assert_eq!(indexes(recent.get((Bound::Included(4), Bound::Excluded(7)))), None, "4 is not held");
        recent.truncated(8);
        assert_eq!(indexes(recent.get((Bound::Included(6), Bound::Included(20)))), Some(vec![6, 7]));
        let limited = |start, end, budget| indexes(recent.get_limited(start, end, budget));
        assert_eq!(limited(5, 8, 25), Some(vec![5, 6]), "two of 10 bytes fit 25");
        assert_eq!(limited(5, 8, 3), Some(vec![5]), "one, however large");
        assert_eq!(limited(6, 20, 1000), Some(vec![6, 7]));
        assert_eq!(limited(4, 6, 1000), None);
        recent.through(6);
        assert_eq!(indexes(recent.get((Bound::Included(6), Bound::Excluded(8)))), None);
        // A gap (entries written after a restart or a truncation elsewhere) starts afresh.
        recent.appended(vec![entry(12)]);
        assert_eq!(indexes(recent.get((Bound::Included(7), Bound::Excluded(13)))), None);
        assert_eq!(indexes(recent.get((Bound::Included(12), Bound::Excluded(13)))), Some(vec![12]));
    }
}
