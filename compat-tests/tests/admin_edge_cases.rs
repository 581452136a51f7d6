//! Admin requests whose edge cases Kafka answers in a particular way, against a real broker
//! process over raw sockets: a topic named twice in CreatePartitions, CreatePartitions adding
//! more than 10,000 partitions in one request, a config without a value,
//! a name colliding with another ('.' as '_') or a bad replication factor and partition count
//! (in Kafka's order) in CreateTopics, DescribeConfigs with an empty key list, a malformed or unknown topic name
//! and the default broker entity, Metadata naming a topic by id before v12, and DescribeCluster
//! asked for an endpoint type this listener is not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use compat_tests::process::SluiceProcess;
use compat_tests::unique_topic;
use compat_tests::wire::{self, topic_name, RawConnection};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, DescribeClusterRequest, DescribeConfigsRequest, MetadataRequest,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// Kafka's error codes used below.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const POLICY_VIOLATION: i16 = 44;
const MISMATCHED_ENDPOINT_TYPE: i16 = 114;
const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
/// `ConfigResource.Type` ids.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn connect(broker: &SluiceProcess) -> RawConnection {
    RawConnection::connect_with_timeout(broker.bootstrap(), Duration::from_secs(20)).unwrap()
}

/// CreateTopics v7 of one topic with `partitions` and these configs; its error code and message.
fn create(
    conn: &mut RawConnection,
    topic: &str,
    partitions: i32,
    configs: &[(&str, Option<&str>)],
) -> (i16, Option<String>) {
    let request = wire::create_topics_request(topic, partitions, configs);
    let response = conn.call(&request, 7).unwrap();
    let t = &response.topics[0];
    (
        t.error_code,
        t.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// Metadata v12 of one topic by name: its error code and partition count.
fn partitions_of(conn: &mut RawConnection, topic: &str) -> (i16, usize) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let response = conn.call(&request, 12).unwrap();
    (
        response.topics[0].error_code,
        response.topics[0].partitions.len(),
    )
}

#[test]
fn create_partitions_refuses_a_topic_named_twice_and_changes_nothing() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let twice = unique_topic("twice");
    let once = unique_topic("once");
    for t in [&twice, &once] {
        assert_eq!(create(&mut conn, t, 1, &[]).0, 0);
    }
    let grow = |name: &str, count: i32| {
        CreatePartitionsTopic::default()
            .with_name(topic_name(name))
            .with_count(count)
            .with_assignments(None)
    };
    let response = conn
        .call(
            &CreatePartitionsRequest::default()
                .with_topics(vec![grow(&twice, 3), grow(&once, 2), grow(&twice, 5)])
                .with_timeout_ms(10_000),
            3,
        )
        .unwrap();
    // One answer per name, as Kafka's: the repeated one refused, the other carried out.
    let answers: Vec<(String, i16)> = response
        .results
        .iter()
        .map(|r| (r.name.to_string(), r.error_code))
        .collect();
    assert_eq!(
        answers,
        vec![(twice.clone(), INVALID_REQUEST), (once.clone(), 0)],
        "{response:?}"
    );
    assert_eq!(
        partitions_of(&mut conn, &twice),
        (0, 1),
        "the repeated topic grew"
    );
    assert_eq!(partitions_of(&mut conn, &once), (0, 2));
}

