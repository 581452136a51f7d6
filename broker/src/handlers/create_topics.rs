//! CreateTopics (key 19): validates names, partition counts, replication factor, replica
//! assignments and configs, in Kafka's order (name, existence, null config values, the rest);
//! creates (or with validate_only, only checks) each topic. From v5 the result carries the
//! partition count, replication factor and every config's value. As Kafka 4's controller: a
//! name given twice gets one INVALID_REQUEST "Duplicate topic name." and is not created, and a
//! request for more than 10,000 partitions in all is refused whole (POLICY_VIOLATION).

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use protocol_shim::ErrorKind;
use uuid::Uuid;

use super::util::str_bytes;
use crate::config::{effective_topic_config, TopicConfigs, TOPIC_CONFIGS};
use crate::node::{
    topic_op_off_runtime, Node, TopicOpError, MAX_PARTITIONS_PER_REQUEST, TOO_MANY_PARTITIONS,
};

pub async fn handle(
    node: &Arc<Node>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let mut duplicates: Vec<String> = Vec::new();
    for t in &request.topics {
        let name = t.name.0.as_str();
        if !seen.insert(name) && !duplicates.iter().any(|d| d == name) {
            duplicates.push(name.to_string());
        }
    }
    let default_partitions = node.config.settings.i32("num.partitions");
    // Counted over the topics that could be created, as Kafka's controller counts them after
    // removing duplicates.
    let creatable = request.topics.iter().filter(|t| {
        let name = t.name.0.as_str();
        name != CLUSTER_METADATA_TOPIC && !duplicates.iter().any(|d| d == name)
    });
    let too_many = total_partitions(creatable, default_partitions) > MAX_PARTITIONS_PER_REQUEST;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        if duplicates.iter().any(|d| d == topic.name.0.as_str()) {
            continue;
        }
        topics.push({
            let result = if too_many {
                Err(TopicOpError::new(
                    ErrorKind::PolicyViolation,
                    TOO_MANY_PARTITIONS,
                ))
            } else if topic.name.0.as_str() == CLUSTER_METADATA_TOPIC {
                // Kafka's `ControllerApis.createTopics`: the name of its metadata log.
                Err(TopicOpError::new(
                    ErrorKind::InvalidRequest,
                    "Creation of internal topic __cluster_metadata is prohibited.",
                ))
            } else if let Some(rt) = node.cluster() {
                create_in_cluster(node, rt, &topic, request.validate_only).await
            } else {
                let (node, creatable) = (Arc::clone(node), topic.clone());
                let validate_only = request.validate_only;
                topic_op_off_runtime(move || create_one(&node, &creatable, validate_only)).await
            };
            let mut out = CreatableTopicResult::default()
                .with_name(topic.name)
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            match result {
                Ok((id, partitions, rf, configs)) => {
                    out.topic_id = id;
                    if version >= 5 {
                        out.num_partitions = partitions;
                        out.replication_factor = rf;
                        out.configs = Some(describe(node, &configs));
                    }
                }
                Err(e) => {
                    out.error_code = e.kind.code();
                    out.error_message = Some(str_bytes(e.message));
                }
            }
            out
        });
    }
    for name in duplicates {
        topics.push(
            CreatableTopicResult::default()
                .with_name(super::util::topic_name(&name))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_error_code(ErrorKind::InvalidRequest.code())
                .with_error_message(Some(str_bytes("Duplicate topic name.".to_string()))),
        );
    }
    CreateTopicsResponse::default().with_topics(topics)
}

/// The name of Kafka's metadata log, which no client may create.
const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// The partitions `topics` would create (Kafka's `validateTotalNumberOfPartitions`): the
/// assignments' count, else the count asked for (-1: the broker's default).
fn total_partitions<'a>(
    topics: impl IntoIterator<Item = &'a CreatableTopic>,
    default_partitions: i32,
) -> u64 {
    topics
        .into_iter()
        .map(|t| {
            if !t.assignments.is_empty() {
                u64::try_from(t.assignments.len()).unwrap_or(u64::MAX)
            } else if t.num_partitions == -1 {
                u64::try_from(default_partitions).unwrap_or(0)
            } else {
                u64::try_from(t.num_partitions).unwrap_or(0)
            }
        })
        .fold(0u64, u64::saturating_add)
}

