//! CreatePartitions (key 37): raises a topic's partition count (with optional replica
//! assignments, which on one node can only name this node), at most
//! `MAX_PARTITIONS_PER_REQUEST` partitions added per request.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use protocol_shim::ErrorKind;

use super::util::{str_bytes, MAX_PARTITIONS_PER_REQUEST, TOO_MANY_PARTITIONS};
use crate::node::{topic_op_off_runtime, Node, TopicOpError};

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
    // Partitions the topics before added (or, validating only, would add).
    let mut added = 0u64;
    for t in request.topics {
        if duplicates.contains(&t.name) {
            continue;
        }
        results.push({
            let name = t.name.0.as_str().to_string();
            let adds = partitions_added(node, &t);
            let result =
                if adds.is_some_and(|n| added.saturating_add(n) > MAX_PARTITIONS_PER_REQUEST) {
                    // Kafka's controller stops at the same bound with an UNKNOWN_SERVER_ERROR (its
                    // record list overflows, after adding part of the topic's partitions); here the
                    // topic is refused whole, with CreateTopics' error for the same excess.
                    Err(TopicOpError::new(
                        ErrorKind::PolicyViolation,
                        TOO_MANY_PARTITIONS,
                    ))
                } else if let Some(rt) = node.cluster() {
                    let assignments = t.assignments.as_ref().map(|list| {
                        list.iter()
                            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                            .collect()
                    });
                    rt.create_partitions(node, &name, t.count, assignments, request.validate_only)
                        .await
                } else {
                    match check_assignments(node, &t) {
                        Ok(()) => {
                            let (node, name) = (Arc::clone(node), name.clone());
                            let (count, validate_only) = (t.count, request.validate_only);
                            topic_op_off_runtime(move || {
                                node.create_partitions(&name, count, validate_only)
                            })
                            .await
                        }
                        Err(e) => Err(e),
                    }
                };
            let mut out = CreatePartitionsTopicResult::default().with_name(t.name);
            match result {
                Ok(()) => added = added.saturating_add(adds.unwrap_or(0)),
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

/// How many partitions `t` adds to its topic, when Kafka's earlier checks pass (the topic is
/// known, the count grows, and any assignments name exactly the partitions added); `None`
/// otherwise, for the operation itself to refuse in Kafka's words. The current count comes from
/// where the operation takes it: the controller's applied state on a cluster node (this node's
/// topic list may not have caught up with it yet), this node's topics otherwise.
fn partitions_added(
    node: &Node,
    t: &kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic,
) -> Option<u64> {
    let name = t.name.0.as_str();
    let current = match node.cluster() {
        Some(rt) => u64::try_from(rt.state().topics.get(name)?.partitions.len()).ok()?,
        None => u64::try_from(node.topics.get(name)?.partitions).ok()?,
    };
    let additional = u64::try_from(t.count)
        .ok()?
        .checked_sub(current)
        .filter(|&n| n > 0)?;
    match &t.assignments {
        Some(given) if u64::try_from(given.len()).ok() != Some(additional) => None,
        _ => Some(additional),
    }
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
