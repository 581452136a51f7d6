//! Topic administration against a real broker process, over raw sockets: the internal topic
//! `__consumer_offsets` is protected (no client produce, no delete, `is_internal` in
//! Metadata), DescribeConfigs reports each config's source and synonyms the way Kafka's
//! `ConfigHelper` does, DeleteTopics v6 deletes by topic id and refuses every topic when
//! `delete.topic.enable` is false, and a created partition records its leader epoch before
//! any produce.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use compat_tests::process::{SluiceOptions, SluiceProcess};
use compat_tests::wire::{self, topic_name, RawConnection};
use compat_tests::{now_ms, unique_topic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{DeleteTopicsRequest, DescribeConfigsRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's error codes used below.
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNKNOWN_TOPIC_ID: i16 = 100;
const INVALID_REQUEST: i16 = 42;
const TOPIC_DELETION_DISABLED: i16 = 73;
/// `ConfigSource` ids (DescribeConfigsResponse).
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;
/// `ConfigResource.Type` ids.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

fn connect(broker: &SluiceProcess) -> RawConnection {
    RawConnection::connect_with_timeout(broker.bootstrap(), Duration::from_secs(20)).unwrap()
}

/// Creates a topic with CreateTopics v7 (which returns the topic id) and returns the id.
fn create_topic(conn: &mut RawConnection, topic: &str, configs: &[(&str, &str)]) -> Uuid {
    let t = wire::create_topic_with(conn, topic, 1, configs).unwrap();
    assert!(!t.topic_id.is_nil());
    t.topic_id
}

/// Metadata v12 for the named topics (`None`: all topics).
fn metadata(conn: &mut RawConnection, topics: Option<&[&str]>) -> Vec<MetadataResponseTopic> {
    let request = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    conn.call(&request, 12).unwrap().topics
}

fn describe(
    conn: &mut RawConnection,
    resource_type: i8,
    name: &str,
    synonyms: bool,
    version: i16,
) -> DescribeConfigsResult {
    let request = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configuration_keys(None)])
        .with_include_synonyms(synonyms);
    let mut response = conn.call(&request, version).unwrap();
    assert_eq!(response.results.len(), 1);
    response.results.remove(0)
}

fn entry<'a>(result: &'a DescribeConfigsResult, name: &str) -> &'a DescribeConfigsResourceResult {
    result
        .configs
        .iter()
        .find(|c| c.name.as_str() == name)
        .unwrap_or_else(|| panic!("no config {name} in {result:?}"))
}

/// `(name, value, source)` of each synonym, in order.
fn synonyms(e: &DescribeConfigsResourceResult) -> Vec<(String, Option<String>, i8)> {
    e.synonyms
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.value.as_ref().map(|v| v.to_string()),
                s.source,
            )
        })
        .collect()
}

fn syn(name: &str, value: &str, source: i8) -> (String, Option<String>, i8) {
    (name.to_owned(), Some(value.to_owned()), source)
}

