//! Metadata (key 3): brokers, cluster id, controller, and topics with their partitions;
//! creates requested topics when auto-creation is allowed by both the client and the broker.
//! In a cluster, brokers, leaders, epochs, replicas, ISR and offline replicas come from the
//! controller's metadata as this broker last applied it.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use protocol_shim::ErrorKind;
use uuid::Uuid;

use super::util::{
    str_bytes, topic_name, CLUSTER_AUTHORIZED_OPERATIONS, OPERATIONS_NOT_REQUESTED,
    TOPIC_AUTHORIZED_OPERATIONS,
};
use crate::metadata::{validate_topic_name, TopicMeta};
use crate::node::Node;

pub async fn handle(node: &Arc<Node>, request: MetadataRequest, version: i16) -> MetadataResponse {
    if version < 12 {
        if let Some(list) = &request.topics {
            if list
                .iter()
                .any(|t| t.name.is_none() || !t.topic_id.is_nil())
            {
                return by_id_before_v12(list);
            }
        }
    }
    let include_ops = request.include_topic_authorized_operations;
    let describe = |t: &TopicMeta| describe_topic(node, t, include_ops);
    let topics: Vec<MetadataResponseTopic> = match request.topics {
        // v0: an empty list means all topics; v1+: null means all, empty means none.
        None => node.topics.all().iter().map(describe).collect(),
        Some(list) if list.is_empty() && version == 0 => {
            node.topics.all().iter().map(describe).collect()
        }
        Some(list) => {
            let auto_create = version < 4 || request.allow_auto_topic_creation;
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                out.push(match t.name {
                    Some(name) => {
                        let name = name.0.as_str().to_string();
                        lookup_or_create(node, &name, auto_create, include_ops).await
                    }
                    None => match node.topics.get_by_id(t.topic_id) {
                        Some(meta) => describe(&meta),
                        None => error_topic(None, t.topic_id, ErrorKind::UnknownTopicId),
                    },
                });
            }
            out
        }
    };
    let (brokers, controller_id) = brokers(node);
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(node.cluster_id())))
        .with_controller_id(BrokerId(controller_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            CLUSTER_AUTHORIZED_OPERATIONS
        } else {
            OPERATIONS_NOT_REQUESTED
        })
}

/// The live brokers and the controller id.
fn brokers(node: &Node) -> (Vec<MetadataResponseBroker>, i32) {
    let this = || {
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(node.meta.node_id))
            .with_host(str_bytes(node.config.advertised_host.clone()))
            .with_port(node.config.advertised_port)
            .with_rack(
                node.config
                    .cluster
                    .as_ref()
                    .and_then(|c| c.rack.clone())
                    .map(str_bytes),
            )
    };
    let Some(rt) = node.cluster() else {
        return (vec![this()], node.meta.node_id);
    };
    let state = rt.state();
    let mut list: Vec<MetadataResponseBroker> = state
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.broker_id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    if list.is_empty() {
        // No broker registered and unfenced yet (the cluster is forming): still tell the
        // client where we are, so it can come back.
        list.push(this());
    }
    let live: Vec<i32> = list.iter().map(|b| b.node_id.0).collect();
    (list, rt.controller_for_clients(&live))
}

async fn lookup_or_create(
    node: &Arc<Node>,
    name: &str,
    auto_create: bool,
    include_ops: bool,
) -> MetadataResponseTopic {
    if let Some(meta) = node.topics.get(name) {
        return describe_topic(node, &meta, include_ops);
    }
    if validate_topic_name(name).is_err() {
        return error_topic(Some(name), Uuid::nil(), ErrorKind::InvalidTopic);
    }
    if auto_create && may_auto_create(name) {
        match node.auto_create_topic(name).await {
            Some(Ok(meta)) => return describe_topic(node, &meta, include_ops),
            Some(Err(e)) => {
                tracing::warn!(topic = name, error = %e.message, "auto-create failed");
                return error_topic(Some(name), Uuid::nil(), e.kind);
            }
            None => {}
        }
    }
    error_topic(Some(name), Uuid::nil(), ErrorKind::UnknownTopicOrPartition)
}

