//! Protocol-level behaviour of a real broker process, driven over raw sockets: idempotent
//! producer sequences (and their survival across kill -9), fetch sessions (KIP-227), fetch
//! long polling, acks=0, LogAppendTime, retention, ListOffsets max timestamp, and closing idle
//! connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use compat_tests::process::{SluiceOptions, SluiceProcess};
use compat_tests::wire::{self, topic_name, RawConnection};
use compat_tests::{now_ms, unique_topic};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, FetchRequest, FetchResponse, InitProducerIdRequest,
    ListOffsetsRequest, ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;
use storage::batch::builder::BatchBuilder;
use storage::batch::BatchHeader;

fn connect(broker: &SluiceProcess) -> RawConnection {
    RawConnection::connect_with_timeout(broker.bootstrap(), Duration::from_secs(20)).unwrap()
}

fn create_topic(conn: &mut RawConnection, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    wire::create_topic_with(conn, topic, partitions, configs).unwrap();
}

fn idempotent_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new().producer(pid, epoch, seq);
    for v in values {
        b = b.record(Some(b"k"), Some(v.as_bytes()), now_ms());
    }
    Bytes::from(b.build().unwrap())
}

fn all_batches(conn: &mut RawConnection, topic: &str, partition: i32) -> Vec<(i64, i32)> {
    let data = wire::fetch(conn, topic, partition, 0).unwrap();
    compat_tests::batch::parse_batch_headers(data.records.as_deref().unwrap_or(&[]))
        .iter()
        .map(|h| {
            (
                h.base_offset,
                i32::try_from(h.last_offset - h.base_offset + 1).unwrap(),
            )
        })
        .collect()
}

#[test]
fn idempotent_sequences_are_checked_and_survive_kill9() {
    let mut broker = SluiceProcess::start(SluiceOptions::new());
    let topic = unique_topic("idem");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 1, &[]);
    let init = conn
        .call(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
            4,
        )
        .unwrap();
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0);
    assert_eq!(init.producer_epoch, 0);

    let first = idempotent_batch(pid, 0, 0, &["a", "b", "c"]);
    let r = wire::produce(&mut conn, &topic, 0, first.clone()).unwrap();
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    // A retry of the same batch is acknowledged with the original offset and stored once.
    let r = wire::produce(&mut conn, &topic, 0, first.clone()).unwrap();
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    assert_eq!(all_batches(&mut conn, &topic, 0), vec![(0, 3)]);
    // A gap in the sequence is refused: OUT_OF_ORDER_SEQUENCE_NUMBER.
    let gap = idempotent_batch(pid, 0, 7, &["x"]);
    assert_eq!(
        wire::produce(&mut conn, &topic, 0, gap).unwrap().error_code,
        45
    );
    // A producer this partition holds no state for (new here, or its records deleted by
    // retention) may start at any sequence, as in Kafka; the next must follow it.
    let other = conn
        .call(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
            4,
        )
        .unwrap()
        .producer_id
        .0;
    let r = wire::produce(&mut conn, &topic, 0, idempotent_batch(other, 0, 5, &["o5"])).unwrap();
    assert_eq!((r.error_code, r.base_offset), (0, 3));
    let skipped = idempotent_batch(other, 0, 7, &["o7"]);
    assert_eq!(
        wire::produce(&mut conn, &topic, 0, skipped)
            .unwrap()
            .error_code,
        45
    );
    // An older epoch is fenced: INVALID_PRODUCER_EPOCH... first move to epoch 1.
    let next_epoch = idempotent_batch(pid, 1, 0, &["e1"]);
    let r = wire::produce(&mut conn, &topic, 0, next_epoch).unwrap();
    assert_eq!((r.error_code, r.base_offset), (0, 4));
    let stale = idempotent_batch(pid, 0, 3, &["old"]);
    assert_eq!(
        wire::produce(&mut conn, &topic, 0, stale)
            .unwrap()
            .error_code,
        47
    );

    // Producer state survives a crash: the duplicate is still recognised afterwards.
    drop(conn);
    broker.kill9();
    broker.restart();
    let mut conn = connect(&broker);
    let dup = idempotent_batch(pid, 1, 0, &["e1"]);
    let r = wire::produce(&mut conn, &topic, 0, dup).unwrap();
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 4),
        "duplicate after restart"
    );
    let next = idempotent_batch(pid, 1, 1, &["e1-2"]);
    let r = wire::produce(&mut conn, &topic, 0, next).unwrap();
    assert_eq!((r.error_code, r.base_offset), (0, 5));
    assert_eq!(
        all_batches(&mut conn, &topic, 0),
        vec![(0, 3), (3, 1), (4, 1), (5, 1)]
    );
    // A new producer id never repeats an old one, even after the crash.
    let init2 = conn
        .call(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
            4,
        )
        .unwrap();
    assert_ne!(init2.producer_id.0, pid);
    // v3+: an old id without its epoch (or the reverse) is INVALID_REQUEST; both together get
    // a fresh id, as Kafka gives an idempotent producer re-initialising (KIP-360).
    for (id, epoch, want) in [(pid, -1i16, 42i16), (-1, 1, 42), (pid, 1, 0)] {
        let r = conn
            .call(
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(kafka_protocol::messages::ProducerId(id))
                    .with_producer_epoch(epoch),
                4,
            )
            .unwrap();
        assert_eq!(r.error_code, want, "id {id} epoch {epoch}: {r:?}");
        if want == 0 {
            assert!(r.producer_id.0 >= 0 && r.producer_id.0 != pid);
        }
    }
    // Transactional ids are refused until transactions land.
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(kafka_protocol::messages::TransactionalId(
            StrBytes::from_static_str("t"),
        )))
        .with_transaction_timeout_ms(60_000);
    assert_eq!(conn.call(&txn, 4).unwrap().error_code, 53);
}