/// One CreatePartitions adds at most 10,000 partitions over all its topics (Kafka's bound on one
/// request's metadata records): a topic whose partitions would go past it is refused whole and
/// nothing of it is created, where a hostile count used to make the broker create directories
/// until it ran out of open files (found by a mutation fuzz: count 1,048,576). Topics before it
/// and after it that stay within the bound are carried out.
#[test]
fn create_partitions_adds_at_most_ten_thousand_partitions_per_request() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let names: Vec<String> = ["huge", "six", "five", "four"]
        .iter()
        .map(|n| unique_topic(n))
        .collect();
    for t in &names {
        assert_eq!(create(&mut conn, t, 1, &[]).0, 0);
    }
    fn grow(
        conn: &mut RawConnection,
        counts: &[(&str, i32)],
        validate_only: bool,
    ) -> Vec<(i16, String)> {
        let response = conn
            .call(
                &CreatePartitionsRequest::default()
                    .with_topics(
                        counts
                            .iter()
                            .map(|(name, count)| {
                                CreatePartitionsTopic::default()
                                    .with_name(topic_name(name))
                                    .with_count(*count)
                                    .with_assignments(None)
                            })
                            .collect(),
                    )
                    .with_timeout_ms(10_000)
                    .with_validate_only(validate_only),
                3,
            )
            .unwrap();
        response
            .results
            .iter()
            .map(|r| {
                (
                    r.error_code,
                    r.error_message
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }
    let too_many = (
        POLICY_VIOLATION,
        "Excessively large number of partitions per request.".to_string(),
    );
    // The fuzzer's count, for real.
    assert_eq!(
        grow(&mut conn, &[(&names[0], 1 << 20)], false),
        vec![too_many.clone()]
    );
    // Validating only, three topics adding 6,000, 5,000 and 4,000: the second would take the
    // request to 11,000 and is refused; the third brings it to exactly 10,000.
    let answers = grow(
        &mut conn,
        &[(&names[1], 6_001), (&names[2], 5_001), (&names[3], 4_001)],
        true,
    );
    assert_eq!(
        answers,
        vec![(0, String::new()), too_many, (0, String::new())]
    );
    for t in &names {
        assert_eq!(partitions_of(&mut conn, t), (0, 1), "{t} grew");
    }
    // Within the bound a request is carried out as before.
    assert_eq!(
        grow(&mut conn, &[(&names[0], 3)], false),
        vec![(0, String::new())]
    );
    assert_eq!(partitions_of(&mut conn, &names[0]), (0, 3));
}

/// CreatePartitions checks in Kafka's order and words: an unknown topic, then a count that
/// does not grow, then the number of manual assignments.
#[test]
fn create_partitions_checks_in_kafkas_order() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
    use kafka_protocol::messages::BrokerId;
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let topic = unique_topic("grow");
    assert_eq!(create(&mut conn, &topic, 2, &[]).0, 0);
    let mut grow = |name: &str, count: i32, assignments: usize| {
        let assignments = (0..assignments)
            .map(|_| CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]))
            .collect();
        let r = conn
            .call(
                &CreatePartitionsRequest::default()
                    .with_topics(vec![CreatePartitionsTopic::default()
                        .with_name(topic_name(name))
                        .with_count(count)
                        .with_assignments(Some(assignments))])
                    .with_timeout_ms(10_000),
                3,
            )
            .unwrap();
        let t = &r.results[0];
        (
            t.error_code,
            t.error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        )
    };
    assert_eq!(grow("no-such-topic", 3, 2).0, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(
        grow(&topic, 1, 2),
        (
            37,
            format!("The topic {topic} currently has 2 partition(s); 1 would not be an increase.")
        )
    );
    assert_eq!(
        grow(&topic, 2, 0),
        (37, "Topic already has 2 partition(s).".to_string())
    );
    assert_eq!(
        grow(&topic, 4, 1),
        (
            39,
            "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified."
                .to_string()
        )
    );
    assert_eq!(grow(&topic, 4, 2).0, 0);
    assert_eq!(partitions_of(&mut conn, &topic), (0, 4));
}

#[test]
fn create_topics_refuses_a_config_without_a_value() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let topic = unique_topic("nullcfg");
    let (code, message) = create(
        &mut conn,
        &topic,
        1,
        &[
            ("retention.ms", None),
            ("segment.ms", Some("60000")),
            ("cleanup.policy", None),
        ],
    );
    assert_eq!(code, INVALID_CONFIG);
    assert_eq!(
        message.as_deref(),
        Some("Null value not supported for topic configs: retention.ms,cleanup.policy")
    );
    assert_eq!(
        partitions_of(&mut conn, &topic).0,
        UNKNOWN_TOPIC_OR_PARTITION,
        "the topic was created"
    );
    // An existing topic is refused as existing first, as in Kafka's order of checks.
    assert_eq!(create(&mut conn, &topic, 1, &[]).0, 0);
    assert_eq!(
        create(&mut conn, &topic, 1, &[("retention.ms", None)]).0,
        36
    );
}

