//! Crash-safe replacement of a group of segments by their cleaned version (Kafka's
//! `replaceSegments`), and its completion when a log is opened.
//!
//! Steps for a group starting at `base`:
//! 1. write `<base>.log.cleaned`, fsync it;
//! 2. rename it to `<base>.log.swap`, fsync the directory: from here the cleaning is committed;
//! 3. delete the group's other segments (bases above `base`);
//! 4. delete `<base>.index` and `<base>.timeindex`;
//! 5. rename `<base>.log.swap` over `<base>.log`, fsync the directory;
//! 6. build the indexes from the cleaned log (`open_installed`), without CRC checks: every batch
//!    of it was checked by the cleaner or written by it, and a check that failed now would cut
//!    the segment at that batch (and lose the records after it) with the originals gone.
//!
//! On open (`complete_swaps`, before temp files are deleted) a crash after step 2 is finished: a
//! swap file is whole, so segments whose base lies in (its base, its last offset] are deleted
//! (their retained records are in it) and steps 4-6 are redone. Segments of the group above the
//! swap's last offset had no record retained; if a crash left them, they hold valid,
//! non-overlapping data that the next cleaning removes. A crash before step 2 leaves a
//! `.cleaned` file, discarded with the other temp files: the old segments are intact; a
//! cleaning that fails before step 2 deletes its `.cleaned` file itself (`discard`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::header::{BatchHeader, HEADER_BYTES};
use crate::error::StorageError;
use crate::producer_state::snapshot::sync_dir;
use crate::segment::file_name::{
    parse_offset, path_for, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::segment::segment::remove_if_exists;
use crate::segment::Segment;

const CLEANED_SUFFIX: &str = "log.cleaned";
const SWAP_SUFFIX: &str = "log.swap";

/// Step 1: the cleaned log of a group, written sequentially.
pub(crate) struct CleanedWriter {
    file: BufWriter<File>,
    size_bytes: u64,
}

impl CleanedWriter {
    pub(crate) fn create(dir: &Path, base: i64) -> Result<Self, StorageError> {
        let file = File::create(path_for(dir, base, CLEANED_SUFFIX))?;
        Ok(CleanedWriter {
            file: BufWriter::with_capacity(256 * 1024, file),
            size_bytes: 0,
        })
    }

    pub(crate) fn write(&mut self, batch: &[u8]) -> Result<(), StorageError> {
        self.file.write_all(batch)?;
        self.size_bytes += batch.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs; returns the size written.
    pub(crate) fn finish(self) -> Result<u64, StorageError> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| StorageError::Io(e.into_error()))?;
        file.sync_all()?;
        Ok(self.size_bytes)
    }
}

/// Drops the `.cleaned` file of a cleaning that failed before step 2 (the old segments are
/// untouched); a failure to do so is only logged, as the next open deletes it anyway.
pub(crate) fn discard(dir: &Path, base: i64) {
    if let Err(e) = remove_if_exists(&path_for(dir, base, CLEANED_SUFFIX)) {
        tracing::warn!(dir = %dir.display(), base, error = %e, "cannot delete a cleaned file");
    }
}

/// Step 6: the installed segment at `base` with indexes built from its batch headers, sealed.
pub(crate) fn open_installed(
    dir: &Path,
    base: i64,
    index_interval_bytes: u32,
    index_bytes: u32,
    now_ms: i64,
) -> Result<Segment, StorageError> {
    let mut segment = Segment::open(dir, base)?;
    let cut = segment.rebuild(index_interval_bytes, index_bytes, false, now_ms)?;
    if cut > 0 {
        tracing::warn!(dir = %dir.display(), base, cut_bytes = cut, "cut the invalid tail of a cleaned segment");
    }
    segment.seal()?;
    Ok(segment)
}

/// Step 2.
pub(crate) fn commit(dir: &Path, base: i64) -> Result<(), StorageError> {
    std::fs::rename(
        path_for(dir, base, CLEANED_SUFFIX),
        path_for(dir, base, SWAP_SUFFIX),
    )?;
    sync_dir(dir)
}

/// Steps 4 and 5.
pub(crate) fn install(dir: &Path, base: i64) -> Result<(), StorageError> {
    remove_if_exists(&path_for(dir, base, INDEX_SUFFIX))?;
    remove_if_exists(&path_for(dir, base, TIME_INDEX_SUFFIX))?;
    std::fs::rename(
        path_for(dir, base, SWAP_SUFFIX),
        path_for(dir, base, LOG_SUFFIX),
    )?;
    sync_dir(dir)
}

/// Deletes the three files of the segment at `base`.
pub(crate) fn remove_segment_files(dir: &Path, base: i64) -> Result<(), StorageError> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        remove_if_exists(&path_for(dir, base, suffix))?;
    }
    Ok(())
}

/// Finishes every committed swap of `dir` (see the module doc). Returns how many there were.
pub(crate) fn complete_swaps(
    dir: &Path,
    index_interval_bytes: u32,
    index_bytes: u32,
    now_ms: i64,
) -> Result<usize, StorageError> {
    let mut swaps = Vec::new();
    let mut log_bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(base) = name
            .strip_suffix(".swap")
            .and_then(|stem| parse_offset(stem, LOG_SUFFIX))
        {
            swaps.push((base, entry.path()));
        } else if let Some(base) = parse_offset(name, LOG_SUFFIX) {
            log_bases.push(base);
        }
    }
    for (base, path) in &swaps {
        let last = last_offset_of(path)?.unwrap_or(*base);
        for old in log_bases.iter().filter(|b| **b > *base && **b <= last) {
            remove_segment_files(dir, *old)?;
        }
        install(dir, *base)?;
        open_installed(dir, *base, index_interval_bytes, index_bytes, now_ms)?;
        tracing::info!(dir = %dir.display(), base, "completed an interrupted compaction swap");
    }
    Ok(swaps.len())
}

/// The last offset of the last whole batch of a log file (a header walk), `None` if it has none.
fn last_offset_of(path: &PathBuf) -> Result<Option<i64>, StorageError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut position = 0u64;
    let mut last = None;
    let mut header = [0u8; HEADER_BYTES];
    while position.saturating_add(HEADER_BYTES as u64) <= len {
        file.read_exact_at(&mut header, position)?;
        let Ok(view) = BatchHeader::parse(&header) else {
            break;
        };
        let end = position.saturating_add(view.total_size() as u64);
        if view.total_size() < HEADER_BYTES || end > len {
            break;
        }
        last = Some(view.last_offset());
        position = end;
    }
    Ok(last)
}