fn session_fetch(
    conn: &mut RawConnection,
    session_id: i32,
    epoch: i32,
    topic: &str,
    partitions: &[(i32, i64)],
    max_wait_ms: i32,
) -> FetchResponse {
    session_fetch_within(
        conn,
        session_id,
        epoch,
        topic,
        partitions,
        max_wait_ms,
        1 << 24,
    )
}

/// `session_fetch` with the answer's byte budget `max_bytes`.
fn session_fetch_within(
    conn: &mut RawConnection,
    session_id: i32,
    epoch: i32,
    topic: &str,
    partitions: &[(i32, i64)],
    max_wait_ms: i32,
    max_bytes: i32,
) -> FetchResponse {
    let topics = if partitions.is_empty() {
        vec![]
    } else {
        vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(p, offset)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]
    };
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics);
    conn.call(&request, 12).unwrap()
}

fn partitions_in(r: &FetchResponse) -> Vec<i32> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
        .collect()
}

#[test]
fn fetch_sessions_send_only_what_changed() {
    let broker = SluiceProcess::start(SluiceOptions::new());
    let topic = unique_topic("sessions");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 2, &[]);
    let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], now_ms());
    wire::produce(&mut conn, &topic, 0, batch.clone()).unwrap();

    // Full fetch creating a session: both partitions, a session id.
    let full = session_fetch(&mut conn, 0, 0, &topic, &[(0, 0), (1, 0)], 0);
    assert_eq!(full.error_code, 0);
    assert!(full.session_id > 0);
    assert_eq!(partitions_in(&full), vec![0, 1]);
    let sid = full.session_id;

    // Incremental, nothing new: an empty response (after the long poll times out).
    let start = Instant::now();
    let inc = session_fetch(&mut conn, sid, 1, &topic, &[(0, 1)], 300);
    assert_eq!((inc.error_code, inc.session_id), (0, sid));
    assert!(partitions_in(&inc).is_empty(), "{inc:?}");
    assert!(start.elapsed() >= Duration::from_millis(250));

    // New data on partition 1 only: only partition 1 comes back, with its record.
    wire::produce(&mut conn, &topic, 1, batch).unwrap();
    let inc = session_fetch(&mut conn, sid, 2, &topic, &[], 1000);
    assert_eq!(partitions_in(&inc), vec![1]);
    let p1 = &inc.responses[0].partitions[0];
    assert_eq!(p1.high_watermark, 1);
    assert!(!p1.records.as_ref().unwrap().is_empty());

    // Wrong epoch and unknown session are refused with Kafka's codes.
    assert_eq!(
        session_fetch(&mut conn, sid, 9, &topic, &[], 0).error_code,
        71
    );
    assert_eq!(
        session_fetch(&mut conn, sid + 1000, 1, &topic, &[], 0).error_code,
        70
    );
    // Closing the session (epoch -1) serves a sessionless full fetch.
    let closed = session_fetch(&mut conn, sid, -1, &topic, &[(0, 0)], 0);
    assert_eq!((closed.error_code, closed.session_id), (0, 0));
    assert_eq!(
        session_fetch(&mut conn, sid, 3, &topic, &[], 0).error_code,
        70
    );
}