#[test]
fn consumer_offsets_is_internal_and_protected() {
    let broker =
        SluiceProcess::start(SluiceOptions::new().set("offsets.topic.num.partitions", "3"));
    let mut conn = connect(&broker);

    // Metadata lists it, flagged internal; an ordinary topic is not.
    let user_topic = unique_topic("plain");
    create_topic(&mut conn, &user_topic, &[]);
    let topics = metadata(&mut conn, None);
    let offsets = topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(OFFSETS_TOPIC))
        .unwrap_or_else(|| panic!("{OFFSETS_TOPIC} missing from {topics:?}"));
    assert_eq!(offsets.error_code, 0);
    assert!(offsets.is_internal, "{offsets:?}");
    assert_eq!(offsets.partitions.len(), 3);
    let plain = topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(user_topic.as_str()))
        .unwrap();
    assert!(!plain.is_internal);
    let named = metadata(&mut conn, Some(&[OFFSETS_TOPIC]));
    assert!(named[0].is_internal);

    // A client's produce is refused with INVALID_TOPIC_EXCEPTION and nothing is stored.
    let before: Vec<i64> = (0..3)
        .map(|p| {
            wire::fetch(&mut conn, OFFSETS_TOPIC, p, 0)
                .unwrap()
                .high_watermark
        })
        .collect();
    let batch = compat_tests::batch::build_batch(&[(b"k", b"forged")], now_ms());
    for p in 0..3 {
        let r = wire::produce(&mut conn, OFFSETS_TOPIC, p, batch.clone()).unwrap();
        assert_eq!(r.error_code, INVALID_TOPIC_EXCEPTION, "{r:?}");
        assert_eq!(r.base_offset, -1);
    }
    let after: Vec<i64> = (0..3)
        .map(|p| {
            wire::fetch(&mut conn, OFFSETS_TOPIC, p, 0)
                .unwrap()
                .high_watermark
        })
        .collect();
    assert_eq!(
        before, after,
        "a refused produce changed __consumer_offsets"
    );

    // DeleteTopics by name (v5) and by id (v6) are refused; the topic stays.
    let by_name = conn
        .call(
            &DeleteTopicsRequest::default()
                .with_topic_names(vec![topic_name(OFFSETS_TOPIC)])
                .with_timeout_ms(10_000),
            5,
        )
        .unwrap();
    assert_eq!(
        by_name.responses[0].error_code, INVALID_TOPIC_EXCEPTION,
        "{by_name:?}"
    );
    let by_id = conn
        .call(
            &DeleteTopicsRequest::default()
                .with_topics(vec![DeleteTopicState::default()
                    .with_name(None)
                    .with_topic_id(offsets.topic_id)])
                .with_timeout_ms(10_000),
            6,
        )
        .unwrap();
    assert_eq!(
        by_id.responses[0].error_code, INVALID_TOPIC_EXCEPTION,
        "{by_id:?}"
    );
    let still = metadata(&mut conn, Some(&[OFFSETS_TOPIC]));
    assert_eq!(still[0].error_code, 0);
    assert_eq!(still[0].partitions.len(), 3);
    assert_eq!(still[0].topic_id, offsets.topic_id);
}

