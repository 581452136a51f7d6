//! OffsetForLeaderEpoch (key 23, v2–4): for each partition, the largest leader epoch at or
//! below the requested one and the offset where it ended (Kafka's
//! `Partition.lastOffsetForLeaderEpoch`). Consumers use it to detect log truncation after a
//! leader change (KIP-320); followers to find where to truncate.
//!
//! Every partition on this node is its leader, so consumers (replica id -1, or any v2 request)
//! and followers get the same answer.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use protocol_shim::ErrorKind;

use super::util::partition_error_kind;
use crate::node::Node;
use crate::partition::Partition;

/// Kafka's `RecordBatch.NO_PARTITION_LEADER_EPOCH`: the client sent no current leader epoch,
/// so nothing is fenced. Only this value means "absent"; any other is compared.
const NO_PARTITION_LEADER_EPOCH: i32 = -1;

pub fn handle(
    node: &Arc<Node>,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(
                    |p| match node.leader_partition(topic.topic.0.as_str(), p.partition) {
                        Ok(partition) => answer(Some(&partition), p),
                        // Only the leader answers (a follower's epochs may be behind).
                        Err(kind) => EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_error_code(kind.code()),
                    },
                )
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// The answer for one partition (`None`: this node has no such partition).
fn answer(partition: Option<&Partition>, request: &OffsetForLeaderPartition) -> EpochEndOffset {
    // Defaults: leader epoch -1, end offset -1 (UNDEFINED), no error.
    let resp = EpochEndOffset::default().with_partition(request.partition);
    let Some(partition) = partition else {
        return resp.with_error_code(ErrorKind::UnknownTopicOrPartition.code());
    };
    if let Some(kind) = fence(request.current_leader_epoch, partition.leader_epoch()) {
        return resp.with_error_code(kind.code());
    }
    match partition.end_offset_for_epoch(request.leader_epoch) {
        Ok(Some((epoch, end_offset))) => resp.with_leader_epoch(epoch).with_end_offset(end_offset),
        Ok(None) => resp,
        Err(e) => resp.with_error_code(partition_error_kind(&e).code()),
    }
}

/// Kafka's `Partition.checkCurrentLeaderEpoch`: a client ahead of us knows a leader we have
/// not heard of yet (retriable); a client behind us has stale metadata.
fn fence(current_leader_epoch: i32, leader_epoch: i32) -> Option<ErrorKind> {
    if current_leader_epoch == NO_PARTITION_LEADER_EPOCH {
        return None;
    }
    match current_leader_epoch.cmp(&leader_epoch) {
        std::cmp::Ordering::Greater => Some(ErrorKind::UnknownLeaderEpoch),
        std::cmp::Ordering::Less => Some(ErrorKind::FencedLeaderEpoch),
        std::cmp::Ordering::Equal => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;
    use std::sync::Arc;

    use storage::{BatchBuilder, Log, LogConfig};

    use super::*;
    use crate::partition::{DurabilityPolicy, TopicPartition};

    fn batch(records: usize) -> Vec<u8> {
        (0..records)
            .fold(BatchBuilder::new(), |b, _| b.record(None, Some(b"v"), 0))
            .build()
            .unwrap()
    }

    /// A partition over a log whose batches were written in `epochs` (one record each).
    fn partition(dir: &Path, epochs: &[i32]) -> Arc<Partition> {
        let mut log = Log::open(dir, LogConfig::default(), 0).unwrap();
        for &epoch in epochs {
            log.append(&batch(1), epoch, 0).unwrap();
        }
        log.close().unwrap();
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        Partition::open(
            dir,
            tp,
            uuid::Uuid::nil(),
            LogConfig::default(),
            DurabilityPolicy::SyncOnAck,
            0,
        )
        .unwrap()
    }

    fn ask(partition: Option<&Partition>, current: i32, epoch: i32) -> (i16, i32, i64) {
        let request = OffsetForLeaderPartition::default()
            .with_partition(0)
            .with_current_leader_epoch(current)
            .with_leader_epoch(epoch);
        let r = answer(partition, &request);
        (r.error_code, r.leader_epoch, r.end_offset)
    }

    #[test]
    fn unknown_partition() {
        assert_eq!(ask(None, -1, 0), (3, -1, -1));
    }

    #[test]
    fn current_leader_epoch_fences() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), &[0, 0]);
        assert_eq!(
            ask(Some(&p), 1, 0),
            (ErrorKind::UnknownLeaderEpoch.code(), -1, -1)
        );
        assert_eq!(
            ask(Some(&p), -2, 0),
            (ErrorKind::FencedLeaderEpoch.code(), -1, -1)
        );
        assert_eq!(ask(Some(&p), 0, 0), (0, 0, 2));
        assert_eq!(ask(Some(&p), -1, 0), (0, 0, 2));
        assert_eq!(fence(3, 5), Some(ErrorKind::FencedLeaderEpoch));
        assert_eq!(fence(7, 5), Some(ErrorKind::UnknownLeaderEpoch));
        assert_eq!(fence(5, 5), None);
        assert_eq!(fence(-1, 5), None);
    }

    #[test]
    fn empty_log_answers_as_a_fresh_kafka_leader() {
        // Kafka's makeLeader caches (epoch 0, offset 0) before any record is written.
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), &[]);
        assert_eq!(ask(Some(&p), 0, 0), (0, 0, 0));
        assert_eq!(ask(Some(&p), 0, 5), (0, -1, -1));
        assert_eq!(ask(Some(&p), 0, -1), (0, -1, -1));
    }

    #[test]
    fn epoch_zero_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), &[0, 0, 0]);
        assert_eq!(ask(Some(&p), 0, 0), (0, 0, 3));
        // Above every known epoch: UNDEFINED, as Kafka's endOffsetFor.
        assert_eq!(ask(Some(&p), 0, 5), (0, -1, -1));
    }

    #[test]
    fn two_epochs_in_the_log() {
        // Batches written in epochs 0, 0, 2, 2, 2 (a log a former leader wrote); this replica
        // leads in epoch 0 here, so fence with -1.
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), &[0, 0, 2, 2, 2]);
        assert_eq!(ask(Some(&p), -1, 0), (0, 0, 2));
        assert_eq!(ask(Some(&p), -1, 1), (0, 0, 2));
        assert_eq!(ask(Some(&p), -1, 2), (0, 2, 5));
        assert_eq!(ask(Some(&p), -1, 3), (0, -1, -1));
        assert_eq!(ask(Some(&p), -1, -1), (0, -1, -1));
    }

    #[test]
    fn closed_partition() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), &[0]);
        p.close().unwrap();
        assert_eq!(
            ask(Some(&p), -1, 0),
            (ErrorKind::NotLeaderOrFollower.code(), -1, -1)
        );
    }
}
