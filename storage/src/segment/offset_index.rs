//! Sparse offset index of a segment: 8-byte entries (relative offset u32, file position u32).
//!
//! An entry (r, p) says the batch whose base offset is `segment base + r` starts at byte `p` of the
//! `.log` file. Invariants: relative offsets and positions strictly increase, positions are below
//! the log size. `lookup` returns the last entry at or below an offset, so scanning forward from
//! its position finds the batch containing the offset.

use std::path::Path;

use crate::error::StorageError;
use crate::segment::index_file::IndexFile;

const ENTRY_BYTES: usize = 8;

pub(crate) struct OffsetIndex {
    file: IndexFile,
    base_offset: i64,
}

fn decode(entry: &[u8]) -> (u32, u32) {
    let mut rel = [0u8; 4];
    let mut pos = [0u8; 4];
    if let (Some(r), Some(p)) = (entry.get(0..4), entry.get(4..8)) {
        rel.copy_from_slice(r);
        pos.copy_from_slice(p);
    }
    (u32::from_be_bytes(rel), u32::from_be_bytes(pos))
}

impl OffsetIndex {
    /// Opens an existing index read-only (sealed); see `IndexFile::open`.
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<OffsetIndex, StorageError> {
        Ok(OffsetIndex {
            file: IndexFile::open(path, ENTRY_BYTES)?,
            base_offset,
        })
    }

    /// Creates an empty writable index, full at `max_bytes`.
    pub(crate) fn create(
        path: &Path,
        base_offset: i64,
        max_bytes: u32,
    ) -> Result<OffsetIndex, StorageError> {
        Ok(OffsetIndex {
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

    /// (absolute offset, position) of entry `i`.
    pub(crate) fn entry(&self, i: usize) -> Option<(i64, u64)> {
        let (rel, pos) = decode(self.file.entry(i)?);
        Some((
            self.base_offset.saturating_add(i64::from(rel)),
            u64::from(pos),
        ))
    }

    pub(crate) fn last_entry(&self) -> Option<(i64, u64)> {
        self.entries().checked_sub(1).and_then(|i| self.entry(i))
    }

    /// Position to start scanning from for `offset`: the last entry at or below it, else 0.
    pub(crate) fn lookup(&self, offset: i64) -> (i64, u64) {
        let Some(rel_target) = offset.checked_sub(self.base_offset) else {
            return (self.base_offset, 0);
        };
        self.file
            .last_matching(|e| i64::from(decode(e).0) <= rel_target)
            .and_then(|i| self.entry(i))
            .unwrap_or((self.base_offset, 0))
    }

    /// Appends an entry; false if the offset is not representable, not increasing, or full.
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> bool {
        let (Ok(rel), Ok(pos)) = (
            u32::try_from(offset.saturating_sub(self.base_offset)),
            u32::try_from(position),
        ) else {
            return false;
        };
        if let Some((last_offset, last_pos)) = self.last_entry() {
            if offset <= last_offset || position <= last_pos {
                return false;
            }
        }
        let mut entry = [0u8; ENTRY_BYTES];
        entry[..4].copy_from_slice(&rel.to_be_bytes());
        entry[4..].copy_from_slice(&pos.to_be_bytes());
        self.file.push(&entry)
    }

    /// True if every entry is increasing and points inside a log of `log_bytes`.
    pub(crate) fn is_sane(&self, log_bytes: u64) -> bool {
        if self.file.is_misaligned() {
            return false;
        }
        let mut previous: Option<(i64, u64)> = None;
        for i in 0..self.entries() {
            let Some((offset, pos)) = self.entry(i) else {
                return false;
            };
            if pos >= log_bytes {
                return false;
            }
            if let Some((po, pp)) = previous {
                if offset <= po || pos <= pp {
                    return false;
                }
            }
            previous = Some((offset, pos));
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn append_lookup_truncate_trim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut index = OffsetIndex::create(&path, 100, 80).unwrap();
        assert_eq!(index.lookup(150), (100, 0));
        for i in 1..=5u64 {
            assert!(index.append(100 + 10 * i as i64, 1000 * i));
        }
        assert!(!index.append(120, 99_999), "must increase");
        assert_eq!(index.lookup(99), (100, 0));
        assert_eq!(index.lookup(110), (110, 1000));
        assert_eq!(index.lookup(129), (120, 2000));
        assert_eq!(index.lookup(10_000), (150, 5000));
        index.file().truncate_entries(2).unwrap();
        assert_eq!(index.entries(), 2);
        assert!(index.is_sane(2001));
        assert!(!index.is_sane(2000));
        index.file().seal_with(true).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        drop(index);
        let index = OffsetIndex::open(&path, 100).unwrap();
        assert_eq!(index.lookup(125), (120, 2000));
        std::fs::write(&path, [0u8; 13]).unwrap();
        let index = OffsetIndex::open(&path, 100).unwrap();
        assert!(!index.is_sane(1 << 20));
    }

    #[test]
    fn full_index_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = OffsetIndex::create(&dir.path().join("y.index"), 0, 16).unwrap();
        assert!(index.append(1, 1));
        assert!(index.append(2, 2));
        assert!(!index.append(3, 3));
        assert!(index.file().is_full());
    }
}