/// CreateTopics on a cluster node: through the controller.
async fn create_in_cluster(
    node: &Arc<Node>,
    rt: &crate::cluster::ClusterRuntime,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<(Uuid, i32, i16, TopicConfigs), TopicOpError> {
    let configs = requested_configs(node, topic)?;
    let assignments = if topic.assignments.is_empty() {
        None
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(TopicOpError::new(
                ErrorKind::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let mut sorted: Vec<_> = topic.assignments.iter().collect();
        sorted.sort_by_key(|a| a.partition_index);
        if sorted
            .iter()
            .enumerate()
            .any(|(i, a)| i32::try_from(i).ok() != Some(a.partition_index))
        {
            return Err(TopicOpError::new(
                ErrorKind::InvalidReplicaAssignment,
                "Partitions should be a consecutive 0-based integer sequence",
            ));
        }
        Some(
            sorted
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect(),
        )
    };
    rt.create_topic(
        node,
        topic.name.0.as_str(),
        topic.num_partitions,
        topic.replication_factor,
        configs,
        assignments,
        validate_only,
    )
    .await
}

fn create_one(
    node: &Arc<Node>,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<(Uuid, i32, i16, TopicConfigs), TopicOpError> {
    let name = topic.name.0.as_str();
    let configs = requested_configs(node, topic)?;
    let (mut partitions, mut rf) = (topic.num_partitions, topic.replication_factor);
    if !topic.assignments.is_empty() {
        if partitions != -1 || rf != -1 {
            return Err(TopicOpError::new(
                ErrorKind::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
            ));
        }
        let mut indexes: Vec<i32> = topic
            .assignments
            .iter()
            .map(|a| a.partition_index)
            .collect();
        indexes.sort_unstable();
        if indexes
            .iter()
            .enumerate()
            .any(|(i, p)| i32::try_from(i).ok() != Some(*p))
        {
            return Err(TopicOpError::new(
                ErrorKind::InvalidReplicaAssignment,
                "Partitions should be a consecutive 0-based integer sequence",
            ));
        }
        for a in &topic.assignments {
            let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
            if ids != [node.meta.node_id] {
                return Err(TopicOpError::new(
                    ErrorKind::InvalidReplicaAssignment,
                    format!(
                        "Replica assignment {ids:?} names brokers other than the only broker, {}",
                        node.meta.node_id
                    ),
                ));
            }
        }
        partitions = i32::try_from(topic.assignments.len()).unwrap_or(i32::MAX);
        rf = 1;
    }
    if validate_only {
        let (p, r) = node.validate_new_topic(name, partitions, rf, &configs)?;
        // Kafka's controller answers a dry run with a fresh id that names nothing.
        return Ok((Uuid::new_v4(), p, r, configs));
    }
    let meta = node.create_topic(name, partitions, rf, configs, false)?;
    Ok((meta.id, meta.partitions, 1, meta.configs))
}

/// The topic's requested configs, after Kafka's first checks in its order
/// (`ReplicationControlManager.createTopics`): a legal name not taken already, then no config
/// without a value (INVALID_CONFIG, naming them all), then every value valid (its
/// `incrementalAlterConfig`, INVALID_CONFIG), and only then the rest of the request
/// (assignments, replication factor, partition count: `createTopic`).
fn requested_configs(node: &Node, topic: &CreatableTopic) -> Result<TopicConfigs, TopicOpError> {
    node.check_new_topic_name(topic.name.0.as_str())?;
    let nulls: Vec<&str> = topic
        .configs
        .iter()
        .filter(|c| c.value.is_none())
        .map(|c| c.name.as_str())
        .collect();
    if !nulls.is_empty() {
        return Err(TopicOpError::new(
            ErrorKind::InvalidConfig,
            format!(
                "Null value not supported for topic configs: {}",
                nulls.join(",")
            ),
        ));
    }
    let configs: TopicConfigs = topic
        .configs
        .iter()
        .filter_map(|c| {
            let v = c.value.as_ref()?;
            Some((c.name.as_str().to_string(), v.as_str().to_string()))
        })
        .collect();
    crate::node::check_topic_configs(&configs)?;
    Ok(configs)
}

fn describe(node: &Node, configs: &TopicConfigs) -> Vec<CreatableTopicConfigs> {
    TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (value, source) = effective_topic_config(d, configs, &node.config.settings);
            CreatableTopicConfigs::default()
                .with_name(str_bytes(d.name))
                .with_value(Some(str_bytes(value)))
                .with_config_source(source.code())
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopicConfig,
    };

    use super::*;
    use crate::handlers::util::topic_name;

    fn topic(name: &str, partitions: i32) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
    }

    /// (name, error code, message) of each result.
    fn answers(r: CreateTopicsResponse) -> Vec<(String, i16, String)> {
        r.topics
            .into_iter()
            .map(|t| {
                (
                    t.name.0.to_string(),
                    t.error_code,
                    t.error_message.map(|m| m.to_string()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Kafka's `ReplicationControlManager.createTopics`: a bad config value is refused before
    /// the counts; then a replication factor of 0 or below -1, then such a partition count,
    /// each with Kafka's message; -1 takes the broker's default; a dry run answers a fresh id.
    #[tokio::test]
    async fn bad_counts_are_refused_in_kafkas_order_with_its_messages() {
        let (_dir, node) = crate::handlers::fetch::node_with(&[]);
        let bad_rf = (
            ErrorKind::InvalidReplicationFactor.code(),
            "Replication factor must be larger than 0, or -1 to use the default value.".to_string(),
        );
        let bad_count = (
            ErrorKind::InvalidPartitions.code(),
            "Number of partitions was set to an invalid non-positive value.".to_string(),
        );
        let cases = [
            ("both-zero", 0, 0, bad_rf.clone()),
            ("rf-minus-two", 3, -2, bad_rf),
            ("count-zero", 0, 1, bad_count.clone()),
            ("count-minus-two", -2, -1, bad_count),
            ("defaults", -1, -1, (0, String::new())),
        ];
        for (name, partitions, rf, want) in cases {
            let request = CreateTopicsRequest::default()
                .with_topics(vec![topic(name, partitions).with_replication_factor(rf)]);
            let got = answers(handle(&node, request, 7).await);
            assert_eq!(got, vec![(name.to_string(), want.0, want.1)], "{name}");
        }
        assert_eq!(node.topics.get("defaults").map(|t| t.partitions), Some(1));
        assert!(node.topics.get("count-zero").is_none());

        // A config value is checked before the counts (Kafka's `incrementalAlterConfig` runs
        // before its `createTopic`).
        let mut bad_config = topic("bad-config", 0).with_replication_factor(0);
        bad_config.configs = vec![CreatableTopicConfig::default()
            .with_name("retention.ms".into())
            .with_value(Some("soon".into()))];
        let request = CreateTopicsRequest::default().with_topics(vec![bad_config]);
        let got = answers(handle(&node, request, 7).await);
        assert_eq!(got[0].1, ErrorKind::InvalidConfig.code(), "{got:?}");

        // A dry run answers a fresh id, as Kafka's controller does, and creates nothing.
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic("dry-run", 2)])
            .with_validate_only(true);
        let response = handle(&node, request, 7).await;
        assert_eq!(response.topics[0].error_code, 0);
        assert!(!response.topics[0].topic_id.is_nil());
        assert!(node.topics.get("dry-run").is_none());
    }

    #[tokio::test]
    async fn duplicates_oversized_requests_and_the_metadata_log_name_are_refused() {
        let (_dir, node) = crate::handlers::fetch::node_with(&[]);
        let request = CreateTopicsRequest::default().with_topics(vec![
            topic("a", 1),
            topic("b", 1),
            topic("a", 2),
            topic("a", 3),
            topic("__cluster_metadata", 1),
        ]);
        let invalid = ErrorKind::InvalidRequest.code();
        assert_eq!(
            answers(handle(&node, request, 7).await),
            vec![
                ("b".into(), 0, String::new()),
                (
                    "__cluster_metadata".into(),
                    invalid,
                    "Creation of internal topic __cluster_metadata is prohibited.".into()
                ),
                ("a".into(), invalid, "Duplicate topic name.".into()),
            ]
        );
        assert!(node.topics.get("a").is_none());

        // 10,001 partitions in all (one counted by the broker's default of 1): none is created.
        let mut assigned = topic("d", -1).with_replication_factor(-1);
        assigned.assignments = (0..2)
            .map(|p| {
                CreatableReplicaAssignment::default()
                    .with_partition_index(p)
                    .with_broker_ids(vec![kafka_protocol::messages::BrokerId(1)])
            })
            .collect();
        let request = CreateTopicsRequest::default().with_topics(vec![
            topic("c", 9_998),
            assigned,
            topic("e", -1),
        ]);
        let refused = answers(handle(&node, request, 7).await);
        assert_eq!(refused.len(), 3);
        for (name, code, message) in refused {
            assert_eq!(code, ErrorKind::PolicyViolation.code(), "{name}");
            assert_eq!(
                message,
                "Excessively large number of partitions per request."
            );
            assert!(node.topics.get(&name).is_none());
        }
        assert_eq!(
            total_partitions(&[topic("c", 9_998), topic("e", -1), topic("f", 0)], 1),
            9_999
        );
    }
}
