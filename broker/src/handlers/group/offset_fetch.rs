//! OffsetFetch (key 9): one group (v1-7, all partitions when `topics` is null, v2+) or
//! several groups at once (v8+). Nothing committed reads as offset -1. A group this node does
//! not coordinate gets NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS): per group from v8.

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};

use protocol_shim::ErrorKind;

use crate::group::api::{FetchedGroup, FetchedOffset};
use crate::handlers::util::{str_bytes, topic_name};
use crate::node::Node;

pub fn handle(node: &Arc<Node>, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = node.groups.read(|c| {
            request
                .groups
                .iter()
                .map(|g| {
                    let topics = g.topics.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                            .collect()
                    });
                    let fetched = match c.legacy_group_error(g.group_id.0.as_str()) {
                        // Kafka: the group's error and no topics.
                        Some(error) => FetchedGroup {
                            error,
                            topics: Vec::new(),
                        },
                        None => c.fetch_offsets(g.group_id.0.as_str(), topics),
                    };
                    (g.group_id.clone(), fetched)
                })
                .collect::<Vec<_>>()
        });
        return OffsetFetchResponse::default().with_groups(
            groups
                .into_iter()
                .map(|(id, g)| encode_group(id, g))
                .collect(),
        );
    }
    let topics = request.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let fetched = node.groups.read(
        |c| match c.legacy_group_error(request.group_id.0.as_str()) {
            Some(error) => not_coordinated(topics, error, version),
            None => c.fetch_offsets(request.group_id.0.as_str(), topics),
        },
    );
    let error_code = if version >= 2 {
        fetched.error.code()
    } else {
        0
    };
    OffsetFetchResponse::default()
        .with_error_code(error_code)
        .with_topics(
            fetched
                .topics
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p.partition)
                                        .with_committed_offset(p.offset)
                                        .with_committed_leader_epoch(p.leader_epoch)
                                        .with_metadata(Some(str_bytes(p.metadata)))
                                        .with_error_code(if version < 2 {
                                            fetched.error.code()
                                        } else {
                                            0
                                        })
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// Kafka's error answer before v8: the error at the top (v2+) and no topics, or (v1, which has
/// no top-level error) every requested partition with offset -1 and the error.
fn not_coordinated(
    topics: Option<Vec<(String, Vec<i32>)>>,
    error: ErrorKind,
    version: i16,
) -> FetchedGroup {
    let topics = if version >= 2 {
        Vec::new()
    } else {
        topics
            .unwrap_or_default()
            .into_iter()
            .map(|(name, parts)| {
                let parts = parts
                    .into_iter()
                    .map(|partition| FetchedOffset {
                        partition,
                        offset: -1,
                        leader_epoch: -1,
                        metadata: String::new(),
                    })
                    .collect();
                (name, parts)
            })
            .collect()
    };
    FetchedGroup { error, topics }
}

fn encode_group(group_id: GroupId, g: FetchedGroup) -> OffsetFetchResponseGroup {
    OffsetFetchResponseGroup::default()
        .with_group_id(group_id)
        .with_error_code(g.error.code())
        .with_topics(
            g.topics
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p.partition)
                                        .with_committed_offset(p.offset)
                                        .with_committed_leader_epoch(p.leader_epoch)
                                        .with_metadata(Some(str_bytes(p.metadata)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}