/// Kafka's `ReplicationControlManager.createTopic` refuses a replication factor of 0 (or
/// below -1) before a partition count of 0 (or below -1), each with its own message, and both
/// after a bad config value.
#[test]
fn create_topics_checks_the_replication_factor_before_the_partition_count() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let topic = unique_topic("counts");
    let answer = |conn: &mut RawConnection, partitions: i32, rf: i16| {
        let mut request = wire::create_topics_request(&topic, partitions, &[]);
        request.topics[0].replication_factor = rf;
        let response = conn.call(&request, 7).unwrap();
        let t = &response.topics[0];
        (
            t.error_code,
            t.error_message.as_ref().map(|m| m.to_string()),
        )
    };
    let bad_rf = (
        INVALID_REPLICATION_FACTOR,
        Some("Replication factor must be larger than 0, or -1 to use the default value.".into()),
    );
    let bad_count = (
        INVALID_PARTITIONS,
        Some("Number of partitions was set to an invalid non-positive value.".into()),
    );
    assert_eq!(answer(&mut conn, 0, 0), bad_rf);
    assert_eq!(answer(&mut conn, 1, -2), bad_rf);
    assert_eq!(answer(&mut conn, 0, 1), bad_count);
    assert_eq!(answer(&mut conn, -2, -1), bad_count);
    // A bad config value is refused before the counts (Kafka's `incrementalAlterConfig` runs
    // before its `createTopic`).
    let mut request = wire::create_topics_request(&topic, 0, &[("retention.ms", Some("soon"))]);
    request.topics[0].replication_factor = 0;
    assert_eq!(
        conn.call(&request, 7).unwrap().topics[0].error_code,
        INVALID_CONFIG
    );
    assert_eq!(
        partitions_of(&mut conn, &topic).0,
        UNKNOWN_TOPIC_OR_PARTITION,
        "the topic was created"
    );
}

/// Kafka refuses a topic whose name equals an existing one once '.' is read as '_' (their
/// metric names would clash): INVALID_TOPIC_EXCEPTION, naming the existing topic.
#[test]
fn create_topics_refuses_a_name_that_collides_with_an_existing_one() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let base = unique_topic("collide");
    let underscored = format!("{base}_x_y");
    let dotted = format!("{base}.x_y");
    assert_eq!(create(&mut conn, &underscored, 1, &[]).0, 0);
    let (code, message) = create(&mut conn, &dotted, 1, &[]);
    assert_eq!(code, INVALID_TOPIC_EXCEPTION);
    assert_eq!(
        message.as_deref(),
        Some(format!("Topic '{dotted}' collides with existing topic: {underscored}").as_str())
    );
    assert_eq!(
        partitions_of(&mut conn, &dotted).0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    // A name that differs in more than the separators is fine.
    assert_eq!(create(&mut conn, &format!("{base}.x-y"), 1, &[]).0, 0);
}

/// DescribeConfigs v4 of one resource with `keys`.
fn describe(
    conn: &mut RawConnection,
    resource_type: i8,
    name: &str,
    keys: Option<Vec<&str>>,
) -> kafka_protocol::messages::describe_configs_response::DescribeConfigsResult {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configuration_keys(keys.map(|ks| {
                ks.into_iter()
                    .map(|k| StrBytes::from_string(k.to_owned()))
                    .collect()
            }))]);
    let mut response = conn.call(&request, 4).unwrap();
    response.results.remove(0)
}