/// Fetch limits and errors as Kafka's `handleFetchRequest`: max_bytes 0 still returns the
/// first batch (KIP-74), min_bytes above max_bytes is capped by it (no wait for what one answer
/// could never hold), and by topic id (v13+) a known topic's missing partition is
/// UNKNOWN_TOPIC_OR_PARTITION while an id no topic has is UNKNOWN_TOPIC_ID.
#[test]
fn fetch_limits_and_topic_id_errors_as_kafka() {
    let broker = SluiceProcess::start(SluiceOptions::new());
    let topic = unique_topic("limits");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 1, &[]);
    for v in ["a", "b"] {
        let batch = compat_tests::batch::build_batch(&[(b"k", v.as_bytes())], now_ms());
        assert_eq!(
            wire::produce(&mut conn, &topic, 0, batch)
                .unwrap()
                .error_code,
            0
        );
    }
    let limits = |max_bytes: i32, min_bytes: i32| wire::FetchLimits {
        max_wait_ms: 3_000,
        min_bytes,
        max_bytes,
        partition_max_bytes: 1 << 20,
    };
    // max_bytes 0 with min_bytes far above it: min_bytes is capped to 0, so the answer comes
    // at once (not after max_wait), with the first batch whole.
    let started = Instant::now();
    let r = conn
        .call(
            &wire::fetch_request(&topic, &[(0, 0)], limits(0, 1 << 30)),
            11,
        )
        .unwrap();
    let records = r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    assert!(!records.is_empty(), "max_bytes 0 returned nothing");
    assert_eq!(
        BatchHeader::parse(&records).unwrap().total_size(),
        records.len(),
        "one whole batch"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?} for min_bytes that max_bytes could never hold",
        started.elapsed()
    );
    // A Fetch of no partitions is answered at once, not after max_wait.
    let started = Instant::now();
    let mut empty = wire::fetch_request(&topic, &[], limits(1 << 20, 1));
    empty.topics.clear();
    let r = conn.call(&empty, 11).unwrap();
    assert_eq!((r.error_code, r.responses.len()), (0, 0));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an empty fetch waited {:?}",
        started.elapsed()
    );
    // By topic id (v13): partition 7 of a known topic, and an unknown id.
    let id = conn
        .call(
            &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(topic_name(&topic))),
            ])),
            12,
        )
        .unwrap()
        .topics[0]
        .topic_id;
    let by_id = |topic_id: uuid::Uuid, partition: i32| {
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(-1)
                    .with_partition_max_bytes(1 << 20)])])
    };
    let r = conn.call(&by_id(id, 7), 13).unwrap();
    assert_eq!(r.responses[0].partitions[0].error_code, 3, "{r:?}");
    let r = conn
        .call(&by_id(uuid::Uuid::from_u128(0x51), 0), 13)
        .unwrap();
    assert_eq!(r.responses[0].partitions[0].error_code, 100, "{r:?}");
    let r = conn.call(&by_id(id, 0), 13).unwrap();
    assert_eq!(r.responses[0].partitions[0].error_code, 0, "{r:?}");
}

