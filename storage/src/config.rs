//! Per-partition log configuration (Kafka's topic-level `log.*` settings) with Kafka's defaults.
//!
//! Invariant: the log reads the config on every operation, so `Log::set_config` takes effect at
//! the next append / retention pass without reopening anything.

/// How the timestamps of appended batches are set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Overwrite the batch max timestamp with the broker's clock at append.
    LogAppendTime,
}

/// Settings of one partition log. Units are in the field names.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `log.segment.bytes`: roll when the active segment would exceed it.
    pub segment_bytes: u64,
    /// `log.roll.ms`: roll when the active segment's first batch was appended longer ago.
    pub segment_ms: i64,
    /// `retention.ms`: -1 = infinite.
    pub retention_ms: i64,
    /// `retention.bytes`: -1 = infinite.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: max size of each index file.
    pub segment_index_bytes: u32,
    /// `max.message.bytes`: max size of one batch.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: with CreateTime, how far a record's timestamp may lie
    /// in the past (i64::MAX: any, Kafka's default).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: with CreateTime, how far a record's timestamp may lie
    /// in the future (Kafka 4.0's default: one hour).
    pub timestamp_after_max_ms: i64,
    /// `file.delete.delay.ms`: files are deleted immediately whatever the value.
    pub file_delete_delay_ms: i64,
    /// `cleanup.policy` contains `compact`: sealed segments are compacted (see `compaction`).
    pub compact: bool,
    /// `delete.retention.ms`: how long a tombstone survives after the cleaning that first kept it.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: dirty bytes / (clean + dirty bytes) that makes a log worth
    /// cleaning.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: segments holding a record younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// The broker's `producer.id.expiration.ms`: an idempotent producer's state is forgotten once
    /// its last batch's timestamp is this much older than the clock (checked at each retention
    /// pass).
    pub producer_id_expiration_ms: i64,
}

/// Seven days, Kafka's default for `log.roll.ms` and `retention.ms`.
pub const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: SEVEN_DAYS_MS,
            retention_ms: SEVEN_DAYS_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 60 * 60 * 1000,
            file_delete_delay_ms: 60_000,
            compact: false,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
        }
    }
}

impl LogConfig {
    /// Upper bound for decompressing one stored batch (timestamp lookups): generous, but bounded.
    pub fn max_decompressed_bytes(&self) -> usize {
        let max = usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX);
        max.saturating_mul(64)
            .clamp(16 * 1024 * 1024, 256 * 1024 * 1024)
    }
}