#[test]
fn describe_configs_edge_cases_answer_as_kafka_config_helper() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let topic = unique_topic("cfgs");
    assert_eq!(create(&mut conn, &topic, 1, &[]).0, 0);
    // No keys and an empty key list both ask for every config; a list picks.
    let all = describe(&mut conn, RESOURCE_TOPIC, &topic, None);
    assert_eq!(all.error_code, 0);
    assert!(all.configs.len() > 10, "{all:?}");
    let empty = describe(&mut conn, RESOURCE_TOPIC, &topic, Some(vec![]));
    assert_eq!(empty.configs.len(), all.configs.len(), "{empty:?}");
    let one = describe(
        &mut conn,
        RESOURCE_TOPIC,
        &topic,
        Some(vec!["retention.ms"]),
    );
    assert_eq!(one.configs.len(), 1);
    // A malformed name is INVALID_TOPIC_EXCEPTION; a well-formed unknown one
    // UNKNOWN_TOPIC_OR_PARTITION with no message.
    for bad in ["", "a/b", ".."] {
        let r = describe(&mut conn, RESOURCE_TOPIC, bad, None);
        assert_eq!(r.error_code, INVALID_TOPIC_EXCEPTION, "{bad:?}: {r:?}");
    }
    let unknown = describe(&mut conn, RESOURCE_TOPIC, "no-such-topic", None);
    assert_eq!(unknown.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(unknown.error_message, None);
    // The broker resource "" is the cluster-wide dynamic defaults: none are set.
    let defaults = describe(&mut conn, RESOURCE_BROKER, "", None);
    assert_eq!(defaults.error_code, 0);
    assert!(defaults.configs.is_empty(), "{defaults:?}");
    assert!(!describe(&mut conn, RESOURCE_BROKER, "1", None)
        .configs
        .is_empty());
    // A resource type Kafka does not know refuses the whole request (Kafka throws while
    // authorizing); a known type Sluice does not serve (group, 32) refuses only itself.
    let resource = |resource_type: i8, name: &str| {
        DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
    };
    let codes = |conn: &mut RawConnection, types: &[i8]| -> Vec<i16> {
        let request = DescribeConfigsRequest::default().with_resources(
            types
                .iter()
                .map(|&t| resource(t, if t == RESOURCE_TOPIC { &topic } else { "g" }))
                .collect(),
        );
        let response = conn.call(&request, 4).unwrap();
        response.results.iter().map(|r| r.error_code).collect()
    };
    assert_eq!(
        codes(&mut conn, &[RESOURCE_TOPIC, 3]),
        vec![INVALID_REQUEST, INVALID_REQUEST]
    );
    assert_eq!(
        codes(&mut conn, &[RESOURCE_TOPIC, 32]),
        vec![0, INVALID_REQUEST]
    );
}

#[test]
fn metadata_before_v12_refuses_topics_by_id() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let topic = unique_topic("byid");
    assert_eq!(create(&mut conn, &topic, 1, &[]).0, 0);
    let id = Uuid::from_u128(0x5151_1ce0_0000_4000_8000_0000_0000_0012);
    for version in [10, 11] {
        // A topic by id alone, beside one by name: the whole request is refused, the missing
        // name answered as "" (not nullable before v12).
        let response = conn
            .call(
                &MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic_name(&topic))),
                    MetadataRequestTopic::default()
                        .with_name(None)
                        .with_topic_id(id),
                ])),
                version,
            )
            .unwrap();
        let answers: Vec<(Option<String>, i16)> = response
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.error_code))
            .collect();
        assert_eq!(
            answers,
            vec![
                (Some(topic.clone()), INVALID_REQUEST),
                (Some(String::new()), INVALID_REQUEST)
            ],
            "v{version}: {response:?}"
        );
        // A name with an id is refused too.
        let response = conn
            .call(
                &MetadataRequest::default()
                    .with_topics(Some(vec![MetadataRequestTopic::default()
                        .with_name(Some(topic_name(&topic)))
                        .with_topic_id(id)])),
                version,
            )
            .unwrap();
        assert_eq!(response.topics[0].error_code, INVALID_REQUEST);
    }
    // v12 looks the id up.
    let response = conn
        .call(
            &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(id)])),
            12,
        )
        .unwrap();
    assert_eq!(response.topics[0].error_code, 100, "UNKNOWN_TOPIC_ID");
}

#[test]
fn describe_cluster_names_the_endpoint_type_error() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    for (endpoint_type, want) in [
        (1, 0),
        (2, MISMATCHED_ENDPOINT_TYPE),
        (0, UNSUPPORTED_ENDPOINT_TYPE),
        (9, UNSUPPORTED_ENDPOINT_TYPE),
    ] {
        let r = conn
            .call(
                &DescribeClusterRequest::default().with_endpoint_type(endpoint_type),
                1,
            )
            .unwrap();
        assert_eq!(r.error_code, want, "type {endpoint_type}: {r:?}");
        assert_eq!(r.brokers.is_empty(), want != 0);
    }
}