/// In a fetch session whose answers are cut by their byte budget, the partitions that sent
/// records go to the back (Kafka's IncrementalFetchContext), so every partition is served in
/// turn instead of the first ones until they run dry.
#[test]
fn a_budget_limited_session_serves_every_partition_in_turn() {
    let broker = SluiceProcess::start(SluiceOptions::new());
    let topic = unique_topic("rotate");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 4, &[]);
    let value = vec![3u8; 40_000];
    for p in 0..4 {
        for _ in 0..4 {
            let batch =
                compat_tests::batch::build_batch(&[(b"k".as_slice(), value.as_slice())], now_ms());
            assert_eq!(
                wire::produce(&mut conn, &topic, p, batch)
                    .unwrap()
                    .error_code,
                0
            );
        }
    }
    // A budget of two batches per answer; the client moves each partition's offset on
    // as a consumer does (an incremental round names the partitions whose offset changed).
    let budget = 100_000;
    let mut served_in_round = Vec::new();
    let all: Vec<(i32, i64)> = (0..4).map(|p| (p, 0)).collect();
    let mut r = session_fetch_within(&mut conn, 0, 0, &topic, &all, 0, budget);
    let session = r.session_id;
    assert!(session > 0);
    for epoch in 1..=4 {
        let mut served = Vec::new();
        let mut moved = Vec::new();
        for p in &r.responses[0].partitions {
            let records = p.records.clone().unwrap_or_default();
            if records.is_empty() {
                continue;
            }
            let batches = compat_tests::batch::parse_batch_headers(&records);
            if let Some(last) = batches.last() {
                served.push(p.partition_index);
                moved.push((p.partition_index, last.last_offset + 1));
            }
        }
        served_in_round.push(served);
        r = session_fetch_within(&mut conn, session, epoch, &topic, &moved, 0, budget);
        assert_eq!(r.error_code, 0, "{r:?}");
    }
    // Each answer holds one partition's two batches; within four answers every partition has
    // been served (without the rotation: 0, 0, 1, 1).
    let served: std::collections::BTreeSet<i32> =
        served_in_round.iter().flatten().copied().collect();
    assert_eq!(
        served.into_iter().collect::<Vec<_>>(),
        vec![0, 1, 2, 3],
        "partitions served per answer: {served_in_round:?}"
    );
}

#[test]
fn fetch_long_poll_waits_for_data_or_max_wait() {
    let broker = SluiceProcess::start(SluiceOptions::new());
    let topic = unique_topic("longpoll");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 1, &[]);

    let start = Instant::now();
    let r = session_fetch(&mut conn, 0, -1, &topic, &[(0, 0)], 800);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(700),
        "returned after {waited:?}"
    );
    assert!(r.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());

    // Data produced during the wait answers the fetch early.
    let addr = broker.bootstrap();
    let t = topic.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut c = RawConnection::connect(addr).unwrap();
        let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], now_ms());
        wire::produce(&mut c, &t, 0, batch).unwrap()
    });
    let start = Instant::now();
    let r = session_fetch(&mut conn, 0, -1, &topic, &[(0, 0)], 10_000);
    let waited = start.elapsed();
    assert_eq!(producer.join().unwrap().error_code, 0);
    assert!(waited < Duration::from_secs(5), "returned after {waited:?}");
    assert!(!r.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());
}