#[test]
fn describe_configs_reports_sources_defaults_and_synonyms() {
    let broker = SluiceProcess::start(
        SluiceOptions::new()
            .set("message.max.bytes", "2000000")
            .set("num.partitions", "2"),
    );
    let mut conn = connect(&broker);
    let topic = unique_topic("configs");
    create_topic(&mut conn, &topic, &[("segment.ms", "3600000")]);

    for version in [1i16, 2, 3, 4] {
        let r = describe(&mut conn, RESOURCE_TOPIC, &topic, true, version);
        assert_eq!(r.error_code, 0, "v{version}: {r:?}");
        assert_eq!(r.resource_name.as_str(), topic);

        // The override: set on the topic, listed first among its synonyms.
        let over = entry(&r, "segment.ms");
        assert_eq!(over.value.as_deref(), Some("3600000"));
        assert_eq!(over.config_source, DYNAMIC_TOPIC_CONFIG, "v{version}");
        assert!(!over.read_only);
        let s = synonyms(over);
        assert_eq!(s[0], syn("segment.ms", "3600000", DYNAMIC_TOPIC_CONFIG));
        assert_eq!(s.last().unwrap().2, DEFAULT_CONFIG, "{s:?}");

        // An unset config: Kafka's default, from its broker synonym's default.
        let unset = entry(&r, "segment.bytes");
        assert_eq!(unset.value.as_deref(), Some("1073741824"));
        assert_eq!(unset.config_source, DEFAULT_CONFIG, "v{version}");
        assert_eq!(
            synonyms(unset),
            vec![syn("log.segment.bytes", "1073741824", DEFAULT_CONFIG)]
        );
        let cleanup = entry(&r, "cleanup.policy");
        assert_eq!(cleanup.value.as_deref(), Some("delete"));
        assert_eq!(cleanup.config_source, DEFAULT_CONFIG);

        // Unset on the topic but given to the broker: the static broker value wins.
        let inherited = entry(&r, "max.message.bytes");
        assert_eq!(inherited.value.as_deref(), Some("2000000"));
        assert_eq!(inherited.config_source, STATIC_BROKER_CONFIG, "v{version}");
        assert_eq!(
            synonyms(inherited),
            vec![
                syn("message.max.bytes", "2000000", STATIC_BROKER_CONFIG),
                syn("message.max.bytes", "1048588", DEFAULT_CONFIG),
            ]
        );
    }

    // Without include_synonyms there are none; the sources are unchanged.
    let r = describe(&mut conn, RESOURCE_TOPIC, &topic, false, 4);
    assert!(r.configs.iter().all(|c| c.synonyms.is_empty()));
    assert_eq!(entry(&r, "segment.ms").config_source, DYNAMIC_TOPIC_CONFIG);

    // The broker resource: `--set` settings are STATIC_BROKER_CONFIG, others DEFAULT_CONFIG.
    // (The resource "" is the cluster-wide dynamic defaults: see admin_edge_cases.rs.)
    {
        let b = describe(&mut conn, RESOURCE_BROKER, "1", true, 4);
        assert_eq!(b.error_code, 0, "{b:?}");
        let set = entry(&b, "num.partitions");
        assert_eq!(set.value.as_deref(), Some("2"));
        assert_eq!(set.config_source, STATIC_BROKER_CONFIG);
        assert_eq!(
            synonyms(set),
            vec![
                syn("num.partitions", "2", STATIC_BROKER_CONFIG),
                syn("num.partitions", "1", DEFAULT_CONFIG),
            ]
        );
        let default = entry(&b, "log.segment.bytes");
        assert_eq!(default.value.as_deref(), Some("1073741824"));
        assert_eq!(default.config_source, DEFAULT_CONFIG);
        assert_eq!(
            synonyms(default),
            vec![syn("log.segment.bytes", "1073741824", DEFAULT_CONFIG)]
        );
    }
    // Another broker's id, and an unknown topic, are errors.
    assert_ne!(
        describe(&mut conn, RESOURCE_BROKER, "7", true, 4).error_code,
        0
    );
    assert_eq!(
        describe(&mut conn, RESOURCE_TOPIC, "no-such-topic", true, 4).error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
}

#[test]
fn delete_topics_v6_by_topic_id() {
    let broker = SluiceProcess::start_default();
    let mut conn = connect(&broker);
    let topic = unique_topic("byid");
    let id = create_topic(&mut conn, &topic, &[]);
    let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], now_ms());
    assert_eq!(
        wire::produce(&mut conn, &topic, 0, batch)
            .unwrap()
            .error_code,
        0
    );
    let meta = metadata(&mut conn, Some(&[topic.as_str()]));
    assert_eq!(meta[0].topic_id, id);

    let unknown = Uuid::from_u128(0x5151_1ce0_0000_4000_8000_0000_0000_0042);
    let response = conn
        .call(
            &DeleteTopicsRequest::default()
                .with_topics(vec![
                    DeleteTopicState::default()
                        .with_name(None)
                        .with_topic_id(id),
                    DeleteTopicState::default()
                        .with_name(None)
                        .with_topic_id(unknown),
                ])
                .with_timeout_ms(10_000),
            6,
        )
        .unwrap();
    assert_eq!(response.responses.len(), 2, "{response:?}");
    let deleted = &response.responses[0];
    assert_eq!(deleted.error_code, 0, "{deleted:?}");
    assert_eq!(deleted.topic_id, id);
    assert_eq!(
        deleted.name.as_ref().map(|n| n.as_str()),
        Some(topic.as_str())
    );
    let missing = &response.responses[1];
    assert_eq!(missing.error_code, UNKNOWN_TOPIC_ID, "{missing:?}");
    assert_eq!(missing.topic_id, unknown);

    // Gone: Metadata says unknown, and deleting the same id again is UNKNOWN_TOPIC_ID.
    let gone = wire::poll_until(Duration::from_secs(5), || {
        let m = metadata(&mut conn, Some(&[topic.as_str()]));
        (m[0].error_code == UNKNOWN_TOPIC_OR_PARTITION).then_some(())
    });
    assert!(gone.is_some(), "topic still listed after delete by id");
    let again = conn
        .call(
            &DeleteTopicsRequest::default()
                .with_topics(vec![DeleteTopicState::default()
                    .with_name(None)
                    .with_topic_id(id)])
                .with_timeout_ms(10_000),
            6,
        )
        .unwrap();
    assert_eq!(again.responses[0].error_code, UNKNOWN_TOPIC_ID);
    // The name can be reused, under a new id.
    let new_id = create_topic(&mut conn, &topic, &[]);
    assert_ne!(new_id, id);
}

