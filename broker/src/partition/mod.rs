//! Partitions: each owns its `storage::Log`, publishes its high watermark, and makes appends
//! durable with group commit.
//!
//! `Partition` (one per topic-partition) serialises appends and reads on a per-partition
//! mutex (never held across an await or an fsync); `flusher` fsyncs off the async runtime
//! and advances the high watermark; `PartitionManager` finds partitions by name;
//! `SyncFailures` carries a failed fsync to `run`, which halts the broker on it.

mod flusher;
#[cfg(test)]
mod flusher_tests;
pub mod hw_checkpoint;
mod leader_epoch;
mod manager;
mod replica;
pub mod role;
mod shared_flusher;
#[cfg(test)]
mod shared_flusher_tests;

pub use crate::sync_failure::SyncFailures;
pub use manager::PartitionManager;
pub use replica::{AckWait, FetchRead, FollowerFetchRefused, Partition, PartitionError};
pub use role::Role;

/// A topic name and partition index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// How produce acknowledgements relate to fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityPolicy {
    /// Acknowledge only after fsync; concurrent appends share one fsync. Consumers see only
    /// durable records (high watermark = flushed offset).
    SyncOnAck,
    /// Acknowledge after the write; fsync every `interval_ms`.
    Interval { interval_ms: u64 },
}