#[test]
fn acks_zero_gets_no_response_but_is_stored() {
    let broker = SluiceProcess::start(SluiceOptions::new());
    let topic = unique_topic("acks0");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 1, &[]);
    let batch = compat_tests::batch::build_batch(&[(b"k", b"v0")], now_ms());
    let request = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(&topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    conn.send_request(0, 8, &wire::encode_body(&request, 8))
        .unwrap();
    // The next response on the connection is the ApiVersions one: nothing came for the produce.
    let versions = conn.call(&ApiVersionsRequest::default(), 0).unwrap();
    assert_eq!(versions.error_code, 0);
    let stored = wire::poll_until(Duration::from_secs(5), || {
        let d = wire::fetch(&mut conn, &topic, 0, 0).ok()?;
        (d.high_watermark == 1).then_some(())
    });
    assert!(stored.is_some(), "acks=0 record never became visible");
    // A failed acks=0 produce (a partition the topic does not have) closes the connection, as
    // Kafka does, so the client notices: no response to the request after it.
    let failing = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(&topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(7)
                .with_records(Some(compat_tests::batch::build_batch(
                    &[(b"k", b"lost")],
                    now_ms(),
                )))])]);
    conn.send_request(0, 8, &wire::encode_body(&failing, 8))
        .unwrap();
    assert!(
        conn.call(&ApiVersionsRequest::default(), 0).is_err(),
        "the connection stayed open after a failed acks=0 produce"
    );
}

/// `min.insync.replicas` above a partition's replica count asks for every replica, as Kafka's
/// `Partition.effectiveMinIsr` (min of the setting and the replication factor): a single node
/// with the common production setting 2 takes acks=all.
#[test]
fn min_insync_replicas_above_the_replication_factor_asks_for_every_replica() {
    let broker = SluiceProcess::start(SluiceOptions::new().set("min.insync.replicas", "2"));
    let mut conn = connect(&broker);
    let topic = unique_topic("minisr");
    create_topic(&mut conn, &topic, 1, &[("min.insync.replicas", "3")]);
    for (i, t) in [unique_topic("minisr-default"), topic].iter().enumerate() {
        if i == 0 {
            create_topic(&mut conn, t, 1, &[]);
        }
        let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], now_ms());
        let r = wire::produce(&mut conn, t, 0, batch).unwrap();
        assert_eq!((r.error_code, r.base_offset), (0, 0), "{t}: {r:?}");
    }
}

#[test]
fn log_append_time_topics_restamp_batches() {
    let broker = SluiceProcess::start(SluiceOptions::new());
    let topic = unique_topic("lat");
    let mut conn = connect(&broker);
    create_topic(
        &mut conn,
        &topic,
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let before = now_ms();
    let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], 1_000);
    let r = wire::produce(&mut conn, &topic, 0, batch).unwrap();
    assert_eq!(r.error_code, 0);
    assert!(r.log_append_time_ms >= before, "{r:?}");
    let data = wire::fetch(&mut conn, &topic, 0, 0).unwrap();
    let records = data.records.unwrap();
    let h = BatchHeader::parse(&records).unwrap();
    assert_eq!(h.timestamp_type(), storage::TimestampType::LogAppendTime);
    assert_eq!(h.max_timestamp(), r.log_append_time_ms);
    h.verify_crc().unwrap();
}