/// With `delete.topic.enable=false` Kafka refuses the whole request before it looks at any
/// topic (`ControllerApis.deleteTopics`): every entry, known or not, by name or by id, gets
/// TOPIC_DELETION_DISABLED from v3 (which added that code) and INVALID_REQUEST before it.
#[test]
fn delete_topics_is_refused_for_every_topic_when_deletion_is_disabled() {
    let broker = SluiceProcess::start(SluiceOptions::new().set("delete.topic.enable", "false"));
    let mut conn = connect(&broker);
    let topic = unique_topic("kept");
    let id = create_topic(&mut conn, &topic, &[]);
    let missing = unique_topic("never-created");
    for (version, want) in [
        (1, INVALID_REQUEST),
        (2, INVALID_REQUEST),
        (3, TOPIC_DELETION_DISABLED),
        (5, TOPIC_DELETION_DISABLED),
    ] {
        let response = conn
            .call(
                &DeleteTopicsRequest::default()
                    .with_topic_names(vec![topic_name(&topic), topic_name(&missing)])
                    .with_timeout_ms(10_000),
                version,
            )
            .unwrap();
        let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![want, want], "v{version}: {response:?}");
    }
    let unknown = Uuid::from_u128(0x5151_1ce0_0000_4000_8000_0000_0000_0073);
    let by_id = conn
        .call(
            &DeleteTopicsRequest::default()
                .with_topics(vec![
                    DeleteTopicState::default()
                        .with_name(None)
                        .with_topic_id(id),
                    DeleteTopicState::default()
                        .with_name(None)
                        .with_topic_id(unknown),
                ])
                .with_timeout_ms(10_000),
            6,
        )
        .unwrap();
    let answers: Vec<(Uuid, i16)> = by_id
        .responses
        .iter()
        .map(|r| (r.topic_id, r.error_code))
        .collect();
    assert_eq!(
        answers,
        vec![
            (id, TOPIC_DELETION_DISABLED),
            (unknown, TOPIC_DELETION_DISABLED)
        ],
        "{by_id:?}"
    );
    // The topic is still there, under the same id.
    let meta = metadata(&mut conn, Some(&[topic.as_str()]));
    assert_eq!(meta[0].error_code, 0, "{meta:?}");
    assert_eq!(meta[0].topic_id, id);
}

/// A created topic's partition records its leader epoch at once, as Kafka's new leader does
/// (`leader-epoch-checkpoint` holds epoch 0 from offset 0 before any produce), so the first
/// produce does not wait for that file's rewrite; a produce leaves it as it is, and a restart
/// keeps it.
#[test]
fn a_created_topic_records_its_leader_epoch_before_any_produce() {
    let dir = tempfile::tempdir().unwrap();
    let options = || SluiceOptions::new().data_dir(dir.path());
    let topic = unique_topic("epoch");
    let checkpoint = dir
        .path()
        .join(format!("{topic}-0"))
        .join("leader-epoch-checkpoint");
    {
        let broker = SluiceProcess::start(options());
        let mut conn = connect(&broker);
        create_topic(&mut conn, &topic, &[]);
        assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
        let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], now_ms());
        assert_eq!(
            wire::produce(&mut conn, &topic, 0, batch)
                .unwrap()
                .error_code,
            0
        );
        assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
    }
    let _broker = SluiceProcess::start(options());
    assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
}