/// `__consumer_offsets` is created by the broker itself with its own partition count,
/// replication factor and compaction (`offsets.topic.*`; in a cluster once enough brokers
/// registered), never as an ordinary topic a client's Metadata asked for (Kafka's
/// `AutoTopicCreationManager` treats it apart too).
fn may_auto_create(name: &str) -> bool {
    name != crate::metadata::CONSUMER_OFFSETS_TOPIC
}

fn error_topic(name: Option<&str>, id: Uuid, kind: ErrorKind) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(kind.code())
        .with_name(name.map(topic_name))
        .with_topic_id(id)
        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
}

pub fn describe_topic(node: &Node, meta: &TopicMeta, include_ops: bool) -> MetadataResponseTopic {
    let me = BrokerId(node.meta.node_id);
    let cluster_partitions = node.cluster().map(|rt| {
        let state = rt.state();
        let live = |b: &i32| state.is_unfenced(*b);
        state
            .topics
            .get(&meta.name)
            .filter(|t| t.topic_id == meta.id)
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let ids = |v: &[i32]| v.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
                        let offline: Vec<i32> =
                            p.replicas.iter().copied().filter(|b| !live(b)).collect();
                        MetadataResponsePartition::default()
                            .with_error_code(if p.leader < 0 {
                                ErrorKind::LeaderNotAvailable.code()
                            } else {
                                0
                            })
                            .with_partition_index(i32::try_from(i).unwrap_or(i32::MAX))
                            .with_leader_id(BrokerId(p.leader))
                            .with_leader_epoch(p.leader_epoch)
                            .with_replica_nodes(ids(&p.replicas))
                            .with_isr_nodes(ids(&p.isr))
                            .with_offline_replicas(ids(&offline))
                    })
                    .collect::<Vec<_>>()
            })
    });
    if let Some(None) = cluster_partitions {
        // This node's copy of the metadata does not have the topic yet (it is catching up
        // after a restart): a retriable error, so the client asks again.
        return error_topic(Some(&meta.name), meta.id, ErrorKind::LeaderNotAvailable);
    }
    let partitions = cluster_partitions.flatten().unwrap_or_else(|| {
        (0..meta.partitions)
            .map(|p| {
                MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(me)
                    .with_leader_epoch(0)
                    .with_replica_nodes(vec![me])
                    .with_isr_nodes(vec![me])
            })
            .collect()
    });
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&meta.name)))
        .with_topic_id(meta.id)
        .with_is_internal(meta.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(if include_ops {
            TOPIC_AUTHORIZED_OPERATIONS
        } else {
            OPERATIONS_NOT_REQUESTED
        })
}

/// Kafka's answer to a v10-11 request that names a topic by id (or not at all): those versions
/// have ids in the schema but no lookup by id, so `KafkaApis` refuses the whole request and
/// `MetadataRequest.getErrorResponse` answers every topic INVALID_REQUEST, with "" for a
/// missing name (the response's name is not nullable before v12) and nothing else.
fn by_id_before_v12(
    topics: &[kafka_protocol::messages::metadata_request::MetadataRequestTopic],
) -> MetadataResponse {
    let topics = topics
        .iter()
        .map(|t| {
            MetadataResponseTopic::default()
                .with_name(Some(t.name.clone().unwrap_or_else(|| topic_name(""))))
                .with_topic_id(t.topic_id)
                .with_error_code(ErrorKind::InvalidRequest.code())
        })
        .collect();
    MetadataResponse::default().with_topics(topics)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metadata_auto_creates_topics_but_not_the_offsets_topic() {
        let (_dir, node) = crate::handlers::fetch::node_with(&[]);
        assert!(!may_auto_create(crate::metadata::CONSUMER_OFFSETS_TOPIC));
        assert!(may_auto_create("__other"));
        let answer = lookup_or_create(&node, "fresh", true, false).await;
        assert_eq!(answer.error_code, 0);
        assert!(node.topics.get("fresh").is_some());
    }
}