#[test]
fn retention_deletes_old_segments_and_moves_log_start() {
    let broker =
        SluiceProcess::start(SluiceOptions::new().set("log.retention.check.interval.ms", "200"));
    let topic = unique_topic("retention");
    let mut conn = connect(&broker);
    create_topic(
        &mut conn,
        &topic,
        1,
        &[("segment.bytes", "2048"), ("retention.bytes", "4096")],
    );
    let value = vec![b'x'; 600];
    for _ in 0..30 {
        let batch = compat_tests::batch::build_batch(&[(b"k", &value)], now_ms());
        assert_eq!(
            wire::produce(&mut conn, &topic, 0, batch)
                .unwrap()
                .error_code,
            0
        );
    }
    let earliest = wire::poll_until(Duration::from_secs(10), || {
        let offset = wire::earliest_offset(&mut conn, &topic);
        (offset > 0).then_some(offset)
    })
    .expect("log start offset never moved");
    // Fetching below the new log start is out of range; from it, it works.
    let below = wire::fetch(&mut conn, &topic, 0, 0).unwrap();
    assert_eq!(below.error_code, 1);
    let from = wire::fetch(&mut conn, &topic, 0, earliest).unwrap();
    assert_eq!(from.error_code, 0);
    assert_eq!(from.log_start_offset, earliest);
    assert_eq!(from.high_watermark, 30);
}

/// Fetch answers of 64 KiB and more are sent from the segment file's kept read mapping
/// (`storage::LogFile`). A reader that keeps going back to the log start reads segments that
/// retention deletes under it, between an answer being built and being written: every answer
/// must still hold whole batches with the values produced at their offsets (or
/// OFFSET_OUT_OF_RANGE below a log start that moved), and the connection must stay up.
#[test]
fn fetches_from_kept_mappings_stay_whole_while_retention_deletes_segments() {
    const VALUE_BYTES: usize = 16 * 1024;
    const RECORDS: i64 = 480;
    let broker =
        SluiceProcess::start(SluiceOptions::new().set("log.retention.check.interval.ms", "50"));
    let topic = unique_topic("kept-mappings");
    let mut producer = connect(&broker);
    create_topic(
        &mut producer,
        &topic,
        1,
        &[("segment.bytes", "262144"), ("retention.bytes", "524288")],
    );
    let value_of = |offset: i64| -> Vec<u8> {
        let mut v = vec![u8::try_from(offset % 251).unwrap_or(0); VALUE_BYTES];
        v[..8].copy_from_slice(&offset.to_be_bytes());
        v
    };
    let mut consumer = connect(&broker);
    let (mut produced, mut large_answers, mut out_of_range) = (0i64, 0u32, 0u32);
    while produced < RECORDS {
        let values: Vec<Vec<u8>> = (produced..produced + 4).map(value_of).collect();
        let records: Vec<(&[u8], &[u8])> = values.iter().map(|v| (&b"k"[..], &v[..])).collect();
        let batch = compat_tests::batch::build_batch(&records, now_ms());
        let answer = wire::produce(&mut producer, &topic, 0, batch).unwrap();
        assert_eq!(answer.error_code, 0, "produce at {produced}");
        assert_eq!(answer.base_offset, produced);
        produced += 4;
        // Back to the log start, and read everything there is from it.
        let mut at = wire::earliest_offset(&mut consumer, &topic);
        while at < produced {
            let data = wire::fetch(&mut consumer, &topic, 0, at).unwrap();
            if data.error_code == 1 {
                // Retention moved the log start past `at` meanwhile.
                out_of_range += 1;
                let start = wire::earliest_offset(&mut consumer, &topic);
                assert!(start > at, "out of range at {at}, log start {start}");
                at = start;
                continue;
            }
            assert_eq!(data.error_code, 0, "fetch at {at}");
            let bytes = data.records.unwrap_or_default();
            if bytes.len() >= 64 * 1024 {
                large_answers += 1;
            }
            let records = compat_tests::batch::decode_records(&bytes);
            assert!(!records.is_empty(), "no whole batch at {at} of {produced}");
            for (offset, _, value) in records {
                if offset < at {
                    continue;
                }
                assert_eq!(offset, at, "offsets out of order");
                assert!(
                    value.as_deref() == Some(&value_of(offset)[..]),
                    "the value at {offset} is not what was produced there"
                );
                at = offset + 1;
            }
        }
    }
    assert!(
        wire::earliest_offset(&mut consumer, &topic) > 0,
        "retention deleted nothing"
    );
    assert!(large_answers > 0, "no answer came from a mapping");
    eprintln!("{large_answers} answers of 64 KiB or more; {out_of_range} out of range");
}

