//! Small conversions and helpers shared by handlers.

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use protocol_shim::ErrorKind;
use storage::error::RefusedBecause;
use storage::StorageError;

use crate::partition::PartitionError;

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The one mapping from storage and partition errors to Kafka error kinds.
pub fn partition_error_kind(e: &PartitionError) -> ErrorKind {
    match e {
        PartitionError::Closed(_)
        | PartitionError::NotLeader(_)
        | PartitionError::StaleFetch(_) => ErrorKind::NotLeaderOrFollower,
        PartitionError::Storage(s) => storage_error_kind(s),
        PartitionError::NegativeIndex(_) => ErrorKind::UnknownTopicOrPartition,
    }
}

pub fn storage_error_kind(e: &StorageError) -> ErrorKind {
    match e {
        StorageError::CorruptBatch(_) => ErrorKind::CorruptMessage,
        StorageError::InvalidRecord(_) => ErrorKind::InvalidRecord,
        StorageError::UnsupportedMagic(_) => ErrorKind::UnsupportedForMessageFormat,
        StorageError::MessageTooLarge { .. } => ErrorKind::MessageTooLarge,
        StorageError::OutOfOrderSequence { .. } => ErrorKind::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ErrorKind::InvalidProducerEpoch,
        StorageError::OffsetOutOfRange { .. } => ErrorKind::OffsetOutOfRange,
        StorageError::DecompressionLimit { .. } => ErrorKind::CorruptMessage,
        StorageError::RecordsRefused { reason, .. } => match reason {
            RefusedBecause::Timestamp => ErrorKind::InvalidTimestamp,
            RefusedBecause::NoKey => ErrorKind::InvalidRecord,
        },
        _ => ErrorKind::KafkaStorageError,
    }
}

/// All operations allowed (no ACLs yet): the bit set Kafka reports for topics
/// (READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS).
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// All cluster operations allowed (CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS, IDEMPOTENT_WRITE).
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// Kafka's "authorized operations not requested" marker.
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
