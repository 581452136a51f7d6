//! Values returned by `Log` operations.

use crate::segment::log_file::LogFile;
use std::sync::Arc;

/// Result of `Log::append`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The batch was written at these offsets.
    Appended {
        base_offset: i64,
        last_offset: i64,
        /// The broker time stamped into the batch, or -1 for CreateTime.
        log_append_time_ms: i64,
        /// The batch max timestamp as stored.
        max_timestamp: i64,
        record_count: u32,
    },
    /// An idempotent retry of a batch already in the log; nothing was written.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
        log_append_time_ms: i64,
    },
}

/// What to fsync (off-thread) to make the log durable up to `up_to_offset`; `truncations` is
/// the log's count of truncations when it was taken (`Log::mark_target_flushed`).
#[derive(Clone, Debug)]
pub struct FlushTarget {
    pub file: Arc<LogFile>,
    pub up_to_offset: i64,
    pub truncations: u64,
}

/// Result of `Log::read`: whole stored batches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadResult {
    pub records: bytes::Bytes,
    /// Base offset of the first batch returned (may be below the requested offset).
    pub first_offset: Option<i64>,
    /// Last offset of the last batch returned.
    pub last_offset: Option<i64>,
}

/// A record's offset and timestamp (ListOffsets answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp: i64,
}

/// Where stored batches lie in a segment file, for sending them without reading them first.
/// The range lies inside the segment's data when returned; the file only ever shrinks below
/// it if the log is truncated, so a sender must treat a short file as an error.
#[derive(Clone, Debug)]
pub struct FileRegion {
    pub file: Arc<LogFile>,
    pub position: u64,
    pub len: u64,
}

impl FileRegion {
    /// The region's bytes, with one positional read; an error if the file has become shorter.
    pub fn read_to_bytes(&self) -> Result<bytes::Bytes, crate::StorageError> {
        let len = usize::try_from(self.len)
            .map_err(|_| crate::StorageError::corrupt("region too large"))?;
        let mut buf = Vec::with_capacity(len);
        crate::segment::file_io::read_exact_at_into(&self.file, &mut buf, len, self.position)?;
        Ok(bytes::Bytes::from(buf))
    }

    /// Appends `len` bytes of the region, starting `skip` bytes into it, to `buf` (positional
    /// reads into its spare capacity, so a caller can reuse one bounded buffer for a region of
    /// any size); an error if that runs past the region or the file has become shorter.
    pub fn read_part_into(
        &self,
        buf: &mut Vec<u8>,
        skip: u64,
        len: usize,
    ) -> Result<(), crate::StorageError> {
        let end = skip.checked_add(len as u64).filter(|&end| end <= self.len);
        let position = end
            .and_then(|_| self.position.checked_add(skip))
            .ok_or_else(|| crate::StorageError::corrupt("read past the end of a file region"))?;
        crate::segment::file_io::read_exact_at_into(&self.file, buf, len, position)?;
        Ok(())
    }
}

/// Whole stored batches, in memory or as a file region (as `Log::read_region` returns them).
#[derive(Clone, Debug)]
pub enum StoredRecords {
    Bytes(bytes::Bytes),
    File(FileRegion),
}

impl StoredRecords {
    pub fn len(&self) -> usize {
        match self {
            StoredRecords::Bytes(b) => b.len(),
            StoredRecords::File(r) => usize::try_from(r.len).unwrap_or(usize::MAX),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for StoredRecords {
    fn default() -> Self {
        StoredRecords::Bytes(bytes::Bytes::new())
    }
}

/// Result of `Log::read_region`.
#[derive(Clone, Debug, Default)]
pub struct RegionRead {
    pub records: StoredRecords,
    /// Base offset of the first batch returned (may be below the requested offset).
    pub first_offset: Option<i64>,
    /// Last offset of the last batch returned.
    pub last_offset: Option<i64>,
}
