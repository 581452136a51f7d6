//! Broker-neutral error kinds and their Kafka error codes: the one place this mapping lives.
//!
//! Handlers and the storage adapter produce an `ErrorKind`; only `ErrorKind::code` knows the
//! numbers on the wire. The table test pins every mapping to the code Apache Kafka uses.

/// Everything a Sluice request can fail with, named after the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    None,
    UnknownServerError,
    OffsetOutOfRange,
    CorruptMessage,
    UnknownTopicOrPartition,
    InvalidFetchSize,
    LeaderNotAvailable,
    NotLeaderOrFollower,
    RequestTimedOut,
    MessageTooLarge,
    InvalidTopic,
    RecordListTooLarge,
    NotEnoughReplicas,
    NotEnoughReplicasAfterAppend,
    InvalidRequiredAcks,
    InvalidTimestamp,
    UnsupportedForMessageFormat,
    TopicAlreadyExists,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidReplicaAssignment,
    InvalidConfig,
    InvalidRequest,
    PolicyViolation,
    OutOfOrderSequenceNumber,
    DuplicateSequenceNumber,
    InvalidProducerEpoch,
    TransactionalIdAuthorizationFailed,
    ClusterAuthorizationFailed,
    UnsupportedVersion,
    KafkaStorageError,
    FetchSessionIdNotFound,
    InvalidFetchSessionEpoch,
    FencedLeaderEpoch,
    UnknownLeaderEpoch,
    UnsupportedCompressionType,
    UnknownProducerId,
    InvalidRecord,
    UnknownTopicId,
    InconsistentTopicId,
    TopicDeletionDisabled,
    ThrottlingQuotaExceeded,
    ProducerFenced,
    ResourceNotFound,
    InvalidTxnState,
    MismatchedEndpointType,
}

impl ErrorKind {
    /// The Kafka error code for this kind.
    pub fn code(self) -> i16 {
        use ErrorKind::*;
        match self {
            None => 0,
            UnknownServerError => -1,
            OffsetOutOfRange => 1,
            CorruptMessage => 2,
            UnknownTopicOrPartition => 3,
            InvalidFetchSize => 4,
            LeaderNotAvailable => 5,
            NotLeaderOrFollower => 6,
            RequestTimedOut => 7,
            MessageTooLarge => 10,
            InvalidTopic => 17,
            RecordListTooLarge => 18,
            NotEnoughReplicas => 19,
            NotEnoughReplicasAfterAppend => 20,
            InvalidRequiredAcks => 21,
            InvalidTimestamp => 32,
            UnsupportedForMessageFormat => 43,
            UnsupportedVersion => 35,
            TopicAlreadyExists => 36,
            InvalidPartitions => 37,
            InvalidReplicationFactor => 38,
            InvalidReplicaAssignment => 39,
            InvalidConfig => 40,
            InvalidRequest => 42,
            PolicyViolation => 44,
            OutOfOrderSequenceNumber => 45,
            DuplicateSequenceNumber => 46,
            InvalidProducerEpoch => 47,
            InvalidTxnState => 48,
            TransactionalIdAuthorizationFailed => 53,
            ClusterAuthorizationFailed => 31,
            KafkaStorageError => 56,
            UnknownProducerId => 59,
            FetchSessionIdNotFound => 70,
            InvalidFetchSessionEpoch => 71,
            FencedLeaderEpoch => 74,
            UnknownLeaderEpoch => 75,
            UnsupportedCompressionType => 76,
            InvalidRecord => 87,
            TopicDeletionDisabled => 73,
            ThrottlingQuotaExceeded => 89,
            ProducerFenced => 90,
            ResourceNotFound => 91,
            UnknownTopicId => 100,
            MismatchedEndpointType => 114,
            InconsistentTopicId => 103,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind::*;
    use kafka_protocol::error::ResponseError as R;

    /// Every kind against the code `kafka-protocol` (generated from Kafka's Errors.java) gives.
    #[test]
    fn codes_match_kafka() {
        let table = [
            (UnknownServerError, R::UnknownServerError),
            (OffsetOutOfRange, R::OffsetOutOfRange),
            (CorruptMessage, R::CorruptMessage),
            (UnknownTopicOrPartition, R::UnknownTopicOrPartition),
            (InvalidFetchSize, R::InvalidFetchSize),
            (LeaderNotAvailable, R::LeaderNotAvailable),
            (NotLeaderOrFollower, R::NotLeaderOrFollower),
            (RequestTimedOut, R::RequestTimedOut),
            (MessageTooLarge, R::MessageTooLarge),
            (InvalidTopic, R::InvalidTopicException),
            (RecordListTooLarge, R::RecordListTooLarge),
            (NotEnoughReplicas, R::NotEnoughReplicas),
            (
                NotEnoughReplicasAfterAppend,
                R::NotEnoughReplicasAfterAppend,
            ),
            (InvalidRequiredAcks, R::InvalidRequiredAcks),
            (InvalidTimestamp, R::InvalidTimestamp),
            (UnsupportedForMessageFormat, R::UnsupportedForMessageFormat),
            (UnsupportedVersion, R::UnsupportedVersion),
            (TopicAlreadyExists, R::TopicAlreadyExists),
            (InvalidPartitions, R::InvalidPartitions),
            (InvalidReplicationFactor, R::InvalidReplicationFactor),
            (InvalidReplicaAssignment, R::InvalidReplicaAssignment),
            (InvalidConfig, R::InvalidConfig),
            (InvalidRequest, R::InvalidRequest),
            (PolicyViolation, R::PolicyViolation),
            (OutOfOrderSequenceNumber, R::OutOfOrderSequenceNumber),
            (DuplicateSequenceNumber, R::DuplicateSequenceNumber),
            (InvalidProducerEpoch, R::InvalidProducerEpoch),
            (InvalidTxnState, R::InvalidTxnState),
            (
                TransactionalIdAuthorizationFailed,
                R::TransactionalIdAuthorizationFailed,
            ),
            (ClusterAuthorizationFailed, R::ClusterAuthorizationFailed),
            (KafkaStorageError, R::KafkaStorageError),
            (UnknownProducerId, R::UnknownProducerId),
            (FetchSessionIdNotFound, R::FetchSessionIdNotFound),
            (InvalidFetchSessionEpoch, R::InvalidFetchSessionEpoch),
            (FencedLeaderEpoch, R::FencedLeaderEpoch),
            (UnknownLeaderEpoch, R::UnknownLeaderEpoch),
            (UnsupportedCompressionType, R::UnsupportedCompressionType),
            (InvalidRecord, R::InvalidRecord),
            (TopicDeletionDisabled, R::TopicDeletionDisabled),
            (ThrottlingQuotaExceeded, R::ThrottlingQuotaExceeded),
            (ProducerFenced, R::ProducerFenced),
            (ResourceNotFound, R::ResourceNotFound),
            (UnknownTopicId, R::UnknownTopicId),
            (MismatchedEndpointType, R::MismatchedEndpointType),
            (InconsistentTopicId, R::InconsistentTopicId),
        ];
        assert_eq!(None.code(), 0);
        for (kind, kafka) in table {
            assert_eq!(kind.code(), kafka.code(), "{kind:?} vs {kafka:?}");
        }
    }
}
