//! CreatePartitions (key 37): raises a topic's partition count (with optional replica
//! assignments, which on one node can only name this node), at most
//! `MAX_PARTITIONS_PER_REQUEST` partitions added per request.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use protocol_shim::ErrorKind;

use super::util::str_bytes;
use crate::node::{topic_op_off_runtime, Node, TopicOpError, MAX_PARTITIONS_PER_REQUEST};

pub async fn handle(
    node: &Arc<Node>,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    // A name given twice is refused once and none of its entries is carried out, as Kafka's
    // `ControllerApis.createPartitions` (those answers come first there, one per name).
    let mut seen = HashSet::new();
    let mut duplicates: Vec<_> = Vec::new();
    for t in &request.topics {
        if !seen.insert(t.name.0.as_str()) && !duplicates.contains(&t.name) {
            duplicates.push(t.name.clone());
        }
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for name in &duplicates {
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(name.clone())
                .with_error_code(ErrorKind::InvalidRequest.code())
                .with_error_message(Some(str_bytes("Duplicate topic name."))),
        );
    }
    // Partitions the topics before added (or, validating only, would add); each operation
    // refuses a topic that would take the request past `MAX_PARTITIONS_PER_REQUEST`.
    let mut added = 0u64;
    for t in request.topics {
        if duplicates.contains(&t.name) {
            continue;
        }
        results.push({
            let name = t.name.0.as_str().to_string();
            let budget = MAX_PARTITIONS_PER_REQUEST.saturating_sub(added);
            let result = if let Some(rt) = node.cluster() {
                let assignments = t.assignments.as_ref().map(|list| {
                    list.iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                });
                rt.create_partitions(
                    node,
                    &name,
                    t.count,
                    assignments,
                    request.validate_only,
                    budget,
                )
                .await
            } else {
                match check_assignments(node, &t) {
                    Ok(()) => {
                        let (node, name) = (Arc::clone(node), name.clone());
                        let (count, validate_only) = (t.count, request.validate_only);
                        topic_op_off_runtime(move || {
                            node.create_partitions(&name, count, validate_only, budget)
                        })
                        .await
                    }
                    Err(e) => Err(e),
                }
            };
            let mut out = CreatePartitionsTopicResult::default().with_name(t.name);
            match result {
                Ok(n) => added = added.saturating_add(n),
                Err(e) => {
                    out.error_code = e.kind.code();
                    out.error_message = Some(str_bytes(e.message));
                }
            }
            out
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

fn check_assignments(
    node: &Node,
    t: &kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic,
) -> Result<(), TopicOpError> {
    let Some(assignments) = &t.assignments else {
        return Ok(());
    };
    // Kafka's order: an unknown topic and a count that does not grow come first.
    let name = t.name.0.as_str();
    let Some(meta) = node.topics.get(name) else {
        return Err(TopicOpError::new(
            ErrorKind::UnknownTopicOrPartition,
            "This server does not host this topic-partition.",
        ));
    };
    crate::node::check_partition_increase(name, meta.partitions, t.count, Some(assignments.len()))?;
    for a in assignments {
        let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        if ids != [node.meta.node_id] {
            return Err(TopicOpError::new(
                ErrorKind::InvalidReplicaAssignment,
                format!("Unknown broker(s) in replica assignment: {ids:?}."),
            ));
        }
    }
    Ok(())
}