#[test]
fn list_offsets_max_timestamp() {
    let broker = SluiceProcess::start(SluiceOptions::new());
    let topic = unique_topic("maxts");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 1, &[]);
    for ts in [5_000i64, 9_000, 7_000] {
        let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], ts);
        assert_eq!(
            wire::produce(&mut conn, &topic, 0, batch)
                .unwrap()
                .error_code,
            0
        );
    }
    // (error, offset, timestamp) of each lookup of partition 0, all in one request at `version`.
    let mut list = |timestamps: &[i64], version: i16| -> Vec<(i16, i64, i64)> {
        let partitions = timestamps
            .iter()
            .map(|&ts| {
                ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(ts)
            })
            .collect();
        let r = conn
            .call(
                &ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(topic_name(&topic))
                        .with_partitions(partitions)]),
                version,
            )
            .unwrap();
        r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.offset, p.timestamp))
            .collect()
    };
    assert_eq!(list(&[-3], 7), vec![(0, 1, 9_000)]);
    assert_eq!(list(&[6_000], 7), vec![(0, 1, 9_000)]);
    // A partition asked for twice: INVALID_REQUEST for each (Kafka's duplicatePartitions).
    assert_eq!(list(&[-3, 6_000], 7), vec![(42, -1, -1), (42, -1, -1)]);
    // -5 (latest tiered) from v9: no remote storage, no offset; -6 needs v11: UNSUPPORTED_VERSION.
    assert_eq!(list(&[-5], 9), vec![(0, -1, -1)]);
    assert_eq!(list(&[-6], 10), vec![(35, -1, -1)]);
}

fn fsync_count(broker: &SluiceProcess) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(broker.metrics_addr()).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines()
        .find(|l| l.starts_with("sluice_fsync_duration_seconds_count"))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn interval_flush_policy_acknowledges_after_the_write_and_flushes_on_its_timer() {
    let broker = SluiceProcess::start(
        SluiceOptions::new()
            .set("log.flush.interval.ms", "3000")
            .with_metrics(),
    );
    let topic = unique_topic("interval");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 1, &[]);
    // Let the flusher's first timer tick pass so the next fsync is the one we look for.
    std::thread::sleep(Duration::from_millis(200));
    let before = fsync_count(&broker).unwrap();
    let start = Instant::now();
    for i in 0..5 {
        let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], now_ms());
        let r = wire::produce(&mut conn, &topic, 0, batch).unwrap();
        assert_eq!((r.error_code, r.base_offset), (0, i));
    }
    // Acknowledged and visible without any fsync having run.
    assert!(start.elapsed() < Duration::from_millis(2000));
    assert_eq!(
        fsync_count(&broker).unwrap(),
        before,
        "acks waited for an fsync"
    );
    let data = wire::fetch(&mut conn, &topic, 0, 0).unwrap();
    assert_eq!(data.high_watermark, 5);
    // The timer then makes the data durable.
    let flushed = wire::poll_until(Duration::from_secs(8), || {
        (fsync_count(&broker)? > before).then_some(())
    });
    assert!(flushed.is_some(), "no fsync within 8 s");
}

#[test]
fn sync_policy_fsyncs_before_acknowledging() {
    let broker = SluiceProcess::start(SluiceOptions::new().with_metrics());
    let topic = unique_topic("syncack");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 1, &[]);
    let before = fsync_count(&broker).unwrap();
    let batch = compat_tests::batch::build_batch(&[(b"k", b"v")], now_ms());
    assert_eq!(
        wire::produce(&mut conn, &topic, 0, batch)
            .unwrap()
            .error_code,
        0
    );
    assert!(
        fsync_count(&broker).unwrap() > before,
        "acknowledged before any fsync"
    );
}

