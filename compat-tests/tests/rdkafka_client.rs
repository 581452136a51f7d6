//! librdkafka through the `rdkafka` crate: idempotent producer, manual
//! assignment consumers (earliest, latest, offset, timestamp) and the admin
//! API. Each test starts its own broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use compat_tests::rdk::{self, ConsumedRecord};
use compat_tests::{now_ms, unique_topic, SluiceOptions, SluiceProcess};
use rdkafka::admin::{ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

const CONSUME_TIMEOUT: Duration = Duration::from_secs(30);

fn key(i: usize) -> String {
    format!("key-{i:06}")
}

fn value(i: usize) -> String {
    // Distinct, of varying length, so a shifted or truncated record shows.
    format!("value-{i:06}-{}", "x".repeat(i % 97))
}

/// Sends records `range` to `partition` (pipelined), optionally with
/// explicit timestamps, and returns the delivered offsets in send order.
async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    range: std::ops::Range<usize>,
    timestamp_of: impl Fn(usize) -> Option<i64>,
) -> Vec<i64> {
    let mut futures = Vec::with_capacity(range.len());
    for i in range.clone() {
        let (k, v) = (key(i), value(i));
        let mut record = FutureRecord::to(topic)
            .partition(partition)
            .key(&k)
            .payload(&v);
        if let Some(ts) = timestamp_of(i) {
            record = record.timestamp(ts);
        }
        match producer.send_result(record) {
            Ok(f) => futures.push(f),
            Err((e, _)) => panic!("cannot enqueue record {i}: {e}"),
        }
    }
    let mut offsets = Vec::with_capacity(futures.len());
    for (i, f) in range.zip(futures) {
        match f.await {
            Ok(Ok(delivery)) => {
                assert_eq!(delivery.partition, partition, "record {i} partition");
                offsets.push(delivery.offset);
            }
            Ok(Err((e, _))) => panic!("record {i} not delivered: {e}"),
            Err(_) => panic!("record {i}: producer dropped before delivery"),
        }
    }
    offsets
}

