//! A memory-mapped file of fixed-size entries, shared by the offset and time indexes.
//!
//! Invariants: `entries * entry_bytes <= mapped length`; the file is preallocated to the index
//! size limit while writable and trimmed to exactly `entries * entry_bytes` when sealed. Reads of
//! entries never go past the map. A file whose length is not a multiple of the entry size is
//! flagged `misaligned` so the owner rebuilds it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::error::StorageError;

pub(crate) struct IndexFile {
    path: PathBuf,
    file: File,
    /// `None` when the mapped length is 0 (an empty mapping is not portable).
    mmap: Option<MmapMut>,
    entry_bytes: usize,
    entries: usize,
    capacity_entries: usize,
    misaligned: bool,
    /// The file did not exist when opened (a missing index of a non-empty log must be rebuilt).
    created: bool,
}

fn round_down(bytes: u64, entry_bytes: usize) -> u64 {
    let e = entry_bytes as u64;
    bytes / e * e
}

impl IndexFile {
    /// Opens (creating if missing). `preallocate_bytes`: make it writable with this capacity.
    pub(crate) fn open(
        path: &Path,
        entry_bytes: usize,
        preallocate_bytes: Option<u32>,
    ) -> Result<IndexFile, StorageError> {
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        let misaligned = len % entry_bytes as u64 != 0;
        let entries = usize::try_from(len / entry_bytes as u64).unwrap_or(0);
        let mut index = IndexFile {
            path: path.to_path_buf(),
            file,
            mmap: None,
            entry_bytes,
            entries,
            capacity_entries: entries,
            misaligned,
            created,
        };
        match preallocate_bytes {
            Some(max) => index.make_writable(max)?,
            None => index.remap(round_down(len, entry_bytes))?,
        }
        Ok(index)
    }

    fn remap(&mut self, mapped_len: u64) -> Result<(), StorageError> {
        self.mmap = None;
        if self.file.metadata()?.len() != mapped_len {
            self.file.set_len(mapped_len)?;
        }
        self.capacity_entries = usize::try_from(mapped_len / self.entry_bytes as u64).unwrap_or(0);
        self.entries = self.entries.min(self.capacity_entries);
        if mapped_len > 0 {
            // SAFETY: the partition directory is owned by this process; nobody else truncates or
            // writes the file while it is mapped (the same assumption Kafka makes).
            let mmap = unsafe { MmapMut::map_mut(&self.file)? };
            self.mmap = Some(mmap);
        }
        Ok(())
    }

    /// Grows the file to `max_bytes` (rounded down to whole entries, never below the entries).
    pub(crate) fn make_writable(&mut self, max_bytes: u32) -> Result<(), StorageError> {
        let used = (self.entries * self.entry_bytes) as u64;
        let cap = round_down(u64::from(max_bytes), self.entry_bytes).max(used);
        self.remap(cap)
    }

    /// Shrinks the file to its entries (when the segment becomes inactive or at close).
    pub(crate) fn trim(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        self.remap((self.entries * self.entry_bytes) as u64)
    }

    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        if let Some(mmap) = &self.mmap {
            mmap.flush()?;
        }
        Ok(())
    }

    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries >= self.capacity_entries
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
        self.mmap.as_ref()?.get(start..start + self.entry_bytes)
    }

    /// Appends an entry; returns false (and writes nothing) when the index is full.
    pub(crate) fn push(&mut self, entry: &[u8]) -> bool {
        if self.is_full() || entry.len() != self.entry_bytes {
            return false;
        }
        let start = self.entries * self.entry_bytes;
        let Some(dst) = self
            .mmap
            .as_mut()
            .and_then(|m| m.get_mut(start..start + entry.len()))
        else {
            return false;
        };
        dst.copy_from_slice(entry);
        self.entries += 1;
        true
    }

    /// Keeps the first `entries` entries and zeroes the rest of the used area.
    pub(crate) fn truncate_entries(&mut self, entries: usize) {
        if entries >= self.entries {
            return;
        }
        let from = entries * self.entry_bytes;
        let to = self.entries * self.entry_bytes;
        if let Some(area) = self.mmap.as_mut().and_then(|m| m.get_mut(from..to)) {
            area.fill(0);
        }
        self.entries = entries;
    }

    /// Forgets every entry (for a rebuild); the file stays at its current capacity.
    pub(crate) fn reset(&mut self) {
        self.truncate_entries(0);
        self.misaligned = false;
        self.created = false;
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
