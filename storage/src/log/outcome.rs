//! Values returned by `Log` operations.

use std::fs::File;
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

/// What to fsync (off-thread) to make the log durable up to `up_to_offset`.
#[derive(Clone, Debug)]
pub struct FlushTarget {
    pub file: Arc<File>,
    pub up_to_offset: i64,
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
