//! Sparse time index of a segment: 12-byte entries (timestamp i64, relative offset u32).
//!
//! An entry (t, r) says: the largest timestamp among batches up to and including the batch with
//! base offset `segment base + r` is `t`, and that batch holds it. Invariants: timestamps strictly
//! increase, relative offsets never decrease. The last entry, written when the segment is sealed,
//! carries the segment's largest timestamp.

use std::path::Path;

use crate::error::StorageError;
use crate::segment::index_file::IndexFile;

const ENTRY_BYTES: usize = 12;

pub(crate) struct TimeIndex {
    file: IndexFile,
    base_offset: i64,
}

fn decode(entry: &[u8]) -> (i64, u32) {
    let mut ts = [0u8; 8];
    let mut rel = [0u8; 4];
    if let (Some(t), Some(r)) = (entry.get(0..8), entry.get(8..12)) {
        ts.copy_from_slice(t);
        rel.copy_from_slice(r);
    }
    (i64::from_be_bytes(ts), u32::from_be_bytes(rel))
}

impl TimeIndex {
    /// Opens an existing index read-only (sealed); see `IndexFile::open`.
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<TimeIndex, StorageError> {
        Ok(TimeIndex {
            file: IndexFile::open(path, ENTRY_BYTES)?,
            base_offset,
        })
    }

    /// Creates an empty writable index, full at `max_bytes`.
    pub(crate) fn create(
        path: &Path,
        base_offset: i64,
        max_bytes: u32,
    ) -> Result<TimeIndex, StorageError> {
        Ok(TimeIndex {
            file: IndexFile::create(path, ENTRY_BYTES, max_bytes)?,
            base_offset,
        })
    }

    pub(crate) fn file(&mut self) -> &mut IndexFile {
        &mut self.file
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub(crate) fn entries(&self) -> usize {
        self.file.entries()
    }

    /// (timestamp, absolute batch base offset) of entry `i`.
    pub(crate) fn entry(&self, i: usize) -> Option<(i64, i64)> {
        let (ts, rel) = decode(self.file.entry(i)?);
        Some((ts, self.base_offset.saturating_add(i64::from(rel))))
    }

    pub(crate) fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries().checked_sub(1).and_then(|i| self.entry(i))
    }

    /// The last entry with a timestamp strictly below `timestamp`: no record at or before its
    /// offset's batch can have a timestamp >= `timestamp`, so a search may start at that batch.
    pub(crate) fn lookup_below(&self, timestamp: i64) -> Option<(i64, i64)> {
        self.file
            .last_matching(|e| decode(e).0 < timestamp)
            .and_then(|i| self.entry(i))
    }

    /// Appends if `timestamp` is above the last entry's; false if skipped or full.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> bool {
        let Ok(rel) = u32::try_from(offset.saturating_sub(self.base_offset)) else {
            return false;
        };
        if let Some((last_ts, last_offset)) = self.last_entry() {
            if timestamp <= last_ts || offset < last_offset {
                return false;
            }
        }
        let mut entry = [0u8; ENTRY_BYTES];
        entry[..8].copy_from_slice(&timestamp.to_be_bytes());
        entry[8..].copy_from_slice(&rel.to_be_bytes());
        self.file.push(&entry)
    }

    /// True if timestamps strictly increase and offsets never decrease nor pass `next_offset`.
    pub(crate) fn is_sane(&self, next_offset: i64) -> bool {
        if self.file.is_misaligned() {
            return false;
        }
        let mut previous: Option<(i64, i64)> = None;
        for i in 0..self.entries() {
            let Some((ts, offset)) = self.entry(i) else {
                return false;
            };
            if offset >= next_offset.max(self.base_offset.saturating_add(1)) {
                return false;
            }
            if let Some((pt, po)) = previous {
                if ts <= pt || offset < po {
                    return false;
                }
            }
            previous = Some((ts, offset));
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn append_lookup_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TimeIndex::create(&dir.path().join("x.timeindex"), 50, 120).unwrap();
        assert!(index.maybe_append(1000, 50));
        assert!(!index.maybe_append(1000, 60), "timestamps must grow");
        assert!(index.maybe_append(2000, 60));
        assert!(index.maybe_append(3000, 70));
        assert_eq!(index.lookup_below(1000), None);
        assert_eq!(index.lookup_below(1001), Some((1000, 50)));
        assert_eq!(index.lookup_below(2500), Some((2000, 60)));
        assert_eq!(index.lookup_below(i64::MAX), Some((3000, 70)));
        assert!(index.is_sane(71));
        assert!(!index.is_sane(70));
        index.file().truncate_entries(1).unwrap();
        assert_eq!(index.entries(), 1);
        assert_eq!(index.last_entry(), Some((1000, 50)));
    }
}
