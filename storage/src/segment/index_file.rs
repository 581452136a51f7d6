//! A file of fixed-size entries, shared by the offset and time indexes.
//!
//! Two states:
//! - *writable* (the active segment): entries are appended with positional writes at the end of
//!   the valid entries, so the file grows by one entry per append and is never preallocated, and
//!   a copy of the entries is kept in memory for lookups. Preallocating and memory-mapping a large
//!   sparse file for writing made the first store into it zero a whole page-cache folio (up to
//!   2 MiB with large folios) per index file: with 1,000 partitions that memset was most of the
//!   broker's CPU.
//! - *mapped* (sealed segments): the file is trimmed to its entries and mapped read-only; the
//!   file descriptor is closed (the mapping keeps the pages reachable).
//!
//! Invariants: the first `entries * entry_bytes` bytes of the file are the entries (a writable
//! file may hold a torn partial entry past them after a failed write; it is overwritten by the
//! next append and cut when sealed); a writable index never holds more than `capacity_entries`
//! unless it was opened that way; reads of entries never go past the mapping or the in-memory
//! copy. A file whose length is not a multiple of the entry size is flagged `misaligned` so the
//! owner rebuilds it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions};

use crate::error::StorageError;

enum State {
    Writable {
        file: File,
        /// The entries, as on disk: lookups on the active segment never touch the file.
        bytes: Vec<u8>,
        /// The index is full (the segment must roll) at this many entries.
        capacity_entries: usize,
    },
    /// `None` when there are no entries (an empty mapping is not portable).
    Mapped(Option<Mmap>),
}

pub(crate) struct IndexFile {
    path: PathBuf,
    state: State,
    entry_bytes: usize,
    entries: usize,
    misaligned: bool,
    /// The file did not exist when opened (a missing index of a non-empty log must be rebuilt).
    created: bool,
}

fn capacity_entries(max_bytes: u32, entry_bytes: usize) -> usize {
    usize::try_from(u64::from(max_bytes) / entry_bytes as u64).unwrap_or(usize::MAX)
}

