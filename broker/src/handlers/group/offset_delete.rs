//! OffsetDelete (key 47), v0: deletes committed offsets of topics the group does not
//! subscribe to (any, for an empty group). NOT_COORDINATOR (or COORDINATOR_LOAD_IN_PROGRESS)
//! for a group this node does not coordinate.

use std::sync::Arc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind};
use protocol_shim::ErrorKind;

use super::partition_error;
use crate::group::api::OffsetDeleteTopics;
use crate::group::Answer;
use crate::handlers::util::topic_name;
use crate::handlers::Reply;
use crate::node::Node;

pub fn handle(node: &Arc<Node>, request: OffsetDeleteRequest, _version: i16) -> Reply {
    let group_id = request.group_id.0.to_string();
    let topics: OffsetDeleteTopics = request
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        partition_error(node, &name, p.partition_index),
                    )
                })
                .collect();
            (name, parts)
        })
        .collect();
    let called = node.groups.call(node, |c, _, _| {
        Answer::Now(match c.group_error(&group_id) {
            Some(error) => crate::group::api::OffsetDeleteResponse {
                error,
                topics: Vec::new(),
            },
            None => c.delete_offsets(&group_id, topics),
        })
    });
    Reply::Later(Box::pin(async move {
        let Answer::Now(mut r) = called.answer else {
            return ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default()
                    .with_error_code(ErrorKind::UnknownServerError.code()),
            );
        };
        if let Err(e) = called.durable.await {
            r.error = e;
        }
        let mut response = OffsetDeleteResponse::default().with_error_code(r.error.code());
        if r.error == ErrorKind::None {
            response = response.with_topics(
                r.topics
                    .into_iter()
                    .map(|(name, parts)| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(topic_name(&name))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, e)| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_error_code(e.code())
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        }
        ResponseKind::OffsetDelete(response)
    }))
}