fn assert_records(got: &[ConsumedRecord], first_index: usize, first_offset: i64) {
    for (n, r) in got.iter().enumerate() {
        let i = first_index + n;
        assert_eq!(r.offset, first_offset + n as i64, "offset of record #{n}");
        assert_eq!(
            r.key.as_deref(),
            Some(key(i).as_bytes()),
            "key at offset {}",
            r.offset
        );
        assert_eq!(
            r.value.as_deref(),
            Some(value(i).as_bytes()),
            "value at offset {}",
            r.offset
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_gets_contiguous_offsets() {
    const N: usize = 5_000;
    let broker = SluiceProcess::start_default();
    let topic = unique_topic("rdk-idempotent");
    rdk::create_topic(&broker.bootstrap(), &topic, 2, &[]).await;
    let producer = rdk::producer(&broker.bootstrap(), &[("batch.num.messages", "500")]);
    for partition in 0..2 {
        let offsets = send_all(&producer, &topic, partition, 0..N, |_| None).await;
        let expected: Vec<i64> = (0..N as i64).collect();
        assert_eq!(
            offsets, expected,
            "partition {partition}: delivered offsets"
        );
    }
    let consumer = rdk::consumer(&broker.bootstrap());
    for partition in 0..2 {
        let got = rdk::consume_partition(
            &consumer,
            &topic,
            partition,
            Offset::Beginning,
            N,
            CONSUME_TIMEOUT,
        );
        assert_eq!(got.len(), N, "partition {partition}: records read back");
        assert_records(&got, 0, 0);
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            (low, high),
            (0, N as i64),
            "partition {partition} watermarks"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_from_earliest_latest_and_offset() {
    const N: usize = 300;
    const MORE: usize = 25;
    let broker = SluiceProcess::start_default();
    let topic = unique_topic("rdk-assign");
    rdk::create_topic(&broker.bootstrap(), &topic, 1, &[]).await;
    let producer = rdk::producer(&broker.bootstrap(), &[]);
    send_all(&producer, &topic, 0, 0..N, |_| None).await;

    // Earliest: everything, in order.
    let consumer = rdk::consumer(&broker.bootstrap());
    let got = rdk::consume_partition(&consumer, &topic, 0, Offset::Beginning, N, CONSUME_TIMEOUT);
    assert_eq!(got.len(), N, "from earliest");
    assert_records(&got, 0, 0);

    // Latest: nothing old; then only the new records.
    let latest = rdk::consumer(&broker.bootstrap());
    let old = rdk::consume_partition(&latest, &topic, 0, Offset::End, 1, Duration::from_secs(3));
    assert!(old.is_empty(), "from latest returned old records: {old:?}");
    send_all(&producer, &topic, 0, N..N + MORE, |_| None).await;
    let new = rdk::poll_records(&latest, MORE, CONSUME_TIMEOUT);
    assert_eq!(new.len(), MORE, "new records seen from latest");
    assert_records(&new, N, N as i64);
    let extra = rdk::poll_for(&latest, Duration::from_secs(1));
    assert!(extra.is_empty(), "unexpected extra records: {extra:?}");

    // A given offset: starts exactly there.
    let from = 142;
    let at = rdk::consumer(&broker.bootstrap());
    let got = rdk::consume_partition(
        &at,
        &topic,
        0,
        Offset::Offset(from as i64),
        N + MORE - from,
        CONSUME_TIMEOUT,
    );
    assert_eq!(got.len(), N + MORE - from, "from offset {from}");
    assert_records(&got, from, from as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_finds_first_offset_at_or_after() {
    const N: usize = 60;
    let broker = SluiceProcess::start_default();
    let topic = unique_topic("rdk-times");
    rdk::create_topic(&broker.bootstrap(), &topic, 1, &[]).await;
    // Distinct, increasing timestamps one second apart, an hour in the past.
    let base = (now_ms() - 3_600_000) / 1000 * 1000;
    let ts = |i: usize| base + i as i64 * 1000;
    let producer = rdk::producer(&broker.bootstrap(), &[]);
    send_all(&producer, &topic, 0, 0..N, |i| Some(ts(i))).await;

    let consumer = rdk::consumer(&broker.bootstrap());
    let cases: Vec<(i64, Offset)> = vec![
        (base - 10_000, Offset::Offset(0)),
        (ts(0), Offset::Offset(0)),
        (ts(10), Offset::Offset(10)),
        (ts(17) + 500, Offset::Offset(18)),
        (ts(N - 1), Offset::Offset(N as i64 - 1)),
        (ts(N - 1) + 1, Offset::End),
    ];
    for (target, expected) in cases {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(target))
            .unwrap();
        let result = consumer
            .offsets_for_times(tpl, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("offsets_for_times({target}) failed: {e}"));
        let elem = result
            .find_partition(&topic, 0)
            .expect("partition in the result");
        assert!(
            elem.error().is_ok(),
            "offsets_for_times({target}): {:?}",
            elem.error()
        );
        assert_eq!(
            elem.offset(),
            expected,
            "offset for timestamp {target} (base {base})"
        );
    }

    // Reading from the returned offset gives the first record with ts >= target.
    let target = ts(33) - 1;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(target))
        .unwrap();
    let result = consumer
        .offsets_for_times(tpl, Duration::from_secs(10))
        .unwrap();
    let offset = result.find_partition(&topic, 0).unwrap().offset();
    let got = rdk::consume_partition(&consumer, &topic, 0, offset, 1, CONSUME_TIMEOUT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].offset, 33);
    assert_eq!(got[0].timestamp, Some(ts(33)));
    assert_records(&got, 33, 33);
}

/// Topic name -> partition count, from a full metadata request.
fn topics(metadata: &Metadata) -> BTreeMap<String, usize> {
    metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect()
}

/// Polls metadata until `check` holds (deletion and creation may take a moment
/// to show), and returns the last view.
fn wait_metadata(
    broker: &SluiceProcess,
    what: &str,
    check: impl Fn(&BTreeMap<String, usize>) -> bool,
) -> BTreeMap<String, usize> {
    let consumer = rdk::consumer(&broker.bootstrap());
    let mut last = BTreeMap::new();
    for _ in 0..50 {
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata request failed: {e}"));
        assert_eq!(metadata.brokers().len(), 1, "one broker in metadata");
        last = topics(&metadata);
        if check(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("metadata never showed {what}; last view: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_describe_partition_delete() {
    let broker = SluiceProcess::start(
        SluiceOptions::new()
            .set("auto.create.topics.enable", "false")
            .set("num.partitions", "2"),
    );
    let bootstrap = broker.bootstrap();
    let admin = rdk::admin(&bootstrap);
    let opts = rdk::admin_options();
    let topic = unique_topic("rdk-admin");
    let dry_run = unique_topic("rdk-admin-validate");

    // validate_only: succeeds, creates nothing.
    let new_dry = NewTopic::new(&dry_run, 3, TopicReplication::Fixed(1));
    let res = admin
        .create_topics([&new_dry], &rdk::admin_options().validate_only(true))
        .await
        .unwrap();
    assert_eq!(res, vec![Ok(dry_run.clone())], "validate_only create");
    // validate_only with an unknown config: INVALID_CONFIG, still nothing created.
    let bad_config =
        NewTopic::new(&dry_run, 3, TopicReplication::Fixed(1)).set("no.such.topic.config", "1");
    let res = admin
        .create_topics([&bad_config], &rdk::admin_options().validate_only(true))
        .await
        .unwrap();
    assert_eq!(
        res,
        vec![Err((dry_run.clone(), RDKafkaErrorCode::InvalidConfig))],
        "create with an unknown config name"
    );

    // Real create with configs.
    let new_topic = NewTopic::new(&topic, 3, TopicReplication::Fixed(1))
        .set("retention.ms", "12345678")
        .set("cleanup.policy", "delete");
    let res = admin.create_topics([&new_topic], &opts).await.unwrap();
    assert_eq!(res, vec![Ok(topic.clone())], "create");
    let view = wait_metadata(&broker, "the new topic with 3 partitions", |t| {
        t.get(&topic) == Some(&3)
    });
    assert!(
        !view.contains_key(&dry_run),
        "validate_only created {dry_run}: {view:?}"
    );

    // Creating it again: TOPIC_ALREADY_EXISTS.
    let res = admin.create_topics([&new_topic], &opts).await.unwrap();
    assert_eq!(
        res,
        vec![Err((topic.clone(), RDKafkaErrorCode::TopicAlreadyExists))]
    );

    // Describe the topic's configs.
    let res = admin
        .describe_configs([&ResourceSpecifier::Topic(&topic)], &opts)
        .await
        .unwrap();
    let resource = res
        .into_iter()
        .next()
        .expect("one result")
        .expect("describe topic ok");
    let retention = resource
        .get("retention.ms")
        .expect("retention.ms described");
    assert_eq!(retention.value.as_deref(), Some("12345678"));
    assert_eq!(
        retention.source,
        ConfigSource::DynamicTopic,
        "{retention:?}"
    );
    assert!(!retention.is_default);
    let policy = resource
        .get("cleanup.policy")
        .expect("cleanup.policy described");
    assert_eq!(policy.value.as_deref(), Some("delete"));
    let segment = resource
        .get("segment.bytes")
        .expect("segment.bytes described");
    assert!(segment.value.is_some(), "{segment:?}");

    // Describe the broker's configs: our --set values show.
    let res = admin
        .describe_configs([&ResourceSpecifier::Broker(1)], &opts)
        .await
        .unwrap();
    let resource = res
        .into_iter()
        .next()
        .expect("one result")
        .expect("describe broker ok");
    assert_eq!(
        resource
            .get("num.partitions")
            .and_then(|e| e.value.as_deref()),
        Some("2"),
        "broker num.partitions"
    );
    assert_eq!(
        resource
            .get("auto.create.topics.enable")
            .and_then(|e| e.value.as_deref()),
        Some("false"),
        "broker auto.create.topics.enable"
    );

    // Create partitions: 3 -> 5; shrinking is refused.
    let res = admin
        .create_partitions([&NewPartitions::new(&topic, 5)], &opts)
        .await
        .unwrap();
    assert_eq!(res, vec![Ok(topic.clone())], "create partitions 3 -> 5");
    wait_metadata(&broker, "5 partitions", |t| t.get(&topic) == Some(&5));
    let res = admin
        .create_partitions([&NewPartitions::new(&topic, 2)], &opts)
        .await
        .unwrap();
    assert_eq!(
        res,
        vec![Err((topic.clone(), RDKafkaErrorCode::InvalidPartitions))],
        "shrinking partitions"
    );

    // The new partitions work.
    let producer = rdk::producer(&bootstrap, &[]);
    let offsets = send_all(&producer, &topic, 4, 0..10, |_| None).await;
    assert_eq!(offsets, (0..10).collect::<Vec<i64>>());

    // Delete: gone from metadata; deleting again is UNKNOWN_TOPIC_OR_PARTITION.
    let res = admin.delete_topics(&[&topic], &opts).await.unwrap();
    assert_eq!(res, vec![Ok(topic.clone())], "delete");
    wait_metadata(&broker, "the topic gone", |t| !t.contains_key(&topic));
    let res = admin.delete_topics(&[&topic], &opts).await.unwrap();
    assert_eq!(
        res,
        vec![Err((
            topic.clone(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
    // A topic of the same name can be created again, empty.
    let res = admin
        .create_topics(
            [&NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(res, vec![Ok(topic.clone())], "re-create after delete");
    let consumer = rdk::consumer(&bootstrap);
    let (low, high) = consumer
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 0), "re-created topic is empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_missing_topic_fails_when_auto_create_is_off() {
    let broker =
        SluiceProcess::start(SluiceOptions::new().set("auto.create.topics.enable", "false"));
    let topic = unique_topic("rdk-missing");
    let producer = rdk::producer(&broker.bootstrap(), &[("message.timeout.ms", "3000")]);
    let (k, v) = (key(0), value(0));
    let res = producer
        .send(
            FutureRecord::to(&topic).key(&k).payload(&v),
            Duration::from_secs(1),
        )
        .await;
    match res {
        Err((KafkaError::MessageProduction(code), _)) => assert!(
            matches!(
                code,
                RDKafkaErrorCode::UnknownTopicOrPartition
                    | RDKafkaErrorCode::UnknownTopic
                    | RDKafkaErrorCode::MessageTimedOut
            ),
            "unexpected error {code:?}"
        ),
        other => panic!("produce to a missing topic: expected an error, got {other:?}"),
    }
    let view = wait_metadata(&broker, "no auto-created topic", |_| true);
    assert!(
        !view.contains_key(&topic),
        "topic was auto-created: {view:?}"
    );
}

/// Kafka 4's record timestamp rule through librdkafka: with CreateTime a record more than
/// `message.timestamp.after.max.ms` (one hour by default) ahead of the broker's clock is
/// refused INVALID_TIMESTAMP, an old one passes unless the topic sets
/// `message.timestamp.before.max.ms`, and a LogAppendTime topic takes any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_timestamps_outside_the_topics_bounds_are_refused() {
    const HOUR: i64 = 3_600_000;
    let broker = SluiceProcess::start_default();
    let plain = unique_topic("rdk-ts");
    let strict = unique_topic("rdk-ts-strict");
    let append_time = unique_topic("rdk-ts-append");
    let bootstrap = broker.bootstrap();
    rdk::create_topic(&bootstrap, &plain, 1, &[]).await;
    rdk::create_topic(
        &bootstrap,
        &strict,
        1,
        &[("message.timestamp.before.max.ms", "3600000")],
    )
    .await;
    rdk::create_topic(
        &bootstrap,
        &append_time,
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let producer = rdk::producer(&bootstrap, &[("message.timeout.ms", "10000")]);
    let send = |topic: &str, timestamp: i64| {
        let topic = topic.to_string();
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key("k")
                        .payload("v")
                        .timestamp(timestamp),
                    Duration::from_secs(5),
                )
                .await
                .map(|d| d.offset)
                .map_err(|(e, _)| e)
        }
    };
    let refused = |result: Result<i64, KafkaError>| {
        matches!(
            result,
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::InvalidTimestamp
            ))
        )
    };
    let now = now_ms();
    assert_eq!(send(&plain, now).await.ok(), Some(0));
    assert!(refused(send(&plain, now + 2 * HOUR).await));
    assert_eq!(send(&plain, now - 30 * 24 * HOUR).await.ok(), Some(1));
    assert!(refused(send(&strict, now - 2 * HOUR).await));
    assert_eq!(send(&strict, now - HOUR / 2).await.ok(), Some(0));
    assert_eq!(send(&append_time, now + 2 * HOUR).await.ok(), Some(0));
}