fn open_rw(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Read-only mapping of the first `len` bytes of `file`; `None` if `len` is 0.
fn map(file: &File, len: usize) -> Result<Option<Mmap>, StorageError> {
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the partition directory is owned by this process (the data directory is locked);
    // nobody else truncates or writes the file while it is mapped, and this crate only maps
    // sealed indexes, which it never writes (the same assumption Kafka makes).
    let mmap = unsafe { MmapOptions::new().len(len).map(file)? };
    Ok(Some(mmap))
}

impl IndexFile {
    /// Opens an existing index read-only and mapped (creating an empty file if it is missing).
    /// A trailing partial entry is left out of the mapping and flags the index `misaligned`.
    pub(crate) fn open(path: &Path, entry_bytes: usize) -> Result<IndexFile, StorageError> {
        let created = !path.exists();
        let file = open_rw(path)?;
        let len = file.metadata()?.len();
        let entries = usize::try_from(len / entry_bytes as u64).unwrap_or(usize::MAX);
        let mmap = map(&file, entries.saturating_mul(entry_bytes))?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            state: State::Mapped(mmap),
            entry_bytes,
            entries,
            misaligned: len % entry_bytes as u64 != 0,
            created,
        })
    }

    /// Creates an empty writable index (truncating a stale file of the same name).
    pub(crate) fn create(
        path: &Path,
        entry_bytes: usize,
        max_bytes: u32,
    ) -> Result<IndexFile, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(IndexFile {
            path: path.to_path_buf(),
            state: State::Writable {
                file,
                bytes: Vec::new(),
                capacity_entries: capacity_entries(max_bytes, entry_bytes),
            },
            entry_bytes,
            entries: 0,
            misaligned: false,
            created: false,
        })
    }

    /// Makes the index appendable, keeping its entries, full at `max_bytes` (rounded down to
    /// whole entries, never below the entries it has). A torn tail past the entries is cut.
    pub(crate) fn make_writable(&mut self, max_bytes: u32) -> Result<(), StorageError> {
        let capacity = capacity_entries(max_bytes, self.entry_bytes).max(self.entries);
        match &mut self.state {
            State::Writable {
                capacity_entries, ..
            } => *capacity_entries = capacity,
            State::Mapped(mmap) => {
                let used = self.entries * self.entry_bytes;
                let bytes = match mmap {
                    Some(m) => m.get(..used).unwrap_or_default().to_vec(),
                    None => Vec::new(),
                };
                let file = open_rw(&self.path)?;
                // The mapping goes before the file shrinks (touching a page past the end of a
                // mapped file is SIGBUS).
                self.state = State::Writable {
                    file,
                    bytes,
                    capacity_entries: capacity,
                };
                self.cut_file_to_entries()?;
            }
        }
        Ok(())
    }

    /// Forgets every entry (for a rebuild) and makes the index writable and empty on disk; the
    /// old entries are never read.
    pub(crate) fn reset_writable(&mut self, max_bytes: u32) -> Result<(), StorageError> {
        // Drop the entries first, so a mapped index does not copy what is about to be discarded.
        self.entries = 0;
        if let State::Mapped(_) = self.state {
            self.state = State::Mapped(None);
        }
        self.make_writable(max_bytes)?;
        if let State::Writable { bytes, .. } = &mut self.state {
            *bytes = Vec::new();
        }
        self.cut_file_to_entries()?;
        self.misaligned = false;
        self.created = false;
        Ok(())
    }

    /// Sets the file length to the entries (writable state only).
    fn cut_file_to_entries(&self) -> Result<(), StorageError> {
        if let State::Writable { file, .. } = &self.state {
            let used = (self.entries * self.entry_bytes) as u64;
            if file.metadata()?.len() != used {
                file.set_len(used)?;
            }
        }
        Ok(())
    }

    /// Seals the index when its segment becomes inactive (or at close): the file is cut to its
    /// entries, synced (only with `sync`: a close whose caller syncs the filesystem,
    /// `Log::close_unsynced`), and mapped read-only; the in-memory copy and the descriptor go.
    pub(crate) fn seal_with(&mut self, sync: bool) -> Result<(), StorageError> {
        let State::Writable { file, .. } = &self.state else {
            return Ok(());
        };
        self.cut_file_to_entries()?;
        if sync {
            file.sync_data()?;
        }
        let mmap = map(file, self.entries * self.entry_bytes)?;
        self.state = State::Mapped(mmap);
        Ok(())
    }

    /// Syncs appended entries to disk (a sealed index was synced when sealed).
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        if let State::Writable { file, .. } = &self.state {
            file.sync_data()?;
        }
        Ok(())
    }

    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// True when no entry can be appended: always for a sealed index.
    pub(crate) fn is_full(&self) -> bool {
        match &self.state {
            State::Writable {
                capacity_entries, ..
            } => self.entries >= *capacity_entries,
            State::Mapped(_) => true,
        }
    }

    pub(crate) fn is_misaligned(&self) -> bool {
        self.misaligned
    }

    pub(crate) fn was_created(&self) -> bool {
        self.created
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn entry(&self, i: usize) -> Option<&[u8]> {
        if i >= self.entries {
            return None;
        }
        let start = i.checked_mul(self.entry_bytes)?;
        let end = start.checked_add(self.entry_bytes)?;
        match &self.state {
            State::Writable { bytes, .. } => bytes.get(start..end),
            State::Mapped(mmap) => mmap.as_ref()?.get(start..end),
        }
    }

    /// Appends an entry with one positional write at the end of the entries; returns false (and
    /// keeps the entry count) when the index is sealed or full, or the write failed. A lost entry
    /// only makes lookups scan further: the index is sparse.
    pub(crate) fn push(&mut self, entry: &[u8]) -> bool {
        if self.is_full() || entry.len() != self.entry_bytes {
            return false;
        }
        let State::Writable { file, bytes, .. } = &mut self.state else {
            return false;
        };
        let at = (self.entries * self.entry_bytes) as u64;
        if let Err(error) = file.write_all_at(entry, at) {
            tracing::warn!(index = %self.path.display(), %error, "could not append an index entry");
            return false;
        }
        bytes.extend_from_slice(entry);
        self.entries += 1;
        true
    }

    /// Keeps the first `entries` entries (a sealed index only stops reading past them).
    #[cfg(test)]
    pub(crate) fn truncate_entries(&mut self, entries: usize) -> Result<(), StorageError> {
        if entries >= self.entries {
            return Ok(());
        }
        self.entries = entries;
        if let State::Writable { bytes, .. } = &mut self.state {
            bytes.truncate(entries * self.entry_bytes);
        }
        self.cut_file_to_entries()
    }

    /// Index of the last entry for which `is_le(entry)` holds, assuming it holds for a prefix.
    pub(crate) fn last_matching(&self, is_le: impl Fn(&[u8]) -> bool) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid).is_some_and(&is_le) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[test]
    fn writable_index_grows_one_entry_per_append_and_seals_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.index");
        let mut index = IndexFile::create(&path, 8, 10 * 1024 * 1024).unwrap();
        assert_eq!(file_len(&path), 0, "no preallocation");
        for i in 0..5u8 {
            assert!(index.push(&[i; 8]));
            assert_eq!(file_len(&path), 8 * (u64::from(i) + 1));
        }
        assert!(!index.push(&[0; 7]), "wrong entry size");
        assert_eq!(std::fs::read(&path).unwrap()[32..], [4u8; 8]);
        assert_eq!(index.entry(2), Some(&[2u8; 8][..]));
        index.seal_with(true).unwrap();
        assert!(index.is_full() && !index.push(&[9; 8]), "sealed");
        assert_eq!(index.entry(4), Some(&[4u8; 8][..]));
        assert_eq!(index.entry(5), None);
        // Writable again: entries kept, appends continue at the end.
        index.make_writable(1024).unwrap();
        assert!(index.push(&[5; 8]));
        assert_eq!(file_len(&path), 48);
        assert_eq!(index.entry(5), Some(&[5u8; 8][..]));
    }

    #[test]
    fn make_writable_cuts_a_torn_tail_and_reset_forgets_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.index");
        std::fs::write(&path, [1u8; 8 * 3 + 5]).unwrap();
        let mut index = IndexFile::open(&path, 8).unwrap();
        assert!(index.is_misaligned() && !index.was_created());
        assert_eq!(index.entries(), 3);
        index.make_writable(1024).unwrap();
        assert_eq!(file_len(&path), 24);
        assert!(index.push(&[2; 8]));
        assert_eq!(index.entry(3), Some(&[2u8; 8][..]));
        index.reset_writable(1024).unwrap();
        assert_eq!((index.entries(), file_len(&path)), (0, 0));
        assert!(!index.is_misaligned());
        assert!(index.push(&[3; 8]));
        assert_eq!(std::fs::read(&path).unwrap(), [3u8; 8]);
    }

    #[test]
    fn missing_file_is_created_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.timeindex");
        let index = IndexFile::open(&path, 12).unwrap();
        assert!(index.was_created());
        assert_eq!((index.entries(), file_len(&path)), (0, 0));
        assert_eq!(index.entry(0), None);
    }
}
