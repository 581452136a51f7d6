//! Sluice storage: the record log of one partition — segments of Kafka v2 record batches with
//! sparse offset and time indexes, crash recovery, retention, compaction, and idempotent-producer state.
//!
//! Synchronous and clock-free: time comes in as `now_ms`. Knows neither tokio nor the Kafka wire
//! protocol beyond the record batch format. Nothing read from disk or from a caller can panic it.

pub mod batch;
pub mod compaction;
pub mod config;
pub mod error;
pub(crate) mod leader_epoch;
pub mod log;
pub mod producer_state;
pub(crate) mod recovery;
pub mod retention;
pub mod segment;

pub use batch::{BatchBuilder, BatchHeader, Compression};
pub use compaction::CompactionOutcome;
pub use config::{LogConfig, TimestampType};
pub use error::StorageError;
pub use log::{
    AppendOutcome, FileRegion, FlushTarget, Log, ReadResult, RegionMap, RegionRead, StoredRecords,
    TimestampOffset, UnsyncedClose,
};
pub use producer_state::ProducerStateView;
pub use segment::log_file::{kept_log_file_mappings, LogFile};