/// `max.connections.per.ip` (with an override for one address) and `max.connections`: a
/// connection over a limit is closed as soon as it is accepted, the others keep working, and a
/// closed connection gives its place back.
#[test]
fn connections_over_the_per_address_or_broker_limit_are_closed() {
    let broker = SluiceProcess::start(
        SluiceOptions::new()
            .set("max.connections.per.ip", "2")
            .set("max.connections.per.ip.overrides", "127.0.0.2:3")
            .set("max.connections", "6"),
    );
    let server: std::net::SocketAddr = broker.bootstrap().parse().unwrap();
    let open = |from: &str| {
        let mut c = RawConnection::connect_from(from.parse().unwrap(), server).unwrap();
        let works = c
            .call(&ApiVersionsRequest::default(), 0)
            .is_ok_and(|r| r.error_code == 0);
        (c, works)
    };
    // The harness's readiness check connected from 127.0.0.1 too, and its place comes back
    // only once the broker has seen it close: the first two may have to try again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first = Vec::new();
    while first.len() < 2 {
        let (c, works) = open("127.0.0.1");
        if works {
            first.push(c);
        } else {
            assert!(
                Instant::now() < deadline,
                "two connections from 127.0.0.1 never served"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (mut third, works) = open("127.0.0.1");
    assert!(!works, "a third connection from 127.0.0.1 was served");
    assert!(third.wait_closed(Duration::from_secs(5)).unwrap());
    let second: Vec<_> = (0..3).map(|_| open("127.0.0.2")).collect();
    assert!(
        second.iter().all(|(_, works)| *works),
        "the override's three"
    );
    assert!(!open("127.0.0.2").1, "a fourth from 127.0.0.2 was served");
    // Five open; the sixth is the broker's last place.
    let (_sixth, works) = open("127.0.0.3");
    assert!(works);
    assert!(!open("127.0.0.4").1, "a seventh connection was served");
    // A closed connection gives both places back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !open("127.0.0.1").1 {
        assert!(
            Instant::now() < deadline,
            "the closed connections' places never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn idle_connections_close_after_connections_max_idle_ms_even_after_a_large_request() {
    let idle = Duration::from_millis(3000);
    let broker = SluiceProcess::start(
        SluiceOptions::new().set("connections.max.idle.ms", &idle.as_millis().to_string()),
    );
    let topic = unique_topic("idle");
    let mut conn = connect(&broker);
    create_topic(&mut conn, &topic, 1, &[]);
    let quiet = connect(&broker);

    // A produce of ~1 MB grows this connection's read buffer, which it gives back once idle
    // for a second; the connection must go on working after that, and still close on time.
    let value = vec![0x5a_u8; 900 * 1024];
    let batch = compat_tests::batch::build_batch(&[(b"k", &value)], now_ms());
    assert_eq!(
        wire::produce(&mut conn, &topic, 0, batch)
            .unwrap()
            .error_code,
        0
    );
    std::thread::sleep(Duration::from_millis(1800));
    let versions = conn.call(&ApiVersionsRequest::default(), 0).unwrap();
    assert_eq!(
        versions.error_code, 0,
        "the connection works after its buffer shrank"
    );
    let stored = wire::fetch(&mut conn, &topic, 0, 0).unwrap();
    assert_eq!(stored.high_watermark, 1);

    // Now idle: open until the limit, closed soon after it.
    let since = Instant::now();
    assert!(
        !conn.wait_closed(idle / 2).unwrap(),
        "closed before the idle limit"
    );
    assert!(
        conn.wait_closed(idle * 2).unwrap(),
        "not closed after the idle limit"
    );
    assert!(since.elapsed() >= idle - Duration::from_millis(200));
    // The connection that never sent anything was closed by then too.
    let mut quiet = quiet;
    assert!(quiet.wait_closed(Duration::from_millis(100)).unwrap());
}
