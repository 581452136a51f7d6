//! Typed errors of the storage crate.
//!
//! Variants are named after the condition the caller has to react to (a corrupt batch, a fenced
//! producer, an offset outside the log), never after the backend that noticed it. The broker maps
//! each variant to exactly one Kafka error code.

/// Everything that can go wrong in the storage crate.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The bytes do not form a valid v2 batch (bad length, CRC mismatch, unknown codec, ...).
    #[error("corrupt batch: {0}")]
    CorruptBatch(String),
    /// The batch is well formed but not acceptable here (no batch, several batches, control batch, ...).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// Records of a batch refused one by one (Kafka's `RecordValidationException`): the whole
    /// batch is refused, `records` say which (index in the batch) and why.
    #[error("{message}")]
    RecordsRefused {
        reason: RefusedBecause,
        records: Vec<(i32, String)>,
        message: String,
    },
    /// The batch uses a message format other than v2.
    #[error("unsupported magic byte {0}")]
    UnsupportedMagic(i8),
    /// The batch is larger than `max_message_bytes`.
    #[error("message too large: {size} bytes > max {max}")]
    MessageTooLarge { size: usize, max: u32 },
    /// The producer's sequence number is not the next expected one.
    #[error("out of order sequence for producer {producer_id}: expected {expected}, received {received}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        received: i32,
    },
    /// The producer has been fenced by a newer epoch.
    #[error(
        "invalid producer epoch for producer {producer_id}: current {current}, received {received}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        received: i16,
    },
    /// The requested offset is outside `[log_start, log_end]`.
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// A batch from the leader carries a leader epoch later than the leader's own.
    #[error("batch leader epoch {epoch} is above the leader's epoch {leader_epoch}")]
    EpochAboveLeader { epoch: i32, leader_epoch: i32 },
    /// A follower batch starts below the log end offset.
    #[error("unexpected base offset {actual}, log end offset is {expected}")]
    UnexpectedBaseOffset { expected: i64, actual: i64 },
    /// Decompressing a batch would exceed the allowed number of bytes.
    #[error("decompressed data exceeds the limit of {max_bytes} bytes")]
    DecompressionLimit { max_bytes: usize },
    /// An index file is unusable (it is rebuilt from the log when this happens during open).
    #[error("corrupt index {path}: {reason}")]
    CorruptIndex { path: String, reason: String },
    /// A producer-state snapshot is unusable (it is skipped during open).
    #[error("corrupt producer snapshot {path}: {reason}")]
    CorruptSnapshot { path: String, reason: String },
    /// A batch stored in a segment fails its checks (CRC, header) where the log reads it whole:
    /// the compaction that found it stops and leaves the segments as they were.
    #[error("corrupt batch in {path} at byte {position}: {reason}")]
    CorruptSegment {
        path: String,
        position: u64,
        reason: String,
    },
    /// The `log_start_offset` file exists but does not hold a log start offset: the log is not
    /// opened (a guess could expose deleted records or hide live ones).
    #[error("corrupt log start offset file {path}: {reason}")]
    CorruptLogStartOffset { path: String, reason: String },
    /// An fsync of this log failed earlier: what it wrote since the last good fsync may be
    /// lost whatever a later fsync reports (Linux drops the failed pages from the cache), so
    /// the log takes no more writes, marks nothing more durable and is not closed cleanly.
    #[error("an earlier fsync of this log failed ({0}); it takes no more writes")]
    SyncFailed(String),
    /// The underlying file system failed.
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

/// Why records were refused one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBecause {
    /// A timestamp outside `message.timestamp.before/after.max.ms` (INVALID_TIMESTAMP).
    Timestamp,
    /// A record without a key in a compacted topic (INVALID_RECORD).
    NoKey,
}

impl StorageError {
    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        StorageError::CorruptBatch(reason.into())
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        StorageError::InvalidRecord(reason.into())
    }
}
