//! OffsetCommit (key 8), v2-9: acknowledged only once the commit records are durable in
//! `__consumer_offsets`. Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION; the
//! others NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS) if this node does not coordinate
//! the group.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};
use protocol_shim::ErrorKind;

use super::{opt_string, partition_error, string};
use crate::group::api::{CommitPartition, CommitRequest, CommitResponse, CommitTopic};
use crate::group::Answer;
use crate::handlers::util::topic_name;
use crate::handlers::Reply;
use crate::node::Node;

pub fn handle(node: &Arc<Node>, request: OffsetCommitRequest, version: i16) -> Reply {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            CommitTopic {
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| CommitPartition {
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: opt_string(&p.committed_metadata),
                        error: partition_error(node, &name, p.partition_index),
                    })
                    .collect(),
                name,
            }
        })
        .collect();
    let req = CommitRequest {
        group_id: request.group_id.0.to_string(),
        generation_id: request.generation_id_or_member_epoch,
        member_id: string(&request.member_id),
        group_instance_id: if version >= 7 {
            opt_string(&request.group_instance_id)
        } else {
            None
        },
        retention_ms: retention_ms(version, request.retention_time_ms),
        topics,
        version,
    };
    if req
        .topics
        .iter()
        .all(|t| t.partitions.iter().all(|p| p.error.is_some()))
    {
        // Nothing left to commit once unknown topics and partitions are answered (or nothing
        // asked): Kafka's `handleOffsetCommitRequest` answers without the coordinator, so no
        // "simple" group springs up for a commit that stored nothing.
        let response = req.answer_all(ErrorKind::None);
        return Reply::Now(Box::new(ResponseKind::OffsetCommit(encode(response))));
    }
    let called = node.groups.call(node, |c, now, _| {
        Answer::Now(match c.legacy_group_error(&req.group_id) {
            Some(kind) => req.answer_all(kind),
            None => c.commit_offsets(now, req),
        })
    });
    Reply::Later(Box::pin(async move {
        let mut response = match called.answer {
            Answer::Now(r) => r,
            Answer::Parked => Vec::new(),
        };
        if let Err(e) = called.durable.await {
            for (_, parts) in &mut response {
                for (_, error) in parts.iter_mut() {
                    if *error == ErrorKind::None {
                        *error = e;
                    }
                }
            }
        }
        ResponseKind::OffsetCommit(encode(response))
    }))
}

/// The explicit retention of an OffsetCommit (v2-4 have the field): as Kafka's
/// `expireTimestampMs`, every value but -1 (`DEFAULT_RETENTION_TIME`) is explicit, negative
/// ones too (the offset then expires at the next expiry check).
fn retention_ms(version: i16, retention_time_ms: i64) -> Option<i64> {
    const DEFAULT_RETENTION_TIME: i64 = -1;
    ((2..=4).contains(&version) && retention_time_ms != DEFAULT_RETENTION_TIME)
        .then_some(retention_time_ms)
}

fn encode(r: CommitResponse) -> OffsetCommitResponse {
    OffsetCommitResponse::default().with_topics(
        r.into_iter()
            .map(|(name, parts)| {
                OffsetCommitResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, e)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(e.code())
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
