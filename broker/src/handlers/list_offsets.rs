//! ListOffsets (key 2): earliest (-2), latest (-1: the high watermark, which is also the last
//! stable offset while there are no transactions), max timestamp (-3), earliest local (-4),
//! the latest tiered offset (-5: no remote storage, so none; -6 needs v11), and the first
//! record at or after a timestamp. A partition asked for twice is INVALID_REQUEST. A request
//! from a replica (`replica_id` other than -1, as a follower sends to find its leader's log
//! start and end) is answered without an isolation level, as Kafka's: latest is the log end
//! offset and lookups reach it.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use protocol_shim::ErrorKind;

use super::util::partition_error_kind;
use crate::node::Node;
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const EARLIEST_PENDING_UPLOAD: i64 = -6;
/// `replica_id` of a client's request (Kafka's `CONSUMER_REPLICA_ID`).
const CONSUMER_REPLICA_ID: i32 = -1;

pub fn handle(node: &Arc<Node>, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    // A partition asked for twice is answered INVALID_REQUEST each time (Kafka's
    // `ListOffsetsRequest.duplicatePartitions`).
    let from_replica = request.replica_id.0 != CONSUMER_REPLICA_ID;
    let mut seen = HashSet::new();
    let duplicates: HashSet<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.as_str().to_string(), p.partition_index))
        })
        .filter(|tp| !seen.insert(tp.clone()))
        .collect();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.as_str().to_string();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let mut resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    if duplicates.contains(&(name.clone(), p.partition_index)) {
                        return resp.with_error_code(ErrorKind::InvalidRequest.code());
                    }
                    let partition = match node.leader_partition(&name, p.partition_index) {
                        Ok(partition) => partition,
                        Err(kind) => return resp.with_error_code(kind.code()),
                    };
                    if version >= 4
                        && p.current_leader_epoch >= 0
                        && p.current_leader_epoch != partition.leader_epoch()
                    {
                        let kind = if p.current_leader_epoch > partition.leader_epoch() {
                            ErrorKind::UnknownLeaderEpoch
                        } else {
                            ErrorKind::FencedLeaderEpoch
                        };
                        return resp.with_error_code(kind.code());
                    }
                    match lookup(&partition, p.timestamp, version, from_replica) {
                        Ok(found) => {
                            resp.offset = found.offset;
                            resp.timestamp = found.timestamp;
                            if version >= 4 {
                                resp.leader_epoch = found.leader_epoch;
                            }
                            resp
                        }
                        Err(kind) => resp.with_error_code(kind.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// What a lookup found: none is offset, timestamp and leader epoch -1.
struct Found {
    offset: i64,
    timestamp: i64,
    /// Kafka's: the leader's current epoch for the latest offset, else the epoch that wrote
    /// the offset found (`epochForOffset`).
    leader_epoch: i32,
}

const NONE_FOUND: Found = Found {
    offset: -1,
    timestamp: -1,
    leader_epoch: -1,
};

/// `from_replica`: no isolation level (Kafka's replica lookup), so the log end offset stands
/// where a client's lookup has the high watermark, and nothing is OFFSET_NOT_AVAILABLE.
fn lookup(
    partition: &Partition,
    timestamp: i64,
    version: i16,
    from_replica: bool,
) -> Result<Found, ErrorKind> {
    let err = |e: crate::partition::PartitionError| partition_error_kind(&e);
    let hw = if from_replica {
        partition.log_end_offset().map_err(err)?
    } else {
        partition.high_watermark()
    };
    let found = |offset: i64, timestamp: i64| {
        Ok(Found {
            offset,
            timestamp,
            leader_epoch: partition.epoch_for_offset(offset).map_err(err)?,
        })
    };
    // A newly elected leader whose high watermark is still below its epoch start offset cannot
    // answer lookups at the end of the log yet (Kafka: OFFSET_NOT_AVAILABLE from v5,
    // LEADER_NOT_AVAILABLE before); the client retries.
    let not_yet = || {
        // (v1 carries no isolation level, which Kafka takes as a replica's lookup: no error.)
        if !from_replica && version >= 2 && partition.high_watermark_behind_epoch_start() {
            Err(if version >= 5 {
                ErrorKind::OffsetNotAvailable
            } else {
                ErrorKind::LeaderNotAvailable
            })
        } else {
            Ok(NONE_FOUND)
        }
    };
    match timestamp {
        LATEST => not_yet().map(|_| Found {
            offset: hw,
            timestamp: -1,
            leader_epoch: partition.leader_epoch(),
        }),
        EARLIEST => found(partition.log_start_offset().map_err(err)?, -1),
        EARLIEST_LOCAL if version >= 8 => found(partition.log_start_offset().map_err(err)?, -1),
        MAX_TIMESTAMP if version >= 7 => match partition.max_timestamp().map_err(err)? {
            Some(t) if t.offset < hw => found(t.offset, t.timestamp),
            _ => not_yet(),
        },
        LATEST_TIERED if version >= 9 => Ok(NONE_FOUND),
        // -6 needs v11 (KIP-1023), above what Sluice serves: UNSUPPORTED_VERSION, as Kafka's
        // `timestampMinSupportedVersion`.
        EARLIEST_PENDING_UPLOAD => Err(ErrorKind::UnsupportedVersion),
        ts if ts >= 0 => match partition.offset_for_timestamp(ts).map_err(err)? {
            Some(t) if t.offset < hw => found(t.offset, t.timestamp),
            _ => not_yet(),
        },
        _ => Err(ErrorKind::UnsupportedVersion),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::BrokerId;

    use super::*;
    use crate::clock::SystemClock;
    use crate::config::{BrokerConfig, BrokerSettings};
    use crate::handlers::util::topic_name;

    /// A node holding topic "t" of one partition (and the directory it lives in).
    fn node_with_t() -> (tempfile::TempDir, Arc<Node>) {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path(), BrokerSettings::default());
        let node = Node::start(config, Arc::new(SystemClock)).unwrap();
        node.create_topic("t", 1, 1, Default::default(), false)
            .unwrap();
        (dir, node)
    }

    /// ListOffsets of t-0 at `timestamp`: (error code, offset, leader epoch).
    fn ask(node: &Arc<Node>, timestamp: i64, version: i16) -> (i16, i64, i32) {
        ask_as(node, -1, timestamp, version)
    }

    /// `ask` from `replica_id` (-1 a client, a broker id a follower).
    fn ask_as(node: &Arc<Node>, replica_id: i32, timestamp: i64, version: i16) -> (i16, i64, i32) {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(replica_id))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(timestamp)])]);
        let r = handle(node, request, version);
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset, p.leader_epoch)
    }

    /// Partition t-0 led here after an election whose high watermark is still below its log
    /// end: latest (and a timestamp past the high watermark) is OFFSET_NOT_AVAILABLE from v5,
    /// LEADER_NOT_AVAILABLE at v2-4, the high watermark at v1 (no isolation level: Kafka's
    /// replica lookup); earliest is answered.
    #[tokio::test]
    async fn a_leader_below_its_epoch_start_answers_offset_not_available() {
        let (_dir, node) = node_with_t();
        let p = node.partitions.get("t", 0).unwrap();
        p.become_follower(2, 1);
        let batch = storage::BatchBuilder::new()
            .record(None, Some(b"v"), 1)
            .build()
            .unwrap();
        p.append_as_follower(&batch, 0, 1).unwrap();
        assert!(p.become_leader(3, 1, vec![1, 2], vec![1, 2], 1, 0));
        let ask = |timestamp: i64, version: i16| {
            let (code, offset, _) = ask(&node, timestamp, version);
            (code, offset)
        };
        assert_eq!(ask(LATEST, 5), (78, -1));
        assert_eq!(ask(0, 7), (78, -1));
        assert_eq!(ask(LATEST, 4), (5, -1));
        assert_eq!(ask(LATEST, 1), (0, 0));
        assert_eq!(ask(EARLIEST, 5), (0, 0));
        // A follower (replica id 2) asks without an isolation level: the log end, no error
        // (Kafka's replica lookup, what a follower whose fetch was out of range sends).
        assert_eq!(ask_as(&node, 2, LATEST, 5), (0, 1, 3));
        assert_eq!(ask_as(&node, 2, 1, 7).0, 0);
        assert_eq!(ask_as(&node, 2, EARLIEST, 5).1, 0);
    }

    /// As Kafka: the latest offset carries the leader's current epoch, every other lookup the
    /// epoch that wrote the offset found (`epochForOffset`), and none found is -1.
    #[tokio::test]
    async fn each_lookup_answers_the_epoch_that_wrote_its_offset() {
        let (_dir, node) = node_with_t();
        let p = node.partitions.get("t", 0).unwrap();
        let append = |timestamp: i64| {
            let batch = storage::BatchBuilder::new()
                .record(None, Some(b"v"), timestamp)
                .build()
                .unwrap();
            p.append(&batch, node.now_ms()).unwrap();
        };
        append(1_000);
        assert!(p.become_leader(5, 1, vec![1], vec![1], 1, 0));
        append(2_000);
        let mut hw = p.subscribe_high_watermark();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            hw.wait_for(|&hw| hw >= 2),
        )
        .await
        .unwrap()
        .unwrap();
        let ask = |timestamp: i64| ask(&node, timestamp, 7);
        assert_eq!(ask(EARLIEST), (0, 0, 0));
        assert_eq!(ask(LATEST), (0, 2, 5));
        assert_eq!(ask(500), (0, 0, 0));
        assert_eq!(ask(1_500), (0, 1, 5));
        assert_eq!(ask(MAX_TIMESTAMP), (0, 1, 5));
        assert_eq!(ask(5_000), (0, -1, -1));
    }
}
